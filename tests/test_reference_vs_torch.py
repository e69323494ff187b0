"""The NumPy reference (tests/reference.py) against PyTorch in float64, skipped when torch is not
installed: conv2d, im2col (unfold), the pools (max-pool ties too), adaptive average pooling, the
activations, cross entropy, batch norm and the SGD step."""
from __future__ import annotations

import numpy as np
import pytest

import reference as R

from helpers import CONV_CONFIGS, POOL_CONFIGS, _conv_case, rng


def _t(a):
    torch = pytest.importorskip("torch")
    return torch.tensor(np.asarray(a), dtype=torch.float64)


@pytest.mark.parametrize("cfg", CONV_CONFIGS)
def test_conv2d_vs_torch(cfg):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, b, stride, pad, dil, groups = _conv_case(cfg, seed=22)
    top, bottom, left, right = pad
    tx, tw = _t(x).requires_grad_(), _t(w).requires_grad_()
    tb = _t(b).requires_grad_() if b is not None else None
    ty = F.conv2d(F.pad(tx, (left, right, top, bottom)), tw, tb, stride=stride, dilation=dil,
                  groups=groups)
    y = R.conv2d(x, w, b, stride, pad, dil, groups)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    Rm = rng(23).normal(size=y.shape)
    (ty * _t(Rm)).sum().backward()
    dx, dw, db = R.conv2d_backward(Rm, x, w, stride, pad, dil, groups)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-12, atol=1e-12)
    if tb is not None:
        np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_im2col_vs_torch_unfold():
    torch = pytest.importorskip("torch")
    x = rng(24).normal(size=(2, 3, 7, 6))
    cols = R.im2col(x, (3, 2), (2, 1), (1, 2), (1, 2))
    ref = torch.nn.functional.unfold(_t(x), (3, 2), dilation=(1, 2), padding=(1, 2), stride=(2, 1))
    np.testing.assert_array_equal(cols, ref.numpy())


@pytest.mark.parametrize("H,W,k,s,p", POOL_CONFIGS)
def test_pools_vs_torch(H, W, k, s, p):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng(25).normal(size=(2, 3, H, W))
    # integer-valued input with many ties, plus random input
    for data in (x, np.round(x)):
        y, idx = R.max_pool2d(data, k, s, p)
        ty, tidx = F.max_pool2d(_t(data), k, s, p, return_indices=True)
        np.testing.assert_array_equal(y, ty.numpy())
        np.testing.assert_array_equal(idx, tidx.numpy())
    tx = _t(x).requires_grad_()
    ty = F.avg_pool2d(tx, k, s, p, count_include_pad=True)
    np.testing.assert_allclose(R.avg_pool2d(x, k, s, p), ty.detach().numpy(), rtol=1e-13, atol=1e-14)
    Rm = rng(26).normal(size=ty.shape)
    (ty * _t(Rm)).sum().backward()
    np.testing.assert_allclose(R.avg_pool2d_backward(Rm, x.shape, k, s, p), tx.grad.numpy(),
                               rtol=1e-13, atol=1e-14)


def test_max_pool_ties_vs_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for shape, k, s, p in [((1, 2, 5, 5), 3, 2, 1), ((2, 1, 4, 6), 2, None, 0),
                           ((1, 1, 6, 6), 3, 1, 1), ((1, 1, 5, 4), (2, 3), (2, 1), (1, 1))]:
        x = np.full(shape, 0.5)
        y, idx = R.max_pool2d(x, k, s, p)
        ty, tidx = F.max_pool2d(_t(x), k, s, p, return_indices=True)
        np.testing.assert_array_equal(y, ty.numpy())
        np.testing.assert_array_equal(idx, tidx.numpy())
        x = -np.ones(shape)  # negative: padding must not win
        y, idx = R.max_pool2d(x, k, s, p)
        ty, tidx = F.max_pool2d(_t(x), k, s, p, return_indices=True)
        np.testing.assert_array_equal(y, ty.numpy())
        np.testing.assert_array_equal(idx, tidx.numpy())


@pytest.mark.parametrize("H,W,OH,OW", [(6, 6, 3, 3), (5, 7, 3, 4), (7, 5, 1, 1), (3, 4, 5, 6),
                                       (10, 9, 4, 7)])
def test_adaptive_avg_pool_vs_torch(H, W, OH, OW):
    torch = pytest.importorskip("torch")
    x = rng(27).normal(size=(2, 3, H, W))
    tx = _t(x).requires_grad_()
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, (OH, OW))
    np.testing.assert_allclose(R.adaptive_avg_pool2d(x, (OH, OW)), ty.detach().numpy(),
                               rtol=1e-13, atol=1e-14)
    Rm = rng(28).normal(size=ty.shape)
    (ty * _t(Rm)).sum().backward()
    np.testing.assert_allclose(R.adaptive_avg_pool2d_backward(Rm, x.shape), tx.grad.numpy(),
                               rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("beta,threshold", [(1.0, 20.0), (2.0, 3.0), (0.5, 5.0)])
def test_softplus_vs_torch(beta, threshold):
    torch = pytest.importorskip("torch")
    x = np.concatenate([rng(29).normal(size=50) * 15, [-40.0, 0.0, 19.9, 20.1, 45.0]])
    tx = _t(x).requires_grad_()
    ty = torch.nn.functional.softplus(tx, beta=beta, threshold=threshold)
    np.testing.assert_allclose(R.softplus(x, beta, threshold), ty.detach().numpy(), rtol=1e-13,
                               atol=1e-300)
    ty.sum().backward()
    np.testing.assert_allclose(R.softplus_backward(np.ones_like(x), x, beta, threshold),
                               tx.grad.numpy(), rtol=1e-13, atol=1e-300)


def test_activations_vs_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng(30).normal(size=(3, 4, 2, 2)) * 3
    w = np.array([0.1, 0.2, 0.3, 0.4])
    pairs = [(R.relu(x), F.relu(_t(x))), (R.leaky_relu(x, 0.2), F.leaky_relu(_t(x), 0.2)),
             (R.elu(x, 0.7), F.elu(_t(x), 0.7)), (R.sigmoid(x), torch.sigmoid(_t(x))),
             (R.tanh(x), torch.tanh(_t(x))), (R.prelu(x, w), F.prelu(_t(x), _t(w))),
             (R.softmax(x, 1), F.softmax(_t(x), 1)), (R.log_softmax(x, 2), F.log_softmax(_t(x), 2))]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-13, atol=1e-15)


def test_cross_entropy_vs_torch():
    torch = pytest.importorskip("torch")
    r = rng(31)
    for scale in (1.0, 50.0, 1000.0):
        logits = r.normal(size=(8, 5)) * scale
        labels = r.integers(0, 5, size=8)
        tl = _t(logits).requires_grad_()
        loss = torch.nn.functional.cross_entropy(tl, torch.tensor(labels, dtype=torch.int64))
        np.testing.assert_allclose(R.cross_entropy(logits, labels), loss.item(), rtol=1e-13)
        loss.backward()
        np.testing.assert_allclose(R.cross_entropy_backward(logits, labels), tl.grad.numpy(),
                                   rtol=1e-12, atol=1e-15)
    x, t = r.normal(size=(4, 3)), r.normal(size=(4, 3))
    tx = _t(x).requires_grad_()
    loss = torch.nn.functional.mse_loss(tx, _t(t))
    loss.backward()
    np.testing.assert_allclose(R.mse_loss(x, t), loss.item(), rtol=1e-14)
    np.testing.assert_allclose(R.mse_loss_backward(x, t), tx.grad.numpy(), rtol=1e-14)


@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 3, 2)])
def test_batch_norm_vs_torch(shape):
    torch = pytest.importorskip("torch")
    r = rng(32)
    x = r.normal(size=shape) * 2 + 1
    C = shape[1]
    gamma, beta, eps, mom = r.normal(size=C), r.normal(size=C), 1e-5, 0.1
    rm, rv = r.normal(size=C), r.uniform(0.5, 2, size=C)
    trm, trv = _t(rm), _t(rv)
    tx, tg, tb = _t(x).requires_grad_(), _t(gamma).requires_grad_(), _t(beta).requires_grad_()
    ty = torch.nn.functional.batch_norm(tx, trm, trv, tg, tb, training=True, momentum=mom, eps=eps)
    y, mean, var = R.batch_norm_train(x, gamma, beta, eps)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    n = x.size // C
    new_m, new_v = R.update_running_stats(rm, rv, mean, var, n, mom)
    np.testing.assert_allclose(new_m, trm.numpy(), rtol=1e-13)
    np.testing.assert_allclose(new_v, trv.numpy(), rtol=1e-13)
    Rm = r.normal(size=shape)
    (ty * _t(Rm)).sum().backward()
    dx, dg, db = R.batch_norm_backward(Rm, x, gamma, eps)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dg, tg.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-12, atol=1e-12)
    te = torch.nn.functional.batch_norm(_t(x), _t(rm), _t(rv), _t(gamma), _t(beta), training=False,
                                        eps=eps)
    np.testing.assert_allclose(R.batch_norm_eval(x, rm, rv, gamma, beta, eps), te.numpy(), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("momentum,dampening,weight_decay,nesterov", [
    (0.0, 0.0, 0.0, False),
    (0.0, 0.0, 0.1, False),
    (0.9, 0.0, 0.0, False),
    (0.9, 0.0, 1e-2, True),
    (0.5, 0.3, 1e-3, False),
    (0.8, 0.0, 0.05, True),
])
def test_sgd_vs_torch(momentum, dampening, weight_decay, nesterov):
    torch = pytest.importorskip("torch")
    r = rng(33)
    p0 = r.normal(size=(3, 4))
    tp = torch.nn.Parameter(_t(p0))
    opt = torch.optim.SGD([tp], lr=0.05, momentum=momentum, dampening=dampening,
                          weight_decay=weight_decay, nesterov=nesterov)
    p, buf = p0, None
    for step in range(5):
        g = r.normal(size=p0.shape)
        tp.grad = _t(g)
        opt.step()
        p, buf = R.sgd_step(p, g, buf, 0.05, momentum, dampening, weight_decay, nesterov,
                            first_step=(step == 0))
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-13, atol=1e-15)
        if momentum:
            np.testing.assert_allclose(buf, opt.state[tp]["momentum_buffer"].numpy(), rtol=1e-13)
