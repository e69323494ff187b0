"""MaxPool2d, AvgPool2d, AdaptiveAvgPool2d."""
from __future__ import annotations

import math
from typing import Any

from .. import _args, functional as F
from ..tensor import Tensor
from .module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


def _nchw_input(layer: Module, x: Any) -> Tensor:
    """x as a Tensor of shape (N, C, H, W); ValueError naming the layer otherwise."""
    x = layer._input(x)
    if x.ndim != 4:
        raise ValueError(f"{layer._name()}: expected input of shape (N, C, H, W), got {tuple(x.shape)}")
    return x


class _Pool2d(Module):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        name = type(self).__name__
        k, st, pad = _args.pool_args(name, kernel_size, stride, padding)
        # PyTorch keeps what was given (an int stays an int in the repr)
        self.kernel_size = kernel_size if _args.is_int(kernel_size) else k
        self.stride = self.kernel_size if stride is None else (stride if _args.is_int(stride) else st)
        self.padding = padding if _args.is_int(padding) else pad
        self._cache = None

    @property
    def _args(self) -> tuple:
        """(kernel, stride, padding) as pairs, from the attributes (which may be ints)."""
        return _args.pool_args(type(self).__name__, self.kernel_size, self.stride, self.padding)

    def _summary_geometry(self, in_shape: tuple, out_shape: tuple) -> tuple:
        """(kernel, stride, dilation, (pad top, pad left)) of the window: pc.summary's receptive field."""
        k, st, pad = self._args
        return k, st, (1, 1), pad

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def _check(self, x: Any) -> Tensor:
        return _nchw_input(self, x)


class MaxPool2d(_Pool2d):
    """Max pooling (stride defaults to kernel_size; implicit -inf padding). dilation,
    return_indices and ceil_mode exist for PyTorch compatibility; only their defaults are supported."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, padding)
        if _args.pair(dilation, "MaxPool2d", "dilation", 1) != (1, 1):
            raise ValueError(f"MaxPool2d: only dilation=1 is supported, got {dilation!r}")
        if return_indices:
            raise ValueError("MaxPool2d: return_indices=True is not supported (use functional.max_pool2d)")
        if ceil_mode:
            raise ValueError("MaxPool2d: only ceil_mode=False is supported")
        self.dilation, self.ceil_mode = dilation, False

    def extra_repr(self) -> str:
        return super().extra_repr() + f", dilation={self.dilation}, ceil_mode={self.ceil_mode}"

    def forward(self, x: Any) -> Tensor:
        x = self._check(x)
        y, idx = self._call_core(F.max_pool2d, x, *self._args, return_indices=True)
        self._cache = (idx, tuple(x.shape))
        return y

    def backward(self, grad_output: Any) -> Tensor:
        if self._cache is None:
            raise self._no_cache()
        idx, shape = self._cache
        dx = self._call_core(F.max_pool2d_backward, self._input(grad_output), idx, shape, *self._args)
        self._cache = None
        return dx


class AvgPool2d(_Pool2d):
    """Average pooling (count_include_pad=True, as PyTorch's default). ceil_mode,
    count_include_pad and divisor_override exist for PyTorch compatibility; only their defaults
    are supported."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: Any = None) -> None:
        super().__init__(kernel_size, stride, padding)
        if ceil_mode:
            raise ValueError("AvgPool2d: only ceil_mode=False is supported")
        if not count_include_pad:
            raise ValueError("AvgPool2d: only count_include_pad=True is supported")
        if divisor_override is not None:
            raise ValueError("AvgPool2d: divisor_override is not supported")

    def forward(self, x: Any) -> Tensor:
        x = self._check(x)
        y = self._call_core(F.avg_pool2d, x, *self._args)
        self._cache = tuple(x.shape)
        return y

    def backward(self, grad_output: Any) -> Tensor:
        if self._cache is None:
            raise self._no_cache()
        dx = self._call_core(F.avg_pool2d_backward, self._input(grad_output), self._cache, *self._args)
        self._cache = None
        return dx


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size (int or pair; None keeps that input size);
    AdaptiveAvgPool2d(1) is global average pooling."""

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        _args.adaptive_size(output_size, (1, 1), "AdaptiveAvgPool2d")  # validates the kind and sign
        self.output_size = output_size if (_args.is_int(output_size) or output_size is None) else tuple(output_size)
        self._cache = None

    def _summary_geometry(self, in_shape: tuple, out_shape: tuple) -> tuple:
        """The widest bin (kernel) and the bin spacing (stride) of this input, and whether the pooling
        is global (a 1×1 output): pc.summary's receptive field, which ends before global pooling."""
        (h, w), (oh, ow) = in_shape[2:4], out_shape[2:4]
        kernel, stride = (math.ceil(h / oh), math.ceil(w / ow)), (max(1, h // oh), max(1, w // ow))
        return kernel, stride, (1, 1), (0, 0), (oh, ow) == (1, 1)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def forward(self, x: Any) -> Tensor:
        x = _nchw_input(self, x)
        y = self._call_core(F.adaptive_avg_pool2d, x, self.output_size)
        self._cache = tuple(x.shape)
        return y

    def backward(self, grad_output: Any) -> Tensor:
        if self._cache is None:
            raise self._no_cache()
        dx = self._call_core(F.adaptive_avg_pool2d_backward, self._input(grad_output), self._cache)
        self._cache = None
        return dx
