"""`Trainer`: Keras's training loop (`fit`, `evaluate`, `predict`) around a pycnn model.

The Trainer owns the loop: data to batches on the device, epochs, logging, callbacks,
validation, checkpoints. One training step (forward, loss, backward, the NaN-guarded optimizer
step) is `step.TrainStep`, called directly or through a CUDA graph (`graph_step.GraphStep`); its
loss and correct predictions are added up on the device (`step.EpochSums`) and read back only at
logging points (every `log_every` steps and at the end of an epoch), so a CUDA step never waits for
the host.

With on_nonfinite="raise" the guard's flag is sticky (every later step of the fit is skipped too),
and the next logging point raises FloatingPointError naming the first bad batch, with the weights
and optimizer state of before it. With "skip" the flag is read after each step and the bad batch
is counted.
"""
from __future__ import annotations

import math
import os
import sys
import time
import warnings
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .._args import is_int
from ..optim.guard import nonfinite_flag
from ..optim.lr_scheduler import ReduceLROnPlateau
from ..tensor import Tensor, cat, float32, float64, from_numpy, int64, zeros
from . import checkpoint, distributed_fit, fit_data
from .callbacks import Callback
from .fit_data import is_array_like as _is_array_like
from .graph_step import GraphStep
from .history import History, record_epoch
from .step import EpochSums, TrainStep

__all__ = ["Trainer"]

_METRIC_ALIASES = {"accuracy": "accuracy", "acc": "accuracy"}


def _device_of(device: Any) -> str:
    """The canonical name of a device ('cuda' -> 'cuda:0'); a bad name raises the core's error."""
    return zeros((), device=str(device)).device


class Trainer:
    """`Trainer(model, optimizer, loss, metrics=("accuracy",), device=None, scheduler=None)`.

    - `model`: an `nn.Module` (moved to `device` when one is given; otherwise the trainer uses the
      device the model is on).
    - `optimizer`: e.g. `optim.SGD(model.parameters(), lr=0.05, momentum=0.9)`.
    - `loss`: a criterion such as `nn.CrossEntropyLoss()` (`loss(logits, y)` then `loss.backward()`).
    - `metrics`: names of metrics to track besides the loss; "accuracy" (class labels) or none.
    - `scheduler`: an `optim.lr_scheduler` scheduler, stepped once per epoch (ReduceLROnPlateau
      gets val_loss, or loss without validation data).
    - `cuda_graph`: on a CUDA device, record the whole training step (forward, loss, backward,
      optimizer step) once as a CUDA graph and replay it for every full batch (graph_step.py); the
      last, partial batch runs eagerly. A changed learning rate is picked up by capturing again.
    """

    log_every: int = 10

    def __init__(self, model: Any, optimizer: Any, loss: Any, metrics: Any = ("accuracy",), device: Any = None,
                 scheduler: Any = None, on_nonfinite: str = "raise", cuda_graph: bool = False) -> None:
        # "raise": a NaN/Inf loss or gradient stops fit with FloatingPointError (checked at logging
        # points, no per-step sync), the weights as they were before that batch. "skip": each batch's
        # flag is read after its (skipped) update; bad batches count in history["skipped_batches"].
        if on_nonfinite not in ("raise", "skip"):
            raise ValueError(f"Trainer: on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
        self.on_nonfinite = on_nonfinite
        for attr in ("forward", "backward", "parameters", "train", "eval"):
            if not callable(getattr(model, attr, None)):
                raise TypeError(f"Trainer: model must be an nn.Module (with {attr}()), got {type(model).__name__}")
        if not callable(getattr(optimizer, "step", None)) or not callable(getattr(optimizer, "zero_grad", None)):
            raise TypeError(f"Trainer: optimizer must have step() and zero_grad() (e.g. optim.SGD), "
                            f"got {type(optimizer).__name__}")
        if not callable(loss) or not callable(getattr(loss, "backward", None)):
            raise TypeError(f"Trainer: loss must be a criterion with backward() (e.g. nn.CrossEntropyLoss()), "
                            f"got {type(loss).__name__}")
        if scheduler is not None and not callable(getattr(scheduler, "step", None)):
            raise TypeError(f"Trainer: scheduler must have step() (an optim.lr_scheduler), got "
                            f"{type(scheduler).__name__}")
        if metrics is None:
            metrics = ()
        elif isinstance(metrics, str):
            metrics = (metrics,)
        names = []
        for m in metrics:
            key = _METRIC_ALIASES.get(str(m).lower()) if isinstance(m, str) else None
            if key is None:
                raise ValueError(f"Trainer: unknown metric {m!r}; supported: 'accuracy' "
                                 "(use pycnn.metrics on predict() outputs for others)")
            if key not in names:
                names.append(key)
        self._step = TrainStep(model, loss, optimizer, sticky=on_nonfinite == "raise")
        self.metrics = tuple(names)
        self.scheduler = scheduler
        if device is not None:
            dev = _device_of(device)
            model.to(dev)
            self.device = dev
        else:
            self.device = _device_of(getattr(model, "device", "cpu"))
        self.stop_training = False
        self.history: Optional[History] = None
        if not isinstance(cuda_graph, bool):
            raise TypeError(f"Trainer: cuda_graph must be a bool, got {type(cuda_graph).__name__}")
        self.cuda_graph = cuda_graph
        self._graph_step: Optional[GraphStep] = None
        if cuda_graph:
            if not str(self.device).startswith("cuda"):
                raise ValueError(f"Trainer: cuda_graph=True needs a CUDA device, but the model is on "
                                 f"{self.device!r}; pass device='cuda' (or cuda_graph=False)")
            if on_nonfinite == "skip":
                raise ValueError("Trainer: cuda_graph=True needs on_nonfinite='raise': skipping a bad batch "
                                 "means reading its loss on the host at every step")
            self._graph_step = GraphStep(self._step, self.device)

    # the step's parts, replaceable (pc.distributed wraps the model in DistributedDataParallel)
    model = property(lambda self: self._step.model, lambda self, m: setattr(self._step, "model", m))
    optimizer = property(lambda self: self._step.optimizer, lambda self, o: setattr(self._step, "optimizer", o))
    loss = property(lambda self: self._step.loss, lambda self, c: setattr(self._step, "loss", c))

    # ------------------------------------------------------------------ conversions
    @property
    def dtype(self) -> Any:
        """The model's floating dtype (its first parameter's), float32 when it has none."""
        for p in self.model.parameters():
            if p.data.dtype in (float32, float64):
                return p.data.dtype
        return float32

    def _to_tensor(self, a: Any, dtype: Any) -> Tensor:
        if type(a) is np.ndarray and a.dtype == dtype.numpy and a.flags.c_contiguous and self.device == "cpu":
            return from_numpy(a)  # the common batch: what the branches below come to, without their checks
        if isinstance(a, Tensor):
            t = a if a.dtype == dtype else a.to(dtype)
        else:
            arr = np.asarray(a)
            if arr.dtype.kind not in "fiub":
                raise TypeError(f"Trainer: batch has dtype {arr.dtype}; expected numbers")
            arr = np.ascontiguousarray(arr, dtype=dtype.numpy)
            t = from_numpy(arr)
        return t.to(self.device) if t.device != self.device else t

    def _to_input(self, xb: Any, dtype: Any = None) -> Tensor:
        """A batch of inputs as a Tensor of the model's dtype (`dtype`: that dtype, when the caller
        has it already: finding it walks the model's parameters) on the Trainer's device."""
        return self._to_tensor(xb, self.dtype if dtype is None else dtype)

    def _to_target(self, yb: Any, dtype: Any = None) -> Tensor:
        if isinstance(yb, Tensor):
            kind = "i" if yb.dtype == int64 else "f"
        else:
            yb = np.asarray(yb)
            kind = yb.dtype.kind
        return self._to_tensor(yb, int64 if kind in "iub" else (self.dtype if dtype is None else dtype))

    @staticmethod
    def _split_batch(batch: Any, who: str) -> Tuple[Any, Any]:
        if isinstance(batch, (tuple, list)) and len(batch) >= 2:
            return batch[0], batch[1]
        raise ValueError(f"{who}: each batch from the data loader must be a pair (inputs, targets), got "
                         f"{type(batch).__name__}" + (f" of length {len(batch)}" if hasattr(batch, '__len__') else ""))

    def _loader(self, x: Any, y: Any, batch_size: Any, shuffle: bool, who: str, drop_last: bool = False) -> Any:
        """A DataLoader-like iterable of (x, y) batches from arrays or from a loader (fit_data.py)."""
        return fit_data.loader(x, y, batch_size, shuffle, who, drop_last)

    def _inputs_loader(self, x: Any, batch_size: Any, who: str) -> Iterable[Any]:
        return fit_data.inputs_loader(x, batch_size, who)

    def _clear_caches(self) -> None:
        self._step.clear_caches()

    def _sums(self) -> EpochSums:
        return EpochSums(self.device, getattr(self.loss, "reduction", "mean"), "accuracy" in self.metrics)

    def _check_finite(self, window: List[Tuple[int, Tensor, Tensor]], epoch: int, who: str) -> None:
        """Raise mode, at a logging point: one host read of the sticky flag."""
        bad = self._step.bad
        if bad is None or bad.item() == 0.0:
            return
        bad_batch, loss_t = next(((b, t) for b, t, flag in window if flag.item() != 0.0), (-1, None))
        where = f"at epoch {epoch + 1}, batch {bad_batch + 1}" if bad_batch >= 0 else f"in epoch {epoch + 1}"
        if loss_t is not None and nonfinite_flag([loss_t]).item() != 0.0:
            value = float(loss_t.numpy().reshape(-1)[0]) if loss_t.numel() == 1 else float("nan")
            what = f"the loss became {value}"
        else:
            what = "a gradient became NaN/Inf (the loss was finite)"
        raise FloatingPointError(f"{who}: {what} {where}; that step and any later ones were not applied, so the "
                                 "weights and optimizer state are those of before that batch. Training diverged "
                                 "(try a lower learning rate, and check the inputs for NaN/Inf), or pass "
                                 "Trainer(on_nonfinite='skip') to skip such batches")

    # ------------------------------------------------------------------ fit
    def fit(self, x: Any, y: Any = None, batch_size: int = 32, epochs: int = 1, validation_data: Any = None,
            shuffle: bool = True, callbacks: Sequence[Callback] = (), verbose: int = 1, initial_epoch: int = 0,
            validation_batch_size: Optional[int] = None, resume_from: Any = None, validation_split: float = 0.0,
            drop_last: bool = False) -> History:
        """Train for `epochs` epochs; returns a `History`.

        `x`, `y`: arrays/Tensors (shuffled each epoch when `shuffle`, batches of `batch_size`), or
        `x` a `pycnn.data.DataLoader` yielding (x, y) batches (then `batch_size` and `shuffle` come
        from the loader). `validation_data`: (x_val, y_val) or a loader, evaluated after each epoch.
        `verbose`: 0 silent, 1 a progress bar per epoch, 2 one line per epoch. Ctrl-C stops training
        cleanly and returns the history of the completed epochs. `resume_from`: a checkpoint written
        by `ModelCheckpoint` (or `save_checkpoint`): weights, optimizer and scheduler state, random
        state and history are restored and training continues after the saved epoch up to `epochs`.
        `validation_split`: hold out the last fraction of the x, y arrays (before shuffling, as Keras)
        for validation. `drop_last`: skip the last batch when it is smaller than `batch_size`.
        """
        who = "fit"
        distributed = distributed_fit.active()  # under pc.distributed: per-rank shards, averaged logs, rank 0 writes
        if distributed:
            self.model = distributed_fit.ddp_model(self.model, self.cuda_graph)
        if not is_int(epochs) or epochs < 0:
            raise ValueError(f"{who}: epochs must be an int >= 0, got {epochs!r}")
        if not is_int(initial_epoch) or initial_epoch < 0:
            raise ValueError(f"{who}: initial_epoch must be an int >= 0, got {initial_epoch!r}")
        if verbose not in (0, 1, 2):
            raise ValueError(f"{who}: verbose must be 0, 1 or 2, got {verbose!r}")
        if validation_split:
            if validation_data is not None:
                raise ValueError(f"{who}: pass validation_data or validation_split, not both")
            x, y, x_val, y_val = fit_data.split_validation(x, y, validation_split, who)
            validation_data = (x_val, y_val)
        loader = self._loader(x, y, batch_size, shuffle, who, bool(drop_last))
        cbs = list(callbacks or ())
        if distributed:
            loader, cbs, verbose = distributed_fit.prepare_fit(loader, cbs, verbose)
        val_loader = None
        if validation_data is not None:
            vbs = validation_batch_size if validation_batch_size is not None else (
                batch_size if is_int(batch_size) else getattr(x, "batch_size", 32))
            if _is_array_like(validation_data) and not isinstance(validation_data, (np.ndarray, Tensor)):
                if len(validation_data) != 2:
                    raise ValueError(f"{who}: validation_data must be (x_val, y_val) or a data loader, got a "
                                     f"sequence of length {len(validation_data)}")
                val_loader = self._loader(validation_data[0], validation_data[1], vbs, False, who + " (validation)")
            elif isinstance(validation_data, (np.ndarray, Tensor)):
                raise ValueError(f"{who}: validation_data must be a pair (x_val, y_val) or a data loader")
            else:
                val_loader = self._loader(validation_data, None, vbs, False, who + " (validation)")
        for cb in cbs:
            if not callable(getattr(cb, "on_epoch_end", None)):
                raise TypeError(f"{who}: callbacks must be pycnn.train.callbacks.Callback objects, got "
                                f"{type(cb).__name__}")
            if callable(getattr(cb, "set_trainer", None)):
                cb.set_trainer(self)
        tqdm = None
        if verbose == 1:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover - tqdm is a dependency
                verbose = 2

        history = History()
        if resume_from is not None:
            initial_epoch = self.load_checkpoint(resume_from, history)
            if initial_epoch >= epochs:
                warnings.warn(f"fit: the checkpoint {os.fspath(resume_from)!r} already finished epoch "
                              f"{initial_epoch} of epochs={epochs}: the run is complete, nothing was trained "
                              f"(pass epochs > {initial_epoch} to train further)", RuntimeWarning, stacklevel=2)
        steps = len(loader) if hasattr(loader, "__len__") else None
        history.params = {"epochs": epochs, "steps": steps, "verbose": verbose,
                          "batch_size": getattr(loader, "batch_size", batch_size)}
        self.history = history
        self.stop_training = False
        self.stop_reason: Optional[str] = None  # set by the callback that stops training (EarlyStopping)
        stopper: Optional[Callback] = None  # that callback: its own verbose message replaces ours
        self._step.begin_fit()
        was_training = bool(getattr(self.model, "training", True))
        train_logs: Dict[str, float] = {}
        for cb in cbs:
            cb.on_train_begin({})
        state = {"epoch": initial_epoch, "bar": None}
        try:
            for epoch in range(initial_epoch, epochs):
                state["epoch"] = epoch
                for cb in cbs:
                    cb.on_epoch_begin(epoch, {})
                lrs = self._current_lrs()
                t0 = time.perf_counter()
                bar = None
                if tqdm is not None:
                    bar = tqdm(total=steps, desc=f"Epoch {epoch + 1}/{epochs}", unit="step", leave=True,
                               dynamic_ncols=True, file=sys.stderr)
                    state["bar"] = bar
                logs, rate = self._train_epoch(loader, epoch, bar)
                if distributed:
                    logs, rate = distributed_fit.average_epoch(self.model, logs, rate)
                if val_loader is not None:
                    vloss, vacc = self._evaluate_loader(val_loader, "fit (validation)", distributed)
                    logs["val_loss"] = vloss
                    if "accuracy" in self.metrics:
                        logs["val_accuracy"] = vacc
                logs.update(lrs)
                elapsed = time.perf_counter() - t0
                record_epoch(history, epoch, logs)
                train_logs = dict(logs)
                if bar is not None:
                    bar.set_postfix_str(self._format_logs(logs, bar=True) + f", {rate:.0f} samples/s", refresh=False)
                    bar.close()
                    state["bar"] = None
                elif verbose == 2:
                    print(f"Epoch {epoch + 1}/{epochs} - {elapsed:.1f}s - {rate:.0f} samples/s - "
                          f"{self._format_logs(logs)}", flush=True)
                self._step_scheduler(logs)
                for cb in cbs:
                    before = (self.stop_training, self.stop_reason)
                    cb.on_epoch_end(epoch, dict(logs))
                    if (self.stop_training, self.stop_reason) != before:
                        stopper = cb
                if self.stop_training:
                    history.stopped_early = True
                    history.stop_reason = self.stop_reason
                    if verbose and self.stop_reason and not getattr(stopper, "verbose", 0):
                        print(f"Stopped early after epoch {epoch + 1}/{epochs}: {self.stop_reason}", flush=True)
                    break
        except KeyboardInterrupt:
            if state["bar"] is not None:
                state["bar"].close()
            history.interrupted = True
            self.model.zero_grad()
            self._clear_caches()
            print(f"\nTraining interrupted (Ctrl-C) during epoch {state['epoch'] + 1}/{epochs}; returning the "
                  f"history of the {len(history)} completed epoch(s). The model keeps its latest weights.",
                  file=sys.stderr, flush=True)
        except BaseException:
            if state["bar"] is not None:
                state["bar"].close()
            raise
        finally:
            self.model.train(was_training)
            self._step.outside = None  # the per-epoch parameter list: not kept past the fit
        for cb in cbs:
            cb.on_train_end(train_logs)
        if distributed:
            distributed_fit.finish_fit()
        return history

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: Any, epoch: Optional[int] = None) -> None:
        """Write a checkpoint that `fit(..., resume_from=path)` continues from: `path` is a plain
        weights file (`pc.load`) with the training state in its metadata, next to the optimizer's
        buffers; the pair is one atomic unit (train/checkpoint.py). `epoch`: the last completed epoch
        (default: the last one in `self.history`)."""
        checkpoint.save_checkpoint(self, path, epoch)

    def load_checkpoint(self, path: Any, history: Optional[History] = None) -> int:
        """Restore what `save_checkpoint` wrote, after checking all of it; returns the epoch to
        continue from (0-based). `history`, when given, receives the saved epochs."""
        return checkpoint.load_checkpoint(self, path, history)

    def _current_lrs(self) -> Dict[str, float]:
        """{"lr": the first group's}, plus "lr_1", "lr_2", ... for the other groups when they differ."""
        try:
            lrs = [float(g["lr"]) for g in getattr(self.optimizer, "param_groups", None) or ()]
        except (KeyError, TypeError, ValueError):
            return {}
        if len(set(lrs)) <= 1:
            return {"lr": lrs[0]} if lrs else {}
        return {("lr" if i == 0 else f"lr_{i}"): v for i, v in enumerate(lrs)}

    def _step_scheduler(self, logs: Dict[str, float]) -> None:
        sch = self.scheduler
        if sch is None:
            return
        if isinstance(sch, ReduceLROnPlateau):
            sch.step(logs.get("val_loss", logs["loss"]))
        else:
            sch.step()

    @staticmethod
    def _format_logs(logs: Dict[str, float], bar: bool = False) -> str:
        parts = []
        for k, v in logs.items():
            if k == "lr" or k.startswith("lr_"):
                parts.append(f"{k}{'=' if bar else ': '}{v:.3g}")
            else:
                parts.append(f"{k}{'=' if bar else ': '}{v:.4f}")
        return (", " if bar else " - ").join(parts)

    def _train_epoch(self, loader: Iterable[Any], epoch: int, bar: Any) -> Tuple[Dict[str, float], float]:
        """(the epoch's logs, its samples per second)."""
        self.model.train()
        run = self._graph_step if self._graph_step is not None else self._step
        self._step.begin_epoch()
        dtype = self.dtype
        sums = self._sums()
        window: List[Tuple[int, Tensor, Tensor]] = []
        t0 = time.perf_counter()
        pending = 0
        skipped = 0
        who = "fit"
        for b, batch in enumerate(loader):
            xb, yb = self._split_batch(batch, who)
            xt = self._to_input(xb, dtype)
            yt = self._to_target(yb, dtype)
            n = int(xt.shape[0])
            try:
                loss_t, logits, flag = run(xt, yt)
            except ValueError as e:
                if n == 1 and "more than 1 value per channel" in str(e):
                    raise ValueError(f"{e}. {who}: batch {b + 1} of epoch {epoch + 1} holds a single sample (the "
                                     "remainder of the data after full batches): pass drop_last=True to fit (or "
                                     "to your DataLoader), or pick a batch_size that leaves no single sample") from e
                raise
            if self.on_nonfinite == "skip" and flag.item() != 0.0:
                skipped += 1
                continue
            sums.add(loss_t, logits, yt, n)
            if self.on_nonfinite == "raise":
                window.append((b, loss_t, flag))
            pending += 1
            if pending >= self.log_every:
                self._check_finite(window, epoch, who)
                window.clear()
                if bar is not None:
                    bar.update(pending)
                    bar.set_postfix_str(self._progress(sums, t0), refresh=False)
                pending = 0
        if sums.seen == 0:
            raise ValueError(f"{who}: the training data produced no batches"
                             + (f" with a finite loss ({skipped} skipped)" if skipped else ""))
        self._check_finite(window, epoch, who)
        if bar is not None and pending:
            bar.update(pending)
        rate = sums.seen / max(time.perf_counter() - t0, 1e-9)
        logs = {"loss": sums.mean_loss()}
        if self.on_nonfinite == "skip":
            logs["skipped_batches"] = float(skipped)
        acc = sums.accuracy()
        if acc is not None:
            logs["accuracy"] = acc
        return logs, rate

    @staticmethod
    def _progress(sums: EpochSums, t0: float) -> str:
        s = f"loss={sums.mean_loss():.4f}"
        acc = sums.accuracy()
        if acc is not None:
            s += f", accuracy={acc:.4f}"
        rate = sums.seen / max(time.perf_counter() - t0, 1e-9)
        return s + f", {rate:.0f} samples/s"

    # ------------------------------------------------------------------ evaluation
    def _evaluate_loader(self, loader: Iterable[Any], who: str, distributed: bool) -> Tuple[float, float]:
        """(loss, accuracy) over `loader`; distributed: over all ranks' shards of it."""
        if distributed:
            return distributed_fit.evaluate_shard(loader, lambda shard: self._eval_loop(shard, who))
        return self._eval_loop(loader, who)

    def _eval_loop(self, loader: Iterable[Any], who: str) -> Tuple[float, float]:
        model, crit = self.model, self.loss
        was_training = bool(getattr(model, "training", False))
        model.eval()
        sums = self._sums()
        try:
            for batch in loader:
                xb, yb = self._split_batch(batch, who)
                xt = self._to_input(xb)
                yt = self._to_target(yb)
                logits = model(xt)
                sums.add(crit(logits, yt), logits, yt, int(xt.shape[0]))
        finally:
            model.train(was_training)
            self._clear_caches()
        if sums.seen == 0:
            raise ValueError(f"{who}: the data produced no batches")
        acc = sums.accuracy()
        return sums.mean_loss(), (acc if acc is not None else math.nan)

    def evaluate(self, x: Any, y: Any = None, batch_size: int = 256, verbose: int = 0) -> Dict[str, float]:
        """Loss (and metrics) over a whole data set in eval mode: {"loss": ..., "accuracy": ...}."""
        distributed = distributed_fit.active()  # every rank evaluates a shard; the result is the whole set's
        if distributed:
            self.model = distributed_fit.ddp_model(self.model, self.cuda_graph)
            verbose = distributed_fit.rank_verbose(verbose)
        loader = self._loader(x, y, batch_size, False, "evaluate")
        loss, acc = self._evaluate_loader(loader, "evaluate", distributed)
        out = {"loss": loss}
        if "accuracy" in self.metrics:
            out["accuracy"] = acc
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in out.items()), flush=True)
        return out

    def predict(self, x: Any, batch_size: int = 256) -> Tensor:
        """The model's outputs (logits, (N, classes)) for every input, in eval mode, as a CPU Tensor."""
        if distributed_fit.active():
            self.model = distributed_fit.ddp_model(self.model, self.cuda_graph)
            if _is_array_like(x):  # every rank predicts a share; all outputs on every rank
                return distributed_fit.predict_shares(x, lambda part: self._predict(part, batch_size))
            # a loader: no way to split it here, every rank predicts all of it
        return self._predict(x, batch_size)

    def _predict(self, x: Any, batch_size: int) -> Tensor:
        model = self.model
        was_training = bool(getattr(model, "training", False))
        model.eval()
        outs: List[Tensor] = []
        try:
            for xb in self._inputs_loader(x, batch_size, "predict"):
                outs.append(model(self._to_input(xb)))
        finally:
            model.train(was_training)
            self._clear_caches()
        if not outs:
            raise ValueError("predict: got no inputs")
        out = outs[0] if len(outs) == 1 else cat(outs, 0)
        return out.cpu() if out.device != "cpu" else out

    def __repr__(self) -> str:
        return (f"Trainer(model={type(self.model).__name__}, optimizer={type(self.optimizer).__name__}, "
                f"loss={type(self.loss).__name__}, metrics={self.metrics}, device={self.device!r})")
