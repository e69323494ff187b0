"""AlexNet (Krizhevsky et al., 2012) in torchvision's single-tower layout.

Names mirror torchvision's state_dict keys (``features.0.weight`` ... ``classifier.6.bias``), so
weights saved from ``torchvision.models.alexnet()`` with ``safetensors.torch.save_file`` load by
name.  61,100,840 parameters for 1000 classes and 3 input channels.
"""
from __future__ import annotations

from .. import nn
from ._torchvision import features_then_classifier

__all__ = ["AlexNet", "alexnet"]


class AlexNet(nn.Sequential):
    """features -> avgpool (adaptive, 6x6) -> flatten -> classifier (with dropout)."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> None:
        features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, num_classes),
        )
        super().__init__(features_then_classifier(features, (6, 6), classifier))


def alexnet(num_classes: int = 1000, in_channels: int = 3) -> AlexNet:
    """AlexNet for (N, in_channels, 224, 224) images (any size >= 63 works: adaptive pooling)."""
    return AlexNet(num_classes=num_classes, in_channels=in_channels)
