"""torchvision's conventions that several models share: the initialisation of ResNet and
MobileNet, and the features -> avgpool -> flatten -> classifier layout with its names."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

from .. import nn


def init_conv_bn_(model: nn.Module) -> None:
    """torchvision's initialisation of ResNet and MobileNet: convolution weights Kaiming-normal
    (fan-out, ReLU gain), BatchNorm2d scale 1 and shift 0; other layers keep their defaults."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def features_then_classifier(features: nn.Module, pool_size: Any,
                             classifier: nn.Module) -> "OrderedDict[str, nn.Module]":
    """The layers of a ``features -> avgpool (adaptive, pool_size) -> flatten -> classifier``
    model under torchvision's names (AlexNet, VGG, MobileNet), for ``nn.Sequential``."""
    return OrderedDict([
        ("features", features),
        ("avgpool", nn.AdaptiveAvgPool2d(pool_size)),
        ("flatten", nn.Flatten()),
        ("classifier", classifier),
    ])
