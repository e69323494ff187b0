"""Autograd with modules (issue 12.2): forward-only custom modules are traced through their ops
(float64 gradcheck of composite modules), a module with its own backward is one node (the
explicit and autograd routes give the same bits for every zoo model), fit trains a forward-only
CNN, pass safety holds on the tape, nn.Parameter works in traced arithmetic, parity with torch."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn
import pycnn.functional as F
from pycnn.train.step import backward_for_step as _backward_for_step
from pycnn.testing import gradcheck

from helpers import T, rng


def N(t):
    return np.asarray(t.numpy())


# ------------------------------------------------------------- composite forward-only modules
class TwoBranches(nn.Module):
    """Two branches on one input, joined by a sum and a concat; the ReLU module used three times."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.b = nn.Sequential(nn.Conv2d(2, 3, 1), nn.Tanh())
        self.relu = nn.ReLU()

    def forward(self, x):
        ya, yb = self.relu(self.a(x)), self.b(x)
        return pc.cat([self.relu(ya + yb), self.relu(ya * yb)], 1)


class SkipAndSharedWeights(nn.Module):
    """A residual block applied twice with the same weights, plus a raw-parameter linear head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.w = nn.Parameter(pc.randn(4, 3 * 4 * 4, dtype=pc.float64) * 0.1)
        self.b = nn.Parameter(pc.zeros(4, dtype=pc.float64))

    def forward(self, x):
        for _ in range(2):  # shared weights: the same conv twice
            x = F.relu(self.conv(x)) + x  # skip connection
        return F.tanh(x.flatten(1) @ self.w.T + self.b)


class FunctionalOnly(nn.Module):
    """Only raw Parameters and functional ops (nothing with its own backward)."""

    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(pc.randn(4, 2, 3, 3, dtype=pc.float64) * 0.3)
        self.g = nn.Parameter(pc.ones(4, dtype=pc.float64))
        self.beta = nn.Parameter(pc.zeros(4, dtype=pc.float64))

    def forward(self, x):
        h = F.conv2d(x, self.w1, None, padding=1)
        h = F.batch_norm(h, None, None, self.g, self.beta, training=True)
        h = F.avg_pool2d(F.elu(h), 2)
        return F.log_softmax(h.mean(dim=(2, 3)) * 3.0, 1)


@pytest.mark.parametrize("make,shape", [(TwoBranches, (2, 2, 5, 5)), (SkipAndSharedWeights, (2, 3, 4, 4)),
                                        (FunctionalOnly, (3, 2, 6, 6))],
                         ids=["two_branches_reused_relu", "skip_shared_weights", "functional_only"])
def test_gradcheck_traced_composite_modules(make, shape):
    pc.manual_seed(5)
    m = make().double()
    x = rng(6).standard_normal(shape) * 0.5
    assert gradcheck(m, x)


def test_traced_module_backward_equals_loss_backward():
    pc.manual_seed(1)
    m = TwoBranches().double()
    x = T(rng(2).standard_normal((2, 2, 5, 5)))
    crit = nn.MSELoss()
    target = rng(3).standard_normal((2, 6, 5, 5))
    crit(m(x), target).backward()
    a = [N(p.grad).copy() for p in m.parameters()]
    m.zero_grad()
    crit(m(x), target)
    m.backward(crit.backward())  # the explicit call works for a forward-only model too (on the tape)
    for ga, p in zip(a, m.parameters()):
        np.testing.assert_array_equal(ga, N(p.grad))


def test_a_forward_only_child_inside_an_explicit_container_trains_with_loss_backward():
    pc.manual_seed(2)
    model = nn.Sequential(TwoBranches(), nn.Flatten(), nn.Linear(6 * 5 * 5, 3))
    assert not model._explicit()
    x, y = T(rng(4).standard_normal((2, 2, 5, 5)).astype(np.float32)), T(np.array([0, 2]))
    crit = nn.CrossEntropyLoss()
    crit(model(x), y).backward()
    assert all(p.grad is not None for p in model.parameters())


# --------------------------------------------------------------------------- zoo models
ZOO = [("lenet5", (2, 1, 28, 28)), ("alexnet", (2, 3, 64, 64)), ("vgg11", (2, 3, 32, 32)),
       ("vgg16", (1, 3, 32, 32)), ("resnet18", (2, 3, 32, 32)), ("mobilenet_v1", (2, 3, 32, 32)),
       ("googlenet", (2, 3, 32, 32)), ("densenet121", (2, 3, 32, 32))]


@pytest.mark.parametrize("name,shape", ZOO, ids=[z[0] for z in ZOO])
def test_zoo_models_explicit_and_autograd_routes_give_the_same_bits(name, shape):
    make = getattr(pc.models, name, None)
    if make is None:
        pytest.skip(f"pc.models.{name} is not there")
    x = T(rng(0).standard_normal(shape).astype(np.float32))
    y = T(rng(1).integers(0, 10, shape[0]).astype(np.int64))
    grads = []
    for route in ("explicit", "autograd"):
        pc.manual_seed(0)
        m, crit = make(num_classes=10), nn.CrossEntropyLoss()
        loss = crit(m(x), y)
        if route == "explicit":
            m.backward(crit.backward())
        else:
            assert loss.grad_fn is not None
            loss.backward()
        grads.append([N(p.grad).copy() for p in m.parameters()])
    assert len(grads[0]) == len(grads[1]) == len(list(m.parameters()))
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)


def test_the_trainer_step_routes_agree_bit_for_bit():
    x = T(rng(2).standard_normal((4, 1, 28, 28)).astype(np.float32))
    y = T(np.array([1, 2, 3, 4]))
    got = []
    for use_tape in (False, True):
        pc.manual_seed(0)
        m, crit = pc.models.lenet5(), nn.CrossEntropyLoss()
        loss = crit(m(x), y)
        if use_tape:
            loss.backward()
        else:
            _backward_for_step(m, crit, loss)
        got.append([N(p.grad).copy() for p in m.parameters()])
    for a, b in zip(*got):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------- training
class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.w = nn.Parameter(pc.randn(10, 16 * 7 * 7) * 0.02)
        self.b = nn.Parameter(pc.zeros(10))

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return x.flatten(1) @ self.w.T + self.b


def test_fit_trains_a_forward_only_cnn_on_the_mnist_sample():
    pc.manual_seed(0)
    x_train, y_train, x_test, y_test = pc.data.datasets.load_mnist_sample()
    model = SmallCNN()
    trainer = pc.Trainer(model, pc.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), nn.CrossEntropyLoss())
    trainer.fit(x_train, y_train, batch_size=32, epochs=8, verbose=0)
    assert trainer.evaluate(x_test, y_test)["accuracy"] >= 0.97


# --------------------------------------------------------------------------- pass safety
def test_two_training_forwards_then_the_first_loss_backward_raises_on_the_tape():
    x1, x2 = (T(rng(s).standard_normal((2, 1, 28, 28)).astype(np.float32)) for s in (3, 4))
    y = T(np.array([0, 1]))
    m, crit = pc.models.lenet5(), nn.CrossEntropyLoss()
    first = crit(m(x1), y)
    crit(m(x2), y)
    with pytest.raises(RuntimeError, match="another forward pass"):
        first.backward()


def test_an_eval_forward_between_loss_and_loss_backward_changes_nothing():
    x, xv = (T(rng(s).standard_normal((2, 1, 28, 28)).astype(np.float32)) for s in (5, 6))
    y = T(np.array([3, 1]))
    got = []
    for between in (False, True):
        pc.manual_seed(0)
        m, crit = pc.models.lenet5(), nn.CrossEntropyLoss()
        loss = crit(m(x), y)
        if between:
            m.eval()
            m(xv)
            with pc.no_grad():
                m(xv)
            m.train()
        loss.backward()
        got.append([N(p.grad).copy() for p in m.parameters()])
    for a, b in zip(*got):
        np.testing.assert_array_equal(a, b)


def test_one_module_twice_in_a_traced_forward_with_an_unused_call():
    # each node reads the cache of its own call, even when another call of the module is never used
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh())

        def forward(self, x):
            a = self.block(x)
            self.block(x * 2.0)  # a dead branch
            return a

    pc.manual_seed(3)
    m = Net().double()
    x = T(rng(7).standard_normal((2, 1, 5, 5)))
    m(x).sum().backward()
    want = [N(p.grad).copy() for p in m.parameters()]
    m.zero_grad()
    m.block(x)
    m.block.backward(pc.ones(2, 2, 3, 3, dtype=pc.float64))
    for a, p in zip(want, m.parameters()):
        np.testing.assert_array_equal(a, N(p.grad))


# ------------------------------------------------------------------------------ Parameter
def test_parameter_in_traced_arithmetic():
    p = nn.Parameter(T(np.arange(6.0).reshape(2, 3)))
    q = nn.Parameter(T(np.ones(3)))
    out = (p * 2 + q).sum() + p.T.sum() + (p ** 2).mean() + p[0, 1]
    out.backward()
    want = 2 + 1 + 2 * np.arange(6.0).reshape(2, 3) / 6
    want[0, 1] += 1
    np.testing.assert_allclose(N(p.grad), want, rtol=1e-12)
    np.testing.assert_array_equal(N(q.grad), np.full(3, 2.0))
    assert N(p == 3).tolist() == [[False, False, False], [True, False, False]]
    assert p in [q, p] and q not in [p] and len({p, q, p}) == 2
    assert f"{nn.Parameter(T(np.array(1.5))):.2f}" == "1.50"
    p.requires_grad = False
    assert (p * 2).grad_fn is None


# ---------------------------------------------------------------------------------- torch
def test_traced_cnn_gradients_match_torch():
    torch = pytest.importorskip("torch")
    pc.manual_seed(7)
    m = SmallCNN()
    tm = torch.nn.Module()
    tm.conv1, tm.conv2 = torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Conv2d(8, 16, 3, padding=1)
    tm.w, tm.b = torch.nn.Parameter(torch.zeros(10, 784)), torch.nn.Parameter(torch.zeros(10))
    with torch.no_grad():
        for name, p in m.named_parameters():
            dict(tm.named_parameters())[name].copy_(torch.from_numpy(N(p).copy()))
    x = rng(8).standard_normal((4, 1, 28, 28)).astype(np.float32)
    y = np.array([1, 7, 3, 0])
    nn.CrossEntropyLoss()(m(T(x)), T(y)).backward()
    tf = torch.nn.functional
    h = tf.max_pool2d(tf.relu(tm.conv1(torch.from_numpy(x))), 2)
    h = tf.max_pool2d(tf.relu(tm.conv2(h)), 2)
    tf.cross_entropy(h.flatten(1) @ tm.w.T + tm.b, torch.from_numpy(y)).backward()
    for name, p in m.named_parameters():
        want = dict(tm.named_parameters())[name].grad.numpy()
        np.testing.assert_allclose(N(p.grad), want, rtol=1e-4, atol=1e-6, err_msg=name)


# ------------------------------------------------------- a custom module with its own backward
class Scale(nn.Module):
    """docs/python_layer.md's explicit custom module."""

    def __init__(self, c):
        super().__init__()
        self.g = nn.Parameter(pc.ones(c, dtype=pc.float64) * 1.5)
        self._cache = None

    def forward(self, x):
        self._cache = x
        return x * self.g.data.reshape(1, -1, 1, 1)

    def backward(self, grad_output):
        x = self._cache
        if x is None:
            raise self._no_cache()
        self._cache = None
        self._accumulate(self.g, (grad_output * x).sum(dim=(0, 2, 3)))
        return grad_output * self.g.data.reshape(1, -1, 1, 1)


def test_an_explicit_custom_module_is_one_node_and_both_routes_agree():
    pc.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), Scale(3), nn.ReLU(), nn.Flatten(), nn.Linear(27, 2)).double()
    assert model._explicit()
    x = T(rng(9).standard_normal((2, 2, 5, 5)))
    y = T(np.array([1, 0]))
    crit = nn.CrossEntropyLoss()
    loss = crit(model(x), y)
    assert loss.grad_fn.next_functions[0][0].name() == "SequentialBackward"
    loss.backward()
    tape = [N(p.grad).copy() for p in model.parameters()]
    model.zero_grad()
    crit(model(x), y)
    model.backward(crit.backward())
    for a, p in zip(tape, model.parameters()):
        np.testing.assert_array_equal(a, N(p.grad))
    assert gradcheck(Scale(3), rng(10).standard_normal((2, 3, 2, 2)))
