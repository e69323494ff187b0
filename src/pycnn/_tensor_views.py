"""Shape and view methods of Tensor (installed by _tensor_methods.install) and pc.cat / pc.stack.

A view is a new Tensor object over the same storage with other shape, strides and offset
(`Tensor.as_strided`), as in torch: writing through it writes the original.
"""
from __future__ import annotations

import builtins
import numbers
from typing import Any, Sequence

import numpy as np

from . import _core
from ._core import DType, Tensor

# The C++ methods these functions build on, taken before install() replaces any of them; calls
# between the functions here go to the functions themselves, never through the class, so that
# wrappers set on the class later see one call per user call.
_cxx_reshape = Tensor.reshape
_cxx_fill_ = Tensor.fill_
_cxx_to = Tensor.to
_as_strided = Tensor.as_strided


def _norm_dim(dim: int, ndim: int, fn: str, extra: int = 0) -> int:
    """dim in [-ndim - extra, ndim + extra) made non-negative (extra=1 for unsqueeze)."""
    n = builtins.max(ndim + extra, 1)
    if not isinstance(dim, (numbers.Integral, np.integer)) or isinstance(dim, builtins.bool):
        raise TypeError(f"{fn}: dim must be an int, got {type(dim).__name__}")
    if not -n <= dim < n:
        raise IndexError(f"{fn}: dim {dim} is out of range (expected to be in range of [{-n}, {n - 1}])")
    return int(dim) % n


def _dims(dim, ndim, fn):
    if isinstance(dim, (tuple, list)):
        dims = [_norm_dim(d, ndim, fn) for d in dim]
        if len(set(dims)) != len(dims):  # torch refuses it too: a mean would count such a dim twice
            raise ValueError(f"{fn}: dim {builtins.max(d for d in dims if dims.count(d) > 1)} appears multiple "
                             f"times in the list of dims {tuple(dim)}")
        return sorted(dims, reverse=True)
    return [_norm_dim(dim, ndim, fn)]


def _shape_args(args: Sequence[Any]) -> tuple[int, ...]:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    return tuple(int(a) for a in args)


def detach(self):
    """A new tensor object sharing this one's storage (the autograd layer cuts the tape here)."""
    return _as_strided(self, list(self.shape), list(self._strides), self._offset)


# ---------------------------------------------------------------------------- shape and views
def reshape(self, *shape):
    return _cxx_reshape(self, list(_shape_args(shape)))


def view(self, *shape):
    if not self.is_contiguous():
        raise ValueError(f"view: a tensor of shape {tuple(self.shape)} and strides {self._strides} is not "
                         "contiguous, so it cannot be viewed with another shape; use .reshape(...) instead")
    return _cxx_reshape(self, list(_shape_args(shape)))


def view_as(self, other):
    return view(self, *other.shape)


def reshape_as(self, other):
    return reshape(self, *other.shape)


def flatten(self, start_dim=0, end_dim=-1):
    if self.ndim == 0:
        return _cxx_reshape(self, [1])
    s, e = _norm_dim(start_dim, self.ndim, "flatten"), _norm_dim(end_dim, self.ndim, "flatten")
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {tuple(self.shape)}")
    shape = tuple(self.shape)
    return _cxx_reshape(self, list(shape[:s] + (int(np.prod(shape[s:e + 1], dtype=np.int64)),) + shape[e + 1:]))


def permute(self, *dims):
    dims = _shape_args(dims)
    if len(dims) != self.ndim:
        raise ValueError(f"permute: expected {self.ndim} dims for a tensor of shape {tuple(self.shape)}, got {dims}")
    order = [_norm_dim(d, self.ndim, "permute") for d in dims]
    if sorted(order) != list(range(self.ndim)):
        raise ValueError(f"permute: dims {dims} are not a permutation of the {self.ndim} dims")
    shape, strides = self.shape, self._strides
    return _as_strided(self, [shape[d] for d in order], [strides[d] for d in order], self._offset)


def transpose(self, dim0, dim1):
    order = list(range(self.ndim))
    a, b = _norm_dim(dim0, self.ndim, "transpose"), _norm_dim(dim1, self.ndim, "transpose")
    if self.ndim == 0:
        return detach(self)
    order[a], order[b] = order[b], order[a]
    return permute(self, *order)


def t(self):
    if self.ndim > 2:
        raise ValueError(f"t: expects a tensor with <= 2 dimensions, got shape {tuple(self.shape)}; "
                         "use transpose(dim0, dim1) or .mT")
    return transpose(self, 0, 1) if self.ndim == 2 else detach(self)


def _T(self):
    return permute(self, *reversed(range(self.ndim)))


def _mT(self):
    if self.ndim < 2:
        raise ValueError(f"mT: expects a tensor with >= 2 dimensions, got shape {tuple(self.shape)}")
    return transpose(self, -2, -1)


def squeeze(self, dim=None):
    if dim is None:
        drop = {i for i, n in enumerate(self.shape) if n == 1}
    else:
        drop = {d for d in (_dims(dim, self.ndim, "squeeze") if self.ndim else []) if self.shape[d] == 1}
    keep = [i for i in range(self.ndim) if i not in drop]
    return _as_strided(self, [self.shape[i] for i in keep], [self._strides[i] for i in keep], self._offset)


def unsqueeze(self, dim):
    d = _norm_dim(dim, self.ndim, "unsqueeze", extra=1)
    shape, strides = list(self.shape), list(self._strides)
    stride = strides[d] * shape[d] if d < self.ndim else 1
    return _as_strided(self, shape[:d] + [1] + shape[d:], strides[:d] + [stride] + strides[d:], self._offset)


def expand(self, *sizes):
    sizes = _shape_args(sizes)
    if len(sizes) < self.ndim:
        raise ValueError(f"expand: the number of sizes {len(sizes)} must be at least the number of dims "
                         f"{self.ndim} (shape {tuple(self.shape)})")
    lead = len(sizes) - self.ndim
    shape, strides = [], []
    for i, n in enumerate(sizes):
        if i < lead:
            if n < 0:
                raise ValueError(f"expand: size -1 is not allowed in a new leading dim, got {sizes}")
            shape.append(n), strides.append(0)
            continue
        have, st = self.shape[i - lead], self._strides[i - lead]
        if n == -1 or n == have:
            shape.append(have), strides.append(st)
        elif have == 1:
            shape.append(n), strides.append(0)
        else:
            raise ValueError(f"expand: the expanded size {n} must match the existing size {have} at dim {i} "
                             f"(shape {tuple(self.shape)} to {sizes}); only size-1 dims expand")
    return _as_strided(self, shape, strides, self._offset)


def expand_as(self, other):
    return expand(self, *other.shape)


# ------------------------------------------------------------------------- module functions
def _tensor_list(tensors: Sequence[Tensor], fn: str) -> list:
    """The tensors as a list: TypeError naming `fn` for a non-Tensor, ValueError when there are none."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{fn}: expected a non-empty sequence of tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{fn}: expected a sequence of Tensors, got {type(t).__name__} at index {i}")
    return tensors


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """torch.cat: dtypes promote to a common one; all on one device."""
    tensors = _tensor_list(tensors, "cat")
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = _core.result_type(_core.empty([1], dtype, "cpu"), _core.empty([1], t.dtype, "cpu"))
    if dtype == DType.bool:  # the concat kernel moves numbers: bools travel as int64
        return _cxx_to(_core.concat([_cxx_to(t, DType.int64) for t in tensors], int(dim)), DType.bool)
    return _core.concat([_cxx_to(t, dtype) for t in tensors], int(dim))


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """torch.stack: tensors of one shape joined along a new dim."""
    tensors = _tensor_list(tensors, "stack")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: expects each tensor to be equal size, but got {tuple(tensors[0].shape)} at "
                             f"entry 0 and {tuple(t.shape)} at entry {i}")
    d = _norm_dim(dim, tensors[0].ndim, "stack", extra=1)
    return cat([unsqueeze(t, d) for t in tensors], d)



VIEW_METHODS = {
    "reshape": reshape, "view": view, "view_as": view_as, "reshape_as": reshape_as, "flatten": flatten,
    "permute": permute, "transpose": transpose, "t": t, "squeeze": squeeze, "unsqueeze": unsqueeze,
    "expand": expand, "expand_as": expand_as, "broadcast_to": expand, "detach": detach,
}
VIEW_PROPERTIES = {"T": _T, "mT": _mT}
