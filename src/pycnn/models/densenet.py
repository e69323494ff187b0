"""DenseNet-121 (Huang et al., 2017; DenseNet-BC, growth rate 32) as torchvision builds it.

A :class:`DenseLayer` returns its input with ``growth_rate`` new feature maps appended: it is an
``nn.Concat`` of the identity and the bottleneck ``BN -> ReLU -> 1x1 conv (bn_size * growth_rate)
-> BN -> ReLU -> 3x3 conv (growth_rate)``.  A :class:`DenseBlock` is a Sequential of such layers,
so layer i sees the block input and the maps of every earlier layer; a :class:`Transition`
(``BN -> ReLU -> 1x1 conv -> 2x2 average pool``) halves the channels and the resolution between
blocks.  Blocks of 6, 12, 24 and 16 layers, a final BN and ReLU, global average pooling and a
linear classifier: 7,978,856 parameters for 1000 classes.

Names mirror torchvision's state_dict keys (``features.conv0.weight``,
``features.denseblock1.denselayer1.norm1.weight``, ``features.transition1.conv.weight``,
``features.norm5.running_mean``, ``classifier.bias`` ...), so weights saved from
``torchvision.models.densenet121()`` with ``safetensors.torch.save_file`` load by name.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

from .. import nn
from ..tensor import Tensor

__all__ = ["DenseLayer", "DenseBlock", "Transition", "DenseNet", "densenet121"]


class DenseLayer(nn.Module):
    """``cat([x, conv2(relu2(norm2(conv1(relu1(norm1(x))))))], dim=1)``: ``in_channels +
    growth_rate`` channels out.

    The layers are attributes with torchvision's names (norm1, relu1, conv1, norm2, relu2, conv2),
    so the parameter names match its ``_DenseLayer``; forward and backward are those of
    ``self.concat = nn.Concat(nn.Identity(), nn.Sequential(norm1, ..., conv2))``, which shares
    them (a module reached twice is listed, saved and counted once, under its first name).
    """

    def __init__(self, in_channels: int, growth_rate: int = 32, bn_size: int = 4, drop_rate: float = 0.0) -> None:
        super().__init__()
        width = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, growth_rate, kernel_size=3, padding=1, bias=False)
        new = [self.norm1, self.relu1, self.conv1, self.norm2, self.relu2, self.conv2]
        if drop_rate > 0:
            new.append(nn.Dropout(p=drop_rate))
        self.concat = nn.Concat(OrderedDict([("features", nn.Identity()), ("new", nn.Sequential(*new))]), dim=1)
        self.out_channels = in_channels + growth_rate

    def forward(self, x: Any) -> Tensor:
        return self.concat(x)

    def __repr__(self) -> str:  # the layers once, not again inside self.concat
        lines = [f"({n}): {m!r}" for n, m in self.named_children() if n != "concat"]
        return "DenseLayer(\n  " + "\n  ".join(lines) + "\n  (concat): Concat(x, norm1 ... conv2)\n)"

    def backward(self, grad_output: Any) -> Tensor:
        return self.concat.backward(grad_output)


class DenseBlock(nn.Sequential):
    """``num_layers`` DenseLayers named denselayer1, denselayer2, ...: ``in_channels + num_layers *
    growth_rate`` channels out, same height and width."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int = 32, bn_size: int = 4,
                 drop_rate: float = 0.0) -> None:
        layers = [(f"denselayer{i + 1}", DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, drop_rate))
                  for i in range(num_layers)]
        super().__init__(OrderedDict(layers))
        self.out_channels = in_channels + num_layers * growth_rate


class Transition(nn.Sequential):
    """BN -> ReLU -> 1x1 conv to ``out_channels`` -> 2x2 average pool (named norm, relu, conv, pool)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(OrderedDict([
            ("norm", nn.BatchNorm2d(in_channels)),
            ("relu", nn.ReLU()),
            ("conv", nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)),
            ("pool", nn.AvgPool2d(kernel_size=2, stride=2)),
        ]))


class DenseNet(nn.Sequential):
    """features (conv0, norm0, relu0, pool0, denseblock1, transition1, ..., denseblock4, norm5) ->
    relu -> global avgpool -> flatten -> classifier."""

    def __init__(self, growth_rate: int = 32, block_config: Sequence[int] = (6, 12, 24, 16),
                 num_init_features: int = 64, bn_size: int = 4, drop_rate: float = 0.0, num_classes: int = 1000,
                 in_channels: int = 3) -> None:
        features = OrderedDict([
            ("conv0", nn.Conv2d(in_channels, num_init_features, kernel_size=7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(num_init_features)),
            ("relu0", nn.ReLU()),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ])
        c = num_init_features
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, c, growth_rate, bn_size, drop_rate)
            features[f"denseblock{i + 1}"] = block
            c = block.out_channels
            if i != len(block_config) - 1:
                features[f"transition{i + 1}"] = Transition(c, c // 2)
                c //= 2
        features["norm5"] = nn.BatchNorm2d(c)
        super().__init__(OrderedDict([
            ("features", nn.Sequential(features)),
            ("relu", nn.ReLU()),
            ("avgpool", nn.AdaptiveAvgPool2d((1, 1))),
            ("flatten", nn.Flatten()),
            ("classifier", nn.Linear(c, num_classes)),
        ]))
        # torchvision's initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)


def densenet121(num_classes: int = 1000, in_channels: int = 3) -> DenseNet:
    """DenseNet-121: growth rate 32, blocks of (6, 12, 24, 16) layers, 7,978,856 parameters for
    1000 classes.  Any input of at least 29x29 works; 224x224 is the paper's."""
    return DenseNet(32, (6, 12, 24, 16), 64, num_classes=num_classes, in_channels=in_channels)
