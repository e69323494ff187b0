"""Training loop: `Trainer` (fit / evaluate / predict), `History` and `callbacks`."""
from . import callbacks
from .callbacks import Callback, EarlyStopping, ModelCheckpoint
from .history import History
from .trainer import Trainer

__all__ = ["Trainer", "History", "callbacks", "Callback", "EarlyStopping", "ModelCheckpoint"]
