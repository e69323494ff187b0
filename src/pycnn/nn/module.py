"""Module, Parameter and the containers (Sequential, Residual, Concat, Identity).

Two routes to gradients. The explicit one: a module has ``forward(x)`` (also ``__call__``), which
caches what its backward needs, and ``backward(grad_out)``, which returns the gradient with respect
to the input, accumulates parameter gradients into ``.grad`` and frees the cache. A module may
appear several times in one forward pass (a shared ReLU, or shared weights): each call's cache is
stacked and the backward calls, made in reverse order, take them back one by one
(``Module._cache_attrs``); the caches are tagged with their forward pass, so a backward never reads
another pass's (see _recording_forward). The autograd one (pycnn.autograd): a module whose every
submodule has a backward is one node on the tape; any other module is traced through its ops, and
an nn.Parameter in those ops is a leaf whose gradient sums into ``.grad``.
"""
from __future__ import annotations

import copy
import functools
import inspect
import itertools
import operator
import weakref
from collections import OrderedDict, namedtuple
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import numpy as np

from .. import _args, _core
from .. import functional as F
from .. import autograd as _autograd
from ..autograd.grad_mode import _local
from ..autograd.module_node import input_leaf as _input_leaf, module_node as _module_node
from ..tensor import DType, Tensor, as_tensor, float32, float64, int64

__all__ = ["Parameter", "Module", "Sequential", "Residual", "Concat", "Identity"]


# ----------------------------------------------------------------------------------------------
# Parameter
# ----------------------------------------------------------------------------------------------
class Parameter:
    """A learnable tensor: ``.data`` (a Tensor), ``.grad`` (Tensor or None), ``.requires_grad``.

    Layers accumulate gradients: ``grad = dw`` when None, else ``grad += dw``; a frozen parameter
    (``requires_grad=False``) gets no gradient at all.
    """

    def __init__(self, data: Any, requires_grad: bool = True):
        if isinstance(data, Parameter):
            data = data.data
        self.data = data
        self.grad: Optional[Tensor] = None
        self.requires_grad = bool(requires_grad)

    @property
    def data(self) -> Tensor:
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        if isinstance(value, Parameter):
            value = value.data
        if isinstance(value, np.ndarray):
            value = as_tensor(np.ascontiguousarray(value))
        if not isinstance(value, Tensor):
            raise TypeError(f"Parameter.data must be a pycnn Tensor or a NumPy array, got {type(value).__name__}")
        self._data = value
        self.__dict__.pop("_leaf", None)

    @property
    def _pycnn_parameter_data(self) -> Tensor:  # lets pycnn.functional accept a Parameter
        return self._data

    # ---- autograd: a Parameter in a traced forward is a leaf whose gradient sums into .grad --------
    def _traced(self) -> Tensor:
        """The tensor that stands for this parameter in the ops a forward records: a leaf over
        ``.data``'s storage whose gradient sums into ``self.grad``; ``.data`` itself where
        nothing is recorded (grad mode off, frozen, or inside a module with its own backward)."""
        s = _local.state
        if not self.requires_grad or not s.enabled or s.capture is not None:
            return self._data
        leaf = self.__dict__.get("_leaf")
        if leaf is None:
            leaf = _autograd.function.alias(self._data)
            leaf._rg = True
            leaf._param = weakref.ref(self)
            self.__dict__["_leaf"] = leaf
        return leaf

    @property
    def _rg(self) -> bool:
        return self.requires_grad

    def __getattr__(self, name: str) -> Any:
        """Tensor methods and properties (``.T``, ``.sum()``, ``.reshape()``, ...) on the traced tensor."""
        if name.startswith("__") or name in ("_data", "_leaf", "grad", "requires_grad"):
            raise AttributeError(f"'Parameter' object has no attribute '{name}'")
        return getattr(self._traced(), name)

    # Tensor-like read access
    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    device = property(lambda self: self._data.device)
    ndim = property(lambda self: self._data.ndim)
    is_cuda = property(lambda self: self._data.is_cuda)

    def numel(self) -> int:
        return self._data.numel()

    def dim(self) -> int:
        return self._data.dim()

    def size(self, dim: Optional[int] = None):
        return self._data.size(dim)

    def numpy(self) -> np.ndarray:
        return self._data.numpy()

    def item(self) -> float:
        return self._data.item()

    def __len__(self) -> int:
        return len(self._data)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self._data.__array__(dtype, copy)

    def __dlpack__(self, **kw: Any):
        return self._data.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    def requires_grad_(self, requires_grad: bool = True) -> "Parameter":
        self.requires_grad = bool(requires_grad)
        return self

    def zero_(self) -> "Parameter":
        self._data.fill_(0.0)
        return self

    def fill_(self, value: float) -> "Parameter":
        self._data.fill_(float(value))
        return self

    def copy_(self, src: Any) -> "Parameter":
        src = _args.tensor_arg(src, "Parameter.copy_", "src")
        if src.dtype != self._data.dtype:
            src = src.to(self._data.dtype)
        self._data.copy_(src)
        return self

    def __repr__(self) -> str:
        rg = "" if self.requires_grad else ", requires_grad=False"
        return f"Parameter containing:\n{self._data!r}{rg}"

    def __deepcopy__(self, memo: dict) -> "Parameter":
        new = Parameter.__new__(Parameter)
        memo[id(self)] = new
        new._data = _deepcopy_value(self._data, memo)
        new.grad = _deepcopy_value(self.grad, memo)
        new.requires_grad = self.requires_grad
        return new

    def __copy__(self) -> "Parameter":
        new = Parameter.__new__(Parameter)
        new.__dict__.update(self.__dict__)
        new.__dict__.pop("_leaf", None)  # the copy's own leaf sums into the copy's .grad
        return new

    def __getstate__(self):
        raise TypeError("pycnn Parameters cannot be pickled; use pc.save(model, path) (safetensors)")


def _delegate(name: str) -> Callable:
    def method(self: Parameter, *args: Any) -> Any:
        return getattr(self._traced(), name)(*args)

    method.__name__ = name
    return method


def _compare(name: str) -> Callable:
    def method(self: Parameter, other: Any) -> Any:
        if isinstance(other, Parameter):  # Parameters compare (and hash) by identity, as list lookups need
            return NotImplemented
        return getattr(self._traced(), name)(other)

    method.__name__ = name
    return method


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
              "__pow__", "__rpow__", "__matmul__", "__rmatmul__", "__neg__", "__pos__", "__abs__", "__getitem__",
              "__float__", "__int__", "__format__"):
    setattr(Parameter, _name, _delegate(_name))
for _name in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"):
    setattr(Parameter, _name, _compare(_name))
Parameter.__hash__ = object.__hash__  # type: ignore[assignment]


def _deepcopy_value(v: Any, memo: dict) -> Any:
    """copy.deepcopy that clones pycnn Tensors (which do not support pickling)."""
    if isinstance(v, Tensor):
        if id(v) in memo:
            return memo[id(v)]
        c = v.clone()
        memo[id(v)] = c
        return c
    if isinstance(v, (Parameter, Module)):
        return copy.deepcopy(v, memo)
    if isinstance(v, OrderedDict):
        out = OrderedDict()
        memo[id(v)] = out
        for k, x in v.items():
            out[k] = _deepcopy_value(x, memo)
        return out
    if isinstance(v, dict):
        out2: dict = {}
        memo[id(v)] = out2
        for k, x in v.items():
            out2[k] = _deepcopy_value(x, memo)
        return out2
    if isinstance(v, list):
        return [_deepcopy_value(x, memo) for x in v]
    if isinstance(v, tuple) and type(v) is tuple:
        return tuple(_deepcopy_value(x, memo) for x in v)
    return copy.deepcopy(v, memo)


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


def _as_device_or_dtype(arg: Any) -> Any:
    if isinstance(arg, DType):
        return arg
    if isinstance(arg, str):
        return arg
    try:
        dt = np.dtype(arg)
    except TypeError:
        raise TypeError(f"to(): expected a device string ('cpu', 'cuda:0') or a dtype, got {arg!r}") from None
    if dt == np.float32:
        return float32
    if dt == np.float64:
        return float64
    raise TypeError(f"to(): modules can be cast to float32 or float64, got {dt}")


def _param_dtype(dtype: Any, who: str) -> DType:
    """The dtype a layer creates its parameters in (float32 unless asked)."""
    if dtype is None:
        return float32
    dt = _as_device_or_dtype(dtype)
    if dt not in (float32, float64):
        raise TypeError(f"{who}: dtype must be float32 or float64, got {dtype!r}")
    return dt


# ----------------------------------------------------------------------------------------------
# Module
# ----------------------------------------------------------------------------------------------
_ids = itertools.count(1)  # forward passes and captures
_NOTHING = object()


def _recording_forward(forward: Callable) -> Callable:
    """Wraps a module's forward (``self(x)`` and ``self.forward(x)`` alike) with the pass logic.

    The outermost module with a backward starts a *capture*: every cache entry pushed during its
    forward (its own and its children's) is tagged with the capture's id, and so is its output, so
    the backward of that output (and ``crit.backward()`` of a loss on it) takes exactly these
    caches. A forward under ``no_grad`` keeps no cache and leaves earlier caches alone; an
    eval-mode forward keeps its own caches (for saliency and other eval-mode gradients) apart
    from those of the last training pass, which only the next training forward replaces."""

    @functools.wraps(forward)
    def wrapper(self: "Module", *args: Any, **kwargs: Any) -> Any:
        d = self.__dict__
        if d.get("_in_forward"):  # super().forward() of a subclass: one call, one cache entry
            return forward(self, *args, **kwargs)
        tls = _local.state
        depth = tls.depth
        traced = False
        explicit = tree = None
        if depth == 0:
            record, training, capture = tls.enabled, self.training, None
            tls.record, tls.training, tls.capture = record, training, None
            if record:
                tls.pass_id = next(_ids)
                tree = self._tree()
                _start_pass(tree, training)
                explicit = d["_explicit_last"] = _explicit(tree)
                traced = not explicit
                if traced:  # Module.backward of a traced model differentiates this call on the tape
                    args = tuple(_input_leaf(a) for a in args)
        else:
            record, training, capture = tls.record, tls.training, tls.capture
        pass_id = tls.pass_id
        if record and capture is None and type(self).backward is not _NO_BACKWARD and explicit is None:
            tree = self._tree()
            explicit = _explicit(tree)
        root = record and capture is None and type(self).backward is not _NO_BACKWARD and explicit
        if root:
            capture = tls.capture = next(_ids)
        attrs = self._cache_attrs
        saved = None if record else [d.get(a, _NOTHING) for a in attrs]
        tls.depth = depth + 1
        d["_in_forward"] = True
        try:
            out = forward(self, *args, **kwargs)
        finally:
            d["_in_forward"] = False
            tls.depth = depth
            if root:
                tls.capture = None
            if saved is not None:  # no_grad: what this forward cached is dropped at once
                for a, v in zip(attrs, saved):
                    if v is _NOTHING:
                        d.pop(a, None)
                    else:
                        d[a] = v
        if record:
            if attrs[0] in d:
                values = (d.get(attrs[0]),) if len(attrs) == 1 else tuple([d.get(a) for a in attrs])
                d.setdefault("_cache_stack", []).append((pass_id, capture, training, values))
            if root:
                out = _module_node(self, tree, capture, args, out)
            if depth == 0:
                _tag_outputs(out, pass_id)
                if traced:
                    d["_traced_call"] = (pass_id, args, out)
        return out

    wrapper._records_pass = True  # type: ignore[attr-defined]
    return wrapper


def _tag_outputs(out: Any, tag: int) -> None:
    if isinstance(out, Tensor):
        out._pass_id = tag
    elif isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, Tensor):
                o._pass_id = tag


def _stale_cache(m: "Module", want: int, stack: list) -> RuntimeError:
    return RuntimeError(
        f"{m._name()}: backward() would read the cache of another forward pass than the one it "
        f"differentiates (its gradient comes from forward pass #{want}; this layer holds the caches of "
        f"pass(es) {sorted({e[0] for e in stack})}): a later forward in training mode replaced that pass's "
        "caches. Call backward() before the next training forward, or run the other forward under "
        "pc.no_grad() or in eval mode")


def _start_pass(tree: Any, training: bool) -> None:
    """A new outermost forward over the modules `tree`: a training pass drops every cache an
    earlier pass left (an unused inference pass, or a training pass never back-propagated); an
    eval pass drops only earlier eval passes' caches and leaves the last training pass's alone."""
    for m in tree:
        stack = m.__dict__.get("_cache_stack")
        if stack:
            if training:
                stack.clear()
            else:
                stack[:] = [e for e in stack if e[2]]


def _explicit(tree: Any) -> bool:
    for m in tree:
        if type(m).backward is _NO_BACKWARD:
            return False
    return True


def _take_entry(m: "Module", stack: list) -> Tuple[int, Any]:
    """(index, entry) of the cache this backward reads: the newest of the capture (autograd's
    node) or pass being differentiated (the newest of all when none is chosen yet). Entries are
    (pass id, capture id, training, values). (-1, None) when empty."""
    tls = _local.state
    want, field = tls.bw_pass, tls.bw_field
    if not stack:
        return -1, None
    if want is None:
        tls.bw_pass, tls.bw_field = stack[-1][0], 0
        return len(stack) - 1, stack.pop()
    for i in range(len(stack) - 1, -1, -1):
        if stack[i][field] == want:
            return i, stack.pop(i)
    raise _stale_cache(m, want, stack)


def _restoring_cache(backward: Callable) -> Callable:
    """Wraps a layer's backward: the outermost call on an instance first restores the cache of
    the forward it differentiates (see _recording_forward and Module._cache_attrs). The pass is
    the one the incoming gradient is tagged with (an output of that pass, or a loss's gradient),
    else the newest cached one; nested backwards follow the same pass."""

    @functools.wraps(backward)
    def wrapper(self: "Module", *args: Any, **kwargs: Any) -> Any:
        d = self.__dict__
        if d.get("_in_backward", False):
            return backward(self, *args, **kwargs)
        tls = _local.state
        bw_depth = tls.bw_depth
        if bw_depth == 0:
            if tls.next_capture is not None:  # autograd's node of one module call
                tls.bw_pass, tls.bw_field, tls.next_capture = tls.next_capture, 1, None
            else:
                g = args[0] if args else kwargs.get("grad_output")
                tls.bw_pass, tls.bw_field = (g._pass_id if isinstance(g, Tensor) else None), 0
        stack = d.get("_cache_stack")
        i, entry = -1, None
        try:
            if stack is not None:  # this module records: never read a cache left on self
                if stack and tls.bw_pass is not None and stack[-1][tls.bw_field] == tls.bw_pass:
                    i, entry = len(stack) - 1, stack.pop()  # the usual case: the newest entry
                else:
                    i, entry = _take_entry(self, stack)
                d.update(zip(self._cache_attrs, entry[3] if entry is not None else (None,) * len(self._cache_attrs)))
            d["_in_backward"] = True
            tls.bw_depth = bw_depth + 1
            return backward(self, *args, **kwargs)
        except BaseException:
            if entry is not None:  # a refused backward (bad gradient) keeps its cache for a retry
                stack.insert(i, entry)
            raise
        finally:
            d["_in_backward"] = False
            tls.bw_depth = bw_depth
            if bw_depth == 0:
                tls.bw_pass = None

    wrapper._restores_cache = True  # type: ignore[attr-defined]
    return wrapper


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
        if bw is not None and not getattr(bw, "_restores_cache", False):
            cls.backward = _restoring_cache(bw)
        fw = cls.__dict__.get("forward")
        if fw is not None and not getattr(fw, "_records_pass", False):
            cls.forward = _recording_forward(fw)

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
        return _explicit(self._tree())

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
    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[Tuple[str, Parameter]]:
        seen: set = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, p in m._parameters.items():
                if p is None or (remove_duplicate and id(p) in seen):
                    continue
                seen.add(id(p))
                yield (mprefix + "." + name if mprefix else name), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[Tuple[str, Tensor]]:
        seen: set = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, b in m._buffers.items():
                if b is None or (remove_duplicate and id(b) in seen):
                    continue
                seen.add(id(b))
                yield (mprefix + "." + name if mprefix else name), b

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

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
        """Drops every parameter gradient (grad = None)."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.fill_(0.0)

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
        """Drops tensors cached by forward (overridden by layers that cache)."""

    def to(self, *args: Any, device: Any = None, dtype: Any = None) -> "Module":
        """Moves (device string) and/or casts (pc.float32/float64) parameters, gradients and
        buffers in place; the Parameter objects stay the same (optimizers keep working). Returns self."""
        targets = [_as_device_or_dtype(a) for a in args]
        if device is not None:
            targets.append(str(device))
        if dtype is not None:
            targets.append(_as_device_or_dtype(dtype))
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
                object.__setattr__(new, k, _deepcopy_value(v, memo))
        return new

    def __copy__(self) -> "Module":
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __getstate__(self):
        raise TypeError("pycnn modules cannot be pickled; use pc.save(model, path) (safetensors)")

    def save(self, path: Any) -> None:
        from ..io import save

        save(self, path)

    def summary(self, input_size: Any, **kw: Any) -> Any:
        from ..summary import summary

        return summary(self, input_size, **kw)

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


# ----------------------------------------------------------------------------------------------
# containers
# ----------------------------------------------------------------------------------------------
class Identity(Module):
    """Returns its input; backward returns the gradient unchanged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, x: Any) -> Any:
        return self._input(x)

    def backward(self, grad_output: Any) -> Any:
        return grad_output


@functools.lru_cache(maxsize=None)
def _backward_takes_need_input_grad(backward: Callable) -> bool:
    try:
        return "need_input_grad" in inspect.signature(backward).parameters
    except (TypeError, ValueError):
        return False


def _takes_need_input_grad(m: Module) -> bool:
    """Whether m.backward accepts ``need_input_grad`` (user layers may not): looked up once per class."""
    return _backward_takes_need_input_grad(type(m).backward)


def _backward_for_step(model: Module, criterion: Any, loss: Tensor) -> None:
    """The backward of a training step. A model whose every module defines backward takes the
    explicit route, ``model.backward(criterion.backward())``: parameter gradients only, the
    input's d/dx skipped where the model can skip it (a user model whose backward has no such
    option runs as is). Any other model (a forward-only custom module) runs ``loss.backward()``
    on the tape its forward recorded."""
    if isinstance(model, Module) and not model.__dict__.get("_explicit_last", True):
        loss.backward()
    elif _takes_need_input_grad(model):
        model.backward(criterion.backward(), need_input_grad=False)
    else:
        model.backward(criterion.backward())


class Sequential(Module):
    """Layers run in order; backward runs them in reverse. ``Sequential(*layers)`` names them
    "0", "1", ...; ``Sequential(OrderedDict(name=layer))`` keeps the names. Indexing (negative
    too), slicing (a Sequential sharing the layers), ``model[i] = layer``, ``del model[i]``,
    ``len``, iteration, ``append``, ``extend``, ``insert``."""

    def __init__(self, *args: Any) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], (OrderedDict, dict)):
            for name, m in args[0].items():
                self._add(str(name), m)
        else:
            for i, m in enumerate(args):
                self._add(str(i), m)

    def _add(self, name: str, m: Any) -> None:
        if not isinstance(m, Module):
            raise TypeError(f"Sequential: {type(m).__name__} is not an nn.Module (layer {name!r})")
        self.add_module(name, m)

    def _index(self, idx: Any) -> int:
        if not isinstance(idx, (int, np.integer)) or isinstance(idx, bool):
            raise TypeError(f"Sequential indices must be integers or slices, not {type(idx).__name__}")
        n = len(self._modules)
        i = operator.index(idx)
        if not -n <= i < n:
            raise IndexError(f"index {idx} is out of range for a Sequential of {n} layers")
        return i % n

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        if isinstance(idx, str):
            return self._modules[idx]
        return list(self._modules.values())[self._index(idx)]

    def __setitem__(self, idx: Any, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: {type(module).__name__} is not an nn.Module")
        key = list(self._modules.keys())[self._index(idx)]
        self._modules[key] = module

    def __delitem__(self, idx: Any) -> None:
        keys = list(self._modules.keys())
        if isinstance(idx, slice):
            for k in keys[idx]:
                del self._modules[k]
        else:
            del self._modules[keys[self._index(idx)]]
        # PyTorch renumbers to keep numeric names contiguous
        items = list(self._modules.items())
        if all(k.isdigit() for k, _ in items):
            self._modules.clear()
            for i, (_, m) in enumerate(items):
                self._modules[str(i)] = m

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def __reversed__(self) -> Iterator[Module]:
        return iter(list(self._modules.values())[::-1])

    def _next_name(self) -> str:
        n = len(self._modules)
        while str(n) in self._modules:
            n += 1
        return str(n)

    def append(self, module: Module) -> "Sequential":
        self._add(self._next_name(), module)
        return self

    def extend(self, modules: Any) -> "Sequential":
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> "Sequential":
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: {type(module).__name__} is not an nn.Module")
        n = len(self._modules)
        if not -n <= index <= n:
            raise IndexError(f"index {index} is out of range for a Sequential of {n} layers")
        index = index % n if n and index != n else index
        items = list(self._modules.values())
        items.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(items):
            self._modules[str(i)] = m
        return self

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, grad_output: Any, need_input_grad: bool = True) -> Any:
        """Runs the layers' backward in reverse and returns d/dx of the input. With
        ``need_input_grad=False`` (a training step, where nobody reads it) it returns None, and the
        first layer skips computing it if it can (Conv2d, Linear, Sequential): for LeNet-5 that is
        the first convolution's whole col2im pass."""
        mods = list(self._modules.values())
        g = grad_output
        for i in range(len(mods) - 1, 0, -1):
            g = mods[i].backward(g)
        if not mods:
            return g if need_input_grad else None
        if not need_input_grad and _takes_need_input_grad(mods[0]):
            return mods[0].backward(g, need_input_grad=False)
        g = mods[0].backward(g)
        return g if need_input_grad else None


class Residual(Module):
    """y = block(x) + shortcut(x), the shortcut being the identity when None (ResNet).
    backward = block.backward(g) + shortcut.backward(g) (or + g)."""

    def __init__(self, block: Module, shortcut: Optional[Module] = None) -> None:
        super().__init__()
        if not isinstance(block, Module):
            raise TypeError(f"Residual: block must be an nn.Module, got {type(block).__name__}")
        if shortcut is not None and not isinstance(shortcut, Module):
            raise TypeError(f"Residual: shortcut must be an nn.Module or None, got {type(shortcut).__name__}")
        self.block = block
        self.shortcut = shortcut
        self._cached = False

    _cache_attrs = ("_cached",)

    def _clear_cache(self) -> None:
        self._cached = False

    def forward(self, x: Any) -> Tensor:
        x = self._input(x)
        y = self.block(x)
        s = x if self.shortcut is None else self.shortcut(x)
        if tuple(y.shape) != tuple(s.shape):
            raise ValueError(f"Residual: the block's output {tuple(y.shape)} and the shortcut's output "
                             f"{tuple(s.shape)} must have the same shape (input {tuple(x.shape)}); "
                             "use a projection shortcut")
        self._cached = True
        return self._call_core(F.add, y, s)

    def backward(self, grad_output: Any) -> Tensor:
        if not self._cached:
            raise self._no_cache()
        self._cached = False
        g = self._input(grad_output)
        gb = self.block.backward(g)
        gs = g if self.shortcut is None else self.shortcut.backward(g)
        return self._call_core(F.add, gb, gs)


class Concat(Module):
    """Runs every branch on the same input and concatenates their outputs along `dim`
    (Inception, DenseNet); backward splits the gradient and sums the branches' input gradients."""

    def __init__(self, *branches: Module, dim: int = 1) -> None:
        super().__init__()
        if len(branches) == 1 and isinstance(branches[0], (OrderedDict, dict)):
            items = list(branches[0].items())
        else:
            items = [(str(i), b) for i, b in enumerate(branches)]
        if not items:
            raise ValueError("Concat: needs at least one branch")
        for name, b in items:
            if not isinstance(b, Module):
                raise TypeError(f"Concat: branch {name!r} is a {type(b).__name__}, not an nn.Module")
            self.add_module(str(name), b)
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
            raise TypeError(f"Concat: dim must be an int, got {dim!r}")
        self.dim = int(dim)
        self._sizes: Optional[list] = None

    _cache_attrs = ("_sizes", "_d")

    def _clear_cache(self) -> None:
        self._sizes = None

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, idx: int) -> Module:
        return list(self._modules.values())[idx]

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def forward(self, x: Any) -> Tensor:
        x = self._input(x)
        outs = [b(x) for b in self._modules.values()]
        nd = len(outs[0].shape)
        d = self.dim + nd if self.dim < 0 else self.dim
        if not 0 <= d < nd:
            raise ValueError(f"{self._name()}: dim {self.dim} out of range for branch outputs of rank {nd}")
        shapes = [tuple(o.shape) for o in outs]
        for s in shapes:
            if len(s) != nd or s[:d] + s[d + 1:] != shapes[0][:d] + shapes[0][d + 1:]:
                raise ValueError(f"{self._name()}: branch outputs must agree in every dimension but {self.dim}, "
                                 f"got {shapes}")
        y = self._call_core(F.concat, outs, d)
        self._sizes = [s[d] for s in shapes]
        self._d = d
        return y

    def backward(self, grad_output: Any) -> Tensor:
        if self._sizes is None:
            raise self._no_cache()
        sizes, self._sizes = self._sizes, None
        parts = self._call_core(F.split, self._input(grad_output), sizes, self._d)
        dx = None
        for b, g in zip(self._modules.values(), parts):
            gi = b.backward(g)
            dx = gi if dx is None else self._call_core(F.add, dx, gi)
        return dx
