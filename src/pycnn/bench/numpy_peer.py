"""A NumPy implementation of pycnn's CPU layers, written the way a capable NumPy user would.

This is the "NumPy" column of the benchmark suite. It is deliberately not naive: the
convolution's im2col is kh*kw strided slice copies into a (C*kh*kw, N*OH*OW) matrix and one
large GEMM ``y = W @ cols`` into NumPy's own BLAS (no transposed window view); its backward
computes dW with one GEMM against the forward's columns and dX by col2im with one slice-add per
kernel offset (kh*kw adds), max-pool 2x2 uses the reshape trick,
and the LeNet-5 step reuses all of them with an in-place SGD update. Everything stays float32.

Layout and semantics follow pycnn (and PyTorch): NCHW, weights (O, C, kh, kw), conv padding
(top, bottom, left, right), cross-entropy mean over the batch, SGD with PyTorch's momentum rule.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from .. import _args

__all__ = [
    "conv2d_forward", "conv2d_backward", "max_pool2x2_forward", "max_pool2x2_backward",
    "linear_forward", "linear_backward", "relu_forward", "relu_backward",
    "softmax_cross_entropy", "LeNet5", "SGD",
]


# ----------------------------------------------------------------------------------------------
# convolution
# ----------------------------------------------------------------------------------------------
def conv2d_forward(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray] = None, stride=1, padding=0):
    """y = conv2d(x, w) + b. Returns (y, cache); y is (N, O, OH, OW), cache feeds the backward.

    im2col as kh*kw strided slice copies into the (C*kh*kw, N*OH*OW) column matrix (row
    c*kh*kw + i*kw + j, as w.reshape(O, -1) orders it), then one GEMM: y = W @ cols.
    """
    N, C, H, W = x.shape
    O, Cw, kh, kw = w.shape
    sh, sw = _args.pair(stride, "numpy_peer.conv2d_forward", "stride", 1)
    pt, pb, pl, pr = _args.conv_padding(padding, (kh, kw), (1, 1), (sh, sw), "numpy_peer.conv2d_forward")
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if (pt or pb or pl or pr) else x
    Hp, Wp = xp.shape[2], xp.shape[3]
    OH, OW = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
    xc = xp.transpose(1, 0, 2, 3)  # (C, N, Hp, Wp) view: each slice copy below is one strided copy
    cols = np.empty((C, kh, kw, N, OH, OW), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xc[:, :, i:i + sh * (OH - 1) + 1:sh, j:j + sw * (OW - 1) + 1:sw]
    cols = cols.reshape(C * kh * kw, N * OH * OW)
    y = w.reshape(O, C * kh * kw) @ cols  # (O, N*OH*OW)
    if b is not None:
        y += b[:, None]
    y = y.reshape(O, N, OH, OW).transpose(1, 0, 2, 3)  # NCHW view
    cache = (cols, x.shape, w, (sh, sw), (pt, pb, pl, pr), (OH, OW))
    return y, cache


def conv2d_backward(dy: np.ndarray, cache, need_dx: bool = True):
    """(dx, dw, db) of conv2d_forward; dx is None when not needed (a network's first layer).

    dW = dy2 @ cols.T against the forward's columns; dX = col2im(W.T @ dy2) with one strided
    slice-add per kernel offset (kh*kw adds)."""
    cols, xshape, w, (sh, sw), (pt, pb, pl, pr), (OH, OW) = cache
    N, C, H, W = xshape
    O, _, kh, kw = w.shape
    dy2 = dy.transpose(1, 0, 2, 3).reshape(O, N * OH * OW)  # copies when dy is NCHW-contiguous
    dw = (dy2 @ cols.T).reshape(w.shape)
    db = dy.sum(axis=(0, 2, 3))
    dx = None
    if need_dx:
        dcols = (w.reshape(O, C * kh * kw).T @ dy2).reshape(C, kh, kw, N, OH, OW)
        dxp = np.zeros((C, N, H + pt + pb, W + pl + pr), dtype=dy.dtype)
        for i in range(kh):  # col2im: one strided slice-add per kernel offset
            for j in range(kw):
                dxp[:, :, i:i + sh * (OH - 1) + 1:sh, j:j + sw * (OW - 1) + 1:sw] += dcols[:, i, j]
        dx = dxp[:, :, pt:pt + H, pl:pl + W].transpose(1, 0, 2, 3)
    return dx, dw, db


# ----------------------------------------------------------------------------------------------
# max pooling 2x2, stride 2 (reshape trick)
# ----------------------------------------------------------------------------------------------
def max_pool2x2_forward(x: np.ndarray):
    N, C, H, W = x.shape
    H2, W2 = H // 2, W // 2
    xr = x[:, :, :2 * H2, :2 * W2].reshape(N, C, H2, 2, W2, 2)
    y = xr.max(axis=(3, 5))
    return y, (xr, y, x.shape)


def max_pool2x2_backward(dy: np.ndarray, cache) -> np.ndarray:
    """Routes each gradient to the window's maximum (ties share it, as in cs231n's reshape pool;
    with distinct values this is the argmax rule of pycnn and PyTorch)."""
    xr, y, shape = cache
    mask = xr == y[:, :, :, None, :, None]
    cnt = mask.sum(axis=(3, 5), keepdims=True)
    dxr = mask * (dy[:, :, :, None, :, None] / cnt)
    N, C, H, W = shape
    H2, W2 = H // 2, W // 2
    if H == 2 * H2 and W == 2 * W2:
        return dxr.reshape(shape)
    dx = np.zeros(shape, dtype=dy.dtype)
    dx[:, :, :2 * H2, :2 * W2] = dxr.reshape(N, C, 2 * H2, 2 * W2)
    return dx


# ----------------------------------------------------------------------------------------------
# linear, relu, softmax cross-entropy
# ----------------------------------------------------------------------------------------------
def linear_forward(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray] = None) -> np.ndarray:
    y = x @ w.T
    if b is not None:
        y += b
    return y


def linear_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray):
    return dy @ w, dy.T @ x, dy.sum(axis=0)


def relu_forward(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    return dy * (x > 0)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray):
    """(mean loss, d loss / d logits) of the fused log-softmax + NLL."""
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    logp = z - np.log(s)
    loss = -logp[np.arange(n), labels].mean()
    d = e / s
    d[np.arange(n), labels] -= 1
    d /= n
    return loss, d


# ----------------------------------------------------------------------------------------------
# LeNet-5 and SGD
# ----------------------------------------------------------------------------------------------
class SGD:
    """PyTorch's SGD update (momentum buffer = grad on the first step), in place."""

    def __init__(self, params: Sequence[np.ndarray], lr: float = 0.01, momentum: float = 0.0):
        self.params = list(params)
        self.lr, self.momentum = float(lr), float(momentum)
        self.bufs: List[Optional[np.ndarray]] = [None] * len(self.params)

    def step(self, grads: Sequence[np.ndarray]) -> None:
        lr, m = np.float32(self.lr), np.float32(self.momentum)
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if self.momentum:
                buf = self.bufs[i]
                if buf is None:
                    buf = self.bufs[i] = g.copy()
                else:
                    buf *= m
                    buf += g
                g = buf
            p -= lr * g


class LeNet5:
    """conv 1->6 5x5 pad 2, relu, maxpool 2, conv 6->16 5x5, relu, maxpool 2, flatten,
    fc 400-120, relu, fc 120-84, relu, fc 84-10: the layout of ``pc.models.lenet5``."""

    SHAPES = [(6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (120, 400), (120,), (84, 120), (84,), (10, 84), (10,)]
    NAMES = ["c1w", "c1b", "c2w", "c2b", "f1w", "f1b", "f2w", "f2b", "f3w", "f3b"]

    def __init__(self, params: Optional[Sequence[np.ndarray]] = None, seed: int = 0, num_classes: int = 10):
        if params is None:
            rng = np.random.default_rng(seed)  # PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            out = []
            fans = [25, 25, 150, 150, 400, 400, 120, 120, 84, 84]
            for shp, fan in zip(self.SHAPES, fans):
                bound = 1.0 / np.sqrt(fan)
                out.append(rng.uniform(-bound, bound, size=shp).astype(np.float32))
            params = out
        self.params: List[np.ndarray] = [np.array(p, dtype=np.float32, copy=True) for p in params]
        self.grads: List[Optional[np.ndarray]] = [None] * len(self.params)

    def forward(self, x: np.ndarray) -> np.ndarray:
        c1w, c1b, c2w, c2b, f1w, f1b, f2w, f2b, f3w, f3b = self.params
        a1, k1 = conv2d_forward(x, c1w, c1b, 1, 2)
        r1 = relu_forward(a1)
        p1, kp1 = max_pool2x2_forward(r1)
        a2, k2 = conv2d_forward(p1, c2w, c2b, 1, 0)
        r2 = relu_forward(a2)
        p2, kp2 = max_pool2x2_forward(r2)
        f = p2.reshape(p2.shape[0], -1)
        h1 = linear_forward(f, f1w, f1b)
        g1 = relu_forward(h1)
        h2 = linear_forward(g1, f2w, f2b)
        g2 = relu_forward(h2)
        logits = linear_forward(g2, f3w, f3b)
        self._cache = (k1, a1, kp1, k2, a2, kp2, p2.shape, f, h1, g1, h2, g2)
        return logits

    def backward(self, dlogits: np.ndarray) -> None:
        k1, a1, kp1, k2, a2, kp2, p2shape, f, h1, g1, h2, g2 = self._cache
        c1w, c1b, c2w, c2b, f1w, f1b, f2w, f2b, f3w, f3b = self.params
        dg2, df3w, df3b = linear_backward(dlogits, g2, f3w)
        dh2 = relu_backward(dg2, h2)
        dg1, df2w, df2b = linear_backward(dh2, g1, f2w)
        dh1 = relu_backward(dg1, h1)
        df, df1w, df1b = linear_backward(dh1, f, f1w)
        dp2 = df.reshape(p2shape)
        dr2 = max_pool2x2_backward(dp2, kp2)
        da2 = relu_backward(dr2, a2)
        dp1, dc2w, dc2b = conv2d_backward(da2, k2)
        dr1 = max_pool2x2_backward(dp1, kp1)
        da1 = relu_backward(dr1, a1)
        _, dc1w, dc1b = conv2d_backward(da1, k1, need_dx=False)  # the input image needs no gradient
        self.grads = [dc1w, dc1b, dc2w, dc2b, df1w, df1b, df2w, df2b, df3w, df3b]
        self._cache = None


def lenet_train_step(model: LeNet5, opt: SGD, x: np.ndarray, y: np.ndarray) -> float:
    """One full step: forward, loss, backward, SGD. Returns the loss."""
    logits = model.forward(x)
    loss, dlogits = softmax_cross_entropy(logits, y)
    model.backward(dlogits)
    opt.step(model.grads)
    return float(loss)


def lenet_step_outputs(params: Sequence[np.ndarray], x: np.ndarray, y: np.ndarray, lr: float = 0.01,
                       momentum: float = 0.9) -> Dict[str, object]:
    """Everything one LeNet step produces, for the agreement check: logits, loss, gradients and
    the updated parameters."""
    model = LeNet5(params)
    opt = SGD(model.params, lr=lr, momentum=momentum)
    logits = model.forward(x)
    loss, dlogits = softmax_cross_entropy(logits, y)
    model.backward(dlogits)
    opt.step(model.grads)
    return {"logits": logits, "loss": np.float32(loss), "grads": [g.copy() for g in model.grads],
            "params": [p.copy() for p in model.params]}
