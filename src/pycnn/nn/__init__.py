"""Layers (``pc.nn``): PyTorch's names and defaults, with an explicit ``backward``."""
from __future__ import annotations

import sys

from .. import functional
from . import init, parallel
from .activation import ELU, LeakyReLU, PReLU, ReLU, Sigmoid, Softmax, Softplus, Tanh
from .conv import Conv2d
from .dropout import Dropout
from .linear import Flatten, Linear
from .loss import CrossEntropyLoss, MSELoss
from .container import Concat, Identity, ModuleDict, ModuleList, Residual, Sequential
from .module import Module
from .norm import BatchNorm1d, BatchNorm2d
from .parameter import Parameter
from .pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

# `import pycnn.nn.functional as F`, the torch habit, is pycnn.functional.
sys.modules[__name__ + ".functional"] = functional

__all__ = [
    "functional",
    "init", "parallel", "Module", "Parameter", "Sequential", "Residual", "Concat", "Identity", "ModuleList",
    "ModuleDict",
    "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Linear", "Flatten", "Dropout",
    "BatchNorm1d", "BatchNorm2d",
    "ReLU", "LeakyReLU", "PReLU", "ELU", "Sigmoid", "Tanh", "Softplus", "Softmax",
    "CrossEntropyLoss", "MSELoss",
]
