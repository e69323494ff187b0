"""Classification metrics on NumPy arrays or pycnn Tensors (computed on the host), and
`count_correct`, the on-device count a training loop accumulates without reading back each step.

`accuracy(logits_or_preds, labels)` and `confusion_matrix(preds_or_logits, labels, num_classes)`
accept either raw scores of shape (N, C) (the arg-max over classes is taken) or predicted class
indices of shape (N,).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import _core
from .tensor import Tensor

__all__ = ["accuracy", "confusion_matrix", "count_correct"]


def _host(a: Any, what: str, fn: str) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "numpy") and callable(a.numpy):
        return np.asarray(a.numpy())
    try:
        arr = np.asarray(a)
    except Exception:
        arr = None
    if arr is None or arr.dtype == object:
        raise TypeError(f"{fn}: {what} must be a NumPy array, a pycnn Tensor or a list of numbers, "
                        f"got {type(a).__name__}")
    return arr


def _predictions(scores: Any, fn: str) -> np.ndarray:
    s = _host(scores, "logits_or_preds", fn)
    if s.ndim == 2:
        if s.shape[1] == 0:
            raise ValueError(f"{fn}: logits of shape {s.shape} have no classes")
        return np.argmax(s, axis=1).astype(np.int64, copy=False)
    if s.ndim == 1:
        if s.dtype.kind == "f":
            if not np.all(np.isfinite(s)) or np.any(s != np.round(s)):
                raise ValueError(f"{fn}: 1-D predictions must be class indices (whole numbers); got floats. "
                                 "Pass logits of shape (N, C) to take the arg-max")
        elif s.dtype.kind not in "iub":
            raise TypeError(f"{fn}: predictions must be numbers, got dtype {s.dtype}")
        return s.astype(np.int64, copy=False)
    raise ValueError(f"{fn}: expected logits of shape (N, C) or predicted classes of shape (N,), got shape {s.shape}")


def _labels(labels: Any, n: int, fn: str) -> np.ndarray:
    y = _host(labels, "labels", fn)
    if y.ndim != 1:
        raise ValueError(f"{fn}: expected labels of shape ({n},), got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{fn}: {n} predictions but {y.shape[0]} labels; they must match")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError(f"{fn}: labels must be class indices (whole numbers)")
    elif y.dtype.kind not in "iub":
        raise TypeError(f"{fn}: labels must be integers, got dtype {y.dtype}")
    return y.astype(np.int64, copy=False)


def accuracy(logits_or_preds: Any, labels: Any) -> float:
    """Fraction of samples whose predicted class equals the label, as a Python float.

    `logits_or_preds`: scores (N, C) (arg-max over dim 1) or class indices (N,). `labels`: (N,).
    """
    preds = _predictions(logits_or_preds, "accuracy")
    y = _labels(labels, preds.shape[0], "accuracy")
    if preds.shape[0] == 0:
        raise ValueError("accuracy: got 0 samples; accuracy is undefined")
    return float(np.count_nonzero(preds == y)) / float(preds.shape[0])


def count_correct(logits: Any, labels: Any) -> Any:
    """How many rows of `logits` (N, C) have their arg-max at `labels` (N,) (int64 class indices),
    as an int64 () Tensor on the logits' device: nothing is read back to the host, so a loop can
    add it up every step (`correct.add_(count_correct(logits, y))`) and read it when it logs."""
    if not isinstance(logits, Tensor) or not isinstance(labels, Tensor):
        bad = labels if isinstance(logits, Tensor) else logits
        raise TypeError(f"count_correct: logits and labels must be pycnn Tensors on one device, got "
                        f"{type(bad).__name__} (use accuracy() for NumPy arrays)")
    return _core.count_correct(logits, labels)


def confusion_matrix(preds_or_logits: Any, labels: Any, num_classes: Optional[int] = None) -> np.ndarray:
    """int64 matrix `m` of shape (C, C) where `m[i, j]` counts samples of true class i predicted as j.

    C is `num_classes`, else the number of columns of the logits, else 1 + the largest class seen.
    """
    scores = _host(preds_or_logits, "preds_or_logits", "confusion_matrix")
    preds = _predictions(scores, "confusion_matrix")
    y = _labels(labels, preds.shape[0], "confusion_matrix")
    if num_classes is None:
        if scores.ndim == 2:
            c = int(scores.shape[1])
        else:
            c = int(max(preds.max(initial=-1), y.max(initial=-1))) + 1
    else:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"confusion_matrix: num_classes must be a positive int, got {num_classes!r}")
        c = int(num_classes)
    for name, v in (("labels", y), ("predictions", preds)):
        if v.size and (v.min() < 0 or v.max() >= c):
            raise ValueError(f"confusion_matrix: {name} must be in [0, {c - 1}] for {c} classes, "
                             f"got values in [{int(v.min())}, {int(v.max())}]")
    return np.bincount(y * c + preds, minlength=c * c).astype(np.int64, copy=False).reshape(c, c)
