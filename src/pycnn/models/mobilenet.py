"""MobileNet v1 (Howard et al., 2017): depthwise-separable convolutions.

Body as in Table 1 of the paper: a 3x3 stride-2 convolution to 32 channels, then 13 blocks of
(depthwise 3x3 conv, groups=C -> BN -> ReLU -> pointwise 1x1 conv -> BN -> ReLU), global average
pooling and a fully connected layer.  Convolutions have no bias (BatchNorm follows).  With
``width_mult=1.0`` and 1000 classes: 4,231,976 parameters (the paper's "4.2 million").

Names: ``features.0`` the stem Sequential(conv, bn, relu), ``features.1`` ... ``features.13`` the
blocks (``features.K.0`` depthwise conv, ``.1`` BN, ``.3`` pointwise conv, ``.4`` BN),
``classifier`` the Linear layer.
"""
from __future__ import annotations

from .. import nn
from ._torchvision import features_then_classifier, init_conv_bn_

__all__ = ["MobileNetV1", "mobilenet_v1"]

# (output channels, stride) of the 13 depthwise-separable blocks
_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


def _depthwise_separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),  # depthwise
        nn.BatchNorm2d(cin),
        nn.ReLU(),
        nn.Conv2d(cin, cout, 1, bias=False),  # pointwise
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class MobileNetV1(nn.Sequential):
    """features (stem + 13 depthwise-separable blocks) -> global avgpool -> flatten -> classifier."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0) -> None:
        if not width_mult > 0:
            raise ValueError(f"mobilenet_v1: width_mult must be > 0, got {width_mult}")

        def ch(c: int) -> int:
            return max(1, int(c * width_mult))

        c = ch(32)
        layers = [_conv_bn(in_channels, c, 2)]
        for cout, stride in _BLOCKS:
            layers.append(_depthwise_separable(c, ch(cout), stride))
            c = ch(cout)
        super().__init__(features_then_classifier(nn.Sequential(*layers), (1, 1), nn.Linear(c, num_classes)))
        init_conv_bn_(self)


def mobilenet_v1(num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0) -> MobileNetV1:
    """MobileNet v1 with width multiplier ``width_mult`` (alpha in the paper)."""
    return MobileNetV1(num_classes=num_classes, in_channels=in_channels, width_mult=width_mult)
