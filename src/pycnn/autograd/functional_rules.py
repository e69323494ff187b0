"""pycnn.functional's differentiable ops (and pc.cat / pc.stack) as autograd Functions.

Each forward is the functional op itself and each backward its ``*_backward`` companion, so the
traced route computes exactly what the layers' explicit backwards compute. ``install()`` replaces
the names in pycnn.functional with wrappers that go straight to the op when nothing is recorded
(grad mode off, or inside a module with its own backward: the layers' own calls).
"""
from __future__ import annotations

import functools
import inspect
import sys
from typing import Any, Callable, Dict

from .. import _args, _core
from .. import functional as F
from ..tensor import Tensor
from .function import Function, _as_traced
from .grad_mode import per_thread

__all__ = ["install", "FUNCTIONS"]

_orig: Dict[str, Callable] = {}  # the functional ops before install() wrapped them


def _f(name: str) -> Callable:
    return _orig.get(name) or getattr(F, name)


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
        ctx.save_for_backward(x, w)
        ctx.geom, ctx.has_bias = (stride, padding, dilation, groups), b is not None
        return _f("conv2d")(x, w, b, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need = ctx.needs_input_grad
        dx, dw, db = _f("conv2d_backward")(g, x, w, *ctx.geom, need_dx=need[0], need_dw=need[1],
                                           need_db=ctx.has_bias and need[2])
        return dx, dw, db


class Linear(Function):
    @staticmethod
    def forward(ctx, x, w, b=None):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _f("linear")(x, w, b)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need = ctx.needs_input_grad
        return _f("linear_backward")(g, x, w, need[0], need[1], ctx.has_bias and need[2])


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride=None, padding=0, return_indices=False):
        y, idx = _f("max_pool2d")(x, kernel_size, stride, padding, return_indices=True)
        ctx.save_for_backward(idx)
        ctx.shape, ctx.geom = tuple(x.shape), (kernel_size, stride, padding)
        return (y, idx) if return_indices else y

    @staticmethod
    def backward(ctx, g, *_):
        (idx,) = ctx.saved_tensors
        return (_f("max_pool2d_backward")(g, idx, ctx.shape, *ctx.geom),)


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride=None, padding=0):
        ctx.shape, ctx.geom = tuple(x.shape), (kernel_size, stride, padding)
        return _f("avg_pool2d")(x, kernel_size, stride, padding)

    @staticmethod
    def backward(ctx, g):
        return (_f("avg_pool2d_backward")(g, ctx.shape, *ctx.geom),)


class AdaptiveAvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, output_size):
        ctx.shape = tuple(x.shape)
        return _f("adaptive_avg_pool2d")(x, output_size)

    @staticmethod
    def backward(ctx, g):
        return (_f("adaptive_avg_pool2d_backward")(g, ctx.shape),)


def _activation(name: str, n_params: int = 0) -> type:
    """An activation whose backward takes (grad, input, *params): relu, tanh, softplus, ..."""

    def forward(ctx, x, *params):
        ctx.save_for_backward(x)
        ctx.params = params
        return _f(name)(x, *params)

    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return (_f(name + "_backward")(g, x, *ctx.params),)

    return type(name.capitalize(), (Function,), {"forward": staticmethod(forward), "backward": staticmethod(backward)})


class PReLU(Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return _f("prelu")(x, w)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return _f("prelu_backward")(g, x, w)


def _over_dim(cls_name: str, name: str, backward_from_output: Callable) -> type:
    """softmax / log_softmax over `dim`: the backward reads the output, backward_from_output(g, y, dim)."""

    def forward(ctx, x, dim=1):
        y = _f(name)(x, dim)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return (backward_from_output(g, y, ctx.dim),)

    return type(cls_name, (Function,), {"forward": staticmethod(forward), "backward": staticmethod(backward)})


Softmax = _over_dim("Softmax", "softmax", lambda g, y, dim: _f("softmax_backward")(g, y, dim))
# dx = g - softmax(x) * sum(g) over the class dim
LogSoftmax = _over_dim("LogSoftmax", "log_softmax", lambda g, y, dim: g - y.exp() * g.sum(dim=dim, keepdim=True))


class CrossEntropy(Function):
    @staticmethod
    def forward(ctx, x, target, reduction="mean"):
        loss, probs, labels, scale = F.cross_entropy_forward(x, target, reduction)
        ctx.save_for_backward(probs, labels)
        ctx.scale = scale
        return loss

    @staticmethod
    def backward(ctx, g):
        probs, labels = ctx.saved_tensors
        return _core.cross_entropy_backward(probs, labels, float(g.item()) * ctx.scale), None


class MSELoss(Function):
    @staticmethod
    def forward(ctx, x, target, reduction="mean"):
        ctx.save_for_backward(x, target)
        ctx.reduction = reduction
        return _f("mse_loss")(x, target, reduction)

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        t = _args.target_like(t, x, "mse_loss")
        dx = _f("mse_loss_backward")(x, t, float(g.item()), ctx.reduction)
        return dx, (-dx if ctx.needs_input_grad[1] else None)


class Dropout(Function):
    @staticmethod
    def forward(ctx, x, p=0.5, training=True, return_mask=False):
        y, mask = _f("dropout")(x, p, training, return_mask=True)
        ctx.save_for_backward(mask)
        return (y, mask) if return_mask else y

    @staticmethod
    def backward(ctx, g, *_):
        (mask,) = ctx.saved_tensors
        return (g if mask is None else _f("dropout_backward")(g, mask),)


class BatchNorm(Function):
    """F.batch_norm: batch statistics when training (the op's own backward); a fixed per-channel
    affine map of the running statistics otherwise."""

    @staticmethod
    def forward(ctx, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                eps=1e-5):
        ctx.training, ctx.has_bias = bool(training), bias is not None
        if training:
            y, mean, invstd = F.batch_norm_train(x, weight, bias, running_mean, running_var, momentum, eps)
            ctx.save_for_backward(x, weight, mean, invstd)
            return y
        y = _f("batch_norm")(x, running_mean, running_var, weight, bias, False, momentum, eps)
        invstd = 1.0 / (_args.tensor_arg(running_var, "batch_norm", "running_var") + eps).sqrt()
        ctx.save_for_backward(x, weight, _args.tensor_arg(running_mean, "batch_norm", "running_mean"), invstd)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w, mean, invstd = ctx.saved_tensors
        if ctx.training:
            dx, dw, db = _f("batch_norm_backward")(g, x, w, mean, invstd)
        else:  # y = (x - mean) * invstd * w + b over channel dim 1
            shape = [1, -1] + [1] * (x.ndim - 2)
            scale = invstd if w is None else invstd * w
            dx = g * scale.reshape(*shape)
            dims = tuple(d for d in range(x.ndim) if d != 1)
            xhat = (x - mean.reshape(*shape)) * invstd.reshape(*shape)
            dw = (g * xhat).sum(dim=dims) if w is not None else None
            db = g.sum(dim=dims)
        return (dx, None, None, dw, db if ctx.has_bias else None)


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        return _f("add")(a, b)

    @staticmethod
    def backward(ctx, g):
        return g, g


class Concat(Function):
    """concat / pc.cat of n tensors along dim (``op`` is the forward): backward splits the gradient."""

    @staticmethod
    def forward(ctx, op, dim, *tensors):
        ctx.sizes, ctx.dtypes = [t.shape[dim] for t in tensors], [t.dtype for t in tensors]
        ctx.dim = dim
        return op(list(tensors), dim)

    @staticmethod
    def backward(ctx, g):
        parts = _core.split(g, ctx.sizes, ctx.dim % g.ndim)
        return (None, None) + tuple(p if p.dtype == dt else p.to(dt) for p, dt in zip(parts, ctx.dtypes))


class Stack(Function):
    """pc.stack (``op`` is the forward): backward splits the gradient and drops the new dim."""

    @staticmethod
    def forward(ctx, op, dim, *tensors):
        ctx.dim, ctx.dtypes = dim, [t.dtype for t in tensors]
        return op(list(tensors), dim)

    @staticmethod
    def backward(ctx, g):
        d = ctx.dim % g.ndim
        parts = _core.split(g, [1] * g.shape[d], d)
        return (None, None) + tuple((p if p.dtype == dt else p.to(dt)).squeeze(d) for p, dt in zip(parts, ctx.dtypes))


class Split(Function):
    @staticmethod
    def forward(ctx, x, sizes, dim=1):
        ctx.sizes, ctx.dim = [int(v) for v in sizes], dim
        ctx.like = _core.empty([0], x.dtype, x.device)
        ctx.shape = tuple(x.shape)
        return list(_f("split")(x, sizes, dim))

    @staticmethod
    def backward(ctx, *grads):
        d = ctx.dim % len(ctx.shape)
        parts = []
        for i, size in enumerate(ctx.sizes):
            g = grads[i] if i < len(grads) else None
            if g is None:  # a part that got no gradient: zeros
                shape = list(ctx.shape)
                shape[d] = size
                g = _core.zeros(shape, ctx.like.dtype, ctx.like.device)
            parts.append(g)
        return (_core.concat(parts, d), None, None)


FUNCTIONS: Dict[str, type] = {
    "conv2d": Conv2d, "linear": Linear, "max_pool2d": MaxPool2d, "avg_pool2d": AvgPool2d,
    "adaptive_avg_pool2d": AdaptiveAvgPool2d,
    "relu": _activation("relu"), "leaky_relu": _activation("leaky_relu"), "elu": _activation("elu"),
    "sigmoid": _activation("sigmoid"), "tanh": _activation("tanh"), "softplus": _activation("softplus"),
    "prelu": PReLU, "softmax": Softmax, "log_softmax": LogSoftmax, "cross_entropy": CrossEntropy,
    "mse_loss": MSELoss, "dropout": Dropout, "batch_norm": BatchNorm, "add": Add, "split": Split,
}


def _may_need_grad(values: Any) -> bool:
    """Some value is a Tensor that requires grad, or stands for one on the tape (an nn.Parameter);
    defaults never are, so the passed values decide whether an op is recorded."""
    for v in values:
        if isinstance(v, Tensor):
            if v._rg:
                return True
        elif getattr(type(v), "_traced", None) is not None:
            return True
    return False


def _traced(name: str, fn: Callable, cls: type) -> Callable:
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def op(*args: Any, **kwargs: Any) -> Any:
        s = per_thread.state
        if s.capture is not None or not s.enabled or not (_may_need_grad(args) or _may_need_grad(kwargs.values())):
            return fn(*args, **kwargs)  # nothing to record: skip binding the signature (~20 us a call)
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        vals = [_as_traced(v) for v in bound.arguments.values()]
        if not any(isinstance(v, Tensor) and v._rg for v in vals):
            return fn(*args, **kwargs)
        if name == "dropout" and not vals[2]:  # the identity: the output is the input itself
            return fn(*args, **kwargs)
        return cls.apply(*vals)

    op._pycnn_traced = True  # type: ignore[attr-defined]
    return op


def _traced_join(fn: Callable, cls: type, default_dim: int) -> Callable:
    """concat(tensors, dim) / pc.cat / pc.stack: the tensors come as one list."""

    @functools.wraps(fn)
    def op(tensors: Any, dim: int = default_dim) -> Any:
        s = per_thread.state
        tensors = list(tensors)
        if s.capture is not None or not s.enabled:
            return fn(tensors, dim)
        tensors = [_as_traced(t) for t in tensors]
        if not any(isinstance(t, Tensor) and t._rg for t in tensors):
            return fn(tensors, dim)
        return cls.apply(fn, dim, *tensors)

    op._pycnn_traced = True  # type: ignore[attr-defined]
    return op


def install() -> None:
    """Wraps pycnn.functional's differentiable ops (and pc.cat / pc.stack) once."""
    for name, cls in FUNCTIONS.items():
        fn = getattr(F, name)
        if getattr(fn, "_pycnn_traced", False):
            continue
        _orig[name] = fn
        setattr(F, name, _traced(name, fn, cls))
    if not getattr(F.concat, "_pycnn_traced", False):
        _orig["concat"] = F.concat
        F.concat = _traced_join(F.concat, Concat, 1)
    pkg, tensor_module = sys.modules.get("pycnn"), sys.modules["pycnn.tensor"]  # (pycnn.tensor is also a function)
    for name, cls in (("cat", Concat), ("stack", Stack)):
        fn = getattr(tensor_module, name, None)
        if fn is None or getattr(fn, "_pycnn_traced", False):
            continue
        wrapped = _traced_join(fn, cls, 0)
        setattr(tensor_module, name, wrapped)
        if pkg is not None and getattr(pkg, name, None) is fn:
            setattr(pkg, name, wrapped)
