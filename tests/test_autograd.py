"""Reverse-mode autograd (issue 12.2): Tensor.requires_grad/.grad/.backward, no_grad, the rules of
the differentiable Tensor methods and functional ops (float64 gradcheck), forward-only custom
modules (gradcheck, training with fit), the explicit and autograd routes giving the same bits for
every zoo model, pass safety on the tape, and parity with torch."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn as pc
import pycnn.functional as F
from pycnn.testing import gradcheck


def rng(seed=0):
    return np.random.default_rng(seed)


def T(a):
    return pc.from_numpy(np.ascontiguousarray(a))


def N(t):
    return np.asarray(t.numpy())


def traced_gradcheck(fn, *arrays, **kw):
    """gradcheck of fn(*tensors) with its backward taken from the tape (loss.backward(g))."""
    def backward(g, *inputs):
        leaves = [t.detach().requires_grad_() if t.dtype == pc.float64 else t for t in inputs]
        fn(*leaves).backward(g)
        grads = tuple(leaf.grad if leaf.requires_grad else None for leaf in leaves)
        return grads[0] if len(grads) == 1 else grads
    return gradcheck((fn, backward), arrays, **kw)


# ---------------------------------------------------------------------------------- basics
def test_tensor_autograd_surface():
    x = T(rng(0).standard_normal((3, 4))).requires_grad_()
    assert x.requires_grad and x.is_leaf and x.grad is None and x.grad_fn is None
    y = (x * x + 2 * x).sum()
    assert y.requires_grad and not y.is_leaf and y.grad_fn is not None
    y.backward()
    np.testing.assert_allclose(N(x.grad), 2 * N(x) + 2, rtol=1e-12)
    (x * 3).sum().backward()  # gradients accumulate
    np.testing.assert_allclose(N(x.grad), 2 * N(x) + 5, rtol=1e-12)
    d = x.detach()
    assert not d.requires_grad and d.grad_fn is None and (d * 2).grad_fn is None
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        d.sum().backward()
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad = False
    with pytest.raises(RuntimeError, match="floating-point"):
        pc.zeros(2, dtype=pc.int64).requires_grad_()


def test_creation_functions_take_requires_grad():
    for t in (pc.randn(2, 3, requires_grad=True), pc.zeros(2, requires_grad=True), pc.ones(2, requires_grad=True),
              pc.tensor([1.0, 2.0], requires_grad=True), pc.full((2,), 3.0, requires_grad=True)):
        assert t.requires_grad and t.is_leaf
    assert not pc.rand(2).requires_grad
    w = pc.tensor([1.0, -2.0], requires_grad=True)
    (w * w).sum().backward()
    np.testing.assert_array_equal(N(w.grad), [2.0, -4.0])


def test_no_grad_records_nothing_and_enable_grad_inside():
    x = T(rng(1).standard_normal(3)).requires_grad_()
    with pc.no_grad():
        y = x * 2
        with pc.enable_grad():
            z = x * 2
    assert y.grad_fn is None and not y.requires_grad and z.grad_fn is not None

    @pc.no_grad()
    def f(t):
        return t.exp()

    assert f(x).grad_fn is None and pc.is_grad_enabled()


def test_inplace_on_a_tensor_that_requires_grad_is_refused():
    x = T(rng(2).standard_normal(3)).requires_grad_()
    with pytest.raises(RuntimeError, match="in-place"):
        x += 1
    with pytest.raises(RuntimeError, match="in-place"):
        (x * 2).mul_(3)
    with pc.no_grad():
        x -= 0.5  # an update outside recording, as an optimiser's
    assert x.grad_fn is None


def test_a_second_backward_needs_retain_graph():
    x = T(rng(5).standard_normal(4)).requires_grad_()
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = N(x.grad).copy()
    y.backward()  # the graph was kept: the gradient doubles
    np.testing.assert_allclose(N(x.grad), 2 * first, rtol=1e-12)
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_custom_function():
    class Cube(pc.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x * x

    x = T(rng(3).standard_normal(4)).requires_grad_()
    Cube.apply(x).sum().backward()
    np.testing.assert_allclose(N(x.grad), 3 * N(x) ** 2, rtol=1e-12)


def test_autograd_grad_returns_without_accumulating():
    x = T(rng(4).standard_normal(5)).requires_grad_()
    (g,) = pc.autograd.grad((x * x).sum(), [x])
    np.testing.assert_allclose(N(g), 2 * N(x), rtol=1e-12)
    assert x.grad is None


# ------------------------------------------------------------------ rules of Tensor methods
A34 = rng(10).standard_normal((3, 4))
B34 = rng(11).standard_normal((3, 4))
POS = np.abs(rng(12).standard_normal((3, 4))) + 0.5
ROW = rng(13).standard_normal((1, 4))

METHOD_CASES = [
    ("add_broadcast", lambda a, b: a + b, (A34, ROW)),
    ("radd_scalar", lambda a: 2.0 + a, (A34,)),
    ("sub_alpha", lambda a, b: a.sub(b, alpha=2.0), (A34, B34)),
    ("rsub", lambda a: 1.0 - a, (A34,)),
    ("mul_broadcast", lambda a, b: a * b, (A34, ROW)),
    ("div", lambda a, b: a / b, (A34, POS)),
    ("rdiv", lambda a: 2.0 / a, (POS,)),
    ("pow_scalar", lambda a: a ** 3, (A34,)),
    ("pow_tensor", lambda a, b: a ** b, (POS, B34)),
    ("rpow", lambda a: 2.0 ** a, (A34,)),
    ("matmul_2d", lambda a, b: a @ b.T, (A34, B34)),
    ("matmul_batched_1d", lambda a, b: a.reshape(3, 2, 2) @ b[0, :2], (A34, B34)),
    ("neg_abs", lambda a: (-a).abs(), (A34,)),
    ("exp_log_sqrt", lambda a: a.exp() + a.log() + a.sqrt(), (POS,)),
    ("clamp", lambda a: a.clamp(-0.5, 0.5), (A34,)),
    ("maximum", lambda a, b: a.maximum(b), (A34, B34)),
    ("sum_dim", lambda a: a.sum(1), (A34,)),
    ("sum_keepdim_tuple", lambda a: a.sum(dim=(0, 1), keepdim=True), (A34,)),
    ("mean", lambda a: a.mean(0) * a.mean(), (A34,)),
    ("max_dim", lambda a: a.max(1).values, (A34,)),
    ("min_all", lambda a: a.min() * a, (A34,)),
    ("views", lambda a: a.reshape(2, 6).t().flatten().unsqueeze(0).squeeze(0).view(4, 3), (A34,)),
    ("permute_transpose", lambda a: a.reshape(3, 2, 2).permute(2, 0, 1).transpose(0, 2).mT, (A34,)),
    ("expand", lambda a: a.expand(3, 4) * 1.0, (ROW,)),
    ("getitem_basic", lambda a: a[1:, ::2] * a[0, 1], (A34,)),
    ("getitem_repeated_index", lambda a: a[T(np.array([0, 2, 0]))], (A34,)),
    ("cat_stack", lambda a, b: pc.cat([a, b], 1) * pc.stack([a, b], 2).reshape(3, 8), (A34, B34)),
    ("cast", lambda a: a.double().to(pc.float64).clone().contiguous() * 2, (A34,)),
]


@pytest.mark.parametrize("name,fn,arrays", METHOD_CASES, ids=[c[0] for c in METHOD_CASES])
def test_tensor_method_rules_gradcheck(name, fn, arrays):
    assert traced_gradcheck(fn, *arrays)


# ---------------------------------------------------------------- rules of functional ops
X4 = rng(20).standard_normal((2, 3, 6, 6)) * 0.5
W4 = rng(21).standard_normal((4, 3, 3, 3)) * 0.3
B4 = rng(22).standard_normal(4)

FUNCTIONAL_CASES = [
    ("conv2d", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), (X4, W4, B4)),
    ("linear", lambda x, w, b: F.linear(x, w, b), (A34, rng(23).standard_normal((5, 4)), rng(24).standard_normal(5))),
    ("max_pool2d", lambda x: F.max_pool2d(x, 2), (X4,)),
    ("avg_pool2d", lambda x: F.avg_pool2d(x, 3, stride=1, padding=1), (X4,)),
    ("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (2, 3)), (X4,)),
    ("activations", lambda x: F.relu(x) + F.leaky_relu(x, 0.1) + F.elu(x) + F.sigmoid(x) + F.tanh(x)
     + F.softplus(x), (A34 + 0.01,)),
    ("prelu", lambda x, w: F.prelu(x, w), (X4, np.array([0.2, -0.1, 0.3]))),
    ("softmax_log_softmax", lambda x: F.softmax(x, 1) * F.log_softmax(x, 1), (A34,)),
    ("cross_entropy", lambda x: F.cross_entropy(x, np.array([0, 3, 1])), (A34,)),
    ("mse_loss_sum", lambda x, t: F.mse_loss(x, t, reduction="sum"), (A34, B34)),
    ("batch_norm_train", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
     (X4, np.array([1.0, 0.5, 2.0]), np.array([0.1, 0.0, -0.2]))),
    ("batch_norm_eval", lambda x, w, b: F.batch_norm(x, T(np.array([0.1, 0.2, -0.1])),
                                                    T(np.array([1.5, 0.5, 2.0])), w, b, training=False),
     (X4, np.array([1.0, 0.5, 2.0]), np.array([0.1, 0.0, -0.2]))),
    ("dropout_p0", lambda x: F.dropout(x, 0.0) * 2, (A34,)),
    ("split_concat", lambda x: F.concat(F.split(x, [1, 3], 1)[::-1], 1) * x, (A34,)),
]


@pytest.mark.parametrize("name,fn,arrays", FUNCTIONAL_CASES, ids=[c[0] for c in FUNCTIONAL_CASES])
def test_functional_rules_gradcheck(name, fn, arrays):
    assert traced_gradcheck(fn, *arrays)


def test_a_cast_sends_the_gradient_back_in_the_input_dtype():
    x = T(A34).requires_grad_()
    (x.float() * 2).sum().backward()
    assert x.grad.dtype == pc.float64
    np.testing.assert_array_equal(N(x.grad), np.full((3, 4), 2.0))


def test_dropout_backward_uses_the_forward_mask():
    x = T(np.ones((50, 40))).requires_grad_()
    y = F.dropout(x, 0.5)
    y.sum().backward()
    np.testing.assert_array_equal(N(x.grad), N(y))  # d/dx of sum(mask * x / (1-p)) = mask / (1-p)
