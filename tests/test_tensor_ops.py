"""add / add_ / scale_ / concat / split / sum_all / count_correct / isfinite_all of pycnn._core
against NumPy."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn as pc
from pycnn import _core

from helpers import T, rng, DEVICES, DTYPES as FLOATS, assert_tree_close, compare, host, on, rnd


def A(t):
    return np.asarray(t)


DTYPES = [np.float32, np.float64, np.int64]


def sample(shape, dtype, seed=0):
    r = rng(seed)
    if dtype == np.int64:
        return r.integers(-100, 100, size=shape).astype(np.int64)
    return r.normal(size=shape).astype(dtype)


# ------------------------------------------------------------------------------ add, add_, scale_
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (5,), (3, 4), (2, 3, 4, 5), (300, 200)])
def test_add(dtype, shape):
    a, b = sample(shape, dtype, 1), sample(shape, dtype, 2)
    out = _core.add(T(a), T(b))
    assert out.dtype == T(a).dtype and out.shape == shape
    np.testing.assert_array_equal(A(out), a + b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_in_place_accumulates(dtype):
    dst_np = sample((4, 5), dtype, 3)
    expected = dst_np.copy()
    dst = T(dst_np)  # shares memory
    for k, alpha in enumerate((1.0, 2.0, -3.0)):
        src = sample((4, 5), dtype, 10 + k)
        assert _core.add_(dst, T(src), alpha) is None
        expected = expected + (src * dtype(alpha) if dtype != np.int64 else src * int(alpha))
    np.testing.assert_allclose(dst_np, expected, rtol=1e-6 if dtype == np.float32 else 0)
    _core.add_(dst, T(np.ones((4, 5), dtype)))  # alpha defaults to 1
    np.testing.assert_allclose(dst_np, expected + 1, rtol=1e-6 if dtype == np.float32 else 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scale_in_place(dtype):
    x_np = sample((6, 7), dtype, 4)
    expected = x_np * dtype(0.25)
    x = T(x_np)
    assert _core.scale_(x, 0.25) is None
    np.testing.assert_array_equal(x_np, expected)


def test_add_bad_inputs():
    a = T(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"add: expected b of shape \(2, 3\) \(the shape of a\), got \(3, 2\)"):
        _core.add(a, T(np.zeros((3, 2))))
    with pytest.raises(TypeError, match="add: a is float64 but b is float32"):
        _core.add(a, T(np.zeros((2, 3), np.float32)))
    with pytest.raises(ValueError, match=r"add_: expected src of shape \(2, 3\) \(the shape of dst\), got \(6,\)"):
        _core.add_(a, T(np.zeros(6)))
    with pytest.raises(TypeError, match="add_: dst is float64 but src is int64"):
        _core.add_(a, T(np.zeros((2, 3), np.int64)))
    with pytest.raises(ValueError, match="add_: alpha must be a whole number for int64 tensors, got 0.5"):
        _core.add_(T(np.zeros(3, np.int64)), T(np.zeros(3, np.int64)), 0.5)
    with pytest.raises(TypeError, match="scale_: expected a float32 or float64 tensor, got int64"):
        _core.scale_(T(np.zeros(3, np.int64)), 2.0)


# ------------------------------------------------------------------------------ concat / split
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,dim,sizes", [
    ((7,), 0, [2, 0, 5]),
    ((4, 6), 0, [1, 3]),
    ((4, 6), 1, [2, 2, 2]),
    ((4, 6), -1, [5, 1]),
    ((2, 5, 3, 4), 1, [1, 2, 2]),
    ((2, 5, 3, 4), 3, [3, 1]),
    ((2, 5, 3, 4), -2, [3]),
    ((0, 5), 1, [2, 3]),
])
def test_concat_and_split_match_numpy(dtype, shape, dim, sizes):
    x = sample(shape, dtype, 5)
    parts = _core.split(T(x), sizes, dim)
    expected = np.split(x, np.cumsum(sizes)[:-1], axis=dim)
    assert len(parts) == len(sizes)
    for p, e in zip(parts, expected):
        assert p.is_contiguous() and p.shape == e.shape and p.dtype == T(x).dtype
        np.testing.assert_array_equal(A(p), e)
    back = _core.concat(parts, dim)
    assert back.shape == shape
    np.testing.assert_array_equal(A(back), x)
    # concat of independent arrays
    others = [sample(e.shape, dtype, 20 + k) for k, e in enumerate(expected)]
    np.testing.assert_array_equal(A(_core.concat([T(o) for o in others], dim)), np.concatenate(others, axis=dim))


def test_split_results_are_copies():
    x_np = np.arange(12.0).reshape(3, 4)
    a, b = _core.split(T(x_np), [1, 3], 1)
    x_np[:] = -1
    np.testing.assert_array_equal(A(a), np.arange(12.0).reshape(3, 4)[:, :1])
    np.testing.assert_array_equal(A(b), np.arange(12.0).reshape(3, 4)[:, 1:])


def test_concat_split_bad_inputs():
    a, b = T(np.zeros((2, 5, 3))), T(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"concat: expected tensors\[1\] of shape \(2, \*, 3\) \(the shape of "
                                         r"tensors\[0\] \(2, 5, 3\) in every dim but 1\), got \(2, 4, 4\)"):
        _core.concat([a, b], 1)
    with pytest.raises(ValueError, match=r"concat: expected tensors\[1\] of shape \(\*, 5, 3\) .*got \(5, 3\)"):
        _core.concat([a, T(np.zeros((5, 3)))], 0)
    with pytest.raises(ValueError, match="concat: expected a non-empty list of tensors"):
        _core.concat([], 0)
    with pytest.raises(ValueError, match=r"concat: dim 3 is out of range for a tensor of shape \(2, 5, 3\) "
                                         r"\(expected a dim in \[-3, 2\]\)"):
        _core.concat([a, a], 3)
    with pytest.raises(TypeError, match=r"concat: tensors\[0\] is float64 but tensors\[1\] is float32"):
        _core.concat([a, T(np.zeros((2, 5, 3), np.float32))], 0)
    with pytest.raises(ValueError, match="concat: cannot work along a dim of a 0-dimensional tensor"):
        _core.concat([T(np.zeros(())), T(np.zeros(()))], 0)
    with pytest.raises(ValueError, match=r"split: sizes \[2, 2\] add up to 4 but dim 1 of the input of shape "
                                         r"\(2, 5, 3\) has size 5"):
        _core.split(a, [2, 2], 1)
    with pytest.raises(ValueError, match=r"split: sizes must be >= 0, got \[6, -1\]"):
        _core.split(a, [6, -1], 1)
    with pytest.raises(ValueError, match=r"split: dim -4 is out of range"):
        _core.split(a, [2], -4)


# ------------------------------------------------------------------------------------- sum_all
@pytest.mark.parametrize("shape", [(), (1,), (10,), (3, 4, 5), (1000, 333)])
def test_sum_all(shape):
    x = sample(shape, np.float64, 6)
    s = _core.sum_all(T(x))
    assert s.shape == () and s.dtype == pc.float64
    np.testing.assert_allclose(float(A(s)), x.sum(), rtol=1e-12, atol=1e-12)
    x32 = x.astype(np.float32)
    s32 = _core.sum_all(T(x32))
    assert s32.dtype == pc.float32
    # double accumulator: as accurate as the float64 sum of the float32 values, rounded once
    assert float(A(s32)) == np.float32(x32.astype(np.float64).sum())


def test_sum_all_empty_and_repeatable():
    assert float(A(_core.sum_all(T(np.zeros((0, 4)))))) == 0.0
    x = rng(7).normal(size=(2000, 1000)).astype(np.float32)
    assert A(_core.sum_all(T(x))).tobytes() == A(_core.sum_all(T(x))).tobytes()
    with pytest.raises(TypeError, match="sum_all: expected a float32 or float64 tensor, got int64"):
        _core.sum_all(T(np.zeros(3, np.int64)))


# ------------------------------------------------------------------------------- count_correct
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_count_correct(dtype):
    r = rng(8)
    logits = r.normal(size=(500, 10)).astype(dtype)
    labels = r.integers(0, 10, size=500)
    labels[:100] = logits[:100].argmax(1)  # some certainly right
    c = _core.count_correct(T(logits), T(labels))
    assert c.shape == () and c.dtype == pc.int64
    assert int(A(c)) == int((logits.argmax(1) == labels).sum())


def test_count_correct_ties_take_the_first_maximum():
    logits = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [0.0, 5.0, 5.0], [np.nan, 1.0, 2.0]])
    assert int(A(_core.count_correct(T(logits), T(np.array([1, 0, 2, 0]))))) == 3
    assert int(A(_core.count_correct(T(logits), T(np.array([2, 1, 1, 2]))))) == 1
    assert int(A(_core.count_correct(T(np.zeros((0, 3))), T(np.zeros(0, np.int64))))) == 0


def test_count_correct_matches_torch_argmax():
    torch = pytest.importorskip("torch")
    r = rng(9)
    logits = r.integers(0, 3, size=(200, 5)).astype(np.float64)  # many ties
    labels = r.integers(0, 5, size=200)
    expected = int((torch.tensor(logits).argmax(1) == torch.tensor(labels)).sum())
    assert int(A(_core.count_correct(T(logits), T(labels)))) == expected


def test_count_correct_bad_inputs():
    logits = T(np.zeros((64, 10)))
    with pytest.raises(ValueError, match=r"count_correct: expected labels of shape \(64,\) for logits \(64, 10\), "
                                         r"got \(32,\)"):
        _core.count_correct(logits, T(np.zeros(32, np.int64)))
    with pytest.raises(TypeError, match="count_correct: labels must be int64 class indices"):
        _core.count_correct(logits, T(np.zeros(64)))
    with pytest.raises(ValueError, match=r"count_correct: label 10 at position 0 is out of range for 10 classes"):
        _core.count_correct(logits, T(np.full(64, 10, np.int64)))
    with pytest.raises(ValueError, match=r"count_correct: expected logits of 2 dimensions \(N, C\)"):
        _core.count_correct(T(np.zeros(64)), T(np.zeros(64, np.int64)))


# -------------------------------------------------------------------------------- isfinite_all
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_isfinite_all(dtype):
    x = rng(10).normal(size=(300, 400)).astype(dtype)
    assert _core.isfinite_all(T(x)) is True
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[299, 399] = bad
        assert _core.isfinite_all(T(y)) is False
        y = x.copy()
        y[0, 0] = bad
        assert _core.isfinite_all(T(y)) is False
    assert _core.isfinite_all(T(np.zeros((0, 3), dtype))) is True
    assert _core.isfinite_all(T(np.array(np.finfo(dtype).max))) is True


def test_isfinite_all_int64():
    assert _core.isfinite_all(T(np.array([1, 2, 3]))) is True


# ------------------------------------------------ every device against the CPU kernels (`cuda`)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOATS + [np.int64])
def test_add_and_in_place_on_device(device, dtype):
    rng = np.random.default_rng(11)
    a = (rng.standard_normal((4, 9)) * 10).astype(dtype)
    b = (rng.standard_normal((4, 9)) * 10).astype(dtype)
    compare(_core.add, a, b, dtype=dtype, device=device)
    for alpha in (1.0, -2.0):
        res = {}
        for dev in ("cpu", device):
            d = on(a.copy(), dev)
            _core.add_(d, on(b, dev), alpha)
            res[dev] = host(d)
        assert_tree_close(res[device], res["cpu"], dtype)
    if dtype != np.int64:
        res = {}
        for dev in ("cpu", device):
            d = on(a.copy(), dev)
            _core.scale_(d, 0.3)
            res[dev] = host(d)
        assert_tree_close(res[device], res["cpu"], dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOATS + [np.int64])
def test_concat_split_on_device(device, dtype):
    rng = np.random.default_rng(12)
    parts = [(rng.standard_normal((2, n, 3)) * 10).astype(dtype) for n in (1, 4, 2)]
    for dim in (1, -2):
        compare(lambda *ts: _core.concat(list(ts), dim), *parts, dtype=dtype, device=device)
    same = [(rng.standard_normal((2, 3, 4)) * 10).astype(dtype) for _ in range(3)]
    for dim in (0, 2, -1):
        compare(lambda *ts: _core.concat(list(ts), dim), *same, dtype=dtype, device=device)
    x = np.concatenate(parts, axis=1)
    compare(lambda x: _core.split(x, [1, 4, 2], 1), x, dtype=dtype, device=device)
    compare(lambda x: _core.split(x, [0, 3], 2), x, dtype=dtype, device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [0, 1, 1000, 300_007])
def test_sum_all_on_device(device, n, dtype):
    x = np.random.default_rng(13).standard_normal(n).astype(dtype)
    compare(_core.sum_all, x, dtype=dtype, device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOATS)
def test_count_correct_and_isfinite_on_device(device, dtype):
    rng = np.random.default_rng(14)
    logits = rnd(rng, (50, 7), dtype)
    labels = logits.argmax(1).astype(np.int64)
    labels[::3] = (labels[::3] + 1) % 7
    logits[5, 2] = np.nan
    out = compare(_core.count_correct, logits, labels, dtype=dtype, device=device)
    assert out.dtype == np.int64
    clean = rnd(rng, (1000, 3), dtype)
    assert _core.isfinite_all(on(clean, device)) is True
    for bad in (np.nan, np.inf, -np.inf):
        d = clean.copy()
        d[999, 2] = bad
        assert _core.isfinite_all(on(d, device)) is False
