"""GoogLeNet / Inception v1 (Szegedy et al., 2014) as torchvision builds it, without the two
auxiliary classifiers.

Every convolution is a :class:`BasicConv2d` (conv without bias -> BatchNorm(eps=1e-3) -> ReLU).
An :class:`Inception` block is an ``nn.Concat`` of four branches that all see the same input:

    branch1: 1x1 conv
    branch2: 1x1 conv (reduce) -> 3x3 conv
    branch3: 1x1 conv (reduce) -> 3x3 conv   (the paper's 5x5; torchvision keeps 3x3, and so do we,
                                              so that its weights load)
    branch4: 3x3 max pool, stride 1 -> 1x1 conv (pool projection)

and the channel counts of the paper's Table 1.  The stride-2 max pools round up (PyTorch's
``ceil_mode=True``, here :class:`CeilMaxPool2d`), so a 224x224 image gives 112, 56, 28, 14, 7.
6,624,904 parameters for 1000 classes.  Names mirror torchvision's state_dict keys
(``conv1.conv.weight``, ``inception3a.branch2.1.bn.running_var``, ``fc.bias`` ...), so weights
saved from ``torchvision.models.googlenet(aux_logits=False)`` with ``safetensors.torch.save_file``
load by name.  torchvision's pretrained model sets ``transform_input=True`` (it re-normalises an
ImageNet-normalised input to [-1, 1]); feed such weights inputs scaled to [-1, 1] directly.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

from .. import functional as F
from .. import nn
from ..tensor import Tensor, full

__all__ = ["BasicConv2d", "CeilMaxPool2d", "Inception", "GoogLeNet", "googlenet"]


class BasicConv2d(nn.Sequential):
    """conv (no bias) -> BatchNorm2d(eps=0.001) -> ReLU, named ``conv``, ``bn``, ``relu``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0) -> None:
        super().__init__(OrderedDict([
            ("conv", nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)),
            ("bn", nn.BatchNorm2d(out_channels, eps=0.001)),
            ("relu", nn.ReLU()),
        ]))


class CeilMaxPool2d(nn.MaxPool2d):
    """Max pooling whose output size rounds up (PyTorch's ``MaxPool2d(..., ceil_mode=True)``):
    ``out = ceil((H + 2p - k) / s) + 1``, less one when the last window would start in the
    bottom padding.  The rows and columns the last windows reach past the input are -inf, so
    they never win; backward drops their gradient."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__(kernel_size, stride, padding)
        self.ceil_mode = True

    def _extra(self, size: int, k: int, s: int, p: int) -> int:
        out = -(-(size + 2 * p - k) // s) + 1
        if (out - 1) * s >= size + p:
            out -= 1
        return max(0, (out - 1) * s + k - (size + 2 * p))

    def forward(self, x: Any) -> Tensor:
        x = self._check(x)
        (kh, kw), (sh, sw), (ph, pw) = self._args
        n, c, h, w = x.shape
        eh, ew = self._extra(h, kh, sh, ph), self._extra(w, kw, sw, pw)
        padded = x
        if eh:
            padded = F.concat([padded, full((n, c, eh, w), float("-inf"), dtype=x.dtype, device=x.device)], 2)
        if ew:
            padded = F.concat([padded, full((n, c, h + eh, ew), float("-inf"), dtype=x.dtype, device=x.device)], 3)
        y, idx = self._call_core(F.max_pool2d, padded, *self._args, return_indices=True)
        self._cache = (idx, tuple(padded.shape), (h, w))
        return y

    def backward(self, grad_output: Any) -> Tensor:
        if self._cache is None:
            raise self._no_cache()
        idx, shape, (h, w) = self._cache
        dx = self._call_core(F.max_pool2d_backward, self._input(grad_output), idx, shape, *self._args)
        self._cache = None
        if shape[2] != h:
            dx = F.split(dx, [h, shape[2] - h], 2)[0]
        if shape[3] != w:
            dx = F.split(dx, [w, shape[3] - w], 3)[0]
        return dx


class Inception(nn.Concat):
    """The Inception v1 block: four branches on the same input, concatenated along the channels
    (``ch1x1 + ch3x3 + ch5x5 + pool_proj`` output channels, same height and width).

    ``Inception(192, 64, 96, 128, 16, 32, 32)`` is the paper's inception (3a): 256 channels out.
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int) -> None:
        super().__init__(OrderedDict([
            ("branch1", BasicConv2d(in_channels, ch1x1, kernel_size=1)),
            ("branch2", nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                      BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))),
            ("branch3", nn.Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                      BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1))),
            ("branch4", nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
                                      BasicConv2d(in_channels, pool_proj, kernel_size=1))),
        ]), dim=1)
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj


# (name, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj): Table 1 of the paper
_INCEPTIONS = {
    "3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128), "5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Sequential):
    """stem (conv1, maxpool1, conv2, conv3, maxpool2) -> inception 3a, 3b -> maxpool3 -> 4a..4e ->
    maxpool4 -> 5a, 5b -> global avgpool -> flatten -> dropout -> fc."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2) -> None:
        def inception(name: str) -> tuple:
            return (f"inception{name}", Inception(*_INCEPTIONS[name]))

        super().__init__(OrderedDict([
            ("conv1", BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)),
            ("maxpool1", CeilMaxPool2d(3, stride=2)),
            ("conv2", BasicConv2d(64, 64, kernel_size=1)),
            ("conv3", BasicConv2d(64, 192, kernel_size=3, padding=1)),
            ("maxpool2", CeilMaxPool2d(3, stride=2)),
            inception("3a"), inception("3b"),
            ("maxpool3", CeilMaxPool2d(3, stride=2)),
            inception("4a"), inception("4b"), inception("4c"), inception("4d"), inception("4e"),
            ("maxpool4", CeilMaxPool2d(2, stride=2)),
            inception("5a"), inception("5b"),
            ("avgpool", nn.AdaptiveAvgPool2d((1, 1))),
            ("flatten", nn.Flatten()),
            ("dropout", nn.Dropout(p=dropout)),
            ("fc", nn.Linear(1024, num_classes)),
        ]))
        # torchvision's initialisation: N(0, 0.01) weights (its truncation at +-2 never bites), BN 1 / 0
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.01)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def googlenet(num_classes: int = 1000, in_channels: int = 3) -> GoogLeNet:
    """GoogLeNet (Inception v1) without auxiliary heads: 6,624,904 parameters for 1000 classes.
    Any input of at least 15x15 works (adaptive pooling); 224x224 is the paper's."""
    return GoogLeNet(num_classes=num_classes, in_channels=in_channels)
