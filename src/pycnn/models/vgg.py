"""VGG-11 and VGG-16 (Simonyan & Zisserman, 2014), configurations A and D without batch norm.

torchvision's layout and state_dict names: ``features`` (3x3 convs with padding 1, ReLU, 2x2 max
pools), ``avgpool`` (adaptive, 7x7), ``classifier`` (Linear-ReLU-Dropout twice, then Linear):
``features.0.weight`` ... ``classifier.6.bias``.  Parameter counts for 1000 classes: VGG-11
132,863,336 and VGG-16 138,357,544.  Convolutions are initialised as torchvision does
(Kaiming-normal fan-out, zero bias); linear layers keep pycnn's (PyTorch's) default.
"""
from __future__ import annotations

from typing import List, Union

from .. import nn
from ._torchvision import features_then_classifier

__all__ = ["VGG", "vgg11", "vgg16", "CONFIGS"]

CONFIGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def _features(cfg: List[Union[int, str]], in_channels: int) -> nn.Sequential:
    layers = []
    c = in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c, int(v), kernel_size=3, padding=1), nn.ReLU()]
            c = int(v)
    return nn.Sequential(*layers)


class VGG(nn.Sequential):
    """features -> avgpool (adaptive, 7x7) -> flatten -> classifier."""

    def __init__(self, cfg: List[Union[int, str]], num_classes: int = 1000, in_channels: int = 3,
                 dropout: float = 0.5, init_weights: bool = True) -> None:
        features = _features(cfg, in_channels)
        classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        super().__init__(features_then_classifier(features, (7, 7), classifier))
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)


def vgg11(num_classes: int = 1000, in_channels: int = 3) -> VGG:
    """VGG-11 (configuration A), 8 convolutions + 3 fully connected layers."""
    return VGG(CONFIGS["A"], num_classes=num_classes, in_channels=in_channels)


def vgg16(num_classes: int = 1000, in_channels: int = 3) -> VGG:
    """VGG-16 (configuration D), 13 convolutions + 3 fully connected layers."""
    return VGG(CONFIGS["D"], num_classes=num_classes, in_channels=in_channels)
