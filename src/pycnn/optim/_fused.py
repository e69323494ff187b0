"""What the optimisers with a device-side step counter (Adam, AdamW, RMSprop) share: checking a
hyper-parameter, the per-parameter state they create on first use, and the found_inf flag.

Each parameter's state holds "step": a float64 one-element tensor ON the parameter's device that the
C++/CUDA kernels read (bias corrections) and advance, so a step never waits for the host and a CUDA
graph can replay it.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .. import _core
from .._core import Tensor
from ..tensor import float64
from .optimizer import Optimizer


def check_number(opt: str, name: str, value: Any, *, low: float = 0.0, high: Optional[float] = None,
                 message: Optional[str] = None) -> float:
    """`value` as a float in [low, high) (or a finite value >= low when high is None); TypeError for a
    non-number, ValueError (PyTorch's wording, `message`, when given) for NaN, an infinity or a value
    outside the range."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{opt}: {name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < low or (high is not None and v >= high):
        wanted = f"a finite number >= {low:g}" if high is None else f"a number in [{low:g}, {high:g})"
        raise ValueError(f"{opt}: {message or f'Invalid {name} value'}: {value!r} ({name} must be {wanted})")
    return v


def check_flag(opt: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{opt}: {name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_found_inf(opt: str, found_inf: Any) -> Optional[Tensor]:
    if found_inf is not None and not isinstance(found_inf, Tensor):
        raise TypeError(f"{opt}.step: found_inf must be a pycnn Tensor (one element, float32, on the parameters' "
                        f"device, e.g. from pc._core.nonfinite_flag) or None, got {type(found_inf).__name__}")
    return found_inf


class FusedOptimizer(Optimizer):
    """Base of Adam and RMSprop: gathers one group's tensors for its C++ kernel.

    Subclasses check a group's hyper-parameters (`_validate_group`), name its per-parameter buffers
    (`_buffers(group)`: the state keys this group uses) and call their kernel (`_run(group, params,
    grads, buffers, steps, found_inf)`, only for a group with at least one gradient).
    """

    def _buffers(self, group: Dict[str, Any]) -> Sequence[str]:
        raise NotImplementedError

    def _run(self, group: Dict[str, Any], params: List[Tensor], grads: List[Tensor],
             buffers: Dict[str, List[Tensor]], steps: List[Tensor], found_inf: Optional[Tensor]) -> None:
        raise NotImplementedError

    def step(self, closure: Any = None, *, found_inf: Any = None) -> Any:
        """One update of every parameter that has a gradient (frozen ones and those whose `.grad` is
        None are skipped entirely: parameter, state and step count unchanged). `closure` (optional)
        re-evaluates the loss and is called first; its result is returned, as in PyTorch.
        `found_inf`: a one-element float32 tensor on the parameters' device; when it is non-zero the
        kernels skip the whole step (parameters, moments and step counters unchanged) without the
        host reading it."""
        found_inf = check_found_inf(type(self).__name__, found_inf)
        loss = None
        if closure is not None:
            loss = closure()
        for group in self.param_groups:
            names = self._buffers(group)
            params: List[Tensor] = []
            grads: List[Tensor] = []
            steps: List[Tensor] = []
            buffers: Dict[str, List[Tensor]] = {k: [] for k in names}
            for p in group["params"]:
                g = p.grad
                if g is None or not p.requires_grad:
                    continue
                data = p.data
                st = self._state_of(p, data, names)
                params.append(data)
                grads.append(g)
                steps.append(st["step"])
                for k in names:
                    buffers[k].append(st[k])
            if params:
                self._run(group, params, grads, buffers, steps, found_inf)
        return loss

    def _state_of(self, p: Any, data: Tensor, names: Sequence[str]) -> Dict[str, Any]:
        """p's state with a step counter and every buffer in `names`, created (zeros) when missing and
        moved to the parameter's device when the model moved after some steps."""
        st = self.state[p]
        if p not in self.state:
            self.state[p] = st
        device = data.device
        step = st.get("step")
        if not isinstance(step, Tensor):
            st["step"] = _core.zeros([], float64, device)
        elif step.device != device:
            st["step"] = step.to(device)
        for k in names:
            buf = st.get(k)
            if buf is None:
                st[k] = _core.zeros(list(data.shape), data.dtype, device)
            elif buf.device != device:
                st[k] = buf.to(device)
        return st

    def state_dict(self) -> Dict[str, Any]:
        """As `Optimizer.state_dict`, with each "step" a Python float (the count; reading it waits for
        the device), so that every array in the state has its parameter's shape."""
        sd = super().state_dict()
        for entries in sd["state"].values():
            if "step" in entries:
                entries["step"] = float(np.asarray(entries["step"]).reshape(-1)[0])
        return sd

    @staticmethod
    def _restore_value(p: Any, key: str, value: Any) -> Any:
        if key == "step":  # a count (a number or a one-element array) -> the device-side counter
            arr = np.asarray(value, dtype=np.float64)
            if arr.size != 1:
                raise ValueError(f"load_state_dict: state 'step' must hold one number, got shape {arr.shape}")
            return _core.full([], float(arr.reshape(-1)[0]), float64, p.data.device)
        return Optimizer._restore_value(p, key, value)


__all__ = ["FusedOptimizer", "check_number", "check_flag", "check_found_inf"]
