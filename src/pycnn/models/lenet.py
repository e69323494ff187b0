"""LeNet-5 (LeCun et al., 1998) in its modern form: ReLU and max pooling instead of the scaled tanh
and trainable subsampling, and a full C3 connection table.

Layout (28x28 inputs, padded to the paper's 32x32 by the first convolution):

    conv 5x5, 6 maps, padding 2 -> ReLU -> max pool 2   (6 x 14 x 14)
    conv 5x5, 16 maps           -> ReLU -> max pool 2   (16 x 5 x 5)
    flatten (400) -> 120 -> ReLU -> 84 -> ReLU -> num_classes

61,706 parameters for one input channel and 10 classes. It is an ``nn.Sequential``, so its
``state_dict`` names (``0.weight`` ... ``11.bias``) match the same ``torch.nn.Sequential``.
"""
from __future__ import annotations

from .. import _args, nn

__all__ = ["lenet5"]


def lenet5(num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """LeNet-5 for (N, in_channels, 28, 28) inputs; returns raw class scores (N, num_classes)."""
    _args.positive_int(num_classes, "lenet5", "num_classes")
    _args.positive_int(in_channels, "lenet5", "in_channels")
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )
