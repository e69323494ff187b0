"""The non-finite guard of a training step, decided on the device (no host sync).

    flag = optim.nonfinite_flag([loss, *grads])   # float32 () tensor: 1.0 if any NaN/Inf
    opt.step(found_inf=flag)                      # the optimizer's kernels skip the update
    optim.keep_or_undo_(buffers, backups, flag)   # BatchNorm statistics: kept, or put back

PyTorch's AMP keeps the same idea private (`found_inf` in GradScaler); here it is public because
a user's own loop (and the Trainer) needs it to never apply a NaN update without reading the loss
back to the host every step.
"""
from __future__ import annotations

from typing import Sequence

from .. import _core
from ..tensor import Tensor

__all__ = ["nonfinite_flag", "keep_or_undo_"]


def _tensor_list(tensors: Sequence[Tensor], fn: str, what: str) -> list:
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{fn}: {what} must be a list or tuple of Tensors, got {type(tensors).__name__}")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{fn}: {what}[{i}] must be a Tensor, got {type(t).__name__}")
    return list(tensors)


def nonfinite_flag(tensors: Sequence[Tensor]) -> Tensor:
    """A float32 () tensor on the tensors' device: 1.0 if any element of any tensor is NaN or
    +-Inf, else 0.0. All tensors must be on one device; nothing is read back to the host."""
    return _core.nonfinite_flag(_tensor_list(tensors, "nonfinite_flag", "tensors"))


def keep_or_undo_(tensors: Sequence[Tensor], backups: Sequence[Tensor], found_inf: Tensor) -> None:
    """In place, decided on the device: where `found_inf` is 0, `backups[i] = tensors[i]` (the
    step is kept and becomes the new backup); otherwise `tensors[i] = backups[i]` (the step is
    undone). Pairs must match in shape, dtype and device; every pair is checked before anything
    is written."""
    fn = "keep_or_undo_"
    ts = _tensor_list(tensors, fn, "tensors")
    bs = _tensor_list(backups, fn, "backups")
    if len(ts) != len(bs):
        raise ValueError(f"{fn}: expected as many backups as tensors, got {len(bs)} backups for {len(ts)} tensors")
    if not isinstance(found_inf, Tensor):
        raise TypeError(f"{fn}: found_inf must be a Tensor (from optim.nonfinite_flag), got {type(found_inf).__name__}")
    _core.keep_or_undo_(ts, bs, found_inf)
