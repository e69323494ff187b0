"""Tensor creation and interop. `Tensor` itself is the C++ class (pycnn._core.Tensor)."""
from __future__ import annotations

import builtins
from typing import Any, Sequence

import numpy as np

from . import _core, _random, _tensor_methods
from ._core import DType, Tensor
from ._tensor_views import cat, stack

float32 = DType.float32
float64 = DType.float64
int64 = DType.int64
bool_ = DType.bool  # exported as pycnn.bool, as torch.bool

_NUMPY_OF = {float32: np.float32, float64: np.float64, int64: np.int64, bool_: np.bool_}

_tensor_methods.install()  # arithmetic, indexing, reductions and views on Tensor (PyTorch's names)


def _np_dtype(dtype: Any) -> np.dtype | None:
    if dtype is None:
        return None
    if isinstance(dtype, DType):
        return np.dtype(_NUMPY_OF[dtype])
    return np.dtype(dtype)


_INT64_MAX = 2**63 - 1


def _shape(shape: Sequence[Any], fn: str = "tensor") -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    out = tuple(int(s) for s in shape)
    for s in out:
        if s > _INT64_MAX:
            raise ValueError(f"{fn}: size {s} in shape {out} does not fit in int64")
    return out


def from_numpy(array: np.ndarray) -> Tensor:
    """A CPU tensor sharing memory with `array` (copied when not contiguous float32/float64/int64)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return _core.from_numpy(array)


_PLAIN_NUMBERS = {float, int, bool}


def _holds_float64(data: Any) -> bool:
    """Whether nested lists hold a float64 NumPy scalar, array or Tensor (torch.tensor keeps float64 then)."""
    if isinstance(data, (list, tuple)):
        if set(map(type, data)) <= _PLAIN_NUMBERS:  # the common case, scanned at C speed
            return False
        return builtins.any(_holds_float64(d) for d in data)
    return isinstance(data, (Tensor, np.ndarray, np.generic)) and data.dtype in (np.float64, float64)


def tensor(data: Any, dtype: Any = None, device: str = "cpu") -> Tensor:
    """A new tensor holding a copy of `data` (array, nested lists, number or Tensor).

    The dtype follows `torch.tensor`: a NumPy array or a Tensor keeps its dtype (float64 stays
    float64, other floats become float32); Python floats become float32, Python ints int64 and
    bools bool.
    """
    keeps_dtype = isinstance(data, (Tensor, np.ndarray, np.generic)) or _holds_float64(data)
    if isinstance(data, Tensor):
        data = data.numpy()
    arr = np.array(data, dtype=_np_dtype(dtype), copy=True, order="C")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"tensor: cannot make a tensor from data of dtype {arr.dtype} "
                        "(object, string or complex); pass numbers")
    if dtype is None:
        if arr.dtype.kind == "f":
            keep64 = keeps_dtype and arr.dtype == np.float64
            arr = arr.astype(np.float64 if keep64 else np.float32, copy=False)
        elif arr.dtype.kind != "b":
            arr = arr.astype(np.int64, copy=False)
    return _core.from_numpy(arr).to(device)  # arr is a fresh C-ordered copy; a 0-d array stays 0-d


def as_tensor(data: Any, dtype: Any = None, device: str = "cpu") -> Tensor:
    """Like `tensor`, but shares memory when `data` is already a suitable Tensor or array."""
    if isinstance(data, Tensor):
        t = data if dtype is None else data.to(dtype)
        return t.to(device)
    if isinstance(data, np.ndarray) and (dtype is None or _np_dtype(dtype) == data.dtype):
        return _core.from_numpy(data).to(device)
    return tensor(data, dtype=dtype, device=device)


def from_dlpack(x: Any) -> Tensor:
    """A tensor sharing memory with any object that implements the DLPack protocol."""
    if isinstance(x, Tensor):
        return x
    if hasattr(x, "__dlpack__"):
        try:
            capsule = x.__dlpack__(max_version=None)
        except TypeError:
            capsule = x.__dlpack__()
        return _core.from_dlpack_capsule(capsule)
    return _core.from_dlpack_capsule(x)


def zeros(*shape: Any, dtype: Any = float32, device: str = "cpu") -> Tensor:
    shape = _shape(shape, "zeros")
    return _core.zeros(list(shape), dtype, device)


def ones(*shape: Any, dtype: Any = float32, device: str = "cpu") -> Tensor:
    shape = _shape(shape, "ones")
    return _core.full(list(shape), 1.0, dtype, device)


def full(shape: Sequence[int], value: float, dtype: Any = float32, device: str = "cpu") -> Tensor:
    shape = _shape((shape,), "full")
    return _core.full(list(shape), float(value), dtype, device)


def zeros_like(t: Tensor, *, dtype: Any = None, device: Any = None) -> Tensor:
    """torch.zeros_like: t's shape, and t's dtype and device unless given."""
    return zeros(*t.shape, dtype=t.dtype if dtype is None else dtype, device=t.device if device is None else device)


def ones_like(t: Tensor, *, dtype: Any = None, device: Any = None) -> Tensor:
    return ones(*t.shape, dtype=t.dtype if dtype is None else dtype, device=t.device if device is None else device)


def full_like(t: Tensor, value: float, *, dtype: Any = None, device: Any = None) -> Tensor:
    dtype = t.dtype if dtype is None else dtype
    return full(t.shape, value, dtype=dtype, device=t.device if device is None else device)


def arange(start: Any, end: Any = None, step: Any = 1, *, dtype: Any = None, device: str = "cpu") -> Tensor:
    """torch.arange: [start, end) by step; int64 when every bound is an int, else float32."""
    if end is None:
        start, end = 0, start
    if step == 0 or (end - start) * step < 0:
        raise ValueError(f"arange: the step {step} must be nonzero and go from start {start} toward end {end}")
    ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, end, step))
    values = np.arange(start, end, step, dtype=np.int64 if ints else np.float64)
    dtype = (int64 if ints else float32) if dtype is None else dtype
    return _core.from_numpy(np.ascontiguousarray(values.astype(_np_dtype(dtype)))).to(device)


def empty(*shape: Any, dtype: Any = float32, device: str = "cpu") -> Tensor:
    shape = _shape(shape, "empty")
    return _core.empty(list(shape), dtype, device)


def randn(*shape: Any, dtype: Any = float32, device: str = "cpu") -> Tensor:
    shape = _shape(shape, "randn")
    """Standard normal samples from the generator `pc.manual_seed` seeds."""
    a = _random.generator().standard_normal(shape).astype(_np_dtype(dtype))
    return _core.from_numpy(a).to(device)


def rand(*shape: Any, dtype: Any = float32, device: str = "cpu") -> Tensor:
    shape = _shape(shape, "rand")
    a = _random.generator().random(shape).astype(_np_dtype(dtype))
    return _core.from_numpy(a).to(device)


def is_tensor(x: Any) -> bool:
    return isinstance(x, Tensor)
