"""pycnn.nn: layers against the NumPy reference, float64 gradient checks, PyTorch parity,
Module bookkeeping (parameters, state dicts, train/eval, freezing), containers and errors."""
from __future__ import annotations

import copy
import math
from collections import OrderedDict

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn
from pycnn.testing import gradcheck

from helpers import T64 as T, rng

import reference as ref


def N(t):
    return np.asarray(t.numpy())


def close(actual, expected, rtol=1e-10, atol=1e-12):
    a = N(actual) if isinstance(actual, (pc.Tensor, nn.Parameter)) else actual
    np.testing.assert_allclose(a, expected, rtol=rtol, atol=atol)


def away_from_zero(a, margin=0.05):
    a = np.array(a, dtype=np.float64)
    small = np.abs(a) < margin
    a[small] = np.where(a[small] >= 0, margin, -margin) * 2
    return a


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


def test_default_init_bounds_and_seed():
    pc.manual_seed(7)
    m = nn.Conv2d(3, 8, 5, groups=1)
    bound = 1 / math.sqrt(3 * 25)
    w, b = N(m.weight), N(m.bias)
    assert w.shape == (8, 3, 5, 5) and b.shape == (8,) and w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.9 * bound and abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound
    pc.manual_seed(7)
    np.testing.assert_array_equal(N(nn.Conv2d(3, 8, 5).weight), w)
    lin = nn.Linear(50, 20)
    assert np.abs(N(lin.weight)).max() <= 1 / math.sqrt(50)
    assert np.abs(N(lin.bias)).max() <= 1 / math.sqrt(50)
    g = nn.Conv2d(4, 8, 3, groups=4)
    assert g.weight.shape == (8, 1, 3, 3)
    assert np.abs(N(g.weight)).max() <= 1 / 3


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


# ----------------------------------------------------------------------------------------------
# PyTorch parity
# ----------------------------------------------------------------------------------------------
def _torch_to_pycnn(tmodel, model):
    model.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})


def _compare_with_torch(torch, tmodel, model, x, labels, rtol=1e-10, atol=1e-12):
    _torch_to_pycnn(tmodel, model)
    xt = torch.tensor(x, requires_grad=True)
    tout = tmodel(xt)
    tloss = torch.nn.functional.cross_entropy(tout, torch.tensor(labels))
    tloss.backward()
    crit = nn.CrossEntropyLoss()
    out = model(T(x))
    close(out, tout.detach().numpy(), rtol, atol)
    loss = crit(out, labels)
    assert loss.item() == pytest.approx(tloss.item(), rel=1e-12)
    model.zero_grad()
    dx = model.backward(crit.backward())
    close(dx, xt.grad.numpy(), rtol, atol)
    grads = dict(model.named_parameters())
    for name, p in tmodel.named_parameters():
        close(grads[name].grad, p.grad.numpy(), rtol, atol)
    for name, b in tmodel.named_buffers():
        close(model.state_dict()[name], b.numpy(), rtol, atol)


def test_lenet5_parity_with_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tn = torch.nn
    tmodel = tn.Sequential(tn.Conv2d(1, 6, 5, padding=2), tn.ReLU(), tn.MaxPool2d(2), tn.Conv2d(6, 16, 5), tn.ReLU(),
                           tn.MaxPool2d(2), tn.Flatten(), tn.Linear(400, 120), tn.ReLU(), tn.Linear(120, 84),
                           tn.ReLU(), tn.Linear(84, 10)).double()
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                          nn.ReLU(), nn.Linear(84, 10)).double()
    assert repr(model) == repr(tmodel)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in tmodel.named_parameters()]
    x = rng(13).standard_normal((4, 1, 28, 28))
    _compare_with_torch(torch, tmodel, model, x, np.array([3, 1, 4, 1]))


def test_layer_zoo_parity_with_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    tn = torch.nn

    def build(m):
        return m.Sequential(
            m.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), m.BatchNorm2d(8), m.PReLU(8),
            m.Conv2d(8, 8, 4, padding="same", dilation=2, bias=False), m.ELU(0.8), m.AvgPool2d(3, 1, 1),
            m.Conv2d(8, 6, 3), m.LeakyReLU(0.1), m.MaxPool2d(2, 1), m.AdaptiveAvgPool2d((3, 2)), m.Flatten(),
            m.Linear(36, 12), m.BatchNorm1d(12), m.Softplus(), m.Dropout(0.0), m.Linear(12, 7), m.Sigmoid(),
            m.Linear(7, 5), m.Tanh(), m.Linear(5, 4))

    tmodel, model = build(tn).double(), build(nn).double()
    x = rng(14).standard_normal((3, 4, 11, 10))
    _compare_with_torch(torch, tmodel, model, x, np.array([0, 3, 2]), rtol=1e-9, atol=1e-11)
    # eval mode (running statistics) too
    tmodel.eval()
    model.eval()
    tmodel.zero_grad()
    _compare_with_torch(torch, tmodel, model, x, np.array([1, 1, 2]), rtol=1e-9, atol=1e-11)


def test_residual_and_concat_parity_with_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    tn = torch.nn

    class TRes(tn.Module):
        def __init__(self):
            super().__init__()
            self.block = tn.Sequential(tn.Conv2d(3, 4, 3, padding=1), tn.ReLU(), tn.Conv2d(4, 4, 3, padding=1))
            self.shortcut = tn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.block(x) + self.shortcut(x)

    class TCat(tn.Module):
        def __init__(self):
            super().__init__()
            self.a = tn.Conv2d(4, 2, 1)
            self.b = tn.Conv2d(4, 3, 3, padding=1)

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x)], 1)

    tmodel = tn.Sequential(TRes(), TCat(), tn.Flatten(), tn.Linear(5 * 16, 3)).double()
    model = nn.Sequential(nn.Residual(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                                                    nn.Conv2d(4, 4, 3, padding=1)), nn.Conv2d(3, 4, 1)),
                          nn.Concat(OrderedDict(a=nn.Conv2d(4, 2, 1), b=nn.Conv2d(4, 3, 3, padding=1))),
                          nn.Flatten(), nn.Linear(5 * 16, 3)).double()
    x = rng(15).standard_normal((2, 3, 4, 4))
    _compare_with_torch(torch, tmodel, model, x, np.array([2, 0]))


# ----------------------------------------------------------------------------------------------
# Module bookkeeping
# ----------------------------------------------------------------------------------------------
def lenet():
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Dropout(0.5), nn.Linear(2 * 3 * 3, 4))


def test_parameters_buffers_modules():
    m = lenet()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "6.weight", "6.bias"]
    assert len(list(m.parameters())) == 6
    assert all(isinstance(p, nn.Parameter) for p in m.parameters())
    assert [n for n, _ in m.named_buffers()] == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert len(list(m.children())) == 7
    assert [n for n, _ in m.named_modules()] == [""] + [str(i) for i in range(7)]
    assert m.get_submodule("6") is m[6]
    assert m[0].weight.shape == (2, 1, 3, 3) and m[0].weight.dtype == pc.float32
    assert list(m.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                    "1.running_var", "1.num_batches_tracked", "6.weight", "6.bias"]


def test_setattr_registers_in_order_and_custom_module():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.scale = nn.Parameter(pc.ones(1))
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(8, 2))
            self.register_buffer("steps", pc.zeros(1))
            self.note = "plain attribute"

        def forward(self, x):
            return self.head(self.conv(x))

        def backward(self, g):
            return self.conv.backward(self.head.backward(g))

    net = Net()
    # PyTorch's order: a module's own parameters (and buffers) first, then its children's
    assert [n for n, _ in net.named_parameters()] == ["scale", "conv.weight", "conv.bias", "head.1.weight",
                                                      "head.1.bias"]
    assert list(net.state_dict()) == ["scale", "steps", "conv.weight", "conv.bias", "head.1.weight", "head.1.bias"]
    assert "note" not in net.state_dict()
    y = net(pc.randn(3, 1, 4, 4))
    assert y.shape == (3, 2)
    assert net.backward(pc.ones(3, 2)).shape == (3, 1, 4, 4)
    assert net.conv.weight.grad is not None
    assert "(conv): Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1))" in repr(net)
    net.conv = nn.Conv2d(1, 2, 1)  # replaced in place, same order
    assert [n for n, _ in net.named_children()] == ["conv", "head"]
    with pytest.raises(TypeError):
        net.scale = pc.ones(1)  # a parameter slot needs a Parameter
    del net.head
    assert [n for n, _ in net.named_children()] == ["conv"]


def test_state_dict_round_trip():
    pc.manual_seed(0)
    a = lenet()
    a(pc.randn(4, 1, 8, 8))  # moves running stats
    sd = a.state_dict()
    assert sd["0.weight"] is a[0].weight.data  # the module's own tensors, as PyTorch
    assert sd["1.num_batches_tracked"].dtype == pc.int64
    b = lenet()
    res = b.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == []
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(N(v), N(sd[k]))
    # copies, not shared
    a[0].weight.data.fill_(5.0)
    assert N(b[0].weight).max() < 5.0
    # NumPy arrays (and float64) are accepted and converted to the parameter's dtype
    c = lenet()
    c.load_state_dict({k: np.asarray(N(v), dtype=np.float64 if k.endswith("weight") else N(v).dtype)
                       for k, v in b.state_dict().items()})
    assert c[0].weight.dtype == pc.float32
    np.testing.assert_array_equal(N(c[6].weight), N(b[6].weight))
    assert int(c[1].num_batches_tracked.item()) == 1


def test_load_state_dict_errors():
    m = lenet()
    sd = {k: N(v).copy() for k, v in m.state_dict().items()}
    before = N(m[0].weight).copy()
    bad = dict(sd)
    del bad["6.bias"]
    bad["extra.weight"] = np.zeros(3)
    bad["0.weight"] = before + 1
    with pytest.raises(RuntimeError) as e:
        m.load_state_dict(bad)
    assert '"6.bias"' in str(e.value) and '"extra.weight"' in str(e.value)
    assert "Missing" in str(e.value) and "Unexpected" in str(e.value)
    np.testing.assert_array_equal(N(m[0].weight), before)  # nothing loaded
    res = m.load_state_dict(bad, strict=False)
    assert res.missing_keys == ["6.bias"] and res.unexpected_keys == ["extra.weight"]
    np.testing.assert_array_equal(N(m[0].weight), before + 1)
    wrong = dict(sd)
    wrong["6.weight"] = np.zeros((4, 5), dtype=np.float32)
    with pytest.raises(RuntimeError, match=r"6\.weight.*\(4, 5\).*\(4, 18\)"):
        m.load_state_dict(wrong, strict=False)
    with pytest.raises(TypeError):
        m.load_state_dict([1, 2])


def test_zero_grad_accumulation_and_freeze():
    pc.manual_seed(4)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3)).double()
    x = T(rng(16).standard_normal((2, 1, 4, 4)))
    g = T(np.ones((2, 3)))
    m(x)
    m.backward(g)
    g1 = N(m[2].weight.grad).copy()
    m(x)
    m.backward(g)
    close(m[2].weight.grad, 2 * g1)  # accumulates
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    assert m[0].freeze() is m[0]
    assert not m[0].weight.requires_grad and m[2].weight.requires_grad
    m(x)
    dx = m.backward(g)
    assert dx.shape == (2, 1, 4, 4)  # the input gradient still flows
    assert m[0].weight.grad is None and m[0].bias.grad is None
    assert m[2].weight.grad is not None
    m.freeze()
    m.zero_grad()
    m(x)
    m.backward(g)
    assert all(p.grad is None for p in m.parameters())
    assert m.unfreeze() is m and all(p.requires_grad for p in m.parameters())


def test_train_eval_switching():
    m = lenet()
    assert m.training and all(c.training for c in m.modules())
    assert m.eval() is m
    assert not any(c.training for c in m.modules())
    m.train()
    assert all(c.training for c in m.modules())
    m[5].eval()
    assert not m[5].training and m.training
    d = nn.Dropout(0.5)
    x = pc.ones(50, 40)
    pc.manual_seed(0)
    y = N(d(x))
    assert set(np.unique(y)) == {0.0, 2.0}
    close(d.backward(pc.ones(50, 40)), y)
    d.eval()
    assert d(x) is x
    assert d.backward(x) is x


def test_to_and_dtype():
    m = lenet()
    params = list(m.parameters())
    assert m.to(pc.float64) is m
    assert list(m.parameters()) == params  # same Parameter objects (optimizers keep working)
    assert all(p.dtype == pc.float64 for p in params)
    assert m[1].running_mean.dtype == pc.float64 and m[1].num_batches_tracked.dtype == pc.int64
    assert m.to("cpu") is m and m.device == "cpu"
    m.float()
    assert all(p.dtype == pc.float32 for p in params)
    assert nn.Linear(2, 3, dtype=pc.float64).weight.dtype == pc.float64
    assert nn.Conv2d(1, 1, 1).to(np.float64).weight.dtype == pc.float64
    with pytest.raises(TypeError):
        m.to(np.int32)


@pytest.mark.skipif(not pc.cuda.is_available(), reason="needs CUDA")
def test_to_cuda_round_trip():
    m = lenet().double()
    x = rng(17).standard_normal((2, 1, 8, 8))
    m.eval()
    want = N(m(T(x)))
    m.to("cuda")
    assert all(p.device.startswith("cuda") for p in m.parameters())
    y = m(T(x).cuda())
    close(y.cpu(), want, rtol=1e-9, atol=1e-12)
    assert m.backward(pc.ones(2, 4, dtype=pc.float64, device="cuda")).device.startswith("cuda")
    m.to("cpu")
    assert m[0].weight.grad.device == "cpu"


def test_deepcopy_and_hooks():
    m = lenet()
    c = copy.deepcopy(m)
    assert c[0].weight is not m[0].weight
    np.testing.assert_array_equal(N(c[0].weight), N(m[0].weight))
    c[0].weight.data.fill_(1.0)
    assert N(m[0].weight).max() < 1.0
    shapes = []
    h = m[3].register_forward_hook(lambda mod, inp, out: shapes.append(out.shape))
    m(pc.randn(2, 1, 8, 8))
    h.remove()
    m(pc.randn(2, 1, 8, 8))
    assert shapes == [(2, 2, 3, 3)]


def test_parameter_behaviour():
    p = nn.Parameter(np.arange(6.0).reshape(2, 3))
    assert p.shape == (2, 3) and p.dtype == pc.float64 and p.requires_grad and p.grad is None
    np.testing.assert_array_equal(np.asarray(p), np.arange(6.0).reshape(2, 3))
    assert "Parameter containing" in repr(p)
    assert pc.functional.relu(p).shape == (2, 3)  # functional ops take Parameters
    with pytest.raises(TypeError):
        p.data = "x"


# ----------------------------------------------------------------------------------------------
# Sequential
# ----------------------------------------------------------------------------------------------
def test_sequential_indexing_slicing_setitem():
    m = lenet()
    assert len(m) == 7
    assert m[-1] is m[6] and isinstance(m[0], nn.Conv2d)
    head = m[:4]
    assert isinstance(head, nn.Sequential) and len(head) == 4 and head[0] is m[0]  # shares layers
    tail = m[4:]
    assert [n for n, _ in tail.named_parameters()] == ["6.weight", "6.bias"]  # keeps PyTorch's names
    m.eval()
    x = pc.randn(2, 1, 8, 8)
    close(tail(head(x)), N(m(x)), rtol=1e-6)
    m[-1] = nn.Linear(18, 3)
    assert m(x).shape == (2, 3)
    assert [n for n, _ in m.named_parameters()][-1] == "6.bias"
    assert list(iter(m))[-1] is m[6]
    with pytest.raises(IndexError):
        m[7]
    with pytest.raises(TypeError):
        m[0] = "not a module"
    with pytest.raises(TypeError):
        m["a":"b"] if False else m[1.0]
    assert m.append(nn.Softmax()) is m and len(m) == 8
    del m[1]
    assert len(m) == 7 and [n for n, _ in m.named_children()] == [str(i) for i in range(7)]
    named = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 3), act=nn.ReLU()))
    assert named.conv is named[0] and [n for n, _ in named.named_parameters()] == ["conv.weight", "conv.bias"]
    with pytest.raises(TypeError, match="Sequential"):
        nn.Sequential(nn.ReLU(), "relu")


def test_sequential_backward_runs_in_reverse():
    order = []

    class Tag(nn.Identity):
        def __init__(self, name):
            super().__init__()
            self.tag = name

        def backward(self, g):
            order.append(self.tag)
            return g

    s = nn.Sequential(Tag("a"), Tag("b"), Tag("c"))
    s(pc.ones(1))
    s.backward(pc.ones(1))
    assert order == ["c", "b", "a"]


# ----------------------------------------------------------------------------------------------
# errors name the layer
# ----------------------------------------------------------------------------------------------
def test_conv2d_wrong_input_message():
    m = nn.Conv2d(3, 16, 3)
    with pytest.raises(ValueError) as e:
        m(pc.zeros(8, 1, 28, 28))
    msg = str(e.value)
    assert msg.startswith("Conv2d(3, 16, kernel_size=(3, 3)")
    assert "(N, 3, H, W)" in msg and "(8, 1, 28, 28)" in msg


@pytest.mark.parametrize("layer, x, exc, name", [
    (lambda: nn.Conv2d(3, 4, 3), np.zeros((3, 28, 28), np.float32), ValueError, "Conv2d(3, 4"),
    (lambda: nn.Conv2d(1, 4, 5), np.zeros((1, 1, 3, 3), np.float32), ValueError, "Conv2d(1, 4"),
    (lambda: nn.Conv2d(1, 4, 3), np.zeros((1, 1, 5, 5), np.float64), TypeError, "Conv2d(1, 4"),
    (lambda: nn.Conv2d(1, 4, 3), [[1.0]], TypeError, "Conv2d(1, 4"),
    (lambda: nn.Linear(10, 2), np.zeros((4, 9), np.float32), ValueError, "Linear(in_features=10"),
    (lambda: nn.Linear(10, 2), np.zeros((4, 2, 5), np.float32), ValueError, "Linear(in_features=10"),
    (lambda: nn.BatchNorm2d(3), np.zeros((2, 4, 5, 5), np.float32), ValueError, "BatchNorm2d(3"),
    (lambda: nn.BatchNorm2d(3), np.zeros((2, 3), np.float32), ValueError, "BatchNorm2d(3"),
    (lambda: nn.BatchNorm1d(3), np.zeros((1, 3), np.float32), ValueError, "BatchNorm1d(3"),
    (lambda: nn.MaxPool2d(2), np.zeros((3, 8, 8), np.float32), ValueError, "MaxPool2d(kernel_size=2"),
    (lambda: nn.MaxPool2d(5), np.zeros((1, 1, 3, 3), np.float32), ValueError, "MaxPool2d(kernel_size=5"),
    (lambda: nn.AvgPool2d(5), np.zeros((1, 1, 3, 3), np.float32), ValueError, "AvgPool2d(kernel_size=5"),
    (lambda: nn.AdaptiveAvgPool2d(2), np.zeros((4, 4), np.float32), ValueError, "AdaptiveAvgPool2d"),
    (lambda: nn.PReLU(3), np.zeros((2, 4, 5), np.float32), ValueError, "PReLU(num_parameters=3)"),
    (lambda: nn.Softmax(dim=0), np.zeros((2, 4), np.float32), ValueError, "Softmax(dim=0)"),
    (lambda: nn.Flatten(2), np.zeros((2, 4), np.float32), ValueError, "Flatten"),
    (lambda: nn.Residual(nn.Conv2d(1, 2, 1)), np.zeros((1, 1, 3, 3), np.float32), ValueError, "Residual"),
    (lambda: nn.Concat(nn.Conv2d(1, 2, 1), nn.Conv2d(1, 2, 3)), np.zeros((1, 1, 4, 4), np.float32), ValueError,
     "Concat"),
    (lambda: nn.ReLU(), "x", TypeError, "ReLU()"),
])
def test_bad_input_names_the_layer(layer, x, exc, name):
    with pytest.raises(exc) as e:
        layer()(x)
    assert name in str(e.value)


def test_loss_errors():
    ce = nn.CrossEntropyLoss()
    logits = pc.zeros(4, 3)
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\).*\(4,\)"):
        ce(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\)"):
        ce(logits, np.array([0, 1, 2, 3]))  # 3 is out of range
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\)"):
        ce(logits, np.array([0, 1, -1, 2]))
    with pytest.raises(TypeError, match=r"CrossEntropyLoss\(\)"):
        ce(logits, np.array([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\).*\(N, C\)"):
        ce(pc.zeros(4), np.array([0, 1, 2, 1]))
    loss = ce(logits, [0, 1, 2, 1])  # a list of ints works too
    assert loss.shape == () and loss.item() == pytest.approx(math.log(3), rel=1e-6)
    with pytest.raises(ValueError, match=r"MSELoss\(\)"):
        nn.MSELoss()(pc.zeros(2, 3), np.zeros((3, 2), np.float32))
    with pytest.raises(RuntimeError, match=r"MSELoss\(\).*before forward"):
        nn.MSELoss().backward()


@pytest.mark.parametrize("layer", [
    lambda: nn.Conv2d(1, 2, 3), lambda: nn.Linear(2, 3), lambda: nn.MaxPool2d(2), lambda: nn.AvgPool2d(2),
    lambda: nn.AdaptiveAvgPool2d(1), lambda: nn.BatchNorm2d(2), lambda: nn.BatchNorm1d(2), lambda: nn.ReLU(),
    lambda: nn.Tanh(), lambda: nn.PReLU(), lambda: nn.Softmax(), lambda: nn.Flatten(), lambda: nn.Dropout(),
    lambda: nn.CrossEntropyLoss(), lambda: nn.Residual(nn.ReLU()), lambda: nn.Concat(nn.ReLU()),
])
def test_backward_before_forward(layer):
    m = layer()
    with pytest.raises(RuntimeError) as e:
        m.backward(pc.ones(1, 2, 4, 4))
    assert str(e.value).startswith(type(m).__name__ + "(")
    assert "before forward" in str(e.value)


def test_backward_frees_the_cache():
    m = nn.Conv2d(1, 2, 3)
    m(pc.randn(1, 1, 5, 5))
    m.backward(pc.ones(1, 2, 3, 3))
    assert m._cache is None
    with pytest.raises(RuntimeError, match="Conv2d"):
        m.backward(pc.ones(1, 2, 3, 3))


@pytest.mark.parametrize("make, exc, words", [
    (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, ["in_channels", "groups"]),
    (lambda: nn.Conv2d(4, 6, 3, groups=4), ValueError, ["out_channels", "groups"]),
    (lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"), ValueError, ["same"]),
    (lambda: nn.Conv2d(3, 4, 0), ValueError, ["kernel_size"]),
    (lambda: nn.Conv2d(3, 4, 3.0), TypeError, ["kernel_size"]),
    (lambda: nn.Conv2d(3, 4, 3, stride=0), ValueError, ["stride"]),
    (lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, ["padding"]),
    (lambda: nn.Conv2d(3, 4, 3, padding="circular"), ValueError, ["padding"]),
    (lambda: nn.Conv2d(0, 4, 3), ValueError, ["in_channels"]),
    (lambda: nn.Conv2d(3.0, 4, 3), TypeError, ["in_channels"]),
    (lambda: nn.Linear(0, 3), ValueError, ["in_features"]),
    (lambda: nn.Linear(3, "4"), TypeError, ["out_features"]),
    (lambda: nn.MaxPool2d(0), ValueError, ["kernel_size"]),
    (lambda: nn.MaxPool2d(2, padding=2), ValueError, ["padding"]),
    (lambda: nn.AvgPool2d(2, stride=-1), ValueError, ["stride"]),
    (lambda: nn.AdaptiveAvgPool2d(0), ValueError, ["output_size"]),
    (lambda: nn.Dropout(1.5), ValueError, ["Dropout", "between 0 and 1"]),
    (lambda: nn.BatchNorm2d(0), ValueError, ["num_features"]),
    (lambda: nn.BatchNorm2d(3, momentum=2.0), ValueError, ["momentum"]),
    (lambda: nn.PReLU(0), ValueError, ["num_parameters"]),
    (lambda: nn.Softplus(threshold=10), ValueError, ["threshold"]),
    (lambda: nn.CrossEntropyLoss(reduction="none"), ValueError, ["reduction"]),
    (lambda: nn.Residual("block"), TypeError, ["Residual"]),
])
def test_constructor_errors(make, exc, words):
    with pytest.raises(exc) as e:
        make()
    for w in words:
        assert w in str(e.value)


# ----------------------------------------------------------------------------------------------
# nn.init
# ----------------------------------------------------------------------------------------------
def test_init_functions():
    pc.manual_seed(5)
    w = nn.Parameter(pc.zeros(64, 32, 3, 3))
    fan_in, fan_out = 32 * 9, 64 * 9
    assert nn.init.kaiming_uniform_(w, a=0, nonlinearity="relu") is w
    bound = math.sqrt(2) * math.sqrt(3 / fan_in)
    a = N(w)
    assert np.abs(a).max() <= bound * (1 + 1e-6) and abs(a.std() - bound / math.sqrt(3)) < 0.02 * bound
    t = pc.zeros(64, 32, 3, 3, dtype=pc.float64)
    nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu")
    assert abs(N(t).std() - math.sqrt(2 / fan_out)) < 0.02 * math.sqrt(2 / fan_out)
    nn.init.xavier_uniform_(t, gain=2.0)
    xb = 2.0 * math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(N(t)).max() <= xb and np.abs(N(t)).max() > 0.95 * xb
    nn.init.xavier_normal_(t)
    assert abs(N(t).std() - math.sqrt(2 / (fan_in + fan_out))) < 0.03 * math.sqrt(2 / (fan_in + fan_out))
    nn.init.uniform_(t, -2, 3)
    assert N(t).min() >= -2 and N(t).max() <= 3
    nn.init.normal_(t, 1.0, 0.5)
    assert abs(N(t).mean() - 1.0) < 0.02 and abs(N(t).std() - 0.5) < 0.02
    nn.init.constant_(t, 0.25)
    assert (N(t) == 0.25).all()
    nn.init.zeros_(w)
    assert (N(w) == 0).all()
    nn.init.ones_(w)
    assert (N(w) == 1).all()
    pc.manual_seed(9)
    a1 = N(nn.init.kaiming_uniform_(pc.zeros(4, 4))).copy()
    pc.manual_seed(9)
    np.testing.assert_array_equal(N(nn.init.kaiming_uniform_(pc.zeros(4, 4))), a1)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_uniform_(pc.zeros(5))
    with pytest.raises(TypeError):
        nn.init.zeros_(np.zeros(3))
    with pytest.raises(ValueError):
        nn.init.kaiming_uniform_(w, mode="fan_avg")


def test_calculate_gain_matches_torch():
    torch = pytest.importorskip("torch")
    for nl, p in [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                  ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)), ("selu", None)]:
        assert nn.init.calculate_gain(nl, p) == pytest.approx(torch.nn.init.calculate_gain(nl, p))
    with pytest.raises(ValueError):
        nn.init.calculate_gain("swish")


def test_backward_without_input_grad_gives_the_same_parameter_gradients():
    # model.backward(g, need_input_grad=False) is what a training step wants: the first layer's
    # d/dx is skipped, every parameter gradient is the same as with the full backward.
    pc.manual_seed(3)
    net = pc.models.lenet5()
    x = pc.tensor(np.random.default_rng(0).standard_normal((4, 1, 28, 28), dtype=np.float32))
    g = pc.tensor(np.random.default_rng(1).standard_normal((4, 10), dtype=np.float32))
    net(x)
    dx = net.backward(g)
    assert dx is not None and tuple(dx.shape) == (4, 1, 28, 28)
    full = [np.asarray(p.grad).copy() for p in net.parameters()]
    net.zero_grad()
    net(x)
    assert net.backward(g, need_input_grad=False) is None
    for a, p in zip(full, net.parameters()):
        np.testing.assert_array_equal(a, np.asarray(p.grad))
    lin = nn.Linear(5, 3)
    lin(pc.ones(2, 5))
    assert lin.backward(pc.ones(2, 3), need_input_grad=False) is None and lin.weight.grad is not None


def test_need_input_grad_false_is_safe_with_a_user_layer_first():
    class MyLayer(nn.Module):  # a user layer whose backward knows nothing of need_input_grad
        def forward(self, x):
            return pc.functional.relu(x)

        def backward(self, g):
            return g

    net = nn.Sequential(MyLayer(), nn.Linear(3, 2))
    net(pc.ones(1, 3))
    assert net.backward(pc.ones(1, 2), need_input_grad=False) is None
    assert net[1].weight.grad is not None


class _TwoUses(nn.Module):
    """conv -> act -> conv2 -> act: one activation instance used twice (PyTorch code often does)."""

    def __init__(self, act, conv2=None, act2=None):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.conv2 = conv2 if conv2 is not None else nn.Conv2d(3, 3, 3, padding=1)
        self.act = act
        self.act2 = act2 if act2 is not None else act

    def forward(self, x):
        return self.act2(self.conv2(self.act(self.conv1(x))))

    def backward(self, g):
        return self.conv1.backward(self.act.backward(self.conv2.backward(self.act2.backward(g))))


def test_a_module_used_twice_in_a_pass_gets_both_gradients():
    x = pc.from_numpy(np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(np.float64))
    g = pc.from_numpy(np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float64))
    pc.manual_seed(0)
    shared = _TwoUses(nn.Tanh()).to(pc.float64)
    pc.manual_seed(0)
    separate = _TwoUses(nn.Tanh(), act2=nn.Tanh()).to(pc.float64)
    for m in (shared, separate):
        m(x)
    dx_shared, dx_sep = shared.backward(g), separate.backward(g)
    np.testing.assert_array_equal(np.asarray(dx_shared), np.asarray(dx_sep))
    for a, b in zip(shared.parameters(), separate.parameters()):
        np.testing.assert_array_equal(np.asarray(a.grad), np.asarray(b.grad))
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward\\(\\)"):
        shared.act.backward(g)  # both uses are consumed


def test_weights_shared_between_two_uses_accumulate_both_gradients():
    # y = conv(relu(conv(relu(conv_in(x))))): the shared conv's gradient is the sum of what two
    # separate copies of it would get
    class Net(nn.Module):
        def __init__(self, conv_a, conv_b):
            super().__init__()
            self.conv_in, self.a, self.b, self.relu = nn.Conv2d(2, 3, 3, padding=1), conv_a, conv_b, nn.ReLU()

        def forward(self, x):
            return self.b(self.relu(self.a(self.relu(self.conv_in(x)))))

        def backward(self, g):
            g = self.relu.backward(self.b.backward(g))
            return self.conv_in.backward(self.relu.backward(self.a.backward(g)))

    x = pc.from_numpy(np.random.default_rng(2).standard_normal((2, 2, 5, 5)))
    g = pc.from_numpy(np.random.default_rng(3).standard_normal((2, 3, 5, 5)))
    pc.manual_seed(4)
    conv = nn.Conv2d(3, 3, 3, padding=1)
    shared = Net(conv, conv).to(pc.float64)
    copies = copy.deepcopy(shared)  # deepcopy keeps the sharing: make two separate convs instead
    copies.b = copy.deepcopy(copies.a)
    for m in (shared, copies):
        m(x)
        m.backward(g)
    np.testing.assert_array_equal(np.asarray(shared.a.weight.grad),
                                  np.asarray(copies.a.weight.grad) + np.asarray(copies.b.weight.grad))
    np.testing.assert_array_equal(np.asarray(shared.a.bias.grad),
                                  np.asarray(copies.a.bias.grad) + np.asarray(copies.b.bias.grad))
    np.testing.assert_array_equal(np.asarray(shared.conv_in.weight.grad), np.asarray(copies.conv_in.weight.grad))


def test_inference_passes_do_not_pile_up_caches():
    net = pc.models.lenet5()
    net.eval()
    x = pc.zeros(2, 1, 28, 28)
    for _ in range(50):
        net(x)
    assert all(len(m.__dict__.get("_cache_stack", [])) <= 1 for m in net.modules())


def test_a_refused_backward_keeps_each_uses_cache():
    # the second use's backward gets a wrong-shape gradient and raises; retried with the right one,
    # it must still see its own input, and the first use's backward its own
    x = pc.from_numpy(np.random.default_rng(5).standard_normal((2, 2, 6, 6)))
    g = pc.from_numpy(np.random.default_rng(6).standard_normal((2, 3, 6, 6)))
    pc.manual_seed(0)
    shared = _TwoUses(nn.Tanh()).to(pc.float64)
    pc.manual_seed(0)
    separate = _TwoUses(nn.Tanh(), act2=nn.Tanh()).to(pc.float64)
    shared(x)
    separate(x)
    with pytest.raises(ValueError):
        shared.act.backward(pc.zeros(1, 1, dtype=pc.float64))
    np.testing.assert_array_equal(np.asarray(shared.backward(g)), np.asarray(separate.backward(g)))
