"""ResNet-18 (He et al., 2016) in torchvision's layout.

``conv1 -> bn1 -> relu -> maxpool -> layer1..layer4 -> avgpool -> fc``, each ``layerK`` a
Sequential of two :class:`BasicBlock` s.  Names mirror torchvision's state_dict keys
(``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight``, ``bn1.num_batches_tracked`` ...), so
weights saved from ``torchvision.models.resnet18()`` with ``safetensors.torch.save_file`` load by
name.  11,689,512 parameters for 1000 classes.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional, Tuple

from .. import nn
from ..tensor import Tensor
from ._torchvision import init_conv_bn_

__all__ = ["BasicBlock", "ResNet", "resnet18"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Residual):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), shortcut = downsample or identity.

    An ``nn.Residual`` whose branches are its own layers under torchvision's names (conv1, bn1, relu,
    conv2, bn2, downsample), so the parameter names match; the sum is followed by ``self.relu``
    again, as in torchvision (a module may run several times in one pass).
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        nn.Module.__init__(self)  # not Residual's: the branches are the layers below, not `block`/`shortcut`
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride
        self._cached = False

    def _branches(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return out, (x if self.downsample is None else self.downsample(x))

    def _branches_backward(self, g: Tensor) -> Tuple[Tensor, Tensor]:
        gb = g
        for layer in (self.bn2, self.conv2, self.relu, self.bn1, self.conv1):  # _branches' chain, reversed
            gb = layer.backward(gb)
        return gb, (g if self.downsample is None else self.downsample.backward(g))

    def forward(self, x: Any) -> Tensor:
        return self.relu(super().forward(x))  # self.relu's second use, as torchvision

    def backward(self, grad_output: Any) -> Tensor:
        if not self._cached:  # checked before self.relu's backward, so that the error names this block
            raise self._no_cache()
        return super().backward(self.relu.backward(self._input(grad_output)))  # the second use first


class ResNet(nn.Sequential):
    """ResNet with BasicBlocks; ``layers`` gives the number of blocks per stage ([2, 2, 2, 2])."""

    def __init__(self, layers=(2, 2, 2, 2), num_classes: int = 1000, in_channels: int = 3,
                 zero_init_residual: bool = False) -> None:
        inplanes = 64
        stages = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            stage, inplanes = _make_layer(inplanes, planes, n, stride=1 if i == 0 else 2)
            stages.append((f"layer{i + 1}", stage))
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)),
            ("bn1", nn.BatchNorm2d(64)),
            ("relu", nn.ReLU()),
            ("maxpool", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            *stages,
            ("avgpool", nn.AdaptiveAvgPool2d((1, 1))),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(512 * BasicBlock.expansion, num_classes)),
        ]))
        init_conv_bn_(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)


def _make_layer(inplanes: int, planes: int, blocks: int, stride: int = 1):
    """A stage of `blocks` BasicBlocks; returns (Sequential, output channels)."""
    downsample = None
    out = planes * BasicBlock.expansion
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
    layers = [BasicBlock(inplanes, planes, stride, downsample)]
    for _ in range(1, blocks):
        layers.append(BasicBlock(out, planes))
    return nn.Sequential(*layers), out


def resnet18(num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """ResNet-18: [2, 2, 2, 2] BasicBlocks, 11,689,512 parameters for 1000 classes."""
    return ResNet((2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels)
