"""`Optimizer`: parameter groups, per-parameter state and (de)serialisation, as in `torch.optim`.

Subclasses implement `step()`. Parameters are `nn.Parameter` objects (`.data`, `.grad`,
`.requires_grad`); state is keyed by the parameter object itself (by identity).
"""
from __future__ import annotations

import copy
from collections.abc import MutableMapping
from typing import Any, Dict, Iterable, Iterator, List

import numpy as np

from .. import _core
from .._core import Tensor
from ..nn.parameter import zero_grads
from ..tensor import _NUMPY_OF, float32


class _Required:
    """Marks a hyper-parameter that every parameter group must give (PyTorch's `required`)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


class _ParamState(MutableMapping):
    """`optimizer.state`: a dict keyed by parameter identity (parameters need not be hashable).

    Missing keys read as a fresh empty dict, like PyTorch's `defaultdict(dict)`, but reading does
    not insert: `p in opt.state` stays False until the optimizer stores something.
    """

    def __init__(self) -> None:
        self._items: Dict[int, tuple] = {}

    def __getitem__(self, p: Any) -> dict:
        item = self._items.get(id(p))
        if item is None:
            return {}
        return item[1]

    def __setitem__(self, p: Any, value: dict) -> None:
        self._items[id(p)] = (p, value)

    def __delitem__(self, p: Any) -> None:
        del self._items[id(p)]

    def __contains__(self, p: Any) -> bool:
        return id(p) in self._items

    def __iter__(self) -> Iterator[Any]:
        return (p for p, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<optimizer state for {len(self)} parameters>"


def _is_param_like(p: Any) -> bool:
    return hasattr(p, "data") and hasattr(p, "grad") and hasattr(p, "requires_grad")


def _to_numpy_copy(v: Any) -> Any:
    if isinstance(v, Tensor):
        return np.array(v.numpy(), copy=True)
    return copy.deepcopy(v)


def validate_group(opt: Any, group: Dict[str, Any]) -> None:
    """Runs opt's check of a param group's hyper-parameters (TypeError/ValueError), where it has one."""
    validate = getattr(opt, "_validate_group", None)
    if callable(validate):
        validate(group)


class Optimizer:
    """Base class: holds `param_groups` (list of dicts with "params" and hyper-parameters) and `state`."""

    def __init__(self, params: Iterable[Any], defaults: Dict[str, Any]) -> None:
        if isinstance(params, Tensor) or _is_param_like(params):
            raise TypeError("params argument given to the optimizer should be an iterable of Parameters or dicts, "
                            f"but got {type(params).__name__}")
        if isinstance(params, dict):
            raise TypeError("params argument given to the optimizer should be an iterable of Parameters or dicts "
                            "(a list of param groups), but got a single dict; wrap it in a list")
        self.defaults = dict(defaults)
        self.state = _ParamState()
        self.param_groups: List[Dict[str, Any]] = []
        groups = list(params)
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    # ------------------------------------------------------------------ groups
    def _validate_group(self, group: Dict[str, Any]) -> None:
        """Subclasses check hyper-parameters of a group here."""

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Add a group of parameters with its own hyper-parameters (missing ones take the defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("param_group must have a 'params' entry")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, (Tensor,)) or _is_param_like(params):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering "
                            "of tensors in sets will change between runs. Please use a list instead.")
        else:
            params = list(params)
        for p in params:
            if not _is_param_like(p):
                raise TypeError("optimizer can only optimize Parameters (objects with .data, .grad and "
                                f".requires_grad, e.g. model.parameters()), but one of the params is "
                                f"{type(p).__name__}")
        group["params"] = params
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            group.setdefault(name, default)
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids):
            raise ValueError("optimizer contains a parameter group with duplicate parameters")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if not seen.isdisjoint(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        self._validate_group(group)
        self.param_groups.append(group)

    # ------------------------------------------------------------------ gradients
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of every parameter (set to None by default, as in PyTorch >= 2.0)."""
        zero_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    def step(self, closure: Any = None, *, found_inf: Any = None) -> Any:
        raise NotImplementedError

    def _check_found_inf(self, found_inf: Any) -> Any:
        """`step(found_inf=...)`'s argument: None, or a one-element float32 Tensor on the device of
        the parameters (the kernels read it there; a host copy would force a sync)."""
        if found_inf is None:
            return None
        if not isinstance(found_inf, Tensor):
            raise TypeError(f"{type(self).__name__}.step: found_inf must be a pycnn Tensor (a float32 flag from "
                            f"_core.nonfinite_flag) or None, got {type(found_inf).__name__}")
        if found_inf.numel() != 1 or found_inf.dtype != float32:
            raise ValueError(f"{type(self).__name__}.step: found_inf must be a one-element float32 tensor, got "
                             f"shape {tuple(found_inf.shape)} and dtype {found_inf.dtype}")
        devices = {p.data.device for g in self.param_groups for p in g["params"]}
        if devices and found_inf.device not in devices:
            raise RuntimeError(f"{type(self).__name__}.step: found_inf is on {found_inf.device} but the parameters "
                               f"are on {', '.join(sorted(map(str, devices)))}; create the flag on their device")
        return found_inf

    # ------------------------------------------------------------------ (de)serialisation
    def state_dict(self) -> Dict[str, Any]:
        """{"state": {index: {name: NumPy copy}}, "param_groups": [{hyper-parameters, "params": [indices]}]}.

        Parameters are numbered in the order they appear across groups, as in PyTorch.
        """
        index_of: Dict[int, int] = {}
        groups = []
        for g in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
            idx = []
            for p in g["params"]:
                index_of.setdefault(id(p), len(index_of))
                idx.append(index_of[id(p)])
            packed["params"] = idx
            groups.append(packed)
        state = {}
        for p in self.state:
            i = index_of.get(id(p))
            if i is not None:
                state[i] = {k: _to_numpy_copy(v) for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore hyper-parameters and per-parameter state saved by `state_dict()`.

        Buffers are copied onto each parameter's device and dtype.
        """
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict or "state" not in state_dict:
            raise ValueError("load_state_dict: expected a dict with 'state' and 'param_groups' "
                             "(as returned by optimizer.state_dict())")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for g, s in zip(self.param_groups, saved_groups):
            if len(g["params"]) != len(s["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                                 "optimizer's group")
        id_map = {}
        for g, s in zip(self.param_groups, saved_groups):
            for p, i in zip(g["params"], s["params"]):
                id_map[int(i)] = p
        saved_state = {int(k): v for k, v in state_dict["state"].items()}
        new_state = _ParamState()
        for i, entries in saved_state.items():
            p = id_map.get(i)
            if p is None:
                continue
            new_state[p] = {k: self._restore_value(p, k, v) for k, v in entries.items()}
        new_groups = []
        for g, s in zip(self.param_groups, saved_groups):
            ng = {k: copy.deepcopy(v) for k, v in s.items() if k != "params"}
            ng["params"] = g["params"]
            new_groups.append(ng)
        for g in new_groups:
            self._validate_group(g)
        self.state = new_state
        self.param_groups = new_groups

    @staticmethod
    def _restore_value(p: Any, key: str, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, (np.ndarray, Tensor)):
            data = p.data
            arr = np.asarray(value)
            if tuple(arr.shape) != tuple(data.shape):
                raise ValueError(f"load_state_dict: state '{key}' has shape {tuple(arr.shape)} but its parameter "
                                 f"has shape {tuple(data.shape)}")
            arr = np.array(arr, dtype=_NUMPY_OF[data.dtype], copy=True, order="C")
            return _core.from_numpy(arr).to(data.device)
        return copy.deepcopy(value)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)
