"""pycnn.nn layers against the NumPy reference (tests/reference.py) and float64 gradient checks:
Conv2d, Linear, MaxPool2d / AvgPool2d / AdaptiveAvgPool2d, the activations (ReLU, LeakyReLU, ELU,
Sigmoid, Tanh, Softplus, PReLU, Softmax), Flatten / Identity, BatchNorm1d / BatchNorm2d, Dropout,
the losses, Residual, Concat and a small LeNet."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn
from pycnn.testing import gradcheck

from helpers import T64 as T, N, away_from_zero, close, rng

import reference as ref


def distinct(shape, seed=0, scale=0.1):
    """Values at least `scale` apart (no max-pool ties, no ReLU kinks within eps)."""
    n = int(np.prod(shape))
    return (rng(seed).permutation(n) - n / 2 + 0.5).reshape(shape) * scale


def set_params(m, **arrays):
    for name, a in arrays.items():
        getattr(m, name).data = T(a)
    return m


# ----------------------------------------------------------------------------------------------
# layers against the reference
# ----------------------------------------------------------------------------------------------
def test_conv2d_layer_against_reference():
    r = rng(1)
    m = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2).double()
    x = r.standard_normal((2, 4, 7, 6))
    w, b = N(m.weight), N(m.bias)
    y = m(T(x))
    want = ref.conv2d(x, w, b, (2, 1), (1, 1, 0, 0), (1, 2), 2)
    close(y, want)
    dy = r.standard_normal(want.shape)
    dx = m.backward(T(dy))
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, (2, 1), (1, 1, 0, 0), (1, 2), 2)
    close(dx, rdx)
    close(m.weight.grad, rdw)
    close(m.bias.grad, rdb)


def test_conv2d_same_padding_layer():
    for k in (2, 3, 4):
        m = nn.Conv2d(2, 3, k, padding="same", dilation=2)
        assert m(pc.randn(1, 2, 9, 10)).shape == (1, 3, 9, 10)
    assert nn.Conv2d(2, 3, 3, padding="valid")(pc.randn(1, 2, 9, 10)).shape == (1, 3, 7, 8)


def test_linear_layer_against_reference_and_nd_input():
    r = rng(2)
    m = nn.Linear(4, 3).double()
    x = r.standard_normal((5, 4))
    close(m(T(x)), ref.linear(x, N(m.weight), N(m.bias)))
    dy = r.standard_normal((5, 3))
    dx = m.backward(T(dy))
    rdx, rdw, rdb = ref.linear_backward(dy, x, N(m.weight))
    close(dx, rdx)
    close(m.weight.grad, rdw)
    close(m.bias.grad, rdb)
    x3 = r.standard_normal((2, 5, 4))
    y3 = m(T(x3))
    assert y3.shape == (2, 5, 3)
    assert m.backward(T(np.ones((2, 5, 3)))).shape == (2, 5, 4)
    assert nn.Linear(4, 3, bias=False).bias is None


def test_pool_layers_against_reference():
    r = rng(3)
    x = distinct((2, 3, 7, 8), seed=3)
    mp = nn.MaxPool2d(3, stride=2, padding=1)
    y = mp(T(x))
    ry, ridx = ref.max_pool2d(x, 3, 2, 1)
    close(y, ry)
    dy = r.standard_normal(ry.shape)
    close(mp.backward(T(dy)), ref.max_pool2d_backward(dy, ridx, x.shape))
    ap = nn.AvgPool2d((2, 3), stride=(1, 2), padding=1)
    close(ap(T(x)), ref.avg_pool2d(x, (2, 3), (1, 2), 1))
    dy = r.standard_normal(ref.avg_pool2d(x, (2, 3), (1, 2), 1).shape)
    close(ap.backward(T(dy)), ref.avg_pool2d_backward(dy, x.shape, (2, 3), (1, 2), 1))
    gp = nn.AdaptiveAvgPool2d(1)
    close(gp(T(x)), x.mean(axis=(2, 3), keepdims=True))
    close(gp.backward(T(np.ones((2, 3, 1, 1)))), np.full(x.shape, 1 / 56))
    assert nn.MaxPool2d(2).stride == 2


ACTIVATIONS = [
    (nn.ReLU(), ref.relu, ref.relu_backward),
    (nn.LeakyReLU(0.2), lambda x: ref.leaky_relu(x, 0.2), lambda g, x: ref.leaky_relu_backward(g, x, 0.2)),
    (nn.LeakyReLU(), ref.leaky_relu, ref.leaky_relu_backward),
    (nn.ELU(0.5), lambda x: ref.elu(x, 0.5), lambda g, x: ref.elu_backward(g, x, 0.5)),
    (nn.Sigmoid(), ref.sigmoid, ref.sigmoid_backward),
    (nn.Tanh(), ref.tanh, ref.tanh_backward),
    (nn.Softplus(), ref.softplus, ref.softplus_backward),
    (nn.Softplus(beta=2.0), lambda x: ref.softplus(x, 2.0), lambda g, x: ref.softplus_backward(g, x, 2.0)),
]


@pytest.mark.parametrize("layer, f, fb", ACTIVATIONS, ids=[repr(a[0]) for a in ACTIVATIONS])
def test_activation_layers(layer, f, fb):
    r = rng(4)
    x = away_from_zero(r.standard_normal((2, 3, 4, 4)) * 2)
    close(layer(T(x)), f(x))
    dy = r.standard_normal(x.shape)
    close(layer.backward(T(dy)), fb(dy, x))
    assert gradcheck(layer, x[:1, :2])


@pytest.mark.parametrize("num", [1, 3])
def test_prelu_layer(num):
    r = rng(5)
    m = nn.PReLU(num, init=0.3, dtype=pc.float64)
    np.testing.assert_array_equal(N(m.weight), np.full(num, 0.3))
    x = away_from_zero(r.standard_normal((2, 3, 4)))
    close(m(T(x)), ref.prelu(x, N(m.weight)))
    dy = r.standard_normal(x.shape)
    dx = m.backward(T(dy))
    rdx, rdw = ref.prelu_backward(dy, x, N(m.weight))
    close(dx, rdx)
    close(m.weight.grad, rdw)
    m.weight.data = T(r.uniform(0.1, 0.5, num))
    assert gradcheck(m, x)


def test_softmax_layer():
    r = rng(6)
    x = r.standard_normal((4, 5))
    m = nn.Softmax(dim=1)
    close(m(T(x)), ref.softmax(x))
    dy = r.standard_normal(x.shape)
    close(m.backward(T(dy)), ref.softmax_backward(dy, x))
    assert gradcheck(nn.Softmax(dim=-1), x)


def test_flatten_and_identity():
    x = T(np.arange(24.0).reshape(2, 3, 4))
    f = nn.Flatten()
    y = f(x)
    assert y.shape == (2, 12)
    assert f.backward(y).shape == (2, 3, 4)
    assert nn.Flatten(0)(x).shape == (24,)
    assert nn.Flatten(1, 1)(x).shape == (2, 3, 4)
    i = nn.Identity(54, unused=1)
    assert i(x) is x and i.backward(x) is x


# ----------------------------------------------------------------------------------------------
# batch norm
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm2d, (4, 3, 5, 5)), (nn.BatchNorm1d, (6, 3)),
                                        (nn.BatchNorm1d, (4, 3, 7))])
def test_batch_norm_train_and_eval(cls, shape):
    r = rng(7)
    m = cls(3, momentum=0.2).double()
    set_params(m, weight=r.uniform(0.5, 1.5, 3), bias=r.standard_normal(3))
    g, b = N(m.weight), N(m.bias)
    x = r.standard_normal(shape) * 2 + 1
    y = m(T(x))
    ry, mean, var = ref.batch_norm_train(x, g, b)
    close(y, ry, rtol=1e-9, atol=1e-10)
    want_m, want_v = ref.update_running_stats(np.zeros(3), np.ones(3), mean, var, x.size // 3, 0.2)
    close(m.running_mean, want_m)
    close(m.running_var, want_v, rtol=1e-9)
    assert int(m.num_batches_tracked.item()) == 1 and m.num_batches_tracked.dtype == pc.int64
    dy = r.standard_normal(shape)
    dx = m.backward(T(dy))
    rdx, rdg, rdb = ref.batch_norm_backward(dy, x, g)
    close(dx, rdx, rtol=1e-8, atol=1e-10)
    close(m.weight.grad, rdg, rtol=1e-9, atol=1e-10)
    close(m.bias.grad, rdb)
    assert gradcheck(m, x)
    # eval: running statistics, no update
    m.eval()
    m.zero_grad()
    rm, rv = N(m.running_mean).copy(), N(m.running_var).copy()
    nbt = int(m.num_batches_tracked.item())
    ye = m(T(x))
    close(ye, ref.batch_norm_eval(x, rm, rv, g, b), rtol=1e-9, atol=1e-10)
    close(m.running_mean, rm)
    assert int(m.num_batches_tracked.item()) == nbt
    dxe = m.backward(T(dy))
    bshape = (1, 3) + (1,) * (len(shape) - 2)
    invstd = 1 / np.sqrt(rv + 1e-5)
    close(dxe, dy * (g * invstd).reshape(bshape), rtol=1e-9)
    axes = tuple(a for a in range(len(shape)) if a != 1)
    xhat = (x - rm.reshape(bshape)) * invstd.reshape(bshape)
    close(m.weight.grad, (dy * xhat).sum(axis=axes), rtol=1e-9, atol=1e-10)
    close(m.bias.grad, dy.sum(axis=axes), rtol=1e-9, atol=1e-10)
    assert gradcheck(m, x)


def test_batch_norm_options():
    r = rng(8)
    x = r.standard_normal((5, 2, 3, 3))
    m = nn.BatchNorm2d(2, affine=False, track_running_stats=False).double()
    assert m.weight is None and m.running_mean is None
    assert list(m.state_dict()) == []
    close(m(T(x)), ref.batch_norm_train(x, None, None)[0], rtol=1e-9, atol=1e-10)
    m.eval()  # no running stats: still batch statistics
    close(m(T(x)), ref.batch_norm_train(x, None, None)[0], rtol=1e-9, atol=1e-10)
    assert gradcheck(m, x)
    # momentum=None: cumulative moving average
    c = nn.BatchNorm2d(2, momentum=None).double()
    xs = [r.standard_normal((3, 2, 2, 2)) for _ in range(3)]
    for xi in xs:
        c(T(xi))
    n = 12
    want = np.mean([xi.mean(axis=(0, 2, 3)) for xi in xs], axis=0)
    close(c.running_mean, want)
    want_v = np.mean([xi.var(axis=(0, 2, 3)) * n / (n - 1) for xi in xs], axis=0)
    close(c.running_var, want_v, rtol=1e-9)
    c.reset_running_stats()
    close(c.running_mean, np.zeros(2))
    assert int(c.num_batches_tracked.item()) == 0


# ----------------------------------------------------------------------------------------------
# gradient checks (float64 central differences)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer, shape", [
    (lambda: nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2), (2, 4, 6, 5)),
    (lambda: nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False), (1, 3, 5, 5)),
    (lambda: nn.Conv2d(2, 3, 4, padding="same", dilation=(2, 1)), (1, 2, 7, 6)),
    (lambda: nn.Conv2d(2, 2, 1, stride=2), (2, 2, 5, 5)),
    (lambda: nn.MaxPool2d(2), (2, 2, 6, 6)),
    (lambda: nn.MaxPool2d(3, stride=2, padding=1), (1, 2, 7, 6)),
    (lambda: nn.AvgPool2d(3, stride=2, padding=1), (1, 2, 7, 6)),
    (lambda: nn.AdaptiveAvgPool2d((2, 3)), (1, 2, 5, 7)),
    (lambda: nn.Linear(6, 4), (3, 6)),
    (lambda: nn.Flatten(), (2, 3, 2, 2)),
    (lambda: nn.Dropout(0.0), (2, 5)),
    (lambda: nn.Dropout(0.5).eval(), (2, 5)),
])
def test_gradcheck_layers(layer, shape):
    x = distinct(shape, seed=sum(shape))
    assert gradcheck(layer(), x)


def test_gradcheck_losses():
    r = rng(9)
    assert gradcheck(nn.CrossEntropyLoss(), (r.standard_normal((4, 5)), np.array([0, 4, 2, 2])))
    assert gradcheck(nn.CrossEntropyLoss(reduction="sum"), (r.standard_normal((3, 2)), np.array([1, 0, 1])))
    assert gradcheck(nn.MSELoss(), (r.standard_normal((3, 4)), r.standard_normal((3, 4))))


def test_gradcheck_residual_with_projection_shortcut():
    pc.manual_seed(1)
    block = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.Tanh(),
                          nn.Conv2d(4, 4, 3, padding=1))
    res = nn.Residual(block, shortcut=nn.Conv2d(2, 4, 1, stride=2))
    x = rng(10).standard_normal((2, 2, 5, 5))
    assert gradcheck(res, x)
    ident = nn.Residual(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Sigmoid()))
    assert gradcheck(ident, x)
    names = [n for n, _ in res.named_parameters()]
    assert names[0] == "block.0.weight" and names[-1] == "shortcut.bias"


def test_gradcheck_concat():
    pc.manual_seed(2)
    cat = nn.Concat(nn.Conv2d(3, 2, 1), nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh()),
                    nn.AvgPool2d(3, stride=1, padding=1))
    x = rng(11).standard_normal((2, 3, 4, 4))
    y = cat(pc.tensor(x, dtype=pc.float32))  # pc.tensor keeps a float64 array float64, as torch
    assert y.shape == (2, 8, 4, 4)
    assert gradcheck(cat, x)


def test_gradcheck_small_lenet():
    pc.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.MaxPool2d(2), nn.Conv2d(2, 3, 3, padding=1), nn.ELU(),
                        nn.Flatten(), nn.Linear(3 * 4 * 4, 5), nn.Softplus(), nn.Linear(5, 3))
    x = distinct((2, 1, 10, 10), seed=4, scale=0.02)
    assert gradcheck(net, x)


def test_gradcheck_reports_the_worst_element():
    class Wrong(nn.Linear):
        def backward(self, g):
            dx = super().backward(g)
            pc._core.scale_(self.bias.grad, 2.0)
            return dx

    with pytest.raises(AssertionError, match=r"d/d bias\[\d\]"):
        gradcheck(Wrong(3, 2), rng(12).standard_normal((2, 3)))
    m = nn.Linear(3, 2)
    before = N(m.weight).copy()
    gradcheck(m, rng(12).standard_normal((2, 3)))
    np.testing.assert_array_equal(N(m.weight), before)  # the original is untouched
    assert m.weight.dtype == pc.float32 and m.weight.grad is None
