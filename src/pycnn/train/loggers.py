"""Callbacks that write the training curves to files: `CSVLogger` (a CSV table, one row per epoch)
and `TensorBoard` (event files for TensorBoard, through tensorboardX: `pip install "pycnn[tensorboard]"`).

Both follow Keras's callbacks of the same names: ``pc.callbacks.CSVLogger("log.csv")``,
``pc.callbacks.TensorBoard("runs/exp1")``, passed to ``Trainer.fit(..., callbacks=[...])``.
"""
from __future__ import annotations

import csv
import math
import os
from typing import Any, Dict, List, Optional, Union

import numpy as np

from .callbacks import Callback

__all__ = ["CSVLogger", "TensorBoard"]


class CSVLogger(Callback):
    """Writes one row per epoch to ``path``: the column ``epoch`` (0-based, as ``History.epoch``),
    then every key of the epoch's logs (the History keys: accuracy, loss, lr, val_accuracy,
    val_loss ...) in sorted order, as Keras's CSVLogger does.

    append: add rows to an existing file (its header is kept, and reused for the columns) instead
    of starting a new one, e.g. when a run resumes from a checkpoint.  A key missing from an epoch's
    logs is written as ``NA``.  Each row is flushed as it is written, so the file can be read while
    training runs.
    """

    def __init__(self, path: Any, separator: str = ",", append: bool = False) -> None:
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be a single character, got {separator!r}")
        self.path = os.fspath(path)
        self.separator = separator
        self.append = bool(append)
        self.keys: Optional[List[str]] = None
        self._file: Any = None
        self._writer: Any = None

    def on_train_begin(self, logs: Optional[Dict[str, float]] = None) -> None:
        self.keys = None
        header: Optional[List[str]] = None
        if self.append and os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, newline="") as f:
                header = next(csv.reader(f, delimiter=self.separator), None)
            if not header or header[0] != "epoch":
                raise ValueError(f"CSVLogger: cannot append to {self.path!r}: its first line {header!r} is not a "
                                 "CSVLogger header (epoch, ...)")
            self.keys = header[1:]
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._file = open(self.path, "a" if header is not None else "w", newline="")
        self._writer = None

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, float]] = None) -> None:
        logs = dict(logs or {})
        if self._file is None:  # used outside fit(): open as on_train_begin would
            self.on_train_begin()
        if self.keys is None:
            self.keys = sorted(logs)
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch"] + self.keys, delimiter=self.separator,
                                          extrasaction="ignore")
            if self._file.tell() == 0:
                self._writer.writeheader()
        row = {"epoch": int(epoch)}
        row.update({k: logs.get(k, "NA") for k in self.keys})
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs: Optional[Dict[str, float]] = None) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._writer = None


def _summary_writer() -> Any:
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ImportError("pc.callbacks.TensorBoard writes with tensorboardX: pip install \"pycnn[tensorboard]\" "
                          "(or pip install tensorboardX)") from None
    return SummaryWriter


class TensorBoard(Callback):
    """Writes TensorBoard event files under ``log_dir``, laid out as Keras does:

    * ``log_dir/train``: ``epoch_loss``, ``epoch_accuracy``, ``epoch_learning_rate`` (the ``lr``
      log) and any other training log, one point per epoch (step = epoch index);
    * ``log_dir/validation``: ``epoch_loss``, ``epoch_accuracy`` from ``val_loss`` and
      ``val_accuracy``, so that TensorBoard draws both runs on one chart;
    * update_freq: ``"epoch"`` (only the above), ``"batch"`` or an int N: also ``batch_loss`` in
      ``train`` every N training batches, with ``batch_learning_rate`` (step = batches seen since
      training began);
    * histogram_freq: every that many epochs (0: never), a histogram of every parameter, tagged by
      its name in ``model.named_parameters()``.

    Batch losses are read from the trainer's loss module through a forward hook, so they need the
    eager step (``Trainer(cuda_graph=True)`` replays a recorded step without running Python code,
    and asking for batch logs then raises ValueError).
    """

    def __init__(self, log_dir: Any = "logs", update_freq: Union[str, int] = "epoch", histogram_freq: int = 0) -> None:
        super().__init__()
        self._SummaryWriter = _summary_writer()
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and (isinstance(update_freq, bool) or not isinstance(update_freq, int)
                                       or update_freq < 1):
            raise ValueError(f"TensorBoard: update_freq must be 'epoch', 'batch' or an int >= 1, got {update_freq!r}")
        if isinstance(histogram_freq, bool) or not isinstance(histogram_freq, int) or histogram_freq < 0:
            raise ValueError(f"TensorBoard: histogram_freq must be an int >= 0, got {histogram_freq!r}")
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self.histogram_freq = histogram_freq
        self._writers: Dict[str, Any] = {}
        self._hook: Any = None
        self._batches = 0

    def _writer(self, run: str) -> Any:
        if run not in self._writers:
            self._writers[run] = self._SummaryWriter(os.path.join(self.log_dir, run))
        return self._writers[run]

    def on_train_begin(self, logs: Optional[Dict[str, float]] = None) -> None:
        self._batches = 0
        if self.update_freq == "epoch" or self.trainer is None:
            return
        if getattr(self.trainer, "cuda_graph", False):
            raise ValueError("TensorBoard: update_freq in batches needs the eager training step; this Trainer "
                             "replays a CUDA graph (cuda_graph=True). Use update_freq='epoch'.")
        self._hook = self.trainer.loss.register_forward_hook(self._on_loss)

    def _on_loss(self, module: Any, inputs: Any, loss: Any) -> None:
        if not getattr(self.model, "training", True):  # a validation batch
            return
        self._batches += 1
        if self._batches % int(self.update_freq) == 0:
            value = float(loss.item())
            w = self._writer("train")
            if math.isfinite(value):
                w.add_scalar("batch_loss", value, self._batches)
            groups = getattr(self.trainer.optimizer, "param_groups", None)
            if groups:
                w.add_scalar("batch_learning_rate", float(groups[0]["lr"]), self._batches)

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, float]] = None) -> None:
        for key, value in (logs or {}).items():
            run, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            name = "learning_rate" if name == "lr" else name
            self._writer(run).add_scalar(f"epoch_{name}", float(value), epoch)
        if self.histogram_freq and self.model is not None and (epoch + 1) % self.histogram_freq == 0:
            w = self._writer("train")
            for name, p in self.model.named_parameters():
                w.add_histogram(name, np.asarray(p.numpy(), dtype=np.float64).ravel(), epoch)
        for w in self._writers.values():
            w.flush()

    def on_train_end(self, logs: Optional[Dict[str, float]] = None) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        for w in self._writers.values():
            w.close()
        self._writers = {}
