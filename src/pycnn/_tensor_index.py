"""Tensor.__getitem__ / __setitem__ with torch's rules.

Basic indexing (ints, slices with a positive step, None, ...) gives a view of the same storage.
One index tensor (int64 indices of any shape, or a bool mask over one or more dims; a list or a
NumPy array counts as one) gathers rows with `_core.index_select` (a copy) and scatters them with
`_core.index_put_`. A bool mask is turned into indices on the host, as torch does.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from . import _core
from ._core import DType, Tensor
from ._tensor_methods import _scalar_tensor
from ._tensor_views import _as_strided, _cxx_reshape, _cxx_to, expand


def _as_index_tensor(it: Any) -> Tensor:
    if isinstance(it, Tensor):
        t = it
    else:
        a = np.asarray(it)
        if a.size == 0 and a.dtype.kind == "f":  # x[[]]: an empty int index, as torch (NumPy says float64)
            a = a.astype(np.int64)
        if a.dtype.kind not in "biu":
            raise IndexError(f"tensors used as indices must be int64 or bool, got a list/array of {a.dtype}")
        t = _core.from_numpy(np.ascontiguousarray(a if a.dtype.kind == "b" else a.astype(np.int64)))
    if t.dtype not in (DType.int64, DType.bool):
        raise IndexError(f"tensors used as indices must be int64 or bool, got {t.dtype}")
    return t


def _normalise(index: Any) -> list[Any]:
    items = list(index) if isinstance(index, tuple) else [index]
    out = []
    for it in items:
        if isinstance(it, bool) or isinstance(it, np.bool_):
            raise IndexError("a Python bool as an index is not supported; use a bool tensor as a mask")
        if isinstance(it, (numbers.Integral, np.integer)):
            out.append(int(it))
        elif isinstance(it, Tensor) and it.ndim == 0 and it.dtype == DType.int64:
            out.append(int(it.item()))
        elif it is None or it is Ellipsis or isinstance(it, slice):
            out.append(it)
        elif isinstance(it, (Tensor, list, np.ndarray)):
            out.append(_as_index_tensor(it))
        else:
            raise IndexError(f"only integers, slices, None, ..., lists and int64 or bool tensors are valid "
                             f"indices, got {type(it).__name__}")
    return out


def _basic(self: Tensor, index: Any) -> tuple[Tensor, tuple[int, Tensor] | None]:
    """The view the basic part of `index` selects, and (dim in that view, index tensor) or None."""
    items = _normalise(index)
    used = sum(it.ndim if isinstance(it, Tensor) and it.dtype == DType.bool else 1
               for it in items if it is not None and it is not Ellipsis)
    if sum(it is Ellipsis for it in items) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if used > self.ndim:
        raise IndexError(f"too many indices for a tensor of dimension {self.ndim} (shape {tuple(self.shape)})")
    fill = [slice(None)] * (self.ndim - used)
    if Ellipsis in [it for it in items if not isinstance(it, Tensor)]:
        k = next(i for i, it in enumerate(items) if it is Ellipsis)
        items = items[:k] + fill + items[k + 1:]
    else:
        items = items + fill
    shape, strides, offset = self.shape, self._strides, self._offset
    out_shape: list[int] = []
    out_strides: list[int] = []
    tensors: list[tuple[int, Tensor]] = []
    d = 0
    for it in items:
        if it is None:
            out_shape.append(1), out_strides.append(0)
        elif isinstance(it, int):
            n = shape[d]
            if not -n <= it < n:
                raise IndexError(f"index {it} is out of bounds for dimension {d} with size {n}")
            offset += (it % n) * strides[d]
            d += 1
        elif isinstance(it, slice):
            if it.step is not None and int(it.step) <= 0:
                raise ValueError(f"slice step must be positive, got {it.step} (torch has no negative steps; "
                                 "use .flip or an index tensor)")
            start, stop, step = it.indices(shape[d])
            length = len(range(start, stop, step))
            if length > 0:
                offset += start * strides[d]
            out_shape.append(length), out_strides.append(strides[d] * step)
            d += 1
        else:  # an index tensor: its dims stay full here, the gather comes after
            tensors.append((len(out_shape), it))
            k = it.ndim if it.dtype == DType.bool else 1
            out_shape.extend(shape[d:d + k]), out_strides.extend(strides[d:d + k])
            d += k
    if len(tensors) > 1:
        raise IndexError("pycnn takes one index tensor (or list, or mask) per indexing expression; "
                         "index one dim after another instead")
    view = _as_strided(self, out_shape, out_strides, offset)
    return view, (tensors[0] if tensors else None)


def _mask_positions(view: Tensor, p: int, mask: Tensor) -> tuple[list[int], Tensor]:
    """The shape of `view` with the mask's dims merged into one, and the masked positions in it."""
    k = mask.ndim
    if tuple(mask.shape) != tuple(view.shape[p:p + k]):
        raise IndexError(f"the shape of the mask {tuple(mask.shape)} does not match the shape "
                         f"{tuple(view.shape[p:p + k])} of the indexed dims {p}..{p + k - 1}")
    positions = np.flatnonzero(mask.cpu().numpy()).astype(np.int64)
    merged = list(view.shape[:p]) + [int(np.prod(view.shape[p:p + k], dtype=np.int64))] + list(view.shape[p + k:])
    return merged, _cxx_to(_core.from_numpy(positions), view.device)


def getitem(self: Tensor, index: Any) -> Tensor:
    view, adv = _basic(self, index)
    if adv is None:
        return view
    p, idx = adv
    if idx.dtype == DType.bool:
        merged, positions = _mask_positions(view, p, idx)
        return _core.index_select(_cxx_reshape(view, merged), p, positions)
    flat = _cxx_reshape(_cxx_to(idx, view.device), [-1])
    out = _core.index_select(view, p, flat)
    return _cxx_reshape(out, list(view.shape[:p]) + list(idx.shape) + list(view.shape[p + 1:]))


def _source(self: Tensor, value: Any) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (np.ndarray, list, tuple)):
        return _core.from_numpy(np.ascontiguousarray(np.asarray(value)))
    return _scalar_tensor(value, self.device)


def setitem(self: Tensor, index: Any, value: Any) -> None:
    view, adv = _basic(self, index)
    src = _source(self, value)
    if adv is None:
        _core.copy_into(view, src)
        return
    p, idx = adv
    if idx.dtype == DType.bool:
        merged, positions = _mask_positions(view, p, idx)
        work = view.contiguous()  # the view itself when contiguous: then the reshape below is a view too
        _core.index_put_(_cxx_reshape(work, merged), p, positions, src)
        if not (work._same_storage(view)):
            _core.copy_into(view, work)
        return
    idx = _cxx_to(idx, view.device)
    if idx.ndim != 1:  # values laid out as the gathered result, then flattened like the index
        target = list(view.shape[:p]) + list(idx.shape) + list(view.shape[p + 1:])
        flat_shape = list(view.shape[:p]) + [idx.numel()] + list(view.shape[p + 1:])
        src = _cxx_reshape(expand(src, *target), flat_shape)
        idx = _cxx_reshape(idx, [-1])
    _core.index_put_(view, p, idx, src)
