"""NumPy float64 reference of batch norm: training mode (batch statistics) and its backward, eval mode
(running statistics), the running-statistics update.  Part of the reference in tests/reference.py,
which re-exports every function here (`ref.batch_norm_train`); like it, this file must never import
pycnn.
"""
from __future__ import annotations

import numpy as np


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _bn_axes_shape(x):
    if x.ndim < 2:
        raise ValueError(f"batch norm needs (N, C, ...) input, got {x.shape}")
    axes = tuple(a for a in range(x.ndim) if a != 1)
    shape = [1] * x.ndim
    shape[1] = x.shape[1]
    return axes, tuple(shape)


def batch_norm_train(x, gamma, beta, eps=1e-5):
    """Training-mode batch norm over all dims but 1. Returns (y, mean, var_biased), stats (C,).
    gamma/beta may be None (affine=False)."""
    x = _f64(x)
    axes, shape = _bn_axes_shape(x)
    mean = x.mean(axis=axes)
    var = ((x - mean.reshape(shape)) ** 2).mean(axis=axes)
    xhat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    y = xhat
    if gamma is not None:
        y = y * _f64(gamma).reshape(shape)
    if beta is not None:
        y = y + _f64(beta).reshape(shape)
    return y, mean, var


def batch_norm_backward(dy, x, gamma, eps=1e-5):
    """Training-mode gradients (batch statistics depend on x). Returns (dx, dgamma, dbeta).

    With m elements per channel, xhat = (x - mean)/sqrt(var + eps), g = dy*gamma:
    dx = (g - mean(g) - xhat*mean(g*xhat)) / sqrt(var + eps)."""
    dy, x = _f64(dy), _f64(x)
    axes, shape = _bn_axes_shape(x)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * invstd
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    g = dy if gamma is None else dy * _f64(gamma).reshape(shape)
    dx = invstd * (g - g.mean(axis=axes, keepdims=True)
                   - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    return dx, dgamma, dbeta


def batch_norm_eval(x, running_mean, running_var, gamma, beta, eps=1e-5):
    x = _f64(x)
    _, shape = _bn_axes_shape(x)
    y = (x - _f64(running_mean).reshape(shape)) / np.sqrt(_f64(running_var).reshape(shape) + eps)
    if gamma is not None:
        y = y * _f64(gamma).reshape(shape)
    if beta is not None:
        y = y + _f64(beta).reshape(shape)
    return y


def update_running_stats(running_mean, running_var, mean, var_biased, n, momentum=0.1):
    """PyTorch: new = (1-momentum)*old + momentum*stat, the variance stat being the UNBIASED
    var_biased * n/(n-1), n = number of elements per channel. Returns (new_mean, new_var)."""
    n = int(n)
    if n < 2:
        raise ValueError(f"need more than 1 value per channel, got n={n}")
    unbiased = _f64(var_biased) * n / (n - 1)
    new_mean = (1.0 - momentum) * _f64(running_mean) + momentum * _f64(mean)
    new_var = (1.0 - momentum) * _f64(running_var) + momentum * unbiased
    return new_mean, new_var
