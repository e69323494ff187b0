"""What `Trainer.fit/evaluate/predict` do differently under a process group
(`pc.distributed.init_process_group()`, N processes).

The Trainer asks `active()` at the start of each call and, when a group is initialized, calls the
functions here at the points where a distributed run differs; they take what they need as
arguments and return what the Trainer uses, so data flows one way (Trainer -> here -> Trainer):

- `ddp_model`: the model wrapped in `DistributedDataParallel` (once; unless it already is), so
  every rank starts from rank 0's weights and gradients are averaged over the ranks;
- `prepare_fit`: the training data sharded with `DistributedSampler` (reshuffled every epoch with a
  seed that rank 0 draws from its generator, so `pc.manual_seed` makes runs repeat): `batch_size`
  is per rank, the global batch is batch_size x world size; the progress bar and the callbacks
  that write files (ModelCheckpoint, CSVLogger, TensorBoard) on rank 0 only;
- `average_epoch`: BatchNorm's running statistics taken from rank 0 after each training epoch, and
  the training loss and metrics averaged over the ranks (equal shards), so every rank records the
  same History and callbacks such as EarlyStopping and ReduceLROnPlateau decide the same everywhere;
- `evaluate_shard`: validation / evaluate data split into disjoint shards without padding, and the
  loss and metrics averaged over all samples of all ranks (weighted by each shard's size);
- `predict_shares`: each rank predicts every N-th input; every rank gets all outputs;
- `finish_fit`: a barrier at the end of fit so the files exist for every rank afterwards.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Iterator, List, Tuple

import numpy as np

from .. import _random
from .. import distributed as dist
from ..data.loader import DataLoader
from ..data.sampler import DistributedSampler
from ..tensor import Tensor, from_numpy
from ..nn.parallel import DistributedDataParallel
from . import fit_data
from .callbacks import Callback

__all__ = ["active", "ddp_model", "prepare_fit", "average_epoch", "evaluate_shard", "predict_shares",
           "rank_verbose", "finish_fit"]

_FILE_WRITERS = ("ModelCheckpoint", "CSVLogger", "TensorBoard")


def active() -> bool:
    """Whether a process group is initialized, so that fit/evaluate/predict run distributed."""
    return dist.is_initialized()


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


def ddp_model(model: Any, cuda_graph: bool) -> DistributedDataParallel:
    """`model` wrapped in DistributedDataParallel (itself when it already is one)."""
    if cuda_graph:
        raise ValueError("Trainer: cuda_graph=True is not supported under pc.distributed (the gradient "
                         "all-reduce happens between backward and the optimizer step); use cuda_graph=False")
    return model if isinstance(model, DistributedDataParallel) else DistributedDataParallel(model)


def rank_verbose(verbose: Any) -> Any:
    """`verbose` on rank 0, 0 (silent) on the other ranks."""
    return verbose if dist.get_rank() == 0 else 0


def _shared_seed() -> int:
    seed = int(_random.generator().integers(2**31 - 1)) if dist.get_rank() == 0 else None
    return int(dist.broadcast_object(seed, 0))


def _reloader(loader: DataLoader, sampler: Any) -> DataLoader:
    return DataLoader(loader.dataset, batch_size=loader.batch_size, drop_last=loader.drop_last,
                      transform=loader.transform, sampler=sampler)


def _train_loader(loader: Any) -> Tuple[Any, List[Callback]]:
    if not isinstance(loader, DataLoader):
        warnings.warn("fit under pc.distributed: x is not a pycnn DataLoader, so every rank trains on all of it; "
                      "shard it yourself (pc.data.DistributedSampler) or pass arrays or a DataLoader",
                      RuntimeWarning, stacklevel=4)
        return loader, []
    sampler = loader.sampler
    if sampler is None:
        sampler = DistributedSampler(loader.dataset, shuffle=loader.shuffle, seed=_shared_seed())
        loader = _reloader(loader, sampler)
    return loader, [_SetEpoch(sampler)] if isinstance(sampler, DistributedSampler) else []


def prepare_fit(loader: Any, callbacks: List[Any], verbose: Any) -> Tuple[Any, List[Any], Any]:
    """(this rank's shard of the training loader, the callbacks this rank runs, its verbose)."""
    loader, extra = _train_loader(loader)
    if dist.get_rank() != 0:
        callbacks = [cb for cb in callbacks if type(cb).__name__ not in _FILE_WRITERS]
    return loader, extra + callbacks, rank_verbose(verbose)


def _mean_over_ranks(values: List[float], weight: float) -> List[float]:
    buf = np.array([v * weight for v in values] + [weight], dtype=np.float64)
    dist.all_reduce(buf, "sum")
    return [float(v / buf[-1]) if buf[-1] else float("nan") for v in buf[:-1]]


def average_epoch(ddp: DistributedDataParallel, logs: Dict[str, float],
                  rate: float) -> Tuple[Dict[str, float], float]:
    """(the epoch's logs averaged over the ranks, the samples/s of all ranks together)."""
    ddp.sync_buffers()  # validation and checkpoints then see rank 0's running statistics everywhere
    # equal shards: the mean over ranks is the mean over all samples; counts and rates add up
    keys = list(logs)
    means = _mean_over_ranks([logs[k] for k in keys] + [rate], 1.0)
    world = dist.get_world_size()
    return {k: v * world if k == "skipped_batches" else v for k, v in zip(keys, means[:-1])}, means[-1] * world


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


def evaluate_shard(loader: Any, eval_loop: Callable[[Any], Tuple[float, float]]) -> Tuple[float, float]:
    """(loss, accuracy) over all ranks: `eval_loop` runs on this rank's shard of `loader`, and the
    results are averaged weighted by each shard's number of samples."""
    counted = _Counted(_eval_loader(loader))
    empty = hasattr(counted.loader, "__len__") and len(counted.loader) == 0  # fewer samples than ranks
    loss, acc = (0.0, 0.0) if empty else eval_loop(counted)
    return tuple(_mean_over_ranks([loss, acc], float(counted.n)))  # type: ignore[return-value]


def predict_shares(x: Any, predict: Callable[[np.ndarray], Tensor]) -> Tensor:
    """`predict` on every N-th input of the array `x` (from this rank's on), all outputs gathered
    on every rank in the order of `x`."""
    xa = fit_data.host_array(x, "predict", "x")
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = xa[rank::world]
    part = predict(mine).numpy() if len(mine) else None
    parts = dist.all_gather_object(part)
    shape = next((p.shape[1:] for p in parts if p is not None), None)
    if shape is None:
        raise ValueError("predict: got no inputs")
    out = np.empty((xa.shape[0],) + tuple(shape), dtype=next(p.dtype for p in parts if p is not None))
    for r, p in enumerate(parts):
        if p is not None:
            out[r::world] = p
    return from_numpy(out)


def finish_fit() -> None:
    """The end of fit on every rank: the files rank 0 wrote exist for all ranks afterwards."""
    dist.barrier()
