"""Functional ops: forward and backward of every layer, one `_core` call each.

Each function normalises its arguments (int -> pair, ``"same"``/``"valid"`` padding -> the
``(top, bottom, left, right)`` 4-tuple, pool ``stride=None`` -> kernel size), converts NumPy
arrays (and ``nn.Parameter``) to Tensors, and calls the C++ core, which checks shapes, dtypes and
devices once.  Bad argument kinds raise ``TypeError``, bad values ``ValueError``; both name the
function.  Names and defaults follow ``torch.nn.functional``; the ``*_backward`` functions are
pycnn's own: layers call them from ``Module.backward``, and pycnn.autograd (which wraps the
differentiable ops here at import, see autograd/functional_rules.py) calls them from the tape.
"""
from __future__ import annotations

from typing import Any, Sequence

from . import _args, _core
from ._args import same_padding  # one of functional's public ops (see __all__)
from .tensor import Tensor

__all__ = [
    "conv2d", "conv2d_backward", "im2col", "conv_output_size", "same_padding",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
    "linear", "linear_backward",
    "relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "elu", "elu_backward",
    "sigmoid", "sigmoid_backward", "tanh", "tanh_backward", "softplus", "softplus_backward",
    "prelu", "prelu_backward",
    "softmax", "softmax_backward", "log_softmax",
    "cross_entropy", "cross_entropy_forward", "cross_entropy_backward", "mse_loss", "mse_loss_backward",
    "dropout", "dropout_backward",
    "batch_norm", "batch_norm_train", "batch_norm_eval", "batch_norm_backward",
    "add", "concat", "split",
]


# ----------------------------------------------------------------------------------------------
# output geometry (the argument rules are in _args.py)
# ----------------------------------------------------------------------------------------------
def conv_output_size(size: int, kernel_size: int, stride: int = 1, pad_lo: int = 0, pad_hi: int = 0,
                     dilation: int = 1) -> int:
    """Output length along one axis: (size + lo + hi - dilation*(k-1) - 1) // stride + 1."""
    return (size + pad_lo + pad_hi - dilation * (kernel_size - 1) - 1) // stride + 1


# ----------------------------------------------------------------------------------------------
# convolution
# ----------------------------------------------------------------------------------------------
def conv2d(x: Any, w: Any, b: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
           groups: int = 1) -> Tensor:
    """2-D cross-correlation (PyTorch's conv2d). x (N, C, H, W), w (O, C/groups, kh, kw), b (O,).

    padding: int, (ph, pw), (top, bottom, left, right), "valid" or "same" (stride 1 only; total
    dilation*(k-1) per axis with the odd pixel on the bottom/right).
    """
    x, w = _args.tensor_arg(x, "conv2d", "input"), _args.tensor_arg(w, "conv2d", "weight")
    b = _args.optional_tensor_arg(b, "conv2d", "bias")
    st, pad, dil, g = _args.conv_args("conv2d", w.shape, stride, padding, dilation, groups)
    return _core.conv2d_forward(x, w, b, st, pad, dil, g)


def conv2d_backward(grad_output: Any, x: Any, w: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                    groups: int = 1, need_dx: bool = True, need_dw: bool = True, need_db: bool = True):
    """Gradients of conv2d: (dx, dw, db), an entry None where it was not asked for."""
    fn = "conv2d_backward"
    dy = _args.tensor_arg(grad_output, fn, "grad_output")
    x, w = _args.tensor_arg(x, fn, "input"), _args.tensor_arg(w, fn, "weight")
    st, pad, dil, g = _args.conv_args(fn, w.shape, stride, padding, dilation, groups)
    return tuple(_core.conv2d_backward(dy, x, w, st, pad, dil, g, bool(need_dx), bool(need_dw), bool(need_db)))


def im2col(x: Any, kernel_size: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1) -> Tensor:
    """The (N, C*kh*kw, OH*OW) column matrix (torch.nn.functional.unfold's layout)."""
    x = _args.tensor_arg(x, "im2col", "input")
    k = _args.pair(kernel_size, "im2col", "kernel_size", 1)
    st = _args.pair(stride, "im2col", "stride", 1)
    dil = _args.pair(dilation, "im2col", "dilation", 1)
    pad = _args.conv_padding(padding, k, dil, st, "im2col")
    return _core.im2col(x, k, st, pad, dil)


# ----------------------------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------------------------
def max_pool2d(x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, return_indices: bool = False):
    """Max pooling (-inf padding, ties to the first maximum). With return_indices, (y, indices),
    indices int64 = h*W + w in each input plane (PyTorch's layout)."""
    x = _args.tensor_arg(x, "max_pool2d", "input")
    k, st, pad = _args.pool_args("max_pool2d", kernel_size, stride, padding)
    y, idx = _core.max_pool2d_forward(x, k, st, pad)
    return (y, idx) if return_indices else y


def max_pool2d_backward(grad_output: Any, indices: Any, input_shape: Sequence[int], kernel_size: Any = None,
                        stride: Any = None, padding: Any = 0) -> Tensor:
    """d/dx of max_pool2d from its indices. kernel_size/stride/padding (optional, as passed to
    max_pool2d) let the CUDA kernel run one thread per input element instead of one per plane."""
    fn = "max_pool2d_backward"
    geom = _args.pool_args(fn, kernel_size, stride, padding) if kernel_size is not None else (None, None, None)
    return _core.max_pool2d_backward(_args.tensor_arg(grad_output, fn, "grad_output"),
                                     _args.tensor_arg(indices, fn, "indices"), _args.shape4(input_shape, fn), *geom)


def avg_pool2d(x: Any, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """Average pooling, count_include_pad=True, ceil_mode=False (PyTorch's defaults)."""
    x = _args.tensor_arg(x, "avg_pool2d", "input")
    k, st, pad = _args.pool_args("avg_pool2d", kernel_size, stride, padding)
    return _core.avg_pool2d_forward(x, k, st, pad)


def avg_pool2d_backward(grad_output: Any, input_shape: Sequence[int], kernel_size: Any, stride: Any = None,
                        padding: Any = 0) -> Tensor:
    fn = "avg_pool2d_backward"
    k, st, pad = _args.pool_args(fn, kernel_size, stride, padding)
    return _core.avg_pool2d_backward(_args.tensor_arg(grad_output, fn, "grad_output"), _args.shape4(input_shape, fn),
                                     k, st, pad)


def adaptive_avg_pool2d(x: Any, output_size: Any) -> Tensor:
    """Adaptive average pooling to `output_size` (int or pair; None keeps that input size)."""
    x = _args.tensor_arg(x, "adaptive_avg_pool2d", "input")
    return _core.adaptive_avg_pool2d_forward(x, _args.adaptive_size(output_size, x.shape, "adaptive_avg_pool2d"))


def adaptive_avg_pool2d_backward(grad_output: Any, input_shape: Sequence[int]) -> Tensor:
    fn = "adaptive_avg_pool2d_backward"
    return _core.adaptive_avg_pool2d_backward(_args.tensor_arg(grad_output, fn, "grad_output"),
                                              _args.shape4(input_shape, fn))


# ----------------------------------------------------------------------------------------------
# linear
# ----------------------------------------------------------------------------------------------
def linear(x: Any, w: Any, b: Any = None) -> Tensor:
    """y = x @ w.T + b; x (N, in), w (out, in), b (out,)."""
    return _core.linear_forward(_args.tensor_arg(x, "linear", "input"), _args.tensor_arg(w, "linear", "weight"),
                                _args.optional_tensor_arg(b, "linear", "bias"))


def linear_backward(grad_output: Any, x: Any, w: Any, need_dx: bool = True, need_dw: bool = True,
                    need_db: bool = True):
    """(dx, dw, db) of linear; an entry None where it was not asked for."""
    fn = "linear_backward"
    return tuple(_core.linear_backward(_args.tensor_arg(grad_output, fn, "grad_output"),
                                       _args.tensor_arg(x, fn, "input"), _args.tensor_arg(w, fn, "weight"),
                                       bool(need_dx), bool(need_dw), bool(need_db)))


# ----------------------------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------------------------
def _act(x: Any, kind: Any, alpha: float, fn: str) -> Tensor:
    return _core.activation_forward(_args.tensor_arg(x, fn, "input"), kind, alpha)


def _act_backward(grad_output: Any, x: Any, kind: Any, alpha: float, fn: str) -> Tensor:
    return _core.activation_backward(_args.tensor_arg(grad_output, fn, "grad_output"),
                                     _args.tensor_arg(x, fn, "input"), kind, alpha)


def relu(x: Any) -> Tensor:
    return _act(x, _core.Act.relu, 0.0, "relu")


def relu_backward(grad_output: Any, x: Any) -> Tensor:
    return _act_backward(grad_output, x, _core.Act.relu, 0.0, "relu_backward")


def leaky_relu(x: Any, negative_slope: float = 0.01) -> Tensor:
    return _act(x, _core.Act.leaky_relu, _args.number(negative_slope, "leaky_relu", "negative_slope"), "leaky_relu")


def leaky_relu_backward(grad_output: Any, x: Any, negative_slope: float = 0.01) -> Tensor:
    fn = "leaky_relu_backward"
    return _act_backward(grad_output, x, _core.Act.leaky_relu, _args.number(negative_slope, fn, "negative_slope"), fn)


def elu(x: Any, alpha: float = 1.0) -> Tensor:
    return _act(x, _core.Act.elu, _args.number(alpha, "elu", "alpha"), "elu")


def elu_backward(grad_output: Any, x: Any, alpha: float = 1.0) -> Tensor:
    return _act_backward(grad_output, x, _core.Act.elu, _args.number(alpha, "elu_backward", "alpha"), "elu_backward")


def sigmoid(x: Any) -> Tensor:
    return _act(x, _core.Act.sigmoid, 0.0, "sigmoid")


def sigmoid_backward(grad_output: Any, x: Any) -> Tensor:
    """Takes the op's INPUT x (not its output)."""
    return _act_backward(grad_output, x, _core.Act.sigmoid, 0.0, "sigmoid_backward")


def tanh(x: Any) -> Tensor:
    return _act(x, _core.Act.tanh, 0.0, "tanh")


def tanh_backward(grad_output: Any, x: Any) -> Tensor:
    """Takes the op's INPUT x (not its output)."""
    return _act_backward(grad_output, x, _core.Act.tanh, 0.0, "tanh_backward")


def softplus(x: Any, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta*x)) / beta, and x where beta*x > threshold."""
    return _act(x, _core.Act.softplus, _args.softplus_beta(beta, threshold, "softplus"), "softplus")


def softplus_backward(grad_output: Any, x: Any, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    fn = "softplus_backward"
    return _act_backward(grad_output, x, _core.Act.softplus, _args.softplus_beta(beta, threshold, fn), fn)


def prelu(x: Any, weight: Any) -> Tensor:
    """x where x > 0, weight*x elsewhere; weight (1,) or (C,) over dim 1."""
    return _core.prelu_forward(_args.tensor_arg(x, "prelu", "input"), _args.tensor_arg(weight, "prelu", "weight"))


def prelu_backward(grad_output: Any, x: Any, weight: Any):
    """(dx, dweight)."""
    fn = "prelu_backward"
    return tuple(_core.prelu_backward(_args.tensor_arg(grad_output, fn, "grad_output"),
                                      _args.tensor_arg(x, fn, "input"), _args.tensor_arg(weight, fn, "weight")))


# ----------------------------------------------------------------------------------------------
# softmax and losses
# ----------------------------------------------------------------------------------------------
def _as_rows(x: Tensor, dim: Any, fn: str) -> tuple[Tensor, tuple[int, ...]]:
    """View x as (rows, C) with the softmax dim last; only the last dim (or dim 1 of a 2-D input) is
    supported (the core has no transpose)."""
    if not _args.is_int(dim):
        raise TypeError(f"{fn}: dim must be an int, got {dim!r}")
    nd = len(x.shape)
    if nd == 0:
        raise ValueError(f"{fn}: expected an input of shape (N, C), got a 0-d tensor")
    d = int(dim) + nd if int(dim) < 0 else int(dim)
    if not 0 <= d < nd:
        raise ValueError(f"{fn}: dim {dim} out of range for an input of shape {tuple(x.shape)}")
    if d != nd - 1:
        raise ValueError(f"{fn}: only the last dimension is supported (dim=1 of an (N, C) input), got dim={dim} "
                         f"for an input of shape {tuple(x.shape)}")
    if nd == 2:
        return x, x.shape
    return x.reshape(-1, x.shape[-1]), x.shape


def softmax(x: Any, dim: int = 1) -> Tensor:
    """Softmax over `dim` (the last dimension: dim 1 of (N, C))."""
    x = _args.tensor_arg(x, "softmax", "input")
    rows, shape = _as_rows(x, dim, "softmax")
    y = _core.softmax_forward(rows)
    return y if len(shape) == 2 else y.reshape(*shape)


def softmax_backward(grad_output: Any, y: Any, dim: int = 1) -> Tensor:
    """dx = y * (g - sum(g * y)); `y` is softmax's OUTPUT."""
    fn = "softmax_backward"
    g, y = _args.tensor_arg(grad_output, fn, "grad_output"), _args.tensor_arg(y, fn, "output")
    yr, shape = _as_rows(y, dim, fn)
    gr = g if len(shape) == 2 else g.reshape(-1, shape[-1])
    dx = _core.softmax_backward(gr, yr)
    return dx if len(shape) == 2 else dx.reshape(*shape)


def log_softmax(x: Any, dim: int = 1) -> Tensor:
    x = _args.tensor_arg(x, "log_softmax", "input")
    rows, shape = _as_rows(x, dim, "log_softmax")
    y = _core.log_softmax_forward(rows)
    return y if len(shape) == 2 else y.reshape(*shape)


def cross_entropy_forward(input: Any, target: Any, reduction: str = "mean"):
    """cross_entropy with what its backward reads: (loss, probs, labels, scale), scale being N for
    'sum' and 1 for 'mean'; d loss / d logits is ``_core.cross_entropy_backward(probs, labels, g * scale)``
    (CrossEntropyLoss and the autograd rule use it so as not to compute the softmax twice)."""
    fn = "cross_entropy"
    logits = _args.tensor_arg(input, fn, "input")
    labels = _args.labels(target, fn, logits.device)
    loss, probs = _core.cross_entropy_forward(logits, labels)
    scale = 1.0
    if _args.reduction(reduction, fn) == "sum":
        scale = float(logits.shape[0])
        _core.scale_(loss, scale)
    return loss, probs, labels, scale


def cross_entropy(input: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Fused log-softmax + negative log-likelihood of raw logits (N, C) and int64 labels (N,);
    a tensor of shape ()."""
    return cross_entropy_forward(input, target, reduction)[0]


def cross_entropy_backward(input: Any, target: Any, grad: float = 1.0, reduction: str = "mean") -> Tensor:
    """d cross_entropy / d logits times `grad` (recomputes the softmax)."""
    fn = "cross_entropy_backward"
    logits = _args.tensor_arg(input, fn, "input")
    labels = _args.labels(target, fn, logits.device)
    _loss, probs = _core.cross_entropy_forward(logits, labels)
    scale = float(logits.shape[0]) if _args.reduction(reduction, fn) == "sum" else 1.0
    return _core.cross_entropy_backward(probs, labels, _args.number(grad, fn, "grad") * scale)


def mse_loss(input: Any, target: Any, reduction: str = "mean") -> Tensor:
    """mean((input - target)^2) (or the sum); a tensor of shape ()."""
    x = _args.tensor_arg(input, "mse_loss", "input")
    t = _args.target_like(target, x, "mse_loss")
    loss = _core.mse_forward(x, t)
    if _args.reduction(reduction, "mse_loss") == "sum":
        _core.scale_(loss, float(x.numel()))
    return loss


def mse_loss_backward(input: Any, target: Any, grad: float = 1.0, reduction: str = "mean") -> Tensor:
    fn = "mse_loss_backward"
    x = _args.tensor_arg(input, fn, "input")
    t = _args.target_like(target, x, fn)
    scale = float(x.numel()) if _args.reduction(reduction, fn) == "sum" else 1.0
    return _core.mse_backward(x, t, _args.number(grad, fn, "grad") * scale)


# ----------------------------------------------------------------------------------------------
# dropout and batch norm
# ----------------------------------------------------------------------------------------------
def dropout(x: Any, p: float = 0.5, training: bool = True, return_mask: bool = False):
    """Inverted dropout: zeroes elements with probability p and scales the rest by 1/(1-p).
    Identity when not training (the mask is then None). With return_mask, (y, mask)."""
    x = _args.tensor_arg(x, "dropout", "input")
    p = _args.probability(p, "dropout")
    if not training:
        return (x, None) if return_mask else x
    y, mask = _core.dropout_forward(x, p)
    return (y, mask) if return_mask else y


def dropout_backward(grad_output: Any, mask: Any) -> Tensor:
    fn = "dropout_backward"
    return _core.dropout_backward(_args.tensor_arg(grad_output, fn, "grad_output"), _args.tensor_arg(mask, fn, "mask"))


def batch_norm_train(x: Any, weight: Any = None, bias: Any = None, running_mean: Any = None,
                     running_var: Any = None, momentum: float = 0.1, eps: float = 1e-5):
    """Training-mode batch norm over every dim but 1: (y, save_mean, save_invstd). Updates the
    running statistics in place (unbiased variance) when they are given."""
    fn = "batch_norm"
    return tuple(_core.batch_norm_forward_train(
        _args.tensor_arg(x, fn, "input"), _args.optional_tensor_arg(weight, fn, "weight"),
        _args.optional_tensor_arg(bias, fn, "bias"), _args.optional_tensor_arg(running_mean, fn, "running_mean"),
        _args.optional_tensor_arg(running_var, fn, "running_var"), _args.momentum(momentum, fn), _args.eps(eps, fn)))


def batch_norm_eval(x: Any, running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,
                    eps: float = 1e-5) -> Tensor:
    fn = "batch_norm"
    return _core.batch_norm_forward_eval(
        _args.tensor_arg(x, fn, "input"), _args.optional_tensor_arg(weight, fn, "weight"),
        _args.optional_tensor_arg(bias, fn, "bias"), _args.tensor_arg(running_mean, fn, "running_mean"),
        _args.tensor_arg(running_var, fn, "running_var"), _args.eps(eps, fn))


def batch_norm(input: Any, running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """torch.nn.functional.batch_norm: batch statistics when training (updating the running ones
    when given), the running statistics otherwise."""
    if training:
        return batch_norm_train(input, weight, bias, running_mean, running_var, momentum, eps)[0]
    if running_mean is None or running_var is None:
        raise ValueError("batch_norm: running_mean and running_var are required when training=False")
    return batch_norm_eval(input, running_mean, running_var, weight, bias, eps)


def batch_norm_backward(grad_output: Any, x: Any, weight: Any, save_mean: Any, save_invstd: Any):
    """Training-mode gradients: (dx, dweight, dbias)."""
    fn = "batch_norm_backward"
    return tuple(_core.batch_norm_backward(
        _args.tensor_arg(grad_output, fn, "grad_output"), _args.tensor_arg(x, fn, "input"),
        _args.optional_tensor_arg(weight, fn, "weight"), _args.tensor_arg(save_mean, fn, "save_mean"),
        _args.tensor_arg(save_invstd, fn, "save_invstd")))


# ----------------------------------------------------------------------------------------------
# structural helpers used by Residual / Concat
# ----------------------------------------------------------------------------------------------
def add(a: Any, b: Any) -> Tensor:
    """a + b (same shape, dtype and device)."""
    return _core.add(_args.tensor_arg(a, "add", "a"), _args.tensor_arg(b, "add", "b"))


def concat(tensors: Sequence[Any], dim: int = 1) -> Tensor:
    if not _args.is_int(dim):
        raise TypeError(f"concat: dim must be an int, got {dim!r}")
    return _core.concat([_args.tensor_arg(t, "concat", "tensors") for t in tensors], int(dim))


def split(x: Any, sizes: Sequence[int], dim: int = 1) -> list:
    if not _args.is_int(dim):
        raise TypeError(f"split: dim must be an int, got {dim!r}")
    return list(_core.split(_args.tensor_arg(x, "split", "input"), [int(s) for s in sizes], int(dim)))
