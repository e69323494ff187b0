"""Checks of the NumPy reference itself (tests/reference.py), independent of pycnn.

Naive loop implementations, finite differences and hand-worked course examples; the comparisons with
PyTorch in float64 are in tests/test_reference_vs_torch.py.
"""
from __future__ import annotations


import numpy as np
import pytest

import reference as R

from helpers import CONV_CONFIGS, POOL_CONFIGS, _conv_case, away_from_zero, rng


def check_grad(loss_of, x, analytic, rtol=1e-6, atol=1e-7):
    num = R.numeric_grad(loss_of, x)
    np.testing.assert_allclose(analytic, num, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------------------------
# numeric_grad itself
# ----------------------------------------------------------------------------------------------
def test_numeric_grad_known_function():
    x = rng(1).normal(size=(3, 4))
    g = R.numeric_grad(lambda a: np.sum(a ** 3) + np.sum(np.sin(a)), x)
    np.testing.assert_allclose(g, 3 * x ** 2 + np.cos(x), rtol=1e-7, atol=1e-8)
    assert g.shape == x.shape and g.dtype == np.float64


def test_numeric_grad_does_not_modify_input():
    x = rng(2).normal(size=5)
    x0 = x.copy()
    R.numeric_grad(lambda a: float((a ** 2).sum()), x)
    np.testing.assert_array_equal(x, x0)


# ----------------------------------------------------------------------------------------------
# convolution
# ----------------------------------------------------------------------------------------------
def naive_conv2d(x, w, b, stride, padding, dilation, groups):
    """Seven nested loops straight from the definition (cross-correlation)."""
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    sh, sw = stride
    top, bottom, left, right = padding
    dh, dw = dilation
    OH = (H + top + bottom - dh * (kh - 1) - 1) // sh + 1
    OW = (W + left + right - dw * (kw - 1) - 1) // sw + 1
    Og = O // groups
    y = np.zeros((N, O, OH, OW))
    for n in range(N):
        for o in range(O):
            g = o // Og
            for oh in range(OH):
                for ow in range(OW):
                    acc = 0.0 if b is None else b[o]
                    for c in range(Cg):
                        for i in range(kh):
                            for j in range(kw):
                                h = oh * sh - top + i * dh
                                ww = ow * sw - left + j * dw
                                if 0 <= h < H and 0 <= ww < W:
                                    acc += w[o, c, i, j] * x[n, g * Cg + c, h, ww]
                    y[n, o, oh, ow] = acc
    return y


@pytest.mark.parametrize("cfg", CONV_CONFIGS)
def test_conv2d_matches_naive(cfg):
    x, w, b, stride, pad, dil, groups = _conv_case(cfg)
    y = R.conv2d(x, w, b, stride=stride, padding=pad, dilation=dil, groups=groups)
    ref = naive_conv2d(x, w, b, stride, pad, dil, groups)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_conv2d_output_size_formula():
    x = np.zeros((1, 1, 10, 9))
    w = np.zeros((1, 1, 3, 2))
    y = R.conv2d(x, w, stride=(2, 3), padding=(1, 2, 0, 3), dilation=(2, 1))
    assert y.shape == (1, 1, (10 + 1 + 2 - 2 * 2 - 1) // 2 + 1, (9 + 0 + 3 - 1 - 1) // 3 + 1)


def test_conv2d_int_and_pair_arguments():
    x, w, b, *_ = _conv_case(CONV_CONFIGS[0])
    np.testing.assert_array_equal(R.conv2d(x, w, b, stride=1, padding=1, dilation=1),
                                  R.conv2d(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1)))
    np.testing.assert_array_equal(R.conv2d(x, w, b, padding=(1, 2)),
                                  R.conv2d(x, w, b, padding=(1, 1, 2, 2)))


@pytest.mark.parametrize("cfg", CONV_CONFIGS)
def test_conv2d_backward_numeric(cfg):
    x, w, b, stride, pad, dil, groups = _conv_case(cfg, seed=3)
    if b is None:
        b = np.zeros(w.shape[0])
    kw = dict(stride=stride, padding=pad, dilation=dil, groups=groups)
    y = R.conv2d(x, w, b, **kw)
    Rm = rng(4).normal(size=y.shape)
    dx, dw, db = R.conv2d_backward(Rm, x, w, **kw)
    check_grad(lambda a: np.sum(R.conv2d(a, w, b, **kw) * Rm), x, dx)
    check_grad(lambda a: np.sum(R.conv2d(x, a, b, **kw) * Rm), w, dw)
    check_grad(lambda a: np.sum(R.conv2d(x, w, a, **kw) * Rm), b, db)
    np.testing.assert_allclose(db, Rm.sum((0, 2, 3)))


def _by_hand_correlation(img, k, pad):
    """Zero-pad then slide the kernel: out[r][c] = sum_ij k[i][j] * padded[r+i][c+j]."""
    H, W = len(img), len(img[0])
    P = [[0] * (W + 2 * pad) for _ in range(H + 2 * pad)]
    for r in range(H):
        for c in range(W):
            P[r + pad][c + pad] = img[r][c]
    kh, kw = len(k), len(k[0])
    OH, OW = H + 2 * pad - kh + 1, W + 2 * pad - kw + 1
    return [[sum(k[i][j] * P[r + i][c + j] for i in range(kh) for j in range(kw))
             for c in range(OW)] for r in range(OH)]


def test_course_blur_example():
    img = [[4 * r + c + 1 for c in range(4)] for r in range(4)]  # 1..16
    k = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    expected = _by_hand_correlation(img, k, 1)
    # worked by hand: e.g. out[0][0] = 4*1 + 2*2 + 2*5 + 1*6 = 24,
    # out[3][3] = 1*11 + 2*12 + 2*15 + 4*16 = 129
    assert expected == [[24, 40, 52, 45],
                        [64, 96, 112, 92],
                        [112, 160, 176, 140],
                        [108, 152, 164, 129]]
    y = R.conv2d(np.array(img, float)[None, None], np.array(k, float)[None, None],
                 padding=(1, 1, 1, 1))
    assert y.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(y[0, 0], np.array(expected, float))
    np.testing.assert_array_equal(y[0, 0, :2], [[24, 40, 52, 45], [64, 96, 112, 92]])


def test_course_vertical_edge_example():
    img = np.zeros((6, 6))
    img[:, :3] = 10
    k = np.array([[1, 0, -1]] * 3, dtype=float)
    y = R.conv2d(img[None, None], k[None, None])
    assert y.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(y[0, 0], np.tile([0, 30, 30, 0], (4, 1)).astype(float))
    np.testing.assert_array_equal(y[0, 0], np.array(_by_hand_correlation(img.tolist(), k.tolist(), 0)))


# ----------------------------------------------------------------------------------------------
# im2col / col2im
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", [c for c in CONV_CONFIGS if c[10] == 1])
def test_im2col_matches_conv(cfg):
    x, w, b, stride, pad, dil, _ = _conv_case(cfg, seed=5)
    N, O = x.shape[0], w.shape[0]
    cols = R.im2col(x, w.shape[2:], stride, pad, dil)
    y = R.conv2d(x, w, None, stride, pad, dil)
    assert cols.shape == (N, x.shape[1] * w.shape[2] * w.shape[3], y.shape[2] * y.shape[3])
    np.testing.assert_allclose((w.reshape(O, -1) @ cols).reshape(y.shape), y, rtol=1e-12, atol=1e-12)


def test_im2col_row_and_column_order():
    x = np.arange(2 * 3 * 4, dtype=float).reshape(1, 2, 3, 4)
    cols = R.im2col(x, (2, 3), stride=1, padding=0, dilation=1)
    OH, OW, kh, kw = 2, 2, 2, 3
    for c in range(2):
        for i in range(kh):
            for j in range(kw):
                for oh in range(OH):
                    for ow in range(OW):
                        assert cols[0, c * kh * kw + i * kw + j, oh * OW + ow] == x[0, c, oh + i, ow + j]


def test_col2im_is_adjoint_of_im2col():
    r = rng(6)
    x = r.normal(size=(2, 3, 7, 6))
    args = ((3, 2), (2, 1), (1, 0, 2, 1), (1, 2))
    cols = R.im2col(x, *args)
    c = r.normal(size=cols.shape)
    np.testing.assert_allclose(np.sum(cols * c), np.sum(x * R.col2im(c, x.shape, *args)), rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("H,W,k,s,p", POOL_CONFIGS)
def test_max_pool_values_and_backward(H, W, k, s, p):
    x = rng(7).normal(size=(2, 2, H, W))
    y, idx = R.max_pool2d(x, k, s, p)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(np.take_along_axis(x.reshape(2, 2, -1), idx.reshape(2, 2, -1), 2),
                                  y.reshape(2, 2, -1))
    Rm = rng(8).normal(size=y.shape)
    dx = R.max_pool2d_backward(Rm, idx, x.shape)
    check_grad(lambda a: np.sum(R.max_pool2d(a, k, s, p)[0] * Rm), x, dx)


def test_max_pool_padding_is_minus_infinity():
    x = -1.0 - rng(9).random(size=(1, 1, 4, 4))
    y, _ = R.max_pool2d(x, 3, 1, 1)
    assert np.all(y < -1.0)  # zero padding would have produced 0


def test_max_pool_ties_go_to_first():
    x = np.ones((1, 2, 5, 5))
    y, idx = R.max_pool2d(x, 3, 2, 1)
    np.testing.assert_array_equal(y, 1.0)
    # first in-bounds element of each window: rows/cols starting at max(o*2 - 1, 0)
    starts = np.maximum(np.arange(3) * 2 - 1, 0)
    np.testing.assert_array_equal(idx[0, 0], starts[:, None] * 5 + starts[None, :])
    x2 = np.zeros((1, 1, 2, 2))
    x2[0, 0, 0, 1] = x2[0, 0, 1, 0] = 3.0
    assert R.max_pool2d(x2, 2)[1][0, 0, 0, 0] == 1
    # overlapping windows on a constant plane: window (oh, ow) picks (oh, ow); gradients scatter-add
    _, idx1 = R.max_pool2d(np.ones((1, 1, 3, 3)), 2, 1)
    np.testing.assert_array_equal(idx1[0, 0], [[0, 1], [3, 4]])
    dx = R.max_pool2d_backward(np.full((1, 1, 2, 2), 2.0), np.zeros((1, 1, 2, 2), np.int64),
                               (1, 1, 3, 3))
    assert dx[0, 0, 0, 0] == 8.0 and dx.sum() == 8.0


@pytest.mark.parametrize("H,W,k,s,p", POOL_CONFIGS)
def test_avg_pool_values_and_backward(H, W, k, s, p):
    x = rng(10).normal(size=(1, 2, H, W))
    y = R.avg_pool2d(x, k, s, p)
    kh, kw = R._pair(k)
    sh, sw = (kh, kw) if s is None else R._pair(s)
    ph, pw = R._pair(p)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    for oh in range(y.shape[2]):
        for ow in range(y.shape[3]):
            win = xp[:, :, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw]
            np.testing.assert_allclose(y[:, :, oh, ow], win.sum((2, 3)) / (kh * kw), rtol=1e-12)
    Rm = rng(11).normal(size=y.shape)
    dx = R.avg_pool2d_backward(Rm, x.shape, k, s, p)
    check_grad(lambda a: np.sum(R.avg_pool2d(a, k, s, p) * Rm), x, dx)


@pytest.mark.parametrize("H,W,OH,OW", [(6, 6, 3, 3), (5, 7, 3, 4), (7, 5, 1, 1), (3, 4, 5, 6)])
def test_adaptive_avg_pool(H, W, OH, OW):
    x = rng(12).normal(size=(2, 3, H, W))
    y = R.adaptive_avg_pool2d(x, (OH, OW))
    assert y.shape == (2, 3, OH, OW)
    for oh in range(OH):
        h0, h1 = int(np.floor(oh * H / OH)), int(np.ceil((oh + 1) * H / OH))
        for ow in range(OW):
            w0, w1 = int(np.floor(ow * W / OW)), int(np.ceil((ow + 1) * W / OW))
            np.testing.assert_allclose(y[..., oh, ow], x[..., h0:h1, w0:w1].mean((2, 3)), rtol=1e-12)
    if (OH, OW) == (1, 1):
        np.testing.assert_allclose(y[..., 0, 0], x.mean((2, 3)), rtol=1e-12)
    Rm = rng(13).normal(size=y.shape)
    dx = R.adaptive_avg_pool2d_backward(Rm, x.shape)
    check_grad(lambda a: np.sum(R.adaptive_avg_pool2d(a, (OH, OW)) * Rm), x, dx)


# ----------------------------------------------------------------------------------------------
# linear, activations
# ----------------------------------------------------------------------------------------------
def test_linear_and_backward():
    r = rng(14)
    x, w, b = r.normal(size=(4, 5)), r.normal(size=(3, 5)), r.normal(size=3)
    y = R.linear(x, w, b)
    np.testing.assert_allclose(y, np.array([[sum(x[n, k] * w[o, k] for k in range(5)) + b[o]
                                             for o in range(3)] for n in range(4)]), rtol=1e-12)
    np.testing.assert_allclose(R.linear(x, w), y - b, rtol=1e-12, atol=1e-12)
    Rm = r.normal(size=y.shape)
    dx, dw, db = R.linear_backward(Rm, x, w)
    check_grad(lambda a: np.sum(R.linear(a, w, b) * Rm), x, dx)
    check_grad(lambda a: np.sum(R.linear(x, a, b) * Rm), w, dw)
    check_grad(lambda a: np.sum(R.linear(x, w, a) * Rm), b, db)


ACTIVATIONS = [
    ("relu", {}), ("leaky_relu", {}), ("leaky_relu", {"negative_slope": 0.2}),
    ("elu", {}), ("elu", {"alpha": 0.5}), ("sigmoid", {}), ("tanh", {}),
    ("softplus", {}), ("softplus", {"beta": 2.0, "threshold": 3.0}),
]


@pytest.mark.parametrize("name,kw", ACTIVATIONS)
def test_activation_backward(name, kw):
    f, fb = getattr(R, name), getattr(R, name + "_backward")
    x = away_from_zero(rng(15).normal(size=(3, 4, 2, 2)) * 3)
    if name == "softplus":  # keep off the threshold switch, but on both sides of it
        x = np.concatenate([x.ravel(), [25.0, 30.0, -25.0, 1.2, 2.0]])
    Rm = rng(16).normal(size=x.shape)
    check_grad(lambda a: np.sum(f(a, **kw) * Rm), x, fb(Rm, x, **kw))


def test_activation_values():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    np.testing.assert_array_equal(R.relu(x), [0, 0, 0, 0.5, 3])
    np.testing.assert_allclose(R.leaky_relu(x), [-0.02, -0.005, 0, 0.5, 3])
    np.testing.assert_allclose(R.elu(x), [np.exp(-2) - 1, np.exp(-0.5) - 1, 0, 0.5, 3])
    np.testing.assert_allclose(R.sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_allclose(R.softplus(x), np.log1p(np.exp(x)), rtol=1e-15)
    assert R.softplus(np.array([21.0]))[0] == 21.0
    big = np.array([-800.0, 800.0])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        np.testing.assert_array_equal(R.sigmoid(big), [0.0, 1.0])
        np.testing.assert_array_equal(R.softplus(big), [0.0, 800.0])
        R.elu(big)


@pytest.mark.parametrize("wshape", [(1,), (3,)])
def test_prelu_and_backward(wshape):
    r = rng(17)
    x = away_from_zero(r.normal(size=(2, 3, 2, 2)))
    w = r.uniform(0.1, 0.5, size=wshape)
    y = R.prelu(x, w)
    wb = w.reshape(1, -1, 1, 1) if w.size > 1 else w[0]
    np.testing.assert_allclose(y, np.maximum(x, 0) + wb * np.minimum(x, 0), rtol=1e-15)
    Rm = r.normal(size=x.shape)
    dx, dw = R.prelu_backward(Rm, x, w)
    assert dw.shape == w.shape
    check_grad(lambda a: np.sum(R.prelu(a, w) * Rm), x, dx)
    check_grad(lambda a: np.sum(R.prelu(x, a) * Rm), w, dw)
    x2 = away_from_zero(r.normal(size=(4, 3)))  # (N, C) input
    R2 = r.normal(size=x2.shape)
    dx2, dw2 = R.prelu_backward(R2, x2, w)
    check_grad(lambda a: np.sum(R.prelu(a, w) * R2), x2, dx2)
    check_grad(lambda a: np.sum(R.prelu(x2, a) * R2), w, dw2)


# ----------------------------------------------------------------------------------------------
# softmax and losses
# ----------------------------------------------------------------------------------------------
def test_softmax_and_log_softmax():
    r = rng(18)
    x = r.normal(size=(4, 5, 2)) * 3
    for dim in (1, 2, -1, 0):
        s = R.softmax(x, dim)
        np.testing.assert_allclose(s.sum(dim), 1.0, rtol=1e-14)
        np.testing.assert_allclose(R.log_softmax(x, dim), np.log(s), rtol=1e-12, atol=1e-12)
        Rm = r.normal(size=x.shape)
        check_grad(lambda a: np.sum(R.softmax(a, dim) * Rm), x, R.softmax_backward(Rm, x, dim))
        check_grad(lambda a: np.sum(R.log_softmax(a, dim) * Rm), x, R.log_softmax_backward(Rm, x, dim))
    big = np.array([[1000.0, 0.0, -1000.0]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        np.testing.assert_allclose(R.log_softmax(big), [[0.0, -1000.0, -2000.0]])


def test_cross_entropy_and_backward():
    r = rng(19)
    logits = r.normal(size=(5, 4)) * 2
    labels = np.array([0, 3, 1, 1, 2])
    expected = np.mean([np.log(np.exp(logits[n]).sum()) - logits[n, labels[n]] for n in range(5)])
    assert isinstance(R.cross_entropy(logits, labels), float)
    np.testing.assert_allclose(R.cross_entropy(logits, labels), expected, rtol=1e-13)
    check_grad(lambda a: R.cross_entropy(a, labels), logits, R.cross_entropy_backward(logits, labels))
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        v = R.cross_entropy(np.array([[1000.0, 0.0], [0.0, 1000.0]]), np.array([1, 1]))
    np.testing.assert_allclose(v, 500.0)


def test_mse_and_backward():
    r = rng(20)
    x, t = r.normal(size=(3, 4)), r.normal(size=(3, 4))
    np.testing.assert_allclose(R.mse_loss(x, t), ((x - t) ** 2).sum() / 12, rtol=1e-14)
    check_grad(lambda a: R.mse_loss(a, t), x, R.mse_loss_backward(x, t))


# ----------------------------------------------------------------------------------------------
# batch norm
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 3, 2)])
def test_batch_norm_train_and_backward(shape):
    r = rng(21)
    x = r.normal(size=shape) * 2 + 1
    C = shape[1]
    gamma, beta, eps = r.normal(size=C), r.normal(size=C), 1e-5
    y, mean, var = R.batch_norm_train(x, gamma, beta, eps)
    axes = tuple(a for a in range(x.ndim) if a != 1)
    np.testing.assert_allclose(mean, x.mean(axes), rtol=1e-13)
    np.testing.assert_allclose(var, x.var(axes), rtol=1e-13)
    xhat = (y - beta.reshape((1, C) + (1,) * (x.ndim - 2))) / gamma.reshape((1, C) + (1,) * (x.ndim - 2))
    np.testing.assert_allclose(xhat.mean(axes), 0, atol=1e-12)
    np.testing.assert_allclose(R.batch_norm_eval(x, mean, var, gamma, beta, eps), y, rtol=1e-12)
    Rm = r.normal(size=shape)
    dx, dg, db = R.batch_norm_backward(Rm, x, gamma, eps)
    check_grad(lambda a: np.sum(R.batch_norm_train(a, gamma, beta, eps)[0] * Rm), x, dx, rtol=1e-5)
    check_grad(lambda a: np.sum(R.batch_norm_train(x, a, beta, eps)[0] * Rm), gamma, dg)
    check_grad(lambda a: np.sum(R.batch_norm_train(x, gamma, a, eps)[0] * Rm), beta, db)


def test_update_running_stats():
    rm, rv = np.array([0.0, 1.0]), np.array([1.0, 2.0])
    mean, var = np.array([2.0, -1.0]), np.array([3.0, 0.5])
    new_m, new_v = R.update_running_stats(rm, rv, mean, var, 4, 0.1)
    np.testing.assert_allclose(new_m, [0.2, 0.8])
    np.testing.assert_allclose(new_v, [0.9 * 1.0 + 0.1 * 4.0, 0.9 * 2.0 + 0.1 * 0.5 * 4 / 3])


# ----------------------------------------------------------------------------------------------
# SGD
# ----------------------------------------------------------------------------------------------
def test_sgd_step_by_hand():
    p, g = np.array([1.0, -2.0]), np.array([0.5, 0.5])
    p1, b1 = R.sgd_step(p, g, None, lr=0.1)
    np.testing.assert_allclose(p1, [0.95, -2.05])
    assert b1 is None
    p1, b1 = R.sgd_step(p, g, None, lr=0.1, momentum=0.9, weight_decay=0.1, first_step=True)
    np.testing.assert_allclose(b1, [0.6, 0.3])  # g + 0.1*p
    np.testing.assert_allclose(p1, p - 0.1 * b1)
    p2, b2 = R.sgd_step(p1, g, b1, lr=0.1, momentum=0.9, dampening=0.5, nesterov=False)
    np.testing.assert_allclose(b2, 0.9 * b1 + 0.5 * g)
    np.testing.assert_allclose(p2, p1 - 0.1 * b2)
    p3, b3 = R.sgd_step(p1, g, b1, lr=0.1, momentum=0.9, nesterov=True)
    np.testing.assert_allclose(b3, 0.9 * b1 + g)
    np.testing.assert_allclose(p3, p1 - 0.1 * (g + 0.9 * b3))
    np.testing.assert_array_equal(p, [1.0, -2.0])  # inputs untouched
