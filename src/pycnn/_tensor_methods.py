"""PyTorch's everyday Tensor surface, installed on the C++ class `_core.Tensor` at import.

Each method is a plain function with PyTorch's name and signature, set as one attribute of the
class (`install()`), with no autograd logic: the autograd layer wraps the differentiable ones by
name afterwards. The arithmetic runs in the C++ kernels of csrc/ops/elementwise, reduce, index and
matmul, on the tensor's own device; dtypes promote as in torch (`_core.result_type`).
"""
from __future__ import annotations

import builtins
import collections
import numbers
from typing import Any

import numpy as np

from . import _core
from ._core import BinaryOp, DType, ReduceOp, ScalarKind, Tensor, UnaryOp
from ._tensor_views import (VIEW_METHODS, VIEW_PROPERTIES, _cxx_fill_, _cxx_reshape, _cxx_to, _dims, _norm_dim,
                            expand, reshape, unsqueeze)

_INT64_RANGE = (-2**63, 2**63 - 1)


class ConversionError(ValueError, RuntimeError):
    """A tensor with other than one element used as a Python number (torch raises RuntimeError)."""


class IntegerDivisionByZero(ZeroDivisionError, RuntimeError):
    """An integer // or % by zero (torch raises RuntimeError('ZeroDivisionError'))."""


# torch.return_types.max / min: (values, indices)
MaxResult = collections.namedtuple("max", ["values", "indices"])
MinResult = collections.namedtuple("min", ["values", "indices"])


# ------------------------------------------------------------------------------------ helpers
def _scalar_kind(v: Any) -> ScalarKind | None:
    if isinstance(v, (builtins.bool, np.bool_)):
        return ScalarKind.bool
    if isinstance(v, (numbers.Integral, np.integer)):
        if not _INT64_RANGE[0] <= int(v) <= _INT64_RANGE[1]:
            raise OverflowError(f"the Python int {v} does not fit in int64")
        return ScalarKind.int
    if isinstance(v, (numbers.Real, np.floating)):
        return ScalarKind.float
    return None


def _as_operand(self: Tensor, other: Any) -> Tensor | None:
    """`other` as a tensor on self's device (a NumPy array is copied there), or None."""
    if isinstance(other, Tensor):
        return other
    if isinstance(other, np.ndarray):
        return _cxx_to(_core.from_numpy(np.ascontiguousarray(other)), self.device)
    return None


def _refuse_int_zero_divisor(op: BinaryOp, self: Tensor, other: Any, reflected: bool) -> None:
    """An int64 // or % by 0 has no value (the kernel would give 0): refused, as torch and Python do."""
    if op not in (BinaryOp.floor_divide, BinaryOp.remainder) or self.is_floating_point():
        return
    if isinstance(other, Tensor) and other.is_floating_point() or _scalar_kind(other) == ScalarKind.float:
        return
    divisor = self if reflected else other
    if divisor.eq(0).any().item() if isinstance(divisor, Tensor) else divisor == 0:
        raise IntegerDivisionByZero(f"{op.name}: integer division by zero (an int64 divisor holds 0); "
                                    "convert to float (.float()) for inf/nan")


def _binary(op: BinaryOp, self: Tensor, other: Any, reflected: bool = False) -> Tensor:
    t = _as_operand(self, other)
    _refuse_int_zero_divisor(op, self, other if t is None else t, reflected)
    if t is not None:
        return _core.binary(t, self, op) if reflected else _core.binary(self, t, op)
    kind = _scalar_kind(other)
    if kind is None:
        raise TypeError(f"{op.name}: expected a Tensor or a number as the other operand, got {type(other).__name__}")
    return _core.binary_scalar(self, float(other), kind, op, reflected)


def _binary_inplace(op: BinaryOp, self: Tensor, other: Any) -> Tensor:
    t = _as_operand(self, other)
    _refuse_int_zero_divisor(op, self, other if t is None else t, False)
    if t is not None:
        _core.binary_(self, t, op)
        return self
    kind = _scalar_kind(other)
    if kind is None:
        raise TypeError(f"{op.name}_: expected a Tensor or a number as the other operand, got {type(other).__name__}")
    _core.binary_scalar_(self, float(other), kind, op)
    return self


def _dunder(op: BinaryOp, reflected: bool = False):
    """An operator method: NotImplemented for an operand it does not know, as Python expects."""
    def method(self: Tensor, other: Any) -> Any:
        if not isinstance(other, (Tensor, np.ndarray)) and _scalar_kind(other) is None:
            return NotImplemented
        return _binary(op, self, other, reflected)
    method.__name__ = f"__{'r' if reflected else ''}{op.name}__"
    return method


def _dunder_inplace(op: BinaryOp):
    def method(self: Tensor, other: Any) -> Any:
        if not isinstance(other, (Tensor, np.ndarray)) and _scalar_kind(other) is None:
            return NotImplemented
        return _binary_inplace(op, self, other)
    method.__name__ = f"__i{op.name}__"
    return method


def _scalar_tensor(value: Any, device: str) -> Tensor:
    kind = _scalar_kind(value)
    if kind is None:
        raise TypeError(f"expected a Tensor or a number, got {type(value).__name__}")
    dtype = {ScalarKind.bool: DType.bool, ScalarKind.int: DType.int64, ScalarKind.float: DType.float64}[kind]
    return _core.full([], float(value), dtype, device)


# --------------------------------------------------------------------------------- arithmetic
def _times_alpha(other, alpha):
    """add/sub's ``alpha * other`` (other itself for alpha 1)."""
    if alpha == 1:
        return other
    return mul(other, alpha) if isinstance(other, Tensor) else other * alpha


def add(self, other, *, alpha=1):
    return _binary(BinaryOp.add, self, _times_alpha(other, alpha))


def sub(self, other, *, alpha=1):
    return _binary(BinaryOp.sub, self, _times_alpha(other, alpha))


def mul(self, other):
    return _binary(BinaryOp.mul, self, other)


def div(self, other):
    return _binary(BinaryOp.div, self, other)


def pow(self, exponent):
    return _binary(BinaryOp.pow, self, exponent)


def floor_divide(self, other):
    """Python's //: the quotient rounded toward -inf (an int64 // int64 stays int64), as torch."""
    return _binary(BinaryOp.floor_divide, self, other)


def remainder(self, other):
    """Python's %: the remainder has the divisor's sign, as torch.remainder."""
    return _binary(BinaryOp.remainder, self, other)


def maximum(self, other):
    return _binary(BinaryOp.maximum, self, other)


def minimum(self, other):
    return _binary(BinaryOp.minimum, self, other)


def add_(self, other, *, alpha=1):
    return _binary_inplace(BinaryOp.add, self, _times_alpha(other, alpha))


def sub_(self, other, *, alpha=1):
    return _binary_inplace(BinaryOp.sub, self, _times_alpha(other, alpha))


def mul_(self, other):
    return _binary_inplace(BinaryOp.mul, self, other)


def floor_divide_(self, other):
    return _binary_inplace(BinaryOp.floor_divide, self, other)


def remainder_(self, other):
    return _binary_inplace(BinaryOp.remainder, self, other)


def div_(self, other):
    return _binary_inplace(BinaryOp.div, self, other)


def pow_(self, exponent):
    return _binary_inplace(BinaryOp.pow, self, exponent)


def eq(self, other):
    return _binary(BinaryOp.eq, self, other)


def ne(self, other):
    return _binary(BinaryOp.ne, self, other)


def lt(self, other):
    return _binary(BinaryOp.lt, self, other)


def le(self, other):
    return _binary(BinaryOp.le, self, other)


def gt(self, other):
    return _binary(BinaryOp.gt, self, other)


def ge(self, other):
    return _binary(BinaryOp.ge, self, other)


def logical_not(self):
    return _core.unary(self if self.dtype == DType.bool else ne(self, 0), UnaryOp.bitwise_not)


def bitwise_not(self):
    return _core.unary(self, UnaryOp.bitwise_not)


def neg(self):
    return _core.unary(self, UnaryOp.neg)


def abs(self):
    return _core.unary(self, UnaryOp.abs)


def exp(self):
    return _core.unary(self, UnaryOp.exp)


def log(self):
    return _core.unary(self, UnaryOp.log)


def sqrt(self):
    return _core.unary(self, UnaryOp.sqrt)


def neg_(self):
    _core.unary_(self, UnaryOp.neg)
    return self


def abs_(self):
    _core.unary_(self, UnaryOp.abs)
    return self


def exp_(self):
    _core.unary_(self, UnaryOp.exp)
    return self


def log_(self):
    _core.unary_(self, UnaryOp.log)
    return self


def sqrt_(self):
    _core.unary_(self, UnaryOp.sqrt)
    return self


def _clamp_bounds(min, max):
    if min is None and max is None:
        raise ValueError("clamp: at least one of 'min' or 'max' must not be None")
    return min, max


def clamp(self, min=None, max=None):
    min, max = _clamp_bounds(min, max)
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        out = self if min is None else maximum(self, min)
        return out if max is None else minimum(out, max)
    # a float bound on an integer tensor promotes, as torch
    float_bound = builtins.any(_scalar_kind(b) == ScalarKind.float for b in (min, max))
    if self.dtype in (DType.int64, DType.bool) and float_bound:
        self = _cxx_to(self, DType.float32)
    return _core.unary(self, UnaryOp.clamp, min, max)


def clamp_(self, min=None, max=None):
    min, max = _clamp_bounds(min, max)
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        if min is not None:
            _core.binary_(self, min, BinaryOp.maximum)
        if max is not None:
            _core.binary_(self, max, BinaryOp.minimum)
        return self
    _core.unary_(self, UnaryOp.clamp, min, max)
    return self


def matmul(self, other):
    """torch.matmul: 1-D (dot), 2-D and batched operands, batch dims broadcast."""
    if not isinstance(other, Tensor):
        raise TypeError(f"matmul: expected a Tensor, got {type(other).__name__}")
    if self.ndim == 0 or other.ndim == 0:
        raise ValueError(f"matmul: both arguments need at least 1 dimension, got shapes {self.shape} and "
                         f"{other.shape}; use * for a scalar product")
    dtype = _core.result_type(self, other)
    a, b = _cxx_to(self, dtype), _cxx_to(other, dtype)
    a2 = unsqueeze(a, 0) if a.ndim == 1 else a
    b2 = unsqueeze(b, -1) if b.ndim == 1 else b
    m, k = a2.shape[-2:]
    k2, n = b2.shape[-2:]
    if k != k2:
        raise ValueError(f"matmul: shapes {self.shape} and {other.shape} cannot be multiplied ({m}x{k} and {k2}x{n})")
    batch = tuple(_core.broadcast_shapes(list(a2.shape[:-2]), list(b2.shape[:-2])))
    nb = int(np.prod(batch, dtype=np.int64))
    if b2.ndim == 2 and (a2.ndim == 2 or a2.is_contiguous()):
        # one GEMM over every row; views stay views, so a transposed operand is not copied
        a3 = unsqueeze(a2, 0) if a2.ndim == 2 else _cxx_reshape(a2, [1, nb * m, k])
        out = _core.bmm(a3, unsqueeze(b2, 0))
    else:
        a3 = a2 if a2.ndim == 3 and tuple(a2.shape[:-2]) == batch else reshape(expand(a2, *batch, m, k), nb, m, k)
        b3 = b2 if b2.ndim == 3 and tuple(b2.shape[:-2]) == batch else reshape(expand(b2, *batch, k, n), nb, k, n)
        out = _core.bmm(a3, b3)
    shape = batch + (m, n)
    if self.ndim == 1:
        shape = shape[:-2] + (n,)
    if other.ndim == 1:
        shape = shape[:-1]
    return _cxx_reshape(out, list(shape))


def _rmatmul(self, other):
    if not isinstance(other, (Tensor, np.ndarray)):
        return NotImplemented
    return matmul(_as_operand(self, other), self)


# ---------------------------------------------------------------------------- conversions
def _one_element(self, what: str):
    n = self.numel()
    if n != 1:
        raise ConversionError(f"a Tensor with {n} elements cannot be converted to {what} "
                              f"(shape {tuple(self.shape)}); only one-element tensors can")
    return self.cpu().numpy().reshape(()).item()


def item(self):
    return _one_element(self, "a Python scalar")


def __float__(self):
    return float(_one_element(self, "float"))


def __int__(self):
    return int(_one_element(self, "int"))


def __index__(self):
    if self.dtype not in (DType.int64, DType.bool):
        raise TypeError(f"only integer tensors of a single element can be converted to an index, got {self.dtype}")
    return int(_one_element(self, "an index"))


def __bool__(self):
    n = self.numel()
    if n != 1:
        what = "no values" if n == 0 else "more than one value"
        raise ConversionError(f"Boolean value of Tensor with {what} is ambiguous (shape {tuple(self.shape)}); "
                              "use .any() or .all()")
    return builtins.bool(_one_element(self, "bool"))


def __format__(self, spec):
    if self.ndim == 0 or (spec and self.numel() == 1):  # f"{t}" of a 1-element 1-d tensor is its repr, as torch
        return format(item(self), spec)
    if spec:
        raise TypeError(f"unsupported format string {spec!r} for a Tensor of shape {tuple(self.shape)}; "
                        "only one-element tensors take a format spec")
    return repr(self)


def tolist(self):
    return self.cpu().numpy().tolist()


def is_floating_point(self):
    return self.dtype in (DType.float32, DType.float64)


def _to_bool(self):
    return _cxx_to(self, DType.bool)


def to(self, *args, device=None, dtype=None, non_blocking=False, copy=False):
    """torch's forms: to(dtype), to(device), to(device, dtype), to(other) (other's device and dtype),
    to(device=..., dtype=...); copy=True always gives a new tensor."""
    targets = []
    for a in args:
        targets += [a.dtype, a.device] if isinstance(a, Tensor) else [a]
    targets += [v for v in (dtype, device) if v is not None]
    out = self
    for target in targets:
        out = _cxx_to(out, target)
    return out.clone() if copy and out._same_storage(self) else out


def type_as(self, other):
    return _cxx_to(self, other.dtype)


def zero_(self):
    return fill_(self, 0)


def fill_(self, value):
    v = value.item() if isinstance(value, Tensor) else value
    if self.is_contiguous():
        return _cxx_fill_(self, float(v))  # in place without a kernel launch on the CPU
    _core.copy_into(self, _scalar_tensor(v, self.device))
    return self


def stride(self, dim=None):
    s = self._strides
    return s if dim is None else s[_norm_dim(dim, self.ndim, "stride")]


def data_ptr(self):
    """The address of the tensor's first element (host or device memory), as torch's data_ptr()."""
    return self._data_ptr()


def __contains__(self, element):
    return any(eq(self, element)).item()


def __iter__(self):
    if self.ndim == 0:
        raise TypeError("iteration over a 0-d tensor")
    return (self[i] for i in range(self.shape[0]))  # Tensor.__getitem__: autograd records each row


# ------------------------------------------------------------------------------ reductions
def _reduce(self, op: ReduceOp, dim, keepdim):
    if dim is None or isinstance(dim, (tuple, list)) and not dim:  # dim=() reduces every dim, as torch
        out = _core.reduce(_cxx_reshape(self, [-1]), 0, op, False)
        return _cxx_reshape(out, [1] * self.ndim) if keepdim else out
    if self.ndim == 0:
        _norm_dim(dim, 0, op.name)  # dim 0 or -1 of a 0-d tensor: itself
        return _core.reduce(_cxx_reshape(self, [1]), 0, op, False)
    out = self
    for d in _dims(dim, self.ndim, op.name):
        out = _core.reduce(out, d, op, keepdim)
    return out


def sum(self, dim=None, keepdim=False, *, dtype=None):
    x = self if dtype is None else _cxx_to(self, dtype)
    return _reduce(x, ReduceOp.sum, dim, keepdim)


def mean(self, dim=None, keepdim=False, *, dtype=None):
    x = self if dtype is None else _cxx_to(self, dtype)
    return _reduce(x, ReduceOp.mean, dim, keepdim)


def _extreme(self, is_max: bool, dim, keepdim, other):
    if isinstance(dim, Tensor) and other is None:
        dim, other = None, dim
    if other is not None:
        return maximum(self, other) if is_max else minimum(self, other)
    if dim is None:
        return _reduce(self, ReduceOp.max if is_max else ReduceOp.min, None, keepdim)
    x = _cxx_reshape(self, [1]) if self.ndim == 0 else self
    d = _norm_dim(dim, builtins.max(self.ndim, 1), "max" if is_max else "min")
    values, indices = _core.reduce_with_indices(x, d, is_max, keepdim and self.ndim > 0)
    if self.ndim == 0:
        values, indices = _cxx_reshape(values, []), _cxx_reshape(indices, [])
    return (MaxResult if is_max else MinResult)(values, indices)


def max(self, dim=None, keepdim=False, *, other=None):
    """max() -> 0-d tensor; max(dim, keepdim=False) -> (values, indices); max(other) -> maximum."""
    return _extreme(self, True, dim, keepdim, other)


def min(self, dim=None, keepdim=False, *, other=None):
    return _extreme(self, False, dim, keepdim, other)


def argmax(self, dim=None, keepdim=False):
    return _reduce(self, ReduceOp.argmax, dim, keepdim)


def argmin(self, dim=None, keepdim=False):
    return _reduce(self, ReduceOp.argmin, dim, keepdim)


def any(self, dim=None, keepdim=False):
    return gt(sum(ne(self, 0), dim, keepdim), 0)


def all(self, dim=None, keepdim=False):
    return eq(sum(eq(self, 0), dim, keepdim), 0)


# --------------------------------------------------------------------------------- install

_METHODS = {
    "add": add, "sub": sub, "mul": mul, "div": div, "pow": pow, "matmul": matmul, "maximum": maximum,
    "minimum": minimum, "floor_divide": floor_divide, "remainder": remainder, "floor_divide_": floor_divide_,
    "remainder_": remainder_, "add_": add_, "sub_": sub_, "mul_": mul_, "div_": div_, "pow_": pow_,
    "subtract": sub, "multiply": mul, "divide": div, "true_divide": div,
    "eq": eq, "ne": ne, "lt": lt, "le": le, "gt": gt, "ge": ge, "logical_not": logical_not,
    "bitwise_not": bitwise_not, "neg": neg, "negative": neg, "abs": abs, "exp": exp, "log": log, "sqrt": sqrt,
    "neg_": neg_, "abs_": abs_, "exp_": exp_, "log_": log_, "sqrt_": sqrt_,
    "clamp": clamp, "clip": clamp, "clamp_": clamp_, "clip_": clamp_,
    "item": item, "tolist": tolist, "is_floating_point": is_floating_point, "bool": _to_bool,
    "to": to, "type_as": type_as, "zero_": zero_, "fill_": fill_, "stride": stride, "data_ptr": data_ptr,
    "sum": sum, "mean": mean, "max": max, "min": min, "argmax": argmax, "argmin": argmin, "any": any, "all": all,
    "__add__": _dunder(BinaryOp.add), "__radd__": _dunder(BinaryOp.add, True),
    "__sub__": _dunder(BinaryOp.sub), "__rsub__": _dunder(BinaryOp.sub, True),
    "__mul__": _dunder(BinaryOp.mul), "__rmul__": _dunder(BinaryOp.mul, True),
    "__truediv__": _dunder(BinaryOp.div), "__rtruediv__": _dunder(BinaryOp.div, True),
    "__pow__": _dunder(BinaryOp.pow), "__rpow__": _dunder(BinaryOp.pow, True),
    "__floordiv__": _dunder(BinaryOp.floor_divide), "__rfloordiv__": _dunder(BinaryOp.floor_divide, True),
    "__mod__": _dunder(BinaryOp.remainder), "__rmod__": _dunder(BinaryOp.remainder, True),
    "__ifloordiv__": _dunder_inplace(BinaryOp.floor_divide), "__imod__": _dunder_inplace(BinaryOp.remainder),
    "__and__": _dunder(BinaryOp.bitwise_and), "__rand__": _dunder(BinaryOp.bitwise_and, True),
    "__or__": _dunder(BinaryOp.bitwise_or), "__ror__": _dunder(BinaryOp.bitwise_or, True),
    "__xor__": _dunder(BinaryOp.bitwise_xor), "__rxor__": _dunder(BinaryOp.bitwise_xor, True),
    "__iadd__": _dunder_inplace(BinaryOp.add), "__isub__": _dunder_inplace(BinaryOp.sub),
    "__imul__": _dunder_inplace(BinaryOp.mul), "__itruediv__": _dunder_inplace(BinaryOp.div),
    "__ipow__": _dunder_inplace(BinaryOp.pow), "__iand__": _dunder_inplace(BinaryOp.bitwise_and),
    "__ior__": _dunder_inplace(BinaryOp.bitwise_or), "__ixor__": _dunder_inplace(BinaryOp.bitwise_xor),
    "__eq__": _dunder(BinaryOp.eq), "__ne__": _dunder(BinaryOp.ne), "__lt__": _dunder(BinaryOp.lt),
    "__le__": _dunder(BinaryOp.le), "__gt__": _dunder(BinaryOp.gt), "__ge__": _dunder(BinaryOp.ge),
    "__matmul__": lambda self, other: matmul(self, other) if isinstance(other, Tensor) else NotImplemented,
    "__rmatmul__": _rmatmul,
    "__neg__": neg, "__pos__": lambda self: self, "__abs__": abs, "__invert__": bitwise_not,
    "__float__": __float__, "__int__": __int__, "__index__": __index__, "__bool__": __bool__,
    "__format__": __format__, "__contains__": __contains__, "__iter__": __iter__,
    "__hash__": object.__hash__,  # identity: tensors are dict keys and set members, as in torch
    "__array_priority__": 1000,  # NumPy operands defer to Tensor's operators (np.float32(2) * t is a Tensor), as torch
}


def install() -> None:
    """Sets every method above, and __getitem__/__setitem__, on _core.Tensor (idempotent)."""
    from ._tensor_index import getitem, setitem  # late: _tensor_index imports this module
    for name, fn in {**_METHODS, **VIEW_METHODS}.items():
        setattr(Tensor, name, fn)
    for name, fn in VIEW_PROPERTIES.items():
        setattr(Tensor, name, property(fn))
    Tensor.__getitem__ = getitem
    Tensor.__setitem__ = setitem
