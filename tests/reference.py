"""NumPy float64 reference implementation of every pycnn op.

Written for clarity and obvious correctness, not speed: convolutions and pools loop over the kernel
offsets (i, j) and vectorise over batch, channels and output positions.  Layout is NCHW.  Every
function takes and returns NumPy arrays (inputs are converted to float64; integer outputs such as
max-pool indices are int64).  The test suite uses these functions to check the C++ core; this file
must never import pycnn.

Argument conventions (as in PyTorch):
- ``kernel_size``, ``stride``, ``dilation``: an int or a pair ``(h, w)``.
- ``padding``: an int, a pair ``(ph, pw)`` (symmetric), or a 4-tuple
  ``(top, bottom, left, right)`` (asymmetric).
- Pooling ``stride=None`` means ``stride = kernel_size``.

Batch norm is in reference_batchnorm.py, re-exported here.
"""
from __future__ import annotations

import numpy as np

from reference_batchnorm import batch_norm_backward, batch_norm_eval, batch_norm_train, update_running_stats

__all__ = [
    "conv_out_size", "conv2d", "conv2d_backward", "im2col", "col2im",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
    "linear", "linear_backward",
    "relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "elu", "elu_backward",
    "sigmoid", "sigmoid_backward", "tanh", "tanh_backward", "softplus", "softplus_backward",
    "prelu", "prelu_backward",
    "softmax", "softmax_backward", "log_softmax", "log_softmax_backward",
    "cross_entropy", "cross_entropy_backward", "mse_loss", "mse_loss_backward",
    "batch_norm_train", "batch_norm_backward", "batch_norm_eval", "update_running_stats",
    "sgd_step", "numeric_grad",
]


# ----------------------------------------------------------------------------------------------
# argument helpers
# ----------------------------------------------------------------------------------------------
def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _pair(v, name="argument"):
    """int -> (v, v); pair -> tuple of two ints."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    v = tuple(int(t) for t in v)
    if len(v) == 1:
        return v[0], v[0]
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v}")
    return v


def _pad4(p):
    """int -> (p,p,p,p); (ph, pw) -> (ph,ph,pw,pw); (top,bottom,left,right) unchanged."""
    if isinstance(p, (int, np.integer)):
        p = int(p)
        return p, p, p, p
    p = tuple(int(t) for t in p)
    if len(p) == 1:
        return p * 4
    if len(p) == 2:
        return p[0], p[0], p[1], p[1]
    if len(p) == 4:
        return p
    raise ValueError(f"padding must be an int, a pair or (top, bottom, left, right), got {p}")


def conv_out_size(size, k, stride=1, pad_lo=0, pad_hi=0, dilation=1):
    """Output length along one spatial axis: (size + lo + hi - d*(k-1) - 1)//s + 1."""
    return (size + pad_lo + pad_hi - dilation * (k - 1) - 1) // stride + 1


def _geometry(x_shape, kernel_size, stride, padding, dilation):
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    top, bottom, left, right = _pad4(padding)
    H, W = x_shape[-2], x_shape[-1]
    OH = conv_out_size(H, kh, sh, top, bottom, dh)
    OW = conv_out_size(W, kw, sw, left, right, dw)
    if OH <= 0 or OW <= 0:
        raise ValueError(f"output size would be {OH}x{OW} for input {H}x{W}")
    return (kh, kw), (sh, sw), (top, bottom, left, right), (dh, dw), (OH, OW)


def _window(i, j, stride, dilation, out_hw):
    """Slices into the PADDED input picking, for every output position (oh, ow), the element at
    kernel offset (i, j): padded row oh*sh + i*dh, padded column ow*sw + j*dw."""
    (sh, sw), (dh, dw), (OH, OW) = stride, dilation, out_hw
    return (slice(i * dh, i * dh + sh * (OH - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (OW - 1) + 1, sw))


def _pad(x, pads, value=0.0):
    top, bottom, left, right = pads
    if min(pads) < 0:
        raise ValueError(f"negative padding {pads}")
    widths = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    return np.pad(x, widths, mode="constant", constant_values=value)


# ----------------------------------------------------------------------------------------------
# convolution
# ----------------------------------------------------------------------------------------------
def conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Cross-correlation (PyTorch conv2d). x (N,C,H,W), w (O, C/groups, kh, kw), b (O,) or None.

    y[n, o, oh, ow] = b[o] + sum_{c in group(o), i, j}
                      w[o, c, i, j] * xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]
    """
    x, w = _f64(x), _f64(w)
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    G = int(groups)
    if G < 1 or C != Cg * G or O % G != 0:
        raise ValueError(f"bad groups={G} for x {x.shape}, w {w.shape}")
    _, st, pads, dil, (OH, OW) = _geometry(x.shape, (kh, kw), stride, padding, dilation)
    xp = _pad(x, pads)
    Og = O // G
    wg = w.reshape(G, Og, Cg, kh, kw)
    y = np.zeros((N, G, Og, OH, OW))
    for i in range(kh):
        for j in range(kw):
            shl, swl = _window(i, j, st, dil, (OH, OW))
            patch = xp[:, :, shl, swl].reshape(N, G, Cg, OH, OW)
            y += np.einsum("ngcxy,goc->ngoxy", patch, wg[:, :, :, i, j])
    y = y.reshape(N, O, OH, OW)
    if b is not None:
        y = y + _f64(b).reshape(1, O, 1, 1)
    return y


def conv2d_backward(dy, x, w, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Gradients of conv2d: returns (dx, dw, db), db = dy.sum((0, 2, 3))."""
    dy, x, w = _f64(dy), _f64(x), _f64(w)
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    G = int(groups)
    if G < 1 or C != Cg * G or O % G != 0:
        raise ValueError(f"bad groups={G} for x {x.shape}, w {w.shape}")
    _, st, pads, dil, (OH, OW) = _geometry(x.shape, (kh, kw), stride, padding, dilation)
    if dy.shape != (N, O, OH, OW):
        raise ValueError(f"dy has shape {dy.shape}, expected {(N, O, OH, OW)}")
    top, bottom, left, right = pads
    xp = _pad(x, pads)
    Og = O // G
    wg = w.reshape(G, Og, Cg, kh, kw)
    dyg = dy.reshape(N, G, Og, OH, OW)
    dxp = np.zeros_like(xp)
    dwg = np.zeros_like(wg)
    for i in range(kh):
        for j in range(kw):
            shl, swl = _window(i, j, st, dil, (OH, OW))
            patch = xp[:, :, shl, swl].reshape(N, G, Cg, OH, OW)
            dwg[:, :, :, i, j] = np.einsum("ngoxy,ngcxy->goc", dyg, patch)
            dpatch = np.einsum("ngoxy,goc->ngcxy", dyg, wg[:, :, :, i, j])
            dxp[:, :, shl, swl] += dpatch.reshape(N, C, OH, OW)
    dx = dxp[:, :, top:top + H, left:left + W].copy()
    dw = dwg.reshape(O, Cg, kh, kw)
    db = dy.sum(axis=(0, 2, 3))
    return dx, dw, db


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """(N,C,H,W) -> (N, C*kh*kw, OH*OW); row c*kh*kw + i*kw + j, column oh*OW + ow
    (torch.nn.functional.unfold order)."""
    x = _f64(x)
    N, C, H, W = x.shape
    (kh, kw), st, pads, dil, (OH, OW) = _geometry(x.shape, kernel_size, stride, padding, dilation)
    xp = _pad(x, pads)
    cols = np.empty((N, C, kh, kw, OH, OW))
    for i in range(kh):
        for j in range(kw):
            shl, swl = _window(i, j, st, dil, (OH, OW))
            cols[:, :, i, j] = xp[:, :, shl, swl]
    return cols.reshape(N, C * kh * kw, OH * OW)


def col2im(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1):
    """Adjoint of im2col (torch.nn.functional.fold): scatter-adds columns back into (N,C,H,W)."""
    cols = _f64(cols)
    N, C, H, W = input_shape
    (kh, kw), st, pads, dil, (OH, OW) = _geometry(input_shape, kernel_size, stride, padding,
                                                   dilation)
    top, bottom, left, right = pads
    c6 = cols.reshape(N, C, kh, kw, OH, OW)
    xp = np.zeros((N, C, H + top + bottom, W + left + right))
    for i in range(kh):
        for j in range(kw):
            shl, swl = _window(i, j, st, dil, (OH, OW))
            xp[:, :, shl, swl] += c6[:, :, i, j]
    return xp[:, :, top:top + H, left:left + W].copy()


# ----------------------------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------------------------
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1):
    """Max pooling with implicit -inf padding (ceil_mode=False). Returns (y, argmax), argmax being
    the int64 flat index h*W + w into each input plane.

    As PyTorch's CPU kernel: the running maximum starts at -inf with the index of the first
    in-bounds window element, the window is scanned in row-major order and an element replaces
    the maximum only if it is strictly greater (or NaN), so ties go to the FIRST maximum.
    """
    x = _f64(x)
    N, C, H, W = x.shape
    stride = kernel_size if stride is None else stride
    (kh, kw), st, pads, dil, (OH, OW) = _geometry(x.shape, kernel_size, stride, padding, dilation)
    (sh, sw), (dh, dw) = st, dil
    top, bottom, left, right = pads
    xp = _pad(x, pads, value=-np.inf)
    hs = np.arange(OH) * sh - top  # window start rows in input coordinates
    ws = np.arange(OW) * sw - left
    # first in-bounds row/col of each window (step by dilation until >= 0)
    h0 = np.where(hs < 0, hs + dh * ((-hs + dh - 1) // dh), hs)
    w0 = np.where(ws < 0, ws + dw * ((-ws + dw - 1) // dw), ws)
    y = np.full((N, C, OH, OW), -np.inf)
    idx = np.broadcast_to(h0[:, None] * W + w0[None, :], (N, C, OH, OW)).astype(np.int64)
    for i in range(kh):
        for j in range(kw):
            hh, ww = hs + i * dh, ws + j * dw
            valid = ((hh >= 0) & (hh < H))[:, None] & ((ww >= 0) & (ww < W))[None, :]
            shl, swl = _window(i, j, st, dil, (OH, OW))
            v = xp[:, :, shl, swl]
            upd = valid & ((v > y) | np.isnan(v))
            y = np.where(upd, v, y)
            idx = np.where(upd, (hh[:, None] * W + ww[None, :]).astype(np.int64), idx)
    return y, idx


def max_pool2d_backward(dy, argmax, input_shape):
    """dx[n, c].flat[argmax[n, c, oh, ow]] += dy[n, c, oh, ow]."""
    dy = _f64(dy)
    argmax = np.asarray(argmax, dtype=np.int64)
    N, C, H, W = input_shape
    dx = np.zeros((N * C, H * W))
    rows = np.arange(N * C)[:, None]
    np.add.at(dx, (rows, argmax.reshape(N * C, -1)), dy.reshape(N * C, -1))
    return dx.reshape(N, C, H, W)


def _avg_divisor(H, W, kh, kw, st, pads, OH, OW):
    """PyTorch's count_include_pad=True divisor: window clipped to the PADDED input."""
    (sh, sw), (top, bottom, left, right) = st, pads
    hstart = np.arange(OH) * sh - top
    hend = np.minimum(hstart + kh, H + bottom)
    wstart = np.arange(OW) * sw - left
    wend = np.minimum(wstart + kw, W + right)
    return ((hend - hstart)[:, None] * (wend - wstart)[None, :]).astype(np.float64)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Average pooling, count_include_pad=True, ceil_mode=False (PyTorch's rule):
    hstart = oh*s - p; hend = min(hstart + kh, H + p); pool_size = (hend-hstart)*(wend-wstart);
    the sum runs over the window clipped to [0, H) x [0, W) (padding counts as zeros)."""
    x = _f64(x)
    N, C, H, W = x.shape
    stride = kernel_size if stride is None else stride
    (kh, kw), st, pads, dil, (OH, OW) = _geometry(x.shape, kernel_size, stride, padding, 1)
    xp = _pad(x, pads, value=0.0)
    s = np.zeros((N, C, OH, OW))
    for i in range(kh):
        for j in range(kw):
            shl, swl = _window(i, j, st, dil, (OH, OW))
            s += xp[:, :, shl, swl]
    return s / _avg_divisor(H, W, kh, kw, st, pads, OH, OW)


def avg_pool2d_backward(dy, input_shape, kernel_size, stride=None, padding=0):
    dy = _f64(dy)
    N, C, H, W = input_shape
    stride = kernel_size if stride is None else stride
    (kh, kw), st, pads, dil, (OH, OW) = _geometry(input_shape, kernel_size, stride, padding, 1)
    top, bottom, left, right = pads
    g = dy / _avg_divisor(H, W, kh, kw, st, pads, OH, OW)
    dxp = np.zeros((N, C, H + top + bottom, W + left + right))
    for i in range(kh):
        for j in range(kw):
            shl, swl = _window(i, j, st, dil, (OH, OW))
            dxp[:, :, shl, swl] += g
    return dxp[:, :, top:top + H, left:left + W].copy()


def _adaptive_bins(size, out):
    """PyTorch: start = floor(i*size/out), end = ceil((i+1)*size/out)."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def adaptive_avg_pool2d(x, output_size):
    x = _f64(x)
    H, W = x.shape[-2:]
    if isinstance(output_size, (int, np.integer)):
        output_size = (output_size, output_size)
    OH, OW = (H if output_size[0] is None else int(output_size[0]),
              W if output_size[1] is None else int(output_size[1]))
    y = np.zeros(x.shape[:-2] + (OH, OW))
    for oh, (h0, h1) in enumerate(_adaptive_bins(H, OH)):
        for ow, (w0, w1) in enumerate(_adaptive_bins(W, OW)):
            y[..., oh, ow] = x[..., h0:h1, w0:w1].mean(axis=(-2, -1))
    return y


def adaptive_avg_pool2d_backward(dy, input_shape):
    dy = _f64(dy)
    H, W = input_shape[-2:]
    OH, OW = dy.shape[-2:]
    dx = np.zeros(tuple(input_shape))
    for oh, (h0, h1) in enumerate(_adaptive_bins(H, OH)):
        for ow, (w0, w1) in enumerate(_adaptive_bins(W, OW)):
            area = (h1 - h0) * (w1 - w0)
            dx[..., h0:h1, w0:w1] += dy[..., oh, ow][..., None, None] / area
    return dx


# ----------------------------------------------------------------------------------------------
# linear
# ----------------------------------------------------------------------------------------------
def linear(x, w, b=None):
    """y = x @ w.T + b; x (N, in), w (out, in), b (out,) or None."""
    x, w = _f64(x), _f64(w)
    y = x @ w.T
    if b is not None:
        y = y + _f64(b)
    return y


def linear_backward(dy, x, w):
    """Returns (dx, dw, db)."""
    dy, x, w = _f64(dy), _f64(x), _f64(w)
    dx = dy @ w
    dy2 = dy.reshape(-1, dy.shape[-1])
    x2 = x.reshape(-1, x.shape[-1])
    return dx, dy2.T @ x2, dy2.sum(axis=0)


# ----------------------------------------------------------------------------------------------
# activations: f(x, ...) and f_backward(dy, x, ...) = dy * f'(x)
# ----------------------------------------------------------------------------------------------
def relu(x):
    x = _f64(x)
    return np.where(x > 0, x, 0.0)


def relu_backward(dy, x):
    return np.where(_f64(x) > 0, _f64(dy), 0.0)


def leaky_relu(x, negative_slope=0.01):
    x = _f64(x)
    return np.where(x > 0, x, negative_slope * x)


def leaky_relu_backward(dy, x, negative_slope=0.01):
    dy = _f64(dy)
    return np.where(_f64(x) > 0, dy, negative_slope * dy)


def elu(x, alpha=1.0):
    x = _f64(x)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def elu_backward(dy, x, alpha=1.0):
    x, dy = _f64(x), _f64(dy)
    return np.where(x > 0, dy, dy * alpha * np.exp(np.minimum(x, 0.0)))


def sigmoid(x):
    x = _f64(x)
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_backward(dy, x):
    s = sigmoid(x)
    return _f64(dy) * s * (1.0 - s)


def tanh(x):
    return np.tanh(_f64(x))


def tanh_backward(dy, x):
    t = np.tanh(_f64(x))
    return _f64(dy) * (1.0 - t * t)


def softplus(x, beta=1.0, threshold=20.0):
    """log(1 + exp(beta*x))/beta, and x itself where beta*x > threshold (PyTorch)."""
    x = _f64(x)
    bx = beta * x
    soft = np.log1p(np.exp(np.minimum(bx, threshold))) / beta
    return np.where(bx > threshold, x, soft)


def softplus_backward(dy, x, beta=1.0, threshold=20.0):
    x, dy = _f64(x), _f64(dy)
    bx = beta * x
    return np.where(bx > threshold, dy, dy * sigmoid(bx))


def _prelu_weight(x, weight):
    weight = _f64(weight).reshape(-1)
    if weight.size == 1:
        return weight.reshape(()), None
    if x.ndim < 2 or weight.size != x.shape[1]:
        raise ValueError(f"prelu weight has {weight.size} entries, input shape {x.shape}")
    shape = [1] * x.ndim
    shape[1] = weight.size
    return weight.reshape(shape), tuple(a for a in range(x.ndim) if a != 1)


def prelu(x, weight):
    """x if x > 0 else weight*x; weight (1,) or (C,) broadcast over dim 1."""
    x = _f64(x)
    wb, _ = _prelu_weight(x, weight)
    return np.where(x > 0, x, wb * x)


def prelu_backward(dy, x, weight):
    """Returns (dx, dweight), dweight with the shape of weight."""
    x, dy = _f64(x), _f64(dy)
    weight = _f64(weight)
    wb, axes = _prelu_weight(x, weight)
    dx = np.where(x > 0, dy, wb * dy)
    contrib = np.where(x > 0, 0.0, x * dy)
    if axes is None:
        dw = np.array([contrib.sum()])
    else:
        dw = contrib.sum(axis=axes)
    return dx, dw.reshape(weight.shape)


# ----------------------------------------------------------------------------------------------
# softmax and losses
# ----------------------------------------------------------------------------------------------
def softmax(x, dim=1):
    x = _f64(x)
    z = x - x.max(axis=dim, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=dim, keepdims=True)


def softmax_backward(dy, x, dim=1):
    s, dy = softmax(x, dim), _f64(dy)
    return s * (dy - (dy * s).sum(axis=dim, keepdims=True))


def log_softmax(x, dim=1):
    x = _f64(x)
    z = x - x.max(axis=dim, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=dim, keepdims=True))


def log_softmax_backward(dy, x, dim=1):
    dy = _f64(dy)
    return dy - softmax(x, dim) * dy.sum(axis=dim, keepdims=True)


def _pick(a, labels):
    """a[n, labels[n], ...] for class dim 1."""
    labels = np.asarray(labels, dtype=np.int64)
    return np.take_along_axis(a, np.expand_dims(labels, 1), axis=1).squeeze(1)


def cross_entropy(logits, labels):
    """mean_n( -log_softmax(logits)[n, labels[n]] ); logits (N, K) (or (N, K, d...)), labels int."""
    logits = _f64(logits)
    return float(-_pick(log_softmax(logits, 1), labels).mean())


def cross_entropy_backward(logits, labels, dy=1.0):
    """d cross_entropy / d logits (mean reduction) = (softmax - onehot) / count."""
    logits = _f64(logits)
    labels = np.asarray(labels, dtype=np.int64)
    onehot = np.zeros_like(logits)
    np.put_along_axis(onehot, np.expand_dims(labels, 1), 1.0, axis=1)
    return (softmax(logits, 1) - onehot) * (float(dy) / labels.size)


def mse_loss(x, target):
    d = _f64(x) - _f64(target)
    return float(np.mean(d * d))


def mse_loss_backward(x, target, dy=1.0):
    x = _f64(x)
    return 2.0 * (x - _f64(target)) * (float(dy) / x.size)


# ----------------------------------------------------------------------------------------------
# optimiser
# ----------------------------------------------------------------------------------------------
def sgd_step(param, grad, buf, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False,
             first_step=False):
    """One torch.optim.SGD step. Returns (new_param, new_buf); inputs are not modified.

    g = grad + wd*param
    if momentum: buf = g (first step / buf None) else momentum*buf + (1-dampening)*g
                 g = g + momentum*buf if nesterov else buf
    param = param - lr*g
    """
    param, g = _f64(param).copy(), _f64(grad).copy()
    if weight_decay != 0:
        g = g + weight_decay * param
    new_buf = None if buf is None else _f64(buf).copy()
    if momentum != 0:
        if first_step or buf is None:
            new_buf = g.copy()
        else:
            new_buf = momentum * new_buf + (1.0 - dampening) * g
        g = g + momentum * new_buf if nesterov else new_buf
    return param - lr * g, new_buf


# ----------------------------------------------------------------------------------------------
# numerical differentiation
# ----------------------------------------------------------------------------------------------
def numeric_grad(f, x, eps=1e-6):
    """Central differences of scalar f(x) w.r.t. every element of x (float64 array like x)."""
    x = np.array(x, dtype=np.float64, copy=True)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        fp = float(f(x))
        flat[k] = old - eps
        fm = float(f(x))
        flat[k] = old
        gflat[k] = (fp - fm) / (2.0 * eps)
    return grad
