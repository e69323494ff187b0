"""In-place parameter initialisation (torch.nn.init names and defaults).

Every function fills a Tensor or an nn.Parameter in place with values drawn from
``pycnn._random.generator()`` (so ``pc.manual_seed`` repeats it) and returns its argument.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import numpy as np

from .. import _random
from ..tensor import Tensor, from_numpy, int64
from .parameter import Parameter

__all__ = [
    "calculate_gain", "uniform_", "normal_", "constant_", "ones_", "zeros_", "xavier_uniform_",
    "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
]


def _target(t: Any, fn: str) -> Tensor:
    if isinstance(t, Parameter):
        t = t.data
    if not isinstance(t, Tensor):
        raise TypeError(f"nn.init.{fn}: expected a pycnn Tensor or an nn.Parameter, got {type(t).__name__}")
    if t.dtype == int64 and fn not in ("zeros_", "ones_", "constant_"):
        raise TypeError(f"nn.init.{fn}: expected a floating-point tensor, got int64")
    return t


def _write(t: Tensor, values: np.ndarray) -> None:
    arr = np.ascontiguousarray(values.reshape(t.shape), dtype=t.dtype.numpy)
    t.copy_(from_numpy(arr))  # copies across devices too


def calculate_gain(nonlinearity: str, param: Optional[float] = None) -> float:
    """The recommended gain of torch.nn.init.calculate_gain."""
    linear_fns = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                  "conv_transpose3d"]
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(t: Any) -> Tuple[int, int]:
    shape = tuple(t.shape)
    if len(shape) < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions "
                         f"(shape {shape})")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fan(t: Any, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: Any, a: float = 0.0, b: float = 1.0) -> Any:
    t = _target(tensor, "uniform_")
    _write(t, _random.generator().uniform(float(a), float(b), size=t.shape))
    return tensor


def normal_(tensor: Any, mean: float = 0.0, std: float = 1.0) -> Any:
    t = _target(tensor, "normal_")
    if std < 0:
        raise ValueError(f"nn.init.normal_: std must be >= 0, got {std}")
    _write(t, _random.generator().normal(float(mean), float(std), size=t.shape))
    return tensor


def constant_(tensor: Any, val: float) -> Any:
    _target(tensor, "constant_").fill_(float(val))
    return tensor


def ones_(tensor: Any) -> Any:
    return constant_(tensor, 1.0)


def zeros_(tensor: Any) -> Any:
    return constant_(tensor, 0.0)


def xavier_uniform_(tensor: Any, gain: float = 1.0) -> Any:
    t = _target(tensor, "xavier_uniform_")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    bound = float(gain) * math.sqrt(6.0 / float(fan_in + fan_out))
    _write(t, _random.generator().uniform(-bound, bound, size=t.shape))
    return tensor


def xavier_normal_(tensor: Any, gain: float = 1.0) -> Any:
    t = _target(tensor, "xavier_normal_")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    std = float(gain) * math.sqrt(2.0 / float(fan_in + fan_out))
    _write(t, _random.generator().normal(0.0, std, size=t.shape))
    return tensor


def kaiming_uniform_(tensor: Any, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Any:
    """U(-bound, bound), bound = gain * sqrt(3 / fan); PyTorch's conv/linear default is a=sqrt(5)
    (bound = 1/sqrt(fan_in))."""
    t = _target(tensor, "kaiming_uniform_")
    fan = _fan(t, mode)
    if fan == 0:
        return tensor
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(fan)
    _write(t, _random.generator().uniform(-bound, bound, size=t.shape))
    return tensor


def kaiming_normal_(tensor: Any, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Any:
    t = _target(tensor, "kaiming_normal_")
    fan = _fan(t, mode)
    if fan == 0:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    _write(t, _random.generator().normal(0.0, std, size=t.shape))
    return tensor
