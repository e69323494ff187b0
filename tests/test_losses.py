"""softmax / log_softmax / cross-entropy / MSE bindings of pycnn._core against the NumPy
reference (tests/reference.py), finite differences and, where installed, PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn as pc
from pycnn import _core

from helpers import T, rng, DEVICES, DTYPES, compare, host, on, rnd
import reference as ref


def A(t):
    return np.asarray(t)


SHAPES = [(1, 1), (1, 7), (5, 3), (17, 10), (64, 100), (3, 1000)]


# ------------------------------------------------------------------------------------ softmax
@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_and_log_softmax_match_reference_float64(shape):
    x = rng(1).normal(scale=3.0, size=shape)
    np.testing.assert_allclose(A(_core.softmax_forward(T(x))), ref.softmax(x), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(A(_core.log_softmax_forward(T(x))), ref.log_softmax(x), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_float32_close(shape):
    x = rng(2).normal(scale=3.0, size=shape).astype(np.float32)
    y = _core.softmax_forward(T(x))
    assert y.dtype == pc.float32
    np.testing.assert_allclose(A(y), ref.softmax(x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(A(_core.log_softmax_forward(T(x))), ref.log_softmax(x), rtol=1e-5, atol=1e-5)


def test_softmax_stable_for_huge_logits():
    x = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4], [-1e4, -1e4 + 1, -1e4 + 2]])
    for dt in (np.float64, np.float32):
        xs = x.astype(dt)
        y = A(_core.softmax_forward(T(xs)))
        ly = A(_core.log_softmax_forward(T(xs)))
        assert np.isfinite(y).all() and np.isfinite(ly).all()
        np.testing.assert_allclose(y, ref.softmax(xs), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(ly, ref.log_softmax(xs), rtol=1e-5, atol=1e-3)


def test_softmax_backward_matches_reference_and_numeric():
    r = rng(3)
    x, dy = r.normal(size=(6, 5)), r.normal(size=(6, 5))
    y = _core.softmax_forward(T(x))
    dx = A(_core.softmax_backward(T(dy), y))
    np.testing.assert_allclose(dx, ref.softmax_backward(dy, x), rtol=1e-12, atol=1e-14)
    num = ref.numeric_grad(lambda z: (A(_core.softmax_forward(T(z))) * dy).sum(), x)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)
    # float32
    dx32 = A(_core.softmax_backward(T(dy.astype(np.float32)), _core.softmax_forward(T(x.astype(np.float32)))))
    np.testing.assert_allclose(dx32, ref.softmax_backward(dy, x), rtol=1e-4, atol=1e-6)


def test_softmax_results_repeat_bit_for_bit():
    x = rng(4).normal(size=(300, 200)).astype(np.float32)
    a, b = A(_core.softmax_forward(T(x))), A(_core.softmax_forward(T(x)))
    assert np.array_equal(a, b)


def test_softmax_bad_inputs():
    with pytest.raises(ValueError, match=r"softmax: expected input of 2 dimensions \(N, C\), got shape \(2, 3, 4\)"):
        _core.softmax_forward(T(np.zeros((2, 3, 4))))
    with pytest.raises(ValueError, match="log_softmax: .*got shape \\(5,\\)"):
        _core.log_softmax_forward(T(np.zeros(5)))
    with pytest.raises(TypeError, match="softmax: expected a float32 or float64 tensor, got int64"):
        _core.softmax_forward(T(np.zeros((2, 3), dtype=np.int64)))
    y = _core.softmax_forward(T(np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"softmax_backward: expected grad_output of shape \(2, 3\), got \(3, 2\)"):
        _core.softmax_backward(T(np.zeros((3, 2))), y)
    with pytest.raises(TypeError, match="softmax_backward: grad_output is float32 but output is float64"):
        _core.softmax_backward(T(np.zeros((2, 3), np.float32)), y)


# ------------------------------------------------------------------------------ cross-entropy
@pytest.mark.parametrize("shape", SHAPES)
def test_cross_entropy_forward_backward_float64(shape):
    r = rng(5)
    n, c = shape
    x = r.normal(scale=2.0, size=shape)
    labels = r.integers(0, c, size=n)
    loss, probs = _core.cross_entropy_forward(T(x), T(labels))
    assert loss.shape == () and loss.dtype == pc.float64 and probs.shape == shape
    np.testing.assert_allclose(float(A(loss)), ref.cross_entropy(x, labels), rtol=1e-13)
    np.testing.assert_allclose(A(probs), ref.softmax(x), rtol=1e-13, atol=1e-15)
    dx = A(_core.cross_entropy_backward(probs, T(labels), 0.7))
    np.testing.assert_allclose(dx, ref.cross_entropy_backward(x, labels, 0.7), rtol=1e-12, atol=1e-15)
    assert A(_core.cross_entropy_backward(probs, T(labels))).shape == shape  # grad_scale defaults to 1


def test_cross_entropy_numeric_grad():
    r = rng(6)
    x, labels = r.normal(size=(4, 6)), r.integers(0, 6, size=4)
    _, probs = _core.cross_entropy_forward(T(x), T(labels))
    dx = A(_core.cross_entropy_backward(probs, T(labels), 1.0))
    num = ref.numeric_grad(lambda z: float(A(_core.cross_entropy_forward(T(z), T(labels))[0])), x)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)


def test_cross_entropy_float32_close():
    r = rng(7)
    x = r.normal(scale=3.0, size=(64, 10)).astype(np.float32)
    labels = r.integers(0, 10, size=64)
    loss, probs = _core.cross_entropy_forward(T(x), T(labels))
    assert loss.dtype == pc.float32 and probs.dtype == pc.float32
    np.testing.assert_allclose(float(A(loss)), ref.cross_entropy(x, labels), rtol=1e-6)
    np.testing.assert_allclose(A(_core.cross_entropy_backward(probs, T(labels), 2.0)),
                               ref.cross_entropy_backward(x, labels, 2.0), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_stable_for_logits_of_1e4(dtype):
    x = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 0.0], [1e4, 1e4, 1e4], [0.0, 0.0, 1e4]], dtype=dtype)
    labels = np.array([0, 0, 2, 1])
    loss, probs = _core.cross_entropy_forward(T(x), T(labels))
    dx = A(_core.cross_entropy_backward(probs, T(labels)))
    assert np.isfinite(float(A(loss))) and np.isfinite(A(probs)).all() and np.isfinite(dx).all()
    # exact: rows lose 0, 2e4, log(3), 1e4
    expected = (0.0 + 2e4 + np.log(3.0) + 1e4) / 4
    np.testing.assert_allclose(float(A(loss)), expected, rtol=1e-6)
    np.testing.assert_allclose(float(A(loss)), ref.cross_entropy(x, labels), rtol=1e-6)
    np.testing.assert_allclose(dx, ref.cross_entropy_backward(x, labels), rtol=1e-5, atol=1e-7)


def test_cross_entropy_matches_torch():
    torch = pytest.importorskip("torch")
    r = rng(8)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        x = r.normal(scale=4.0, size=(32, 10)).astype(dtype)
        labels = r.integers(0, 10, size=32)
        tx = torch.tensor(x, requires_grad=True)
        tl = torch.nn.functional.cross_entropy(tx, torch.tensor(labels))
        (tl * 3.0).backward()
        loss, probs = _core.cross_entropy_forward(T(x), T(labels))
        np.testing.assert_allclose(float(A(loss)), tl.item(), rtol=tol)
        np.testing.assert_allclose(A(_core.cross_entropy_backward(probs, T(labels), 3.0)), tx.grad.numpy(),
                                   rtol=tol, atol=tol * 1e-2)
        np.testing.assert_allclose(A(_core.log_softmax_forward(T(x))),
                                   torch.log_softmax(torch.tensor(x), 1).numpy(), rtol=tol, atol=tol)


def test_cross_entropy_bad_inputs():
    x = T(np.zeros((64, 10)))
    with pytest.raises(ValueError, match=r"cross_entropy: expected labels of shape \(64,\) for logits \(64, 10\), "
                                         r"got \(32,\)"):
        _core.cross_entropy_forward(x, T(np.zeros(32, np.int64)))
    with pytest.raises(ValueError, match=r"expected labels of shape \(64,\) .*got \(64, 1\)"):
        _core.cross_entropy_forward(x, T(np.zeros((64, 1), np.int64)))
    with pytest.raises(TypeError, match="cross_entropy: labels must be int64 class indices, got a float32"):
        _core.cross_entropy_forward(x, T(np.zeros(64, np.float32)))
    bad = np.zeros(64, np.int64)
    bad[5], bad[9] = 10, -1
    with pytest.raises(ValueError, match=r"cross_entropy: label 10 at position 5 is out of range for 10 classes"):
        _core.cross_entropy_forward(x, T(bad))
    bad[5] = 0
    with pytest.raises(ValueError, match=r"label -1 at position 9 .*\[0, 10\)"):
        _core.cross_entropy_forward(x, T(bad))
    with pytest.raises(ValueError, match=r"cross_entropy: expected logits of 2 dimensions \(N, C\), got shape "
                                         r"\(64, 10, 1\)"):
        _core.cross_entropy_forward(T(np.zeros((64, 10, 1))), T(np.zeros(64, np.int64)))
    with pytest.raises(ValueError, match="cross_entropy: the batch is empty"):
        _core.cross_entropy_forward(T(np.zeros((0, 10))), T(np.zeros(0, np.int64)))
    with pytest.raises(TypeError, match="cross_entropy: expected a float32 or float64 tensor, got int64"):
        _core.cross_entropy_forward(T(np.zeros((2, 3), np.int64)), T(np.zeros(2, np.int64)))
    # backward checks the same things
    with pytest.raises(ValueError, match=r"cross_entropy_backward: expected labels of shape \(64,\) for probs "
                                         r"\(64, 10\), got \(3,\)"):
        _core.cross_entropy_backward(x, T(np.zeros(3, np.int64)))
    with pytest.raises(ValueError, match="cross_entropy_backward: label 12 at position 0"):
        _core.cross_entropy_backward(x, T(np.full(64, 12, np.int64)))
    with pytest.raises(TypeError, match="int64 class indices"):
        _core.cross_entropy_backward(x, T(np.zeros(64)))


# -------------------------------------------------------------------------------------- MSE
@pytest.mark.parametrize("shape", [(1,), (7,), (4, 5), (2, 3, 4, 5), (3, 70000)])
def test_mse_matches_reference(shape):
    r = rng(9)
    x, t = r.normal(size=shape), r.normal(size=shape)
    loss = _core.mse_forward(T(x), T(t))
    assert loss.shape == () and loss.dtype == pc.float64
    np.testing.assert_allclose(float(A(loss)), ref.mse_loss(x, t), rtol=1e-12)
    np.testing.assert_allclose(A(_core.mse_backward(T(x), T(t), 0.5)), ref.mse_loss_backward(x, t, 0.5),
                               rtol=1e-13, atol=1e-16)
    x32, t32 = x.astype(np.float32), t.astype(np.float32)
    loss32 = _core.mse_forward(T(x32), T(t32))
    assert loss32.dtype == pc.float32
    np.testing.assert_allclose(float(A(loss32)), ref.mse_loss(x32, t32), rtol=1e-6)
    np.testing.assert_allclose(A(_core.mse_backward(T(x32), T(t32))), ref.mse_loss_backward(x32, t32),
                               rtol=1e-5, atol=1e-9)


def test_mse_numeric_grad_and_repeatability():
    r = rng(10)
    x, t = r.normal(size=(3, 4)), r.normal(size=(3, 4))
    num = ref.numeric_grad(lambda z: float(A(_core.mse_forward(T(z), T(t)))), x)
    np.testing.assert_allclose(A(_core.mse_backward(T(x), T(t))), num, rtol=1e-6, atol=1e-9)
    big = r.normal(size=(500, 1000)).astype(np.float32)
    tb = np.zeros_like(big)
    a, b = A(_core.mse_forward(T(big), T(tb))), A(_core.mse_forward(T(big), T(tb)))
    assert a.tobytes() == b.tobytes()
    np.testing.assert_allclose(float(a), np.mean(big.astype(np.float64) ** 2), rtol=1e-7)


def test_mse_matches_torch():
    torch = pytest.importorskip("torch")
    r = rng(11)
    x, t = r.normal(size=(8, 3, 5)), r.normal(size=(8, 3, 5))
    tx = torch.tensor(x, requires_grad=True)
    tl = torch.nn.functional.mse_loss(tx, torch.tensor(t))
    tl.backward()
    np.testing.assert_allclose(float(A(_core.mse_forward(T(x), T(t)))), tl.item(), rtol=1e-12)
    np.testing.assert_allclose(A(_core.mse_backward(T(x), T(t))), tx.grad.numpy(), rtol=1e-12, atol=1e-16)


def test_mse_bad_inputs():
    with pytest.raises(ValueError, match=r"mse_loss: expected target of shape \(4, 5\) .*got \(5, 4\)"):
        _core.mse_forward(T(np.zeros((4, 5))), T(np.zeros((5, 4))))
    with pytest.raises(TypeError, match="mse_loss: input is float64 but target is float32"):
        _core.mse_forward(T(np.zeros((4, 5))), T(np.zeros((4, 5), np.float32)))
    with pytest.raises(ValueError, match="mse_loss_backward: expected target of shape"):
        _core.mse_backward(T(np.zeros(3)), T(np.zeros(4)))
    with pytest.raises(ValueError, match="mse_loss: the input is empty"):
        _core.mse_forward(T(np.zeros((0, 3))), T(np.zeros((0, 3))))
    with pytest.raises(TypeError, match="mse_loss: expected a float32 or float64 tensor, got int64"):
        _core.mse_forward(T(np.zeros(3, np.int64)), T(np.zeros(3, np.int64)))


# ------------------------------------------------ every device against the CPU kernels (`cuda`)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", [(5, 10), (3, 1), (2, 1000), (257, 7)])
def test_softmax_cross_entropy_on_device(device, n, c, dtype):
    rng = np.random.default_rng(6)
    x = rnd(rng, (n, c), dtype) * 5
    x[0, 0] = 1e4  # the max shift keeps this finite
    compare(_core.softmax_forward, x, dtype=dtype, device=device)
    compare(_core.log_softmax_forward, x, dtype=dtype, device=device)
    y = host(_core.softmax_forward(on(x, "cpu")))
    compare(_core.softmax_backward, rnd(rng, (n, c), dtype), y, dtype=dtype, device=device)
    labels = rng.integers(0, c, size=n).astype(np.int64)
    loss, probs = compare(_core.cross_entropy_forward, x, labels, dtype=dtype, device=device)
    assert loss.shape == ()
    compare(lambda p, l: _core.cross_entropy_backward(p, l, 0.5), probs, labels, dtype=dtype, device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (4, 3, 5), (100_001,)])
def test_mse_on_device(device, shape, dtype):
    rng = np.random.default_rng(7)
    x, t = rnd(rng, shape, dtype), rnd(rng, shape, dtype)
    compare(_core.mse_forward, x, t, dtype=dtype, device=device)
    compare(lambda x, t: _core.mse_backward(x, t, 0.25), x, t, dtype=dtype, device=device)
