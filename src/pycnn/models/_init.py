"""Weight initialisation shared by the models that torchvision initialises the same way."""
from __future__ import annotations

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
