"""The data side of `Trainer.fit/evaluate/predict`: arrays or loaders in, batches of (x, y) out.

Arrays (NumPy, pycnn Tensors, lists) become a `DataLoader` over a `TensorDataset`; a loader (any
iterable of (x, y) pairs) is used as it is. `validation_split` takes the last fraction of the
arrays before any shuffling, as Keras does; uint8 images get a warning that they look unscaled.
"""
from __future__ import annotations

import warnings
from typing import Any, Iterable, Tuple

import numpy as np

from ..data.loader import DataLoader, TensorDataset
from .._args import is_int
from ..nn.parameter import Parameter
from ..tensor import Tensor


def host_array(a: Any, who: str, name: str) -> np.ndarray:
    """A NumPy view/copy of an array-like (CUDA tensors are copied to the host once)."""
    if isinstance(a, np.ndarray):
        arr = a
    elif isinstance(a, Tensor):
        arr = a.numpy()
    elif isinstance(a, Parameter):
        arr = a.data.numpy()
    elif isinstance(a, (list, tuple)):
        arr = np.asarray(a)
    else:
        raise TypeError(f"{who}: {name} must be a NumPy array, a pycnn Tensor or a pycnn.data.DataLoader, "
                        f"got {type(a).__name__}")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{who}: {name} has dtype {arr.dtype}; expected numbers")
    if arr.ndim == 0:
        raise ValueError(f"{who}: {name} must have a batch dimension, got a scalar")
    return arr


def is_array_like(a: Any) -> bool:
    return isinstance(a, (np.ndarray, Tensor, list, tuple, Parameter))


def check_batch_size(batch_size: Any, who: str) -> int:
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"{who}: batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def warn_if_unscaled(xa: np.ndarray, who: str) -> None:
    """uint8 inputs are almost always raw pixels 0-255, which train badly (or diverge) unscaled."""
    if xa.dtype == np.uint8 and xa.size and int(xa.max()) > 1:
        warnings.warn(f"{who}: x is uint8 with values up to {int(xa.max())}: the pixels look unscaled; "
                      "scale them to [0, 1] first (x = x.astype(np.float32) / 255), and normalise if you like "
                      "(pc.data.transforms.Normalize)", UserWarning, stacklevel=4)


def loader(x: Any, y: Any, batch_size: Any, shuffle: bool, who: str, drop_last: bool = False) -> Any:
    """A DataLoader-like iterable of (x, y) batches from arrays or from a loader."""
    if not is_array_like(x):
        if y is not None:
            raise ValueError(f"{who}: y must be None when x is a data loader (it yields (x, y) batches)")
        if not hasattr(x, "__iter__"):
            raise TypeError(f"{who}: x must be a NumPy array, a pycnn Tensor or a pycnn.data.DataLoader, "
                            f"got {type(x).__name__}")
        if drop_last and not getattr(x, "drop_last", False):
            raise ValueError(f"{who}: drop_last=True applies to arrays; x is a data loader, so pass "
                             "drop_last=True to the DataLoader instead")
        return x
    if y is None:
        raise ValueError(f"{who}: y (the targets) is required when x is an array")
    bs = check_batch_size(batch_size, who)
    xa = host_array(x, who, "x")
    ya = host_array(y, who, "y")
    if xa.shape[0] != ya.shape[0]:
        raise ValueError(f"{who}: x has {xa.shape[0]} samples but y has {ya.shape[0]}; they must match")
    if who == "fit":
        warn_if_unscaled(xa, who)
    return DataLoader(TensorDataset(xa, ya), batch_size=bs, shuffle=bool(shuffle), drop_last=bool(drop_last))


def split_validation(x: Any, y: Any, split: Any, who: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val): the last `split` fraction of the samples, taken before any
    shuffling (Keras's validation_split)."""
    if isinstance(split, bool) or not isinstance(split, (int, float)) or not 0.0 < float(split) < 1.0:
        raise ValueError(f"{who}: validation_split must be a number strictly between 0 and 1 (the fraction of the "
                         f"samples held out), got {split!r}")
    if not is_array_like(x) or y is None:
        raise ValueError(f"{who}: validation_split needs x and y arrays (it holds out their last samples); with a "
                         "data loader pass validation_data=<another loader>")
    xa, ya = host_array(x, who, "x"), host_array(y, who, "y")
    if xa.shape[0] != ya.shape[0]:
        raise ValueError(f"{who}: x has {xa.shape[0]} samples but y has {ya.shape[0]}; they must match")
    n = xa.shape[0]
    cut = int(np.floor(n * (1.0 - float(split))))
    if cut == 0 or cut == n:
        raise ValueError(f"{who}: validation_split={split} of {n} samples leaves {n - cut} for validation and "
                         f"{cut} for training; both need at least one")
    return xa[:cut], ya[:cut], xa[cut:], ya[cut:]


def inputs_loader(x: Any, batch_size: Any, who: str) -> Iterable[Any]:
    """Batches of inputs only (predict): slices of an array, or the x of each loader batch."""
    if not is_array_like(x):
        if not hasattr(x, "__iter__"):
            raise TypeError(f"{who}: x must be a NumPy array, a pycnn Tensor or a pycnn.data.DataLoader, "
                            f"got {type(x).__name__}")
        return (b[0] if isinstance(b, (tuple, list)) else b for b in x)
    bs = check_batch_size(batch_size, who)
    xa = host_array(x, who, "x")
    return (xa[i:i + bs] for i in range(0, xa.shape[0], bs))
