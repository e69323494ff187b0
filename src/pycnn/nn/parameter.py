"""nn.Parameter: a learnable tensor (``.data``, ``.grad``, ``.requires_grad``) that takes part in
traced arithmetic as a leaf of the autograd tape; and the dtype a layer creates its parameters in."""
from __future__ import annotations

import copy
import weakref
from collections import OrderedDict
from typing import Any, Callable, Iterable, Optional

import numpy as np

from .. import _args
from .. import autograd as _autograd
from ..autograd.grad_mode import per_thread
from ..tensor import DType, Tensor, as_tensor, float32, float64

__all__ = ["Parameter"]


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
        s = per_thread.state
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
        new._data = deepcopy_value(self._data, memo)
        new.grad = deepcopy_value(self.grad, memo)
        new.requires_grad = self.requires_grad
        return new

    def __copy__(self) -> "Parameter":
        new = Parameter.__new__(Parameter)
        new.__dict__.update(self.__dict__)
        new.__dict__.pop("_leaf", None)  # the copy's own leaf sums into the copy's .grad
        return new

    def __getstate__(self):
        raise TypeError("pycnn Parameters cannot be pickled; use pc.save(model, path) (safetensors)")


def zero_grads(params: Iterable[Parameter], set_to_none: bool = True) -> None:
    """Module.zero_grad and Optimizer.zero_grad: every gradient set to None (the default, as in
    PyTorch >= 2.0) or filled with zeros in place."""
    for p in params:
        if p.grad is None:
            continue
        if set_to_none:
            p.grad = None
        else:
            p.grad.fill_(0.0)


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


def deepcopy_value(v: Any, memo: dict) -> Any:
    """copy.deepcopy that clones pycnn Tensors (which do not support pickling)."""
    if isinstance(v, Tensor):
        if id(v) in memo:
            return memo[id(v)]
        c = v.clone()
        memo[id(v)] = c
        return c
    if isinstance(v, OrderedDict):
        out = OrderedDict()
        memo[id(v)] = out
        for k, x in v.items():
            out[k] = deepcopy_value(x, memo)
        return out
    if isinstance(v, dict):
        out2: dict = {}
        memo[id(v)] = out2
        for k, x in v.items():
            out2[k] = deepcopy_value(x, memo)
        return out2
    if isinstance(v, list):
        return [deepcopy_value(x, memo) for x in v]
    if isinstance(v, tuple) and type(v) is tuple:
        return tuple(deepcopy_value(x, memo) for x in v)
    return copy.deepcopy(v, memo)


def as_device_or_dtype(arg: Any) -> Any:
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


def param_dtype(dtype: Any, who: str) -> DType:
    """The dtype a layer creates its parameters in (float32 unless asked)."""
    if dtype is None:
        return float32
    dt = as_device_or_dtype(dtype)
    if dt not in (float32, float64):
        raise TypeError(f"{who}: dtype must be float32 or float64, got {dtype!r}")
    return dt
