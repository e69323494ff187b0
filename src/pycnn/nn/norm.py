"""BatchNorm1d and BatchNorm2d."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .. import _args, _core
from .. import functional as F
from ..tensor import Tensor, as_tensor, full, int64, ones, zeros
from .module import Module
from .parameter import Parameter, param_dtype

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    _ranks: tuple = ()
    _shape_text = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        name = type(self).__name__
        if not _args.is_int(num_features):
            raise TypeError(f"{name}: num_features must be an int, got {num_features!r}")
        if int(num_features) < 1:
            raise ValueError(f"{name}: num_features must be positive, got {num_features}")
        self.num_features = int(num_features)
        self.eps = _args.eps(eps, name)
        self.momentum = None if momentum is None else _args.momentum(momentum, name)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        dt = param_dtype(dtype, name)
        C = self.num_features
        if self.affine:
            self.weight = Parameter(full((C,), 1.0, dtype=dt))
            self.bias = Parameter(zeros(C, dtype=dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", zeros(C, dtype=dt))
            self.register_buffer("running_var", full((C,), 1.0, dtype=dt))
            self.register_buffer("num_batches_tracked", zeros((), dtype=int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        if device is not None:
            self.to(device)
        self._cache = None

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.fill_(0.0)
            self.running_var.fill_(1.0)
            self.num_batches_tracked.fill_(0)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            self.weight.data.fill_(1.0)
            self.bias.data.fill_(0.0)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")

    def _check(self, x: Any) -> Tensor:
        x = self._input(x)
        if x.ndim not in self._ranks or x.shape[1] != self.num_features:
            raise ValueError(f"{self._name()}: expected input of shape "
                             f"{self._shape_text.format(C=self.num_features)}, got {tuple(x.shape)}")
        return x

    def forward(self, x: Any) -> Tensor:
        x = self._check(x)
        w = None if self.weight is None else self.weight.data
        b = None if self.bias is None else self.bias.data
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats:
            per_channel = x.numel() // self.num_features
            if per_channel <= 1:
                raise ValueError(f"{self._name()}: expected more than 1 value per channel when training, "
                                 f"got input of shape {tuple(x.shape)}")
            update = self.training and self.track_running_stats
            momentum, n = 0.0, 0
            nbt = self.num_batches_tracked
            # On a GPU, reading the counter would be a host sync every step (and would keep the
            # step out of a CUDA graph): with a fixed momentum it is incremented on the device.
            count_on_device = update and self.momentum is not None and nbt.is_cuda
            if update and not count_on_device:
                n = int(nbt.item()) + 1
                momentum = 1.0 / n if self.momentum is None else self.momentum
            elif update:
                momentum = self.momentum
            rm = self.running_mean if update else None
            rv = self.running_var if update else None
            y, mean, invstd = self._call_core(F.batch_norm_train, x, w, b, rm, rv, momentum, self.eps)
            if count_on_device:
                one = self.__dict__.get("_device_one")
                if one is None or one.device != nbt.device:  # made once, in the warm-up step
                    one = self.__dict__["_device_one"] = ones((), dtype=int64, device=nbt.device)
                _core.add_(nbt, one, 1.0)
            elif update:
                nbt.fill_(n)
            self._cache = ("train", x, mean, invstd)
        else:
            y = self._call_core(F.batch_norm_eval, x, self.running_mean, self.running_var, w, b, self.eps)
            self._cache = ("eval", x)
        return y

    def backward(self, grad_output: Any) -> Tensor:
        if self._cache is None:
            raise self._no_cache()
        cache, self._cache = self._cache, None
        g = self._input(grad_output)
        w = None if self.weight is None else self.weight.data
        if cache[0] == "train":
            _, x, mean, invstd = cache
            dx, dw, db = self._call_core(F.batch_norm_backward, g, x, w, mean, invstd)
        else:
            # Eval mode is a fixed per-channel affine map y = (x - rm) * invstd * w + b:
            # dx = g * w / sqrt(rv + eps) is the eval forward of g with mean 0 and no bias.
            _, x = cache
            zero = zeros(self.num_features, dtype=x.dtype, device=x.device)
            dx = self._call_core(F.batch_norm_eval, g, zero, self.running_var, w, None, self.eps)
            dw = db = None
            want_w = self.weight is not None and self.weight.requires_grad
            want_b = self.bias is not None and self.bias.requires_grad
            if want_w or want_b:
                # dweight = sum(g * xhat), dbias = sum(g): the training backward with the running
                # statistics in place of the batch ones gives exactly these (its dx is discarded).
                rv = np.asarray(self.running_var.numpy(), dtype=np.float64)
                invstd = as_tensor(np.ascontiguousarray(1.0 / np.sqrt(rv + self.eps), dtype=x.dtype.numpy))
                if x.device != "cpu":
                    invstd = invstd.to(x.device)
                _, dw, db = self._call_core(F.batch_norm_backward, g, x, w, self.running_mean, invstd)
        self._accumulate(self.weight, dw)
        self._accumulate(self.bias, db)
        return dx


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L), statistics per channel C."""

    _ranks = (2, 3)
    _shape_text = "(N, {C}) or (N, {C}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W), statistics per channel C."""

    _ranks = (4,)
    _shape_text = "(N, {C}, H, W)"
