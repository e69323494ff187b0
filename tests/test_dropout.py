"""dropout_forward / dropout_backward of pycnn._core: the counter-based mask (random.h) repeats
for a seed, keeps about (1-p) of the elements, scales by 1/(1-p), and p=0 is the identity."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn as pc
from pycnn import _core

from helpers import T, DEVICES, DTYPES, compare, host, on, rnd


def A(t):
    return np.asarray(t)


def splitmix64(z):
    m = (1 << 64) - 1
    z = (z + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def uniform(seed, counter):
    """rng::uniform from csrc/random.h."""
    return (splitmix64(seed ^ splitmix64(counter)) >> 40) * (1.0 / 16777216.0)


def test_same_seed_same_mask_and_counter_advances():
    x = np.random.default_rng(0).normal(size=(8, 3, 5, 5))
    pc.manual_seed(123)
    y1, m1 = _core.dropout_forward(T(x), 0.3)
    assert _core.get_rng_offset() == x.size
    y2, m2 = _core.dropout_forward(T(x), 0.3)
    assert _core.get_rng_offset() == 2 * x.size
    assert not np.array_equal(A(m1), A(m2))  # the counter moved on: a new mask
    pc.manual_seed(123)  # resets the counter
    y3, m3 = _core.dropout_forward(T(x), 0.3)
    assert np.array_equal(A(m1), A(m3)) and np.array_equal(A(y1), A(y3))
    pc.manual_seed(124)
    _, m4 = _core.dropout_forward(T(x), 0.3)
    assert not np.array_equal(A(m1), A(m4))


def test_mask_follows_the_counter_based_generator():
    pc.manual_seed(7)
    _core.set_rng_offset(1000)
    p = 0.4
    _, mask = _core.dropout_forward(T(np.ones(50)), p)
    expected = np.array([1 / (1 - p) if uniform(7, 1000 + i) >= p else 0.0 for i in range(50)])
    np.testing.assert_array_equal(A(mask), expected)
    assert _core.get_rng_offset() == 1050


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mask_statistics_and_scale(p, dtype):
    pc.manual_seed(1)
    x = np.random.default_rng(2).normal(size=(200, 500)).astype(dtype)
    y, mask = _core.dropout_forward(T(x), p)
    y, mask = A(y), A(mask)
    assert y.dtype == dtype and mask.dtype == dtype
    scale = dtype(1.0 / (1.0 - p))
    assert set(np.unique(mask)) <= {dtype(0), scale}
    kept = mask != 0
    n = kept.size
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    assert abs(mask.astype(np.float64).mean() - 1.0) < 0.02  # inverted dropout keeps the expectation
    np.testing.assert_array_equal(y, x * mask)


def test_p_zero_is_identity_and_p_one_drops_everything():
    x = np.random.default_rng(3).normal(size=(4, 6))
    y, mask = _core.dropout_forward(T(x), 0.0)
    np.testing.assert_array_equal(A(y), x)
    np.testing.assert_array_equal(A(mask), np.ones_like(x))
    y, mask = _core.dropout_forward(T(x), 1.0)
    np.testing.assert_array_equal(A(y), np.zeros_like(x))
    np.testing.assert_array_equal(A(mask), np.zeros_like(x))


def test_backward_is_grad_times_mask():
    pc.manual_seed(5)
    r = np.random.default_rng(4)
    x, dy = r.normal(size=(3, 7)), r.normal(size=(3, 7))
    y, mask = _core.dropout_forward(T(x), 0.25)
    dx = A(_core.dropout_backward(T(dy), mask))
    np.testing.assert_array_equal(dx, dy * A(mask))
    # as a function of x with the mask fixed, y = x*mask, so d(sum(y*dy))/dx = dy*mask
    np.testing.assert_allclose(A(y), x * A(mask), rtol=0, atol=0)


def test_empty_input():
    y, mask = _core.dropout_forward(T(np.zeros((0, 3))), 0.5)
    assert y.shape == (0, 3) and mask.shape == (0, 3)


def test_bad_inputs():
    x = T(np.zeros((2, 3)))
    for p in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"dropout: probability p must be in \[0, 1\], got"):
            _core.dropout_forward(x, p)
    with pytest.raises(TypeError, match="dropout: expected a float32 or float64 tensor, got int64"):
        _core.dropout_forward(T(np.zeros(3, np.int64)), 0.5)
    _, mask = _core.dropout_forward(x, 0.5)
    with pytest.raises(ValueError, match=r"dropout_backward: expected grad_output of shape \(2, 3\), got \(3, 2\)"):
        _core.dropout_backward(T(np.zeros((3, 2))), mask)
    with pytest.raises(TypeError, match="dropout_backward: grad_output is float32 but mask is float64"):
        _core.dropout_backward(T(np.zeros((2, 3), np.float32)), mask)


# ------------------------------------------------ every device against the CPU kernels (`cuda`)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_same_mask_as_cpu_on_device(device, dtype):
    rng = np.random.default_rng(8)
    x = rnd(rng, (6, 5, 33), dtype)
    pc.manual_seed(123)
    y_cpu, m_cpu = host(_core.dropout_forward(on(x, "cpu"), 0.3))
    pc.manual_seed(123)
    y_dev, m_dev = host(_core.dropout_forward(on(x, device), 0.3))
    np.testing.assert_array_equal(m_dev, m_cpu)
    np.testing.assert_array_equal(y_dev, y_cpu)
    assert 0.5 < (m_cpu != 0).mean() < 0.9
    compare(_core.dropout_backward, rnd(rng, x.shape, dtype), m_cpu, dtype=dtype, device=device)
