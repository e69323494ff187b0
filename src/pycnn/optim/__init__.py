"""Optimisation: `SGD`, `Adam`, `AdamW`, `RMSprop` (PyTorch's update rules, parameter groups),
`lr_scheduler`, and the device-side NaN guard (`nonfinite_flag`, `keep_or_undo_`). A name that is not here raises AttributeError listing the optimisers that are."""
import difflib

from . import lr_scheduler
from .adam import Adam, AdamW
from .guard import keep_or_undo_, nonfinite_flag
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "lr_scheduler", "nonfinite_flag", "keep_or_undo_"]

_OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop")


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    by_lower = {n.lower(): n for n in _OPTIMIZERS}
    hint = by_lower.get(name.lower()) or next(iter(difflib.get_close_matches(name, _OPTIMIZERS, n=1)), None)
    did_you_mean = f" Did you mean {hint!r}?" if hint else ""
    raise AttributeError(f"pycnn.optim has no optimizer or attribute {name!r}.{did_you_mean} Available optimizers: "
                         f"{', '.join(_OPTIMIZERS)} (and lr_scheduler for learning-rate schedules)")
