"""Callbacks for `Trainer.fit` (Keras's protocol): `Callback`, `EarlyStopping`, `ModelCheckpoint`.

A callback sees `self.trainer` and `self.model` once training starts, and is called at
`on_train_begin(logs)`, `on_epoch_begin(epoch, logs)`, `on_epoch_end(epoch, logs)` (logs holds the
epoch's "loss", "accuracy", "val_loss", "val_accuracy", "lr") and `on_train_end(logs)`. Setting
`self.trainer.stop_training = True` ends training after the current batch.
"""
from __future__ import annotations

import math
import os
import sys
import warnings
from typing import Any, Dict, Optional

import numpy as np

from . import checkpoint

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint"]


class Callback:
    """Base class: override the hooks you need; all of them do nothing by default."""

    def __init__(self) -> None:
        self.trainer: Any = None
        self.model: Any = None

    def set_trainer(self, trainer: Any) -> None:
        self.trainer = trainer
        self.model = trainer.model

    def on_train_begin(self, logs: Optional[Dict[str, float]] = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: Optional[Dict[str, float]] = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, float]] = None) -> None:
        pass

    def on_train_end(self, logs: Optional[Dict[str, float]] = None) -> None:
        pass


def _resolve_mode(mode: str, monitor: str, who: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor.lower()
    return "max" if ("acc" in name or name.endswith("auc") or "f1" in name) else "min"


def _snapshot(model: Any) -> Dict[str, Any]:
    """Copies of every tensor in the model's state_dict (kept on their device)."""
    out = {}
    for k, v in model.state_dict().items():
        out[k] = v.clone() if hasattr(v, "clone") else np.array(v, copy=True)
    return out


class EarlyStopping(Callback):
    """Stop training when `monitor` has not improved for `patience` epochs.

    An epoch improves when the value beats the best so far by more than `min_delta` (lower is
    better for losses, higher for accuracies; `mode="auto"` decides from the name). With
    `restore_best_weights=True` the model gets the weights of its best epoch back when training
    ends. `baseline`: training stops if the metric does not beat this value within `patience` epochs.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0, mode: str = "auto",
                 restore_best_weights: bool = False, baseline: Optional[float] = None, verbose: int = 0) -> None:
        super().__init__()
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or min_delta < 0:
            raise ValueError(f"EarlyStopping: min_delta must be a number >= 0, got {min_delta!r}")
        self.monitor = str(monitor)
        self.patience = patience
        self.min_delta = float(min_delta)
        self.mode = _resolve_mode(mode, self.monitor, "EarlyStopping")
        self.restore_best_weights = bool(restore_best_weights)
        self.baseline = baseline
        self.verbose = verbose
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch: Optional[int] = None
        self.best_epoch: Optional[int] = None
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_weights: Optional[Dict[str, Any]] = None
        self._last_epoch: Optional[int] = None
        self._warned = False

    def _improves(self, value: float, reference: float) -> bool:
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def on_train_begin(self, logs: Optional[Dict[str, float]] = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, float]] = None) -> None:
        current = (logs or {}).get(self.monitor)
        if current is None:
            if not self._warned:
                warnings.warn(f"EarlyStopping: the metric {self.monitor!r} is not available (logs have "
                              f"{sorted(logs or {})}); pass validation_data to fit() to monitor val_* metrics",
                              RuntimeWarning, stacklevel=2)
                self._warned = True
            return
        self._last_epoch = epoch
        self.wait += 1
        if self._improves(current, self.best):
            self.best = float(current)
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = _snapshot(self.model)
            if self.baseline is None or self._improves(current, float(self.baseline)):
                self.wait = 0
                return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True
            self.trainer.stop_reason = self._reason(current)
            if self.verbose:
                print(f"Epoch {epoch + 1}: early stopping: {self.trainer.stop_reason}", flush=True)

    def _reason(self, current: float) -> str:
        best = (f"best {self.best:.4g} at epoch {self.best_epoch + 1}" if self.best_epoch is not None
                else f"latest {current:.4g}")
        if self.baseline is not None and not self._improves(self.best, float(self.baseline)):
            return (f"{self.monitor} did not beat the baseline {self.baseline} within {self.patience} epoch(s) "
                    f"({best})")
        delta = f" by more than min_delta={self.min_delta:g}" if self.min_delta else ""
        return f"{self.monitor} did not improve{delta} for {self.wait} epoch(s), patience={self.patience} ({best})"

    def on_train_end(self, logs: Optional[Dict[str, float]] = None) -> None:
        if (self.restore_best_weights and self.best_weights is not None
                and self.best_epoch != self._last_epoch):
            self.model.load_state_dict(self.best_weights)
            if self.verbose:
                print(f"Restored the weights of epoch {self.best_epoch + 1} ({self.monitor} = {self.best:.4f})")
        self.best_weights = None


class ModelCheckpoint(Callback):
    """Save the model's weights (`pycnn.io.save`, safetensors) at the end of every epoch, or only
    when `monitor` improves (`save_best_only=True`).

    `path` may hold `str.format` fields filled from the epoch (1-based) and the logs, e.g.
    "ckpt-{epoch:02d}-{val_loss:.3f}.safetensors". A kill at any moment leaves the previous
    checkpoint or the new one, complete (train/checkpoint.py), and no temporary files once the
    next save has run.

    The file is a plain weights file (`pc.load(path)`, `pc.io.load_into(model, path)`). With
    `save_training_state=True` (the default) its metadata also holds the epoch, history, random
    state and scheduler state, and the optimizer's buffers go to `path + ".optim-<checksum>"`, so
    that `trainer.fit(..., resume_from=path)` continues the run exactly.
    """

    def __init__(self, path: Any, monitor: str = "val_loss", save_best_only: bool = False, mode: str = "auto",
                 save_training_state: bool = True, verbose: int = 0) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.monitor = str(monitor)
        self.save_best_only = bool(save_best_only)
        self.mode = _resolve_mode(mode, self.monitor, "ModelCheckpoint")
        self.save_training_state = bool(save_training_state)
        self.verbose = verbose
        self.best = math.inf if self.mode == "min" else -math.inf
        self.last_saved: Optional[str] = None
        self._warned = False

    def _format(self, epoch: int, logs: Dict[str, float]) -> str:
        if "{" not in self.path:
            return self.path
        try:
            return self.path.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"ModelCheckpoint: cannot fill the path {self.path!r} from epoch and logs "
                             f"{sorted(logs)}: {e}") from None

    def _save(self, path: str, epoch: Optional[int] = None) -> None:
        if self.save_training_state and self.trainer is not None:
            checkpoint.save_checkpoint(self.trainer, path, epoch)
        else:
            checkpoint.save_weights(self.model, path)
        self.last_saved = path

    def on_train_begin(self, logs: Optional[Dict[str, float]] = None) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, float]] = None) -> None:
        logs = dict(logs or {})
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                if not self._warned:
                    warnings.warn(f"ModelCheckpoint: the metric {self.monitor!r} is not available (logs have "
                                  f"{sorted(logs)}); skipping save_best_only checkpoints", RuntimeWarning,
                                  stacklevel=2)
                    self._warned = True
                return
            better = current < self.best if self.mode == "min" else current > self.best
            if not better:
                return
            self.best = float(current)
        path = self._format(epoch, logs)
        self._save(path, epoch)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved the model to {path}", file=sys.stdout)


from .loggers import CSVLogger, TensorBoard  # noqa: E402,F401  (pc.callbacks.CSVLogger / TensorBoard)
