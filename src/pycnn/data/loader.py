"""Datasets over in-memory arrays and a mini-batch loader.

Batches are tuples of NumPy arrays; the Trainer turns them into Tensors on the right device.
Keeping the loader NumPy-only means it works (and is testable) without the compiled core, and
gathering a batch is one fancy-indexing copy per array instead of a Python loop over samples.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Optional

import numpy as np

from .. import _random


def _as_array(a: Any) -> np.ndarray:
    """Accept NumPy arrays, lists and pycnn Tensors (which implement ``__array__`` or ``.numpy()``)."""
    if isinstance(a, np.ndarray):
        return a
    numpy_method = getattr(a, "numpy", None)
    if callable(numpy_method) and not hasattr(a, "__array__"):
        return np.asarray(numpy_method())
    return np.asarray(a)


class TensorDataset:
    """Wraps arrays that share their first dimension; item ``i`` is ``(a[i] for a in arrays)``.

    Indexing with an array of indices returns whole batches, which lets the DataLoader gather a
    batch with one copy per array.
    """

    def __init__(self, *arrays: Any) -> None:
        if not arrays:
            raise ValueError("TensorDataset: expected at least one array, got none")
        converted = tuple(_as_array(a) for a in arrays)
        for i, a in enumerate(converted):
            if a.dtype == object:
                raise TypeError(
                    f"TensorDataset: array {i} ({type(arrays[i]).__name__}) is not numeric array-like"
                )
            if a.ndim == 0:
                raise ValueError(f"TensorDataset: array {i} must have at least 1 dimension, got a scalar")
        sizes = [a.shape[0] for a in converted]
        if any(s != sizes[0] for s in sizes):
            raise ValueError(
                f"TensorDataset: all arrays must have the same first dimension, got sizes {sizes}"
            )
        self.arrays = converted

    def __len__(self) -> int:
        return self.arrays[0].shape[0]

    def __getitem__(self, index: Any) -> tuple:
        return tuple(a[index] for a in self.arrays)

    def __repr__(self) -> str:
        shapes = ", ".join(str(tuple(a.shape)) for a in self.arrays)
        return f"TensorDataset(len={len(self)}, shapes=[{shapes}])"


def _fast_arrays(dataset: Any) -> Optional[tuple]:
    """The arrays to fancy-index directly, or None when items must be fetched one by one.

    Datasets with a per-sample ``transform`` (e.g. ``MNIST(..., transform=t)``) take the slow path
    so that their transform is honoured.
    """
    if isinstance(dataset, TensorDataset):
        return dataset.arrays
    data = getattr(dataset, "data", None)
    targets = getattr(dataset, "targets", None)
    if isinstance(data, np.ndarray) and isinstance(targets, np.ndarray) and getattr(dataset, "transform", None) is None:
        if data.shape[0] == targets.shape[0]:
            return (data, targets)
    return None


def _stack_items(dataset: Any, indices: np.ndarray) -> tuple:
    """Slow path: fetch each item and stack field by field."""
    items = [dataset[int(i)] for i in indices]
    if not isinstance(items[0], (tuple, list)):
        return (np.stack([np.asarray(it) for it in items]),)
    return tuple(np.stack([np.asarray(it[k]) for it in items]) for k in range(len(items[0])))


class DataLoader:
    """Iterates a dataset in mini-batches of NumPy arrays.

    ``shuffle`` draws a fresh permutation from ``pycnn._random.generator()`` at the start of each
    iteration, so ``pc.manual_seed`` makes the batch order reproducible. ``transform`` is applied to
    the first array of every batch (the inputs), after gathering. ``sampler`` (an iterable of
    indices with ``len``, e.g. ``DistributedSampler``) gives the order instead of ``shuffle``.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 32,
        shuffle: bool = False,
        drop_last: bool = False,
        transform: Optional[Callable[[np.ndarray], np.ndarray]] = None,
        sampler: Any = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"DataLoader: batch_size must be an int, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(
                f"DataLoader: dataset must define __len__ and __getitem__, got {type(dataset).__name__}"
            )
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform must be callable, got {type(transform).__name__}")
        if sampler is not None:
            if not hasattr(sampler, "__iter__") or not hasattr(sampler, "__len__"):
                raise TypeError(f"DataLoader: sampler must be an iterable of indices with a length, "
                                f"got {type(sampler).__name__}")
            if shuffle:
                raise ValueError("DataLoader: sampler and shuffle=True are mutually exclusive (the sampler "
                                 "decides the order; DistributedSampler shuffles with set_epoch)")
        self.sampler = sampler
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform

    def __len__(self) -> int:
        n = len(self.dataset) if self.sampler is None else len(self.sampler)
        if self.drop_last:
            return n // self.batch_size
        return math.ceil(n / self.batch_size)

    def _order(self) -> np.ndarray:
        if self.sampler is not None:
            return np.fromiter(iter(self.sampler), dtype=np.int64, count=len(self.sampler))
        n = len(self.dataset)
        if self.shuffle:
            return _random.generator().permutation(n)
        return np.arange(n)

    def __iter__(self) -> Iterator[tuple]:
        order = self._order()
        fast = _fast_arrays(self.dataset)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            batch = tuple(a[idx] for a in fast) if fast is not None else _stack_items(self.dataset, idx)
            if self.transform is not None:
                batch = (self.transform(batch[0]),) + tuple(batch[1:])
            yield batch

    def __repr__(self) -> str:
        return (
            f"DataLoader(len(dataset)={len(self.dataset)}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, transform={self.transform!r}"
            + (f", sampler={self.sampler!r})" if self.sampler is not None else ")")
        )
