"""Optimisation: `SGD` (PyTorch's update rule, parameter groups) and `lr_scheduler`."""
from . import lr_scheduler
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "lr_scheduler"]
