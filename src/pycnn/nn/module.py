"""Module: submodules, parameters and buffers, hooks, state dicts, devices and dtypes (Parameter is
in parameter.py, the containers in container.py, the pass bookkeeping in _passes.py).

Two routes to gradients. The explicit one: a module has ``forward(x)`` (also ``__call__``), which
caches what its backward needs (``_cache_attrs``; stacked per call, see _passes.py), and
``backward(grad_out)``, which returns the gradient with respect to the input, accumulates parameter
gradients into ``.grad`` and frees the cache. The autograd one (pycnn.autograd): a module whose every
submodule has a backward is one node on the tape; any other module is traced through its ops, and
an nn.Parameter in those ops is a leaf whose gradient sums into ``.grad``.
"""
from __future__ import annotations

import itertools
from collections import OrderedDict, namedtuple
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import numpy as np

from .. import _args, _core
from .. import autograd as _autograd
from ..io import save as _save_module
from ..summary import summary as _summarise
from ..tensor import Tensor, as_tensor, float32, float64, int64
from ._passes import explicit_backward, recording_forward, restoring_cache
from .parameter import Parameter, as_device_or_dtype, deepcopy_value, zero_grads

__all__ = ["Module"]


_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class _RemovableHandle:
    _ids = itertools.count()

    def __init__(self, hooks: Dict[int, Callable]):
        self._hooks = hooks
        self.id = next(self._ids)

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


class Module:
    """Base class of every layer and model (PyTorch's ``nn.Module`` without autograd).

    Subclasses implement ``forward(x)`` (caching what backward needs on ``self``) and
    ``backward(grad_out)``; assigning a Parameter or a Module to an attribute registers it.
    """

    training: bool
    # What forward leaves on self for backward. A module instance may appear several times in one
    # forward pass (one ReLU after every conv, as PyTorch code often does): __call__ pushes these
    # attributes after each forward, and backward (called in reverse order) pops them back first.
    _cache_attrs: Tuple[str, ...] = ("_cache",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        bw = cls.__dict__.get("backward")
        if bw is not None and not getattr(bw, "restores_cache", False):
            cls.backward = restoring_cache(bw)
        fw = cls.__dict__.get("forward")
        if fw is not None and not getattr(fw, "records_pass", False):
            cls.forward = recording_forward(fw)

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())

    # ---- attribute registration ---------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() call "
                                 f"(call super().__init__() first in {type(self).__name__}.__init__)")
        params, modules, buffers = d["_parameters"], d["_modules"], d["_buffers"]
        if isinstance(value, Parameter):
            self._discard(name, keep="_parameters")
            params[name] = value
        elif isinstance(value, Module):
            self._discard(name, keep="_modules")
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} "
                                "(nn.Parameter or None expected)")
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module {name!r} "
                                "(nn.Module or None expected)")
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                if isinstance(value, np.ndarray):
                    value = as_tensor(np.ascontiguousarray(value))
                else:
                    raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r} "
                                    "(Tensor or None expected)")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _discard(self, name: str, keep: str = "") -> None:
        """Removes `name` from every store but `keep` (where an assignment replaces it in place,
        keeping its position, as PyTorch does)."""
        d = self.__dict__
        d.pop(name, None)
        for key in ("_parameters", "_modules", "_buffers"):
            if key != keep:
                d[key].pop(name, None)
        if keep != "_buffers":
            d["_non_persistent_buffers"].discard(name)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            store = d.get(key)
            if store is not None and name in store:
                return store[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            if name in d[key]:
                del d[key][name]
                d["_non_persistent_buffers"].discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))

    def register_parameter(self, name: str, param: Optional[Parameter]) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be an nn.Parameter or None, "
                            f"got {type(param).__name__}")
        self._check_name(name, "parameter")
        self._discard(name, keep="_parameters")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Optional[Tensor], persistent: bool = True) -> None:
        if tensor is not None and not isinstance(tensor, Tensor):
            if isinstance(tensor, np.ndarray):
                tensor = as_tensor(np.ascontiguousarray(tensor))
            else:
                raise TypeError(f"register_buffer: {name!r} must be a Tensor or None, got {type(tensor).__name__}")
        self._check_name(name, "buffer")
        self._discard(name, keep="_buffers")
        self._buffers[name] = tensor
        self._non_persistent_buffers.discard(name)
        if not persistent:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Optional["Module"]) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be an nn.Module or None, got {type(module).__name__}")
        self._check_name(name, "module")
        self._discard(name, keep="_modules")
        self._modules[name] = module

    register_module = add_module

    @staticmethod
    def _check_name(name: Any, what: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{what} name must be a string, got {type(name).__name__}")
        if name == "" or "." in name:
            raise KeyError(f"{what} name can't be empty or contain '.', got {name!r}")

    # ---- forward / backward -------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def backward(self, grad_output: Any, need_input_grad: bool = True) -> Any:
        """For a module without a backward of its own (forward only): back-propagates
        `grad_output` through the tape its latest outermost forward recorded, summing into the
        parameters' ``.grad``; returns d/dx of its input (None with ``need_input_grad=False``).
        A module that defines ``backward`` (the explicit, faster route) replaces this."""
        call = self.__dict__.pop("_traced_call", None)
        if call is None:
            raise RuntimeError(
                f"{type(self).__name__} has no backward() of its own: it is differentiated through the ops its "
                "forward records, from its own call model(x) (with grad enabled). Call loss.backward(); inside a "
                "container with an explicit backward (Sequential, Residual, ...) give it a backward, or build the "
                "model as a Module whose forward calls the layers")
        pass_id, inputs, out = call
        tag = getattr(grad_output, "_pass_id", None)
        if tag is not None and tag != pass_id:
            self.__dict__["_traced_call"] = call
            raise RuntimeError(f"{type(self).__name__}: backward() of forward pass #{tag}, but the latest forward is "
                               f"pass #{pass_id}; call backward() before the next forward")
        leaves = [a for a in inputs if isinstance(a, Tensor) and a._explicit_only]
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        grads = list(grad_output) if isinstance(grad_output, (tuple, list)) else [grad_output]
        pairs = [(o, _args.tensor_arg(g, f"{type(self).__name__}.backward", "grad_output") if g is not None else None)
                 for o, g in zip(outs, grads) if isinstance(o, Tensor) and o._rg]
        if not pairs:
            return None
        _autograd.backward([o for o, _ in pairs], [g for _, g in pairs],
                           extra=leaves if need_input_grad else ())
        if not need_input_grad or not leaves:
            return None
        dx = [leaf.grad for leaf in leaves]
        for leaf in leaves:
            leaf.grad = None
        return dx[0] if len(dx) == 1 else tuple(dx)

    def _explicit(self) -> bool:
        """Whether this module and every module inside it define backward: then it is one node on
        the tape and ``model.backward`` is its explicit backward; otherwise it is traced."""
        return explicit_backward(self._tree())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for hook in list(self._forward_pre_hooks.values()):
            r = hook(self, args)
            if r is not None:
                args = r if isinstance(r, tuple) else (r,)
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            r = hook(self, args, out)
            if r is not None:
                out = r
        return out

    def _tree(self) -> Any:
        """self and every module inside it (just (self,) for a layer without children: fast)."""
        return list(self.modules()) if self._modules else (self,)

    def register_forward_hook(self, hook: Callable) -> _RemovableHandle:
        """hook(module, inputs, output) runs after forward; a non-None result replaces the output."""
        h = _RemovableHandle(self._forward_hooks)
        self._forward_hooks[h.id] = hook
        return h

    def register_forward_pre_hook(self, hook: Callable) -> _RemovableHandle:
        """hook(module, inputs) runs before forward; a non-None result replaces the inputs."""
        h = _RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[h.id] = hook
        return h

    # helpers for layers
    def _input(self, x: Any) -> Tensor:
        """x as a Tensor (NumPy arrays converted), TypeError naming the layer otherwise."""
        if isinstance(x, Tensor):
            return x
        if isinstance(x, Parameter):
            return x.data
        if isinstance(x, np.ndarray):
            if x.dtype.kind not in "fiub":
                raise TypeError(f"{self._name()}: input has NumPy dtype {x.dtype}; expected float32 or float64")
            return as_tensor(x)
        raise TypeError(f"{self._name()}: input must be a pycnn Tensor or a NumPy array, got {type(x).__name__}")

    def _name(self) -> str:
        try:
            extra = self.extra_repr()
        except Exception:  # pragma: no cover - a broken extra_repr must not hide the real error
            extra = ""
        return f"{type(self).__name__}({extra})"

    def _call_core(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Runs an op, re-raising its ValueError/TypeError/RuntimeError with the layer named."""
        try:
            return fn(*args, **kwargs)
        except (ValueError, TypeError, RuntimeError) as e:
            raise _renamed(e, self._name()) from None

    def _no_cache(self) -> RuntimeError:
        return RuntimeError(f"{self._name()}: backward() called before forward(), or more often than forward() "
                            "(each backward consumes what one forward call cached; a module used k times in a "
                            "pass takes k backward calls, in reverse order)")

    @staticmethod
    def _accumulate(p: Optional[Parameter], g: Optional[Tensor]) -> None:
        if p is None or g is None or not p.requires_grad:
            return
        if p.grad is None:
            p.grad = g
        else:
            _core.add_(p.grad, g)

    # ---- traversal ----------------------------------------------------------------------------
    def _named_members(self, store: str, prefix: str, recurse: bool,
                       remove_duplicate: bool) -> Iterator[Tuple[str, Any]]:
        """(qualified name, value) of each entry of every module's `store` ("_parameters" or
        "_buffers"), None entries skipped, each object once unless remove_duplicate is False."""
        seen: set = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, v in getattr(m, store).items():
                if v is None or (remove_duplicate and id(v) in seen):
                    continue
                seen.add(id(v))
                yield (mprefix + "." + name if mprefix else name), v

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[Tuple[str, Parameter]]:
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[Tuple[str, Tensor]]:
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        return (b for _, b in self.named_buffers(recurse=recurse))

    def named_children(self) -> Iterator[Tuple[str, "Module"]]:
        seen: set = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, memo: Optional[set] = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[Tuple[str, "Module"]]:
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(memo, prefix + "." + name if prefix else name, remove_duplicate)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def get_submodule(self, target: str) -> "Module":
        m: Module = self
        if target == "":
            return m
        for part in target.split("."):
            if part not in m._modules or m._modules[part] is None:
                raise AttributeError(f"{type(m).__name__} has no submodule {part!r} (looking up {target!r})")
            m = m._modules[part]
        return m

    def apply(self, fn: Callable[["Module"], Any]) -> "Module":
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---- state --------------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drops every parameter gradient (grad = None), or zeroes it with set_to_none=False."""
        zero_grads(self.parameters(), set_to_none)

    def train(self, mode: bool = True) -> "Module":
        if not isinstance(mode, bool):
            raise TypeError(f"train(): mode must be a bool, got {type(mode).__name__}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def freeze(self) -> "Module":
        """requires_grad=False on every parameter (backward then skips their gradients)."""
        return self.requires_grad_(False)

    def unfreeze(self) -> "Module":
        return self.requires_grad_(True)

    def _apply_tensors(self, fn: Callable[[Tensor], Tensor], floating_only: bool = False) -> "Module":
        def conv(t: Tensor) -> Tensor:
            if floating_only and t.dtype == int64:
                return t
            return fn(t)

        for m in self.modules():
            for p in m._parameters.values():
                if p is None:
                    continue
                p.data = conv(p.data)
                if p.grad is not None:
                    p.grad = conv(p.grad)
            for name, b in list(m._buffers.items()):
                if b is not None:
                    m._buffers[name] = conv(b)
            m._clear_cache()
            m.__dict__.pop("_cache_stack", None)
        return self

    def _clear_cache(self) -> None:
        """Drops what forward cached: each of the layer's ``_cache_attrs`` it holds goes back to None."""
        for name in self._cache_attrs:
            if name in self.__dict__:
                self.__dict__[name] = None

    def to(self, *args: Any, device: Any = None, dtype: Any = None) -> "Module":
        """Moves (device string) and/or casts (pc.float32/float64) parameters, gradients and
        buffers in place; the Parameter objects stay the same (optimizers keep working). Returns self."""
        targets = [as_device_or_dtype(a) for a in args]
        if device is not None:
            targets.append(str(device))
        if dtype is not None:
            targets.append(as_device_or_dtype(dtype))
        for t in targets:
            if isinstance(t, str):
                t = _core.parse_device(t)
                self._apply_tensors(lambda x, t=t: x.to(t) if x.device != t else x)
            else:
                if t not in (float32, float64):
                    raise TypeError(f"to(): modules can be cast to float32 or float64, got {t}")
                self._apply_tensors(lambda x, t=t: x.to(t) if x.dtype != t else x, floating_only=True)
        return self

    def cpu(self) -> "Module":
        return self.to("cpu")

    def cuda(self, device: Any = 0) -> "Module":
        return self.to(device if isinstance(device, str) else f"cuda:{int(device)}")

    def double(self) -> "Module":
        return self.to(float64)

    def float(self) -> "Module":
        return self.to(float32)

    @property
    def device(self) -> str:
        """The device of the first parameter or buffer ("cpu" when there is none)."""
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return "cpu"

    def state_dict(self, destination: Optional[dict] = None, prefix: str = "",
                   keep_vars: bool = False) -> "OrderedDict[str, Any]":
        """name -> Tensor for every parameter and persistent buffer, in registration order. The
        tensors are the module's own (not copies), as in PyTorch; keep_vars returns Parameters."""
        out: OrderedDict = OrderedDict() if destination is None else destination
        for mprefix, m in self.named_modules(prefix=prefix.rstrip(".")):
            pre = mprefix + "." if mprefix else ""
            for name, p in m._parameters.items():
                if p is not None:
                    out[pre + name] = p if keep_vars else p.data
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent_buffers:
                    out[pre + name] = b
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> _IncompatibleKeys:
        """Copies Tensors (or NumPy arrays) into the module's existing tensors.

        strict: missing or unexpected keys raise RuntimeError listing them. A shape mismatch always
        raises RuntimeError naming the key and both shapes. Nothing is copied when an error is raised.
        Returns (missing_keys, unexpected_keys)."""
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict: expected a dict of name -> Tensor, got {type(state_dict).__name__}")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict:
            if unexpected:
                errors.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
            if missing:
                errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        plan = []
        for k, dst in own.items():
            if k not in state_dict:
                continue
            src = state_dict[k]
            try:
                src = _args.tensor_arg(src, "load_state_dict", repr(k)) if not _is_number(src) else as_tensor(np.asarray(src))
            except TypeError as e:
                errors.append(str(e))
                continue
            dst_t = dst.data if isinstance(dst, Parameter) else dst
            if tuple(src.shape) != tuple(dst_t.shape):
                errors.append(f"size mismatch for {k}: copying a param with shape {tuple(src.shape)} from "
                              f"checkpoint, the shape in current model is {tuple(dst_t.shape)}.")
                continue
            plan.append((dst_t, src))
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors))
        for dst_t, src in plan:
            if src.dtype != dst_t.dtype:
                src = src.to(dst_t.dtype)
            if src is dst_t:
                continue
            dst_t.copy_(src)
        return _IncompatibleKeys(missing, unexpected)

    # ---- copies, files, summary ---------------------------------------------------------------
    def __deepcopy__(self, memo: dict) -> "Module":
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            if k != "_traced_call":  # the latest forward's tape belongs to this module only
                object.__setattr__(new, k, deepcopy_value(v, memo))
        return new

    def __copy__(self) -> "Module":
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __getstate__(self):
        raise TypeError("pycnn modules cannot be pickled; use pc.save(model, path) (safetensors)")

    def save(self, path: Any) -> None:
        _save_module(self, path)

    def summary(self, input_size: Any, verbose: bool = True, **kw: Any) -> Any:
        result = _summarise(self, input_size, **kw)  # printed unless verbose=False, as Keras and torchinfo
        if verbose:
            print(result)
        return result

    # ---- repr ---------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        if extra:
            lines = extra.split("\n")
        child_lines = []
        for name, m in self._modules.items():
            child_lines.append(f"({name}): " + _addindent(repr(m), 2))
        lines += child_lines
        main = type(self).__name__ + "("
        if lines:
            if len(extra.split("\n")) == 1 and not child_lines:
                main += extra
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"


_NO_BACKWARD = Module.backward  # a class whose backward is this one is traced through its ops
_NO_BACKWARD.traced_through_ops = True  # type: ignore[attr-defined]  # read by _passes._no_backward


def clear_cache(m: Any) -> None:
    """Drops what a module's forward cached for its backward (nothing for an object that caches none)."""
    clear = getattr(m, "_clear_cache", None)
    if callable(clear):
        clear()


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool)


def _addindent(s: str, n: int) -> str:
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    return lines[0] + "\n" + "\n".join(" " * n + line for line in lines[1:])


def _renamed(e: BaseException, name: str) -> BaseException:
    """The same exception type with `name: ` prefixed (once)."""
    msg = str(e)
    if msg.startswith(name):
        return e
    try:
        new = type(e)(f"{name}: {msg}")
    except Exception:  # an exception type with a special constructor
        new = RuntimeError(f"{name}: {msg}")
    return new
