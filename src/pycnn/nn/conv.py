"""Conv2d."""
from __future__ import annotations

import math
from typing import Any, Optional

from .. import _args, functional as F
from ..tensor import Tensor, empty
from . import init
from .module import Module
from .parameter import Parameter, param_dtype

__all__ = ["Conv2d"]


def _check_int(v: Any, name: str, minimum: int) -> int:
    if not _args.is_int(v):
        raise TypeError(f"Conv2d: {name} must be an int, got {v!r}")
    if int(v) < minimum:
        raise ValueError(f"Conv2d: {name} must be {'positive' if minimum == 1 else '>= 0'}, got {v}")
    return int(v)


class Conv2d(Module):
    """2-D convolution over (N, C, H, W): weight (out_channels, in_channels/groups, kh, kw),
    bias (out_channels,). padding: int, (ph, pw), (top, bottom, left, right), "valid" or "same"
    (stride 1 only). Initialised as PyTorch: kaiming_uniform_(a=sqrt(5)) for the weight, i.e.
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        in_channels = _check_int(in_channels, "in_channels", 1)
        out_channels = _check_int(out_channels, "out_channels", 1)
        groups = _check_int(groups, "groups", 1)
        if in_channels % groups != 0:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) must be divisible by groups ({groups})")
        if out_channels % groups != 0:
            raise ValueError(f"Conv2d: out_channels ({out_channels}) must be divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise ValueError(f"Conv2d: only padding_mode='zeros' is supported, got {padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _args.pair(kernel_size, "Conv2d", "kernel_size", 1)
        self.stride = _args.pair(stride, "Conv2d", "stride", 1)
        self.dilation = _args.pair(dilation, "Conv2d", "dilation", 1)
        self.padding_mode = padding_mode
        _args.conv_padding(padding, self.kernel_size, self.dilation, self.stride, "Conv2d")  # validates
        if isinstance(padding, str):
            self.padding: Any = padding.lower()
        elif _args.is_int(padding):
            self.padding = (int(padding), int(padding))
        else:
            self.padding = tuple(int(p) for p in padding)
        dt = param_dtype(dtype, "Conv2d")
        kh, kw = self.kernel_size
        self.weight = Parameter(empty(out_channels, in_channels // groups, kh, kw, dtype=dt))
        self.bias = Parameter(empty(out_channels, dtype=dt)) if bias else None
        self.reset_parameters()
        if device is not None:
            self.to(device)
        self._cache = None

    @property
    def _pad4(self) -> tuple:
        """The (top, bottom, left, right) padding the op gets ("same" resolved)."""
        return _args.conv_padding(self.padding, self.kernel_size, self.dilation, self.stride, "Conv2d")

    def _summary_geometry(self, in_shape: tuple, out_shape: tuple) -> tuple:
        """(kernel, stride, dilation, (pad top, pad left)) of the window: pc.summary's receptive field."""
        top, _, left, _ = self._pad4
        return tuple(self.kernel_size), tuple(self.stride), tuple(self.dilation), (top, left)

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if isinstance(self.padding, str) or any(self.padding):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s

    def forward(self, x: Any) -> Tensor:
        x = self._input(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self._name()}: expected input of shape (N, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        y = self._call_core(F.conv2d, x, self.weight.data, None if self.bias is None else self.bias.data,
                            self.stride, self._pad4, self.dilation, self.groups)
        self._cache = x
        return y

    def backward(self, grad_output: Any, need_input_grad: bool = True) -> Optional[Tensor]:
        """Gradients of the parameters accumulate into ``.grad``; returns d/dx, or None with
        ``need_input_grad=False`` (the first layer of a training step: its dx is never used)."""
        x = self._cache
        if x is None:
            raise self._no_cache()
        g = self._input(grad_output)
        need_dw = self.weight.requires_grad
        need_db = self.bias is not None and self.bias.requires_grad
        dx, dw, db = self._call_core(F.conv2d_backward, g, x, self.weight.data, self.stride, self._pad4,
                                     self.dilation, self.groups, bool(need_input_grad), need_dw, need_db)
        self._cache = None
        self._accumulate(self.weight, dw)
        self._accumulate(self.bias, db)
        return dx
