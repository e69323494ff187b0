"""Argument and geometry helpers of the functional ops and the layers (PyTorch keeps these in
nn/modules/utils.py): int -> pair, conv/pool padding and stride rules, adaptive sizes, numbers in
range, reductions, labels and targets, Tensor arguments. Each names the calling function (`fn`) in
its error: TypeError for a bad kind, ValueError for a bad value. functional, nn/, train/,
data/transforms and summary all use these, so a rule is written once.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence

import numpy as np

from .tensor import Tensor, as_tensor, int64


def is_int(v: Any) -> bool:
    if type(v) is int:  # the common case first: the ABC check below costs ~1 us a call
        return True
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def tensor_arg(x: Any, fn: str, name: str = "input", dtype: Any = None) -> Tensor:
    """A Tensor from a Tensor, an nn.Parameter or a NumPy array; TypeError otherwise."""
    if isinstance(x, Tensor):
        return x
    data = getattr(x, "_pycnn_parameter_data", None)  # nn.Parameter
    if data is not None:
        return data
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{fn}: {name} has NumPy dtype {x.dtype}; expected float32, float64 or integers")
        return as_tensor(x, dtype=dtype)
    raise TypeError(f"{fn}: {name} must be a pycnn Tensor or a NumPy array, got {type(x).__name__}")


def optional_tensor_arg(x: Any, fn: str, name: str) -> Optional[Tensor]:
    return None if x is None else tensor_arg(x, fn, name)


def labels(y: Any, fn: str, device: str) -> Tensor:
    """Class labels as an int64 tensor on `device` (NumPy int arrays and lists are converted)."""
    if isinstance(y, Tensor):
        if y.dtype != int64:
            raise TypeError(f"{fn}: class labels must be int64, got a {y.dtype} tensor")
        return y.to(device) if y.device != device else y
    if isinstance(y, (list, tuple, np.ndarray)) or is_int(y):
        arr = np.asarray(y)
        if arr.dtype.kind not in "iu" and arr.size > 0:
            raise TypeError(f"{fn}: class labels must be integers, got dtype {arr.dtype}")
        t = as_tensor(np.ascontiguousarray(arr, dtype=np.int64))
        return t.to(device) if device != "cpu" else t
    raise TypeError(f"{fn}: labels must be an int64 Tensor or a NumPy integer array, got {type(y).__name__}")


def pair(v: Any, fn: str, name: str, minimum: int) -> tuple[int, int]:
    """int -> (v, v); a pair of ints -> tuple. TypeError for other kinds, ValueError below `minimum`."""
    if is_int(v):
        p = (int(v), int(v))
    elif isinstance(v, (tuple, list)) and len(v) == 2 and is_int(v[0]) and is_int(v[1]):
        p = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"{fn}: {name} must be an int or a pair of ints, got {v!r}")
    if min(p) < minimum:
        what = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{fn}: {name} must be {what}, got {v!r}")
    return p


def same_padding(kernel_size: Any, dilation: Any = 1) -> tuple[int, int, int, int]:
    """The (top, bottom, left, right) padding of ``padding="same"`` at stride 1: total
    ``dilation*(k-1)`` per axis, the odd pixel on the bottom/right (as PyTorch)."""
    kh, kw = pair(kernel_size, "same_padding", "kernel_size", 1)
    dh, dw = pair(dilation, "same_padding", "dilation", 1)
    th, tw = dh * (kh - 1), dw * (kw - 1)
    return th // 2, th - th // 2, tw // 2, tw - tw // 2


def conv_padding(padding: Any, kernel: tuple[int, int], dilation: tuple[int, int],
                  stride: tuple[int, int], fn: str) -> tuple[int, int, int, int]:
    """int, (ph, pw), (top, bottom, left, right), "valid" or "same" -> (top, bottom, left, right)."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return 0, 0, 0, 0
        if mode == "same":
            if stride != (1, 1):
                raise ValueError(f"{fn}: padding='same' is not supported for strided convolutions "
                                 f"(stride={stride}); use an explicit padding")
            if min(kernel) < 1:  # an empty kernel: let the op's own check name the weight's shape
                return 0, 0, 0, 0
            return same_padding(kernel, dilation)
        raise ValueError(f"{fn}: padding must be an int, a pair, (top, bottom, left, right), "
                         f"'valid' or 'same', got {padding!r}")
    if is_int(padding):
        p = (int(padding),) * 4
    elif isinstance(padding, (tuple, list)) and len(padding) in (2, 4) and all(is_int(t) for t in padding):
        q = tuple(int(t) for t in padding)
        p = (q[0], q[0], q[1], q[1]) if len(q) == 2 else q
    else:
        raise TypeError(f"{fn}: padding must be an int, a pair, (top, bottom, left, right), 'valid' or "
                        f"'same', got {padding!r}")
    if min(p) < 0:
        raise ValueError(f"{fn}: padding must be >= 0, got {padding!r}")
    return p  # type: ignore[return-value]


def conv_groups(groups: Any, fn: str) -> int:
    if not is_int(groups):
        raise TypeError(f"{fn}: groups must be an int, got {groups!r}")
    if int(groups) < 1:
        raise ValueError(f"{fn}: groups must be positive, got {groups}")
    return int(groups)


def conv_args(fn: str, w_shape: Sequence[int], stride: Any, padding: Any, dilation: Any, groups: Any):
    if len(w_shape) != 4:
        raise ValueError(f"{fn}: weight must be 4-D (out_channels, in_channels/groups, kh, kw), "
                         f"got shape {tuple(w_shape)}")
    k = (int(w_shape[2]), int(w_shape[3]))
    st = pair(stride, fn, "stride", 1)
    dil = pair(dilation, fn, "dilation", 1)
    pad = conv_padding(padding, k, dil, st, fn)
    return st, pad, dil, conv_groups(groups, fn)


def pool_args(fn: str, kernel_size: Any, stride: Any, padding: Any):
    k = pair(kernel_size, fn, "kernel_size", 1)
    st = k if stride is None else pair(stride, fn, "stride", 1)
    pad = pair(padding, fn, "padding", 0)
    if pad[0] > k[0] // 2 or pad[1] > k[1] // 2:
        raise ValueError(f"{fn}: padding should be at most half of the kernel size, got padding={pad} "
                         f"for kernel_size={k}")
    return k, st, pad


def shape4(shape: Any, fn: str, name: str = "input_shape") -> list[int]:
    if isinstance(shape, (tuple, list)) and all(is_int(s) for s in shape):
        return [int(s) for s in shape]
    raise TypeError(f"{fn}: {name} must be a tuple of ints, got {shape!r}")


def adaptive_size(output_size: Any, x_shape: Sequence[int], fn: str) -> tuple[int, int]:
    if is_int(output_size) or output_size is None:
        output_size = (output_size, output_size)
    if not (isinstance(output_size, (tuple, list)) and len(output_size) == 2
            and all(s is None or is_int(s) for s in output_size)):
        raise TypeError(f"{fn}: output_size must be an int or a pair of ints (or None), got {output_size!r}")
    if len(x_shape) < 2:
        raise ValueError(f"{fn}: expected input of shape (N, C, H, W), got {tuple(x_shape)}")
    out = tuple(int(x_shape[-2 + i]) if s is None else int(s) for i, s in enumerate(output_size))
    if min(out) < 1:
        raise ValueError(f"{fn}: output_size must be positive, got {output_size!r}")
    return out  # type: ignore[return-value]


def positive_int(v: Any, fn: str, name: str) -> int:
    """A Python int >= 1 (not a bool). ValueError for any other value or kind, as PyTorch's
    schedulers raise it (the exception the schedulers and the model builders document)."""
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{fn}: {name} must be a positive int, got {v!r}")
    return v


def number(v: Any, fn: str, name: str) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{fn}: {name} must be a number, got {v!r}")
    return float(v)


def softplus_beta(beta: Any, threshold: Any, fn: str) -> float:
    beta = number(beta, fn, "beta")
    if beta <= 0:
        raise ValueError(f"{fn}: beta must be positive, got {beta}")
    if number(threshold, fn, "threshold") != 20.0:
        raise ValueError(f"{fn}: only threshold=20 (PyTorch's default) is supported, got {threshold}")
    return beta


REDUCTIONS = ("mean", "sum")


def reduction(reduction: Any, fn: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be 'mean' or 'sum', got {reduction!r}")
    return reduction


def target_like(target: Any, x: Tensor, fn: str) -> Tensor:
    if isinstance(target, np.ndarray):
        t = tensor_arg(np.ascontiguousarray(target, dtype=x.dtype.numpy), fn, "target")
    else:
        t = tensor_arg(target, fn, "target")
    if t.device != x.device:
        t = t.to(x.device)
    return t


def probability(p: Any, fn: str) -> float:
    p = number(p, fn, "p")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{fn}: dropout probability has to be between 0 and 1, but got {p}")
    return p


def momentum(momentum: Any, fn: str) -> float:
    m = number(momentum, fn, "momentum")
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"{fn}: momentum must be in [0, 1], got {m}")
    return m


def eps(eps: Any, fn: str) -> float:
    e = number(eps, fn, "eps")
    if e < 0:
        raise ValueError(f"{fn}: eps must be >= 0, got {e}")
    return e
