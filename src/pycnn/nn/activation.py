"""Activations: ReLU, LeakyReLU, PReLU, ELU, Sigmoid, Tanh, Softplus, Softmax."""
from __future__ import annotations

from typing import Any, Tuple

from .. import _args, functional as F
from ..tensor import Tensor, full
from .module import Module
from .parameter import Parameter, param_dtype

__all__ = ["ReLU", "LeakyReLU", "PReLU", "ELU", "Sigmoid", "Tanh", "Softplus", "Softmax"]


class _Elementwise(Module):
    """f(x) elementwise: forward ``F.<_op>(x, *numbers)``, backward ``F.<_op>_backward(g, x, *numbers)``,
    the numbers being the layer's attributes named in ``_numbers`` (in that order; also its repr).
    Backward needs the input x (cached by forward). A subclass computing something else overrides
    _fwd and _bwd."""

    _op = ""
    _numbers: Tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)}" for name in self._numbers)

    def _fwd(self, x: Tensor) -> Tensor:
        return getattr(F, self._op)(x, *[getattr(self, name) for name in self._numbers])

    def _bwd(self, g: Tensor, x: Tensor) -> Tensor:
        return getattr(F, self._op + "_backward")(g, x, *[getattr(self, name) for name in self._numbers])

    def forward(self, x: Any) -> Tensor:
        x = self._input(x)
        y = self._call_core(self._fwd, x)
        self._cache = x
        return y

    def backward(self, grad_output: Any) -> Tensor:
        x = self._cache
        if x is None:
            raise self._no_cache()
        dx = self._call_core(self._bwd, self._input(grad_output), x)
        self._cache = None
        return dx


class ReLU(_Elementwise):
    _op = "relu"

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()


class LeakyReLU(_Elementwise):
    _op, _numbers = "leaky_relu", ("negative_slope",)

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = _args.number(negative_slope, "LeakyReLU", "negative_slope")


class ELU(_Elementwise):
    _op, _numbers = "elu", ("alpha",)

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha = _args.number(alpha, "ELU", "alpha")


class Sigmoid(_Elementwise):
    _op = "sigmoid"


class Tanh(_Elementwise):
    _op = "tanh"


class Softplus(_Elementwise):
    """log(1 + exp(beta*x)) / beta (x itself where beta*x > threshold; only 20 is supported)."""

    _op, _numbers = "softplus", ("beta", "threshold")

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = _args.softplus_beta(beta, threshold, "Softplus")
        self.threshold = float(threshold)


class PReLU(_Elementwise):
    """x where x > 0, a*x elsewhere, with a learnable slope: one shared (num_parameters=1) or one
    per channel (num_parameters=C, dim 1 of the input), initialised to `init`."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if not _args.is_int(num_parameters):
            raise TypeError(f"PReLU: num_parameters must be an int, got {num_parameters!r}")
        if int(num_parameters) < 1:
            raise ValueError(f"PReLU: num_parameters must be positive, got {num_parameters}")
        self.num_parameters = int(num_parameters)
        self.init = _args.number(init, "PReLU", "init")
        dt = param_dtype(dtype, "PReLU")
        self.weight = Parameter(full((self.num_parameters,), self.init, dtype=dt))
        if device is not None:
            self.to(device)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"

    def forward(self, x: Any) -> Tensor:
        x = self._input(x)
        if self.num_parameters > 1 and (x.ndim < 2 or x.shape[1] != self.num_parameters):
            raise ValueError(f"{self._name()}: expected input of shape (N, {self.num_parameters}, ...), "
                             f"got {tuple(x.shape)}")
        return super().forward(x)

    def _fwd(self, x: Tensor) -> Tensor:
        return F.prelu(x, self.weight.data)

    def _bwd(self, g: Tensor, x: Tensor) -> Tensor:
        dx, dw = F.prelu_backward(g, x, self.weight.data)
        self._accumulate(self.weight, dw)
        return dx


class Softmax(Module):
    """Softmax over `dim` (the class dimension of (N, C): dim=1 or -1)."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        if not _args.is_int(dim):
            raise TypeError(f"Softmax: dim must be an int, got {dim!r}")
        self.dim = int(dim)
        self._cache = None

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, x: Any) -> Tensor:
        x = self._input(x)
        y = self._call_core(F.softmax, x, self.dim)
        self._cache = y
        return y

    def backward(self, grad_output: Any) -> Tensor:
        y = self._cache
        if y is None:
            raise self._no_cache()
        dx = self._call_core(F.softmax_backward, self._input(grad_output), y, self.dim)
        self._cache = None
        return dx
