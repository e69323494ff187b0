"""`DistributedSampler`: each rank's share of a dataset's indices (PyTorch's semantics).

Every rank draws the same permutation (from `seed + epoch`, not from the rank's own generator, so
ranks seeded differently still agree), pads it by repeating its start until it divides evenly (or,
with drop_last, cuts the tail), and keeps every num_replicas-th index from its rank on: the shards
are disjoint (but for the padding) and together cover the dataset. `set_epoch(e)` before each epoch
reshuffles; the same seed and epoch give the same shards on a rerun.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Optional

import numpy as np

from .. import distributed as dist

__all__ = ["DistributedSampler"]


def _check_int(name: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"DistributedSampler: {name} must be an int >= {low}, got {v!r}")
    return int(v)


class DistributedSampler:
    """DistributedSampler(dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False).

    num_replicas and rank default to the process group's world size and rank
    (`pc.distributed`); iterate it for this rank's indices, or pass it to `DataLoader(sampler=...)`.
    """

    def __init__(self, dataset: Any, num_replicas: Optional[int] = None, rank: Optional[int] = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if not hasattr(dataset, "__len__"):
            raise TypeError(f"DistributedSampler: dataset must define __len__, got {type(dataset).__name__}")
        if num_replicas is None or rank is None:
            if not dist.is_initialized():
                raise RuntimeError("DistributedSampler: num_replicas and rank are needed when no process group "
                                   "is initialized (call pc.distributed.init_process_group() first)")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        self.num_replicas = _check_int("num_replicas", num_replicas, 1)
        self.rank = _check_int("rank", rank, 0)
        if self.rank >= self.num_replicas:
            raise ValueError(f"DistributedSampler: rank must be in [0, {self.num_replicas}), got {self.rank}")
        self.seed = _check_int("seed", seed, 0)
        self.dataset = dataset
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        n = len(dataset)
        if self.drop_last and n % self.num_replicas:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose permutation the next iteration uses (call it before each epoch)."""
        self.epoch = _check_int("epoch", epoch, 0)

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch (int64)."""
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.Generator(np.random.PCG64(self.seed + self.epoch)).permutation(n)
        else:
            order = np.arange(n)
        if self.drop_last:
            order = order[:self.total_size]
        elif self.total_size > n and n > 0:
            order = np.concatenate([order, np.resize(order, self.total_size - n)])
        return order[self.rank:self.total_size:self.num_replicas].astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (f"DistributedSampler(len(dataset)={len(self.dataset)}, num_replicas={self.num_replicas}, "
                f"rank={self.rank}, shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last})")
