"""`History`: what `Trainer.fit` returns (Keras's History object)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional


class History:
    """Per-epoch results of a `fit` call.

    `history`: dict name -> list with one value per completed epoch ("loss", "accuracy",
    "val_loss", "val_accuracy", "lr", ...); `epoch`: the epoch indices (0-based) those values
    belong to; `params`: the fit settings (epochs, steps, batch_size, samples); `interrupted`:
    True when training was stopped with Ctrl-C; `stopped_early` / `stop_reason`: whether and why a
    callback (EarlyStopping) ended training before `epochs`.
    """

    def __init__(self) -> None:
        self.history: Dict[str, List[float]] = {}
        self.epoch: List[int] = []
        self.params: Dict[str, Any] = {}
        self.interrupted: bool = False
        self.stopped_early: bool = False
        self.stop_reason: Optional[str] = None  # why training stopped early (EarlyStopping's message)

    def last(self, key: str, default: Optional[float] = None) -> Optional[float]:
        """The latest value of `key`, or `default` when it was never recorded."""
        seq = self.history.get(key)
        return seq[-1] if seq else default

    def __len__(self) -> int:
        return len(self.epoch)

    def __repr__(self) -> str:
        keys = ", ".join(self.history)
        return f"History(epochs={len(self.epoch)}, keys=[{keys}])"


def record_epoch(history: History, epoch: int, logs: Dict[str, float]) -> None:
    """Appends one epoch's logs to `history` (NaN for a name that epoch did not log, and before its first)."""
    n = len(history.epoch)
    history.epoch.append(int(epoch))
    for k, v in logs.items():
        seq = history.history.setdefault(k, [float("nan")] * n)
        seq.append(float(v))
    for k, seq in history.history.items():
        if len(seq) < n + 1:
            seq.append(float("nan"))
