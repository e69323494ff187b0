"""`Trainer` under a process group (`pc.distributed.init_process_group()`, N processes).

`Trainer.fit/evaluate/predict` hand over to the functions here when a process group is initialized
(and the trainer is not already inside one of them). They then run the Trainer's own loop with:

- the model wrapped in `DistributedDataParallel` (once; unless it already is), so every rank starts
  from rank 0's weights and gradients are averaged over the ranks;
- the training data sharded with `DistributedSampler` (reshuffled every epoch with a seed that rank
  0 draws from its generator, so `pc.manual_seed` makes runs repeat): `batch_size` is per rank, the
  global batch is batch_size x world size;
- validation / evaluate data split into disjoint shards without padding, and the loss and metrics
  averaged over all samples of all ranks (weighted by each shard's size); training loss and metrics
  averaged over the ranks (equal shards), so every rank records the same History and callbacks such as
  EarlyStopping and ReduceLROnPlateau decide the same everywhere;
- BatchNorm's running statistics taken from rank 0 after each training epoch;
- the progress bar and the callbacks that write files (ModelCheckpoint, CSVLogger, TensorBoard)
  on rank 0 only, and a barrier at the end of fit so the files exist for every rank afterwards.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np

from .. import _random
from .. import distributed as dist
from ..data.loader import DataLoader
from ..data.sampler import DistributedSampler
from ..tensor import from_numpy
from ..nn.parallel import DistributedDataParallel
from . import fit_data
from .callbacks import Callback

__all__ = ["active", "fit", "evaluate", "predict"]

_FILE_WRITERS = ("ModelCheckpoint", "CSVLogger", "TensorBoard")


def active(trainer: Any) -> bool:
    """Whether `trainer`'s fit/evaluate/predict should run distributed (and are not already)."""
    return dist.is_initialized() and not trainer.__dict__.get("_distributed_running", False)


class _Shard:
    """Indices rank, rank + N, rank + 2N, ... of n: disjoint shards covering n, no padding."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = np.arange(rank, n, world, dtype=np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices.tolist())

    def __len__(self) -> int:
        return int(self.indices.size)


class _SetEpoch(Callback):
    def __init__(self, sampler: DistributedSampler) -> None:
        super().__init__()
        self.sampler = sampler

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.sampler.set_epoch(epoch)


def _wrap_model(trainer: Any) -> DistributedDataParallel:
    if getattr(trainer, "cuda_graph", False):
        raise ValueError("Trainer: cuda_graph=True is not supported under pc.distributed (the gradient "
                         "all-reduce happens between backward and the optimizer step); use cuda_graph=False")
    if not isinstance(trainer.model, DistributedDataParallel):
        trainer.model = DistributedDataParallel(trainer.model)
    return trainer.model


def _shared_seed() -> int:
    seed = int(_random.generator().integers(2**31 - 1)) if dist.get_rank() == 0 else None
    return int(dist.broadcast_object(seed, 0))


def _reloader(loader: DataLoader, sampler: Any) -> DataLoader:
    return DataLoader(loader.dataset, batch_size=loader.batch_size, drop_last=loader.drop_last,
                      transform=loader.transform, sampler=sampler)


def _train_loader(trainer: Any, x: Any, y: Any, batch_size: Any, shuffle: bool,
                  drop_last: bool) -> Tuple[Any, List[Callback]]:
    loader = trainer._loader(x, y, batch_size, shuffle, "fit", drop_last)
    if not isinstance(loader, DataLoader):
        warnings.warn("fit under pc.distributed: x is not a pycnn DataLoader, so every rank trains on all of it; "
                      "shard it yourself (pc.data.DistributedSampler) or pass arrays or a DataLoader",
                      RuntimeWarning, stacklevel=3)
        return loader, []
    sampler = loader.sampler
    if sampler is None:
        sampler = DistributedSampler(loader.dataset, shuffle=loader.shuffle, seed=_shared_seed())
        loader = _reloader(loader, sampler)
    return loader, [_SetEpoch(sampler)] if isinstance(sampler, DistributedSampler) else []


def _eval_loader(loader: Any) -> Any:
    if isinstance(loader, DataLoader) and loader.sampler is None:
        return _reloader(loader, _Shard(len(loader.dataset), dist.get_rank(), dist.get_world_size()))
    return loader


class _Counted:
    """Iterates a loader, counting the samples of the batches it yields."""

    def __init__(self, loader: Any) -> None:
        self.loader, self.n = loader, 0

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            self.n += len(batch[0]) if isinstance(batch, (tuple, list)) else len(batch)
            yield batch



def _mean_over_ranks(values: List[float], weight: float) -> List[float]:
    buf = np.array([v * weight for v in values] + [weight], dtype=np.float64)
    dist.all_reduce(buf, "sum")
    return [float(v / buf[-1]) if buf[-1] else float("nan") for v in buf[:-1]]


@contextmanager
def _distributed_methods(trainer: Any, ddp: DistributedDataParallel) -> Iterator[None]:
    """The trainer's epoch and evaluation loops, averaged over the ranks (instance overrides,
    removed again on the way out)."""
    cls = type(trainer)

    def train_epoch(*args: Any, **kwargs: Any) -> Dict[str, float]:
        logs = cls._train_epoch(trainer, *args, **kwargs)
        ddp.sync_buffers()  # validation and checkpoints then see rank 0's running statistics everywhere
        # equal shards: the mean over ranks is the mean over all samples; counts and rates add up
        keys = list(logs)
        means = _mean_over_ranks([logs[k] for k in keys] + [trainer._last_rate], 1.0)
        world = dist.get_world_size()
        trainer._last_rate = means[-1] * world
        return {k: v * world if k == "skipped_batches" else v for k, v in zip(keys, means)}

    def eval_loop(loader: Any, *args: Any, **kwargs: Any) -> Tuple[float, float]:
        counted = _Counted(_eval_loader(loader))
        empty = hasattr(counted.loader, "__len__") and len(counted.loader) == 0  # fewer samples than ranks
        loss, acc = (0.0, 0.0) if empty else cls._eval_loop(trainer, counted, *args, **kwargs)
        return tuple(_mean_over_ranks([loss, acc], float(counted.n)))  # type: ignore[return-value]

    trainer._distributed_running = True
    trainer._train_epoch, trainer._eval_loop = train_epoch, eval_loop
    try:
        yield
    finally:
        for name in ("_distributed_running", "_train_epoch", "_eval_loop"):
            trainer.__dict__.pop(name, None)


def fit(trainer: Any, x: Any, y: Any = None, batch_size: int = 32, shuffle: bool = True, callbacks: Any = (),
        verbose: int = 1, validation_split: float = 0.0, drop_last: bool = False, **kwargs: Any) -> Any:
    """Trainer.fit on this rank's shard; returns the History every rank shares."""
    ddp = _wrap_model(trainer)
    rank = dist.get_rank()
    if validation_split and kwargs.get("validation_data") is None:  # held out before sharding, as Keras does
        x, y, x_val, y_val = fit_data.split_validation(x, y, validation_split, "fit")
        kwargs["validation_data"] = (x_val, y_val)
    elif validation_split:
        kwargs["validation_split"] = validation_split  # with validation_data: Trainer.fit's own error
    loader, extra = _train_loader(trainer, x, y, batch_size, shuffle, bool(drop_last))
    cbs = list(callbacks or ())
    if rank != 0:
        cbs = [cb for cb in cbs if type(cb).__name__ not in _FILE_WRITERS]
    with _distributed_methods(trainer, ddp):
        history = type(trainer).fit(trainer, loader, None, batch_size=batch_size, shuffle=shuffle,
                                    callbacks=extra + cbs, verbose=verbose if rank == 0 else 0, **kwargs)
    dist.barrier()
    return history


def evaluate(trainer: Any, x: Any, y: Any = None, batch_size: int = 256, verbose: int = 0) -> Dict[str, float]:
    """Trainer.evaluate over all ranks' shards: the loss and metrics of the whole data set."""
    _wrap_model(trainer)
    loader = trainer._loader(x, y, batch_size, False, "evaluate")
    with _distributed_methods(trainer, trainer.model):
        return type(trainer).evaluate(trainer, loader, None, verbose=verbose if dist.get_rank() == 0 else 0)


def predict(trainer: Any, x: Any, batch_size: int = 256) -> Any:
    """Trainer.predict with each rank predicting every N-th input; every rank returns all outputs."""
    _wrap_model(trainer)
    if not fit_data.is_array_like(x):  # a loader: no way to split it here, every rank predicts all of it
        with _distributed_methods(trainer, trainer.model):
            return type(trainer).predict(trainer, x, batch_size)
    xa = fit_data.host_array(x, "predict", "x")
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = xa[rank::world]
    with _distributed_methods(trainer, trainer.model):
        part = type(trainer).predict(trainer, mine, batch_size).numpy() if len(mine) else None
    parts = dist.all_gather_object(part)
    shape = next((p.shape[1:] for p in parts if p is not None), None)
    if shape is None:
        raise ValueError("predict: got no inputs")
    out = np.empty((xa.shape[0],) + tuple(shape), dtype=next(p.dtype for p in parts if p is not None))
    for r, p in enumerate(parts):
        if p is not None:
            out[r::world] = p
    return from_numpy(out)
