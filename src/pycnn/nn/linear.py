"""Linear and Flatten."""
from __future__ import annotations

import math
from typing import Any, Optional

from .. import _args, functional as F
from ..tensor import Tensor, empty
from . import init
from .module import Module
from .parameter import Parameter, param_dtype

__all__ = ["Linear", "Flatten"]


class Linear(Module):
    """y = x @ weight.T + bias; x (N, in_features) (or (*, in_features)), weight
    (out_features, in_features). Initialised as PyTorch: U(-1/sqrt(in), 1/sqrt(in)) for both."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not _args.is_int(v):
                raise TypeError(f"Linear: {name} must be an int, got {v!r}")
            if int(v) < 1:
                raise ValueError(f"Linear: {name} must be positive, got {v}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        dt = param_dtype(dtype, "Linear")
        self.weight = Parameter(empty(self.out_features, self.in_features, dtype=dt))
        self.bias = Parameter(empty(self.out_features, dtype=dt)) if bias else None
        self.reset_parameters()
        if device is not None:
            self.to(device)
        self._cache = None

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def forward(self, x: Any) -> Tensor:
        x = self._input(x)
        shape = tuple(x.shape)
        if len(shape) < 1 or shape[-1] != self.in_features:
            raise ValueError(f"{self._name()}: expected input of shape (N, {self.in_features}), got {shape}"
                             + (" (add nn.Flatten() before it?)" if len(shape) > 2 else ""))
        x2 = x if len(shape) == 2 else x.reshape(-1, self.in_features)
        y = self._call_core(F.linear, x2, self.weight.data, None if self.bias is None else self.bias.data)
        self._cache = (x2, shape)
        return y if len(shape) == 2 else y.reshape(*shape[:-1], self.out_features)

    def backward(self, grad_output: Any, need_input_grad: bool = True) -> Optional[Tensor]:
        """Gradients of the parameters accumulate into ``.grad``; returns d/dx, or None with
        ``need_input_grad=False``."""
        if self._cache is None:
            raise self._no_cache()
        x2, shape = self._cache
        g = self._input(grad_output)
        if len(shape) != 2:
            g = self._call_core(g.reshape, -1, self.out_features)
        need_dw = self.weight.requires_grad
        need_db = self.bias is not None and self.bias.requires_grad
        dx, dw, db = self._call_core(F.linear_backward, g, x2, self.weight.data, bool(need_input_grad), need_dw,
                                     need_db)
        self._cache = None
        self._accumulate(self.weight, dw)
        self._accumulate(self.bias, db)
        if dx is None:
            return None
        return dx if len(shape) == 2 else dx.reshape(*shape)


class Flatten(Module):
    """Flattens dims start_dim..end_dim into one (a reshape view); backward reshapes back."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        for name, v in (("start_dim", start_dim), ("end_dim", end_dim)):
            if not _args.is_int(v):
                raise TypeError(f"Flatten: {name} must be an int, got {v!r}")
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)
        self._cache = None

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def forward(self, x: Any) -> Tensor:
        x = self._input(x)
        shape = tuple(x.shape)
        nd = len(shape)
        s = self.start_dim + nd if self.start_dim < 0 else self.start_dim
        e = self.end_dim + nd if self.end_dim < 0 else self.end_dim
        if nd == 0 or not (0 <= s < nd and 0 <= e < nd) or s > e:
            raise ValueError(f"{self._name()}: cannot flatten dims {self.start_dim}..{self.end_dim} of an input "
                             f"of shape {shape}")
        n = 1
        for d in shape[s:e + 1]:
            n *= d
        self._cache = shape
        return x.reshape(*shape[:s], n, *shape[e + 1:])

    def backward(self, grad_output: Any) -> Tensor:
        if self._cache is None:
            raise self._no_cache()
        shape, self._cache = self._cache, None
        return self._call_core(self._input(grad_output).reshape, *shape)
