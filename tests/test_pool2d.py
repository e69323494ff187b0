"""pycnn._core pooling ops (max / avg with count_include_pad=True / adaptive avg) against the NumPy
reference (tests/reference.py), finite differences and PyTorch; bad inputs; determinism."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn as pc
from pycnn import _core

from helpers import T, rng, DEVICES, DTYPES, compare, on, rnd
import reference as ref


def A(t):
    return np.asarray(t)


def import_torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)  # tiny ops: threads only contend with pycnn's OpenMP pool
    return torch


def distinct(shape, seed=0, dtype=np.float64):
    """Values with no ties (spaced 0.1 apart, shuffled), so max pooling is differentiable."""
    n = int(np.prod(shape))
    v = rng(seed).permutation(n).astype(np.float64) * 0.1 - 0.05 * n
    return v.reshape(shape).astype(dtype)


# (input shape, kernel, stride, padding): odd sizes, stride != kernel, stride > kernel, padding
CASES = [
    ((2, 3, 7, 9), (3, 3), (2, 2), (1, 1)),
    ((1, 2, 8, 8), (2, 2), (2, 2), (0, 0)),
    ((2, 1, 5, 6), (3, 2), (1, 2), (1, 0)),
    ((1, 3, 11, 7), (4, 3), (3, 1), (2, 1)),
    ((3, 2, 6, 5), (1, 1), (1, 1), (0, 0)),
    ((1, 1, 4, 9), (4, 5), (1, 3), (2, 2)),
    ((2, 2, 3, 3), (3, 3), (1, 1), (1, 1)),
    ((1, 2, 10, 10), (2, 3), (3, 4), (1, 1)),
    ((1, 1, 1, 1), (1, 1), (1, 1), (0, 0)),
    ((1, 1, 2, 2), (2, 2), (5, 5), (1, 1)),
]
IDS = [f"{s}-k{k}-s{st}-p{p}" for s, k, st, p in CASES]

ADAPTIVE = [
    ((2, 3, 7, 5), (3, 2)),
    ((1, 2, 5, 5), (5, 5)),
    ((1, 1, 4, 6), (7, 8)),   # output larger than input: bins overlap
    ((2, 2, 9, 9), (1, 1)),   # global average
    ((1, 2, 10, 3), (4, 3)),
]


# ------------------------------------------------------------------------------------------ max
@pytest.mark.parametrize("shape,k,s,p", CASES, ids=IDS)
def test_max_pool_forward_float64_matches_reference(shape, k, s, p):
    x = rng(1).normal(size=shape)
    y, idx = _core.max_pool2d_forward(T(x), k, s, p)
    ry, ridx = ref.max_pool2d(x, k, s, p)
    assert A(idx).dtype == np.int64 and A(y).dtype == np.float64
    np.testing.assert_array_equal(A(y), ry)
    np.testing.assert_array_equal(A(idx), ridx)


@pytest.mark.parametrize("shape,k,s,p", CASES, ids=IDS)
def test_max_pool_forward_float32(shape, k, s, p):
    x = rng(2).normal(size=shape).astype(np.float32)
    y, idx = _core.max_pool2d_forward(T(x), k, s, p)
    ry, ridx = ref.max_pool2d(x.astype(np.float64), k, s, p)
    assert A(y).dtype == np.float32
    np.testing.assert_array_equal(A(y), ry.astype(np.float32))  # a max is exact
    np.testing.assert_array_equal(A(idx), ridx)


def test_max_pool_argmax_values_by_hand():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    y, idx = _core.max_pool2d_forward(T(x), (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(A(y)[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(A(idx)[0, 0], [[5, 7], [13, 15]])
    # reversed values: the maximum is the window's top-left element
    y, idx = _core.max_pool2d_forward(T(-x), (3, 3), (1, 1), (1, 1))
    np.testing.assert_array_equal(A(idx)[0, 0], [[0, 0, 1, 2], [0, 0, 1, 2], [4, 4, 5, 6], [8, 8, 9, 10]])


def test_max_pool_ties_go_to_first_maximum():
    x = np.zeros((1, 2, 4, 4))
    _, idx = _core.max_pool2d_forward(T(x), (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(A(idx)[0, 1], [[0, 2], [8, 10]])
    # with padding: the first IN-BOUNDS element of each window (padding is -inf)
    x = np.full((2, 3, 5, 6), 1.5)
    for k, s, p in [((3, 3), (1, 1), (1, 1)), ((2, 4), (2, 3), (1, 2)), ((5, 5), (2, 2), (2, 2))]:
        y, idx = _core.max_pool2d_forward(T(x), k, s, p)
        ry, ridx = ref.max_pool2d(x, k, s, p)
        np.testing.assert_array_equal(A(idx), ridx)
        np.testing.assert_array_equal(A(y), 1.5)
    _, idx = _core.max_pool2d_forward(T(np.ones((1, 1, 3, 3))), (3, 3), (1, 1), (1, 1))
    np.testing.assert_array_equal(A(idx)[0, 0], [[0, 0, 1], [0, 0, 1], [3, 3, 4]])


def test_max_pool_all_minus_inf_and_nan():
    x = np.full((1, 1, 3, 3), -np.inf)
    y, idx = _core.max_pool2d_forward(T(x), (2, 2), (1, 1), (1, 1))
    ry, ridx = ref.max_pool2d(x, 2, 1, 1)
    np.testing.assert_array_equal(A(y), ry)
    np.testing.assert_array_equal(A(idx), ridx)
    x = rng(3).normal(size=(1, 2, 5, 5))
    x[0, 0, 2, 3] = np.nan
    x[0, 1, 0, 0] = np.nan
    x[0, 1, 0, 1] = np.nan  # a second NaN in the same window: the later one is kept, as in PyTorch
    for dt in (np.float64, np.float32):
        y, idx = _core.max_pool2d_forward(T(x.astype(dt)), (3, 3), (2, 2), (1, 1))
        ry, ridx = ref.max_pool2d(x, 3, 2, 1)
        np.testing.assert_array_equal(A(y), ry.astype(dt))  # NaN == NaN for assert_array_equal
        np.testing.assert_array_equal(A(idx), ridx)
        assert np.isnan(A(y)[0, 0, 1, 1]) and np.isnan(A(y)[0, 0, 1, 2])


@pytest.mark.parametrize("shape,k,s,p", CASES, ids=IDS)
def test_max_pool_backward_matches_reference(shape, k, s, p):
    x = rng(4).normal(size=shape)
    y, idx = _core.max_pool2d_forward(T(x), k, s, p)
    dy = rng(5).normal(size=A(y).shape)
    dx = _core.max_pool2d_backward(T(dy), idx, list(shape))
    _, ridx = ref.max_pool2d(x, k, s, p)
    np.testing.assert_allclose(A(dx), ref.max_pool2d_backward(dy, ridx, shape), rtol=1e-13, atol=1e-13)
    dx32 = _core.max_pool2d_backward(T(dy.astype(np.float32)), idx, list(shape))
    assert A(dx32).dtype == np.float32
    np.testing.assert_allclose(A(dx32), ref.max_pool2d_backward(dy, ridx, shape), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,k,s,p", [CASES[0], CASES[2], CASES[3], CASES[7]], ids=lambda v: str(v))
def test_max_pool_backward_numeric(shape, k, s, p):
    shape = (1,) + tuple(shape[1:])
    x = distinct(shape, seed=6)
    y, idx = _core.max_pool2d_forward(T(x), k, s, p)
    wts = rng(7).normal(size=A(y).shape)
    loss = lambda a: float((A(_core.max_pool2d_forward(T(a), k, s, p)[0]) * wts).sum())  # noqa: E731
    dx = _core.max_pool2d_backward(T(wts), idx, list(shape))
    np.testing.assert_allclose(A(dx), ref.numeric_grad(loss, x), rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------ avg
@pytest.mark.parametrize("shape,k,s,p", CASES, ids=IDS)
def test_avg_pool_forward_matches_reference(shape, k, s, p):
    x = rng(8).normal(size=shape)
    np.testing.assert_allclose(A(_core.avg_pool2d_forward(T(x), k, s, p)), ref.avg_pool2d(x, k, s, p),
                               rtol=1e-13, atol=1e-14)
    y32 = A(_core.avg_pool2d_forward(T(x.astype(np.float32)), k, s, p))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, ref.avg_pool2d(x.astype(np.float32), k, s, p), rtol=1e-5, atol=1e-6)


def test_avg_pool_divisor_counts_padding():
    # count_include_pad=True: a corner 3x3 window at padding 1 holds 4 ones but divides by 9
    y = A(_core.avg_pool2d_forward(T(np.ones((1, 1, 4, 4))), (3, 3), (1, 1), (1, 1)))
    assert y[0, 0, 0, 0] == pytest.approx(4 / 9) and y[0, 0, 1, 1] == pytest.approx(1.0)
    assert y[0, 0, 0, 1] == pytest.approx(6 / 9)


@pytest.mark.parametrize("shape,k,s,p", CASES, ids=IDS)
def test_avg_pool_backward_matches_reference(shape, k, s, p):
    x = rng(9).normal(size=shape)
    oshape = A(_core.avg_pool2d_forward(T(x), k, s, p)).shape
    dy = rng(10).normal(size=oshape)
    dx = _core.avg_pool2d_backward(T(dy), list(shape), k, s, p)
    rdx = ref.avg_pool2d_backward(dy, shape, k, s, p)
    np.testing.assert_allclose(A(dx), rdx, rtol=1e-12, atol=1e-13)
    dx32 = A(_core.avg_pool2d_backward(T(dy.astype(np.float32)), list(shape), k, s, p))
    assert dx32.dtype == np.float32
    np.testing.assert_allclose(dx32, rdx, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,k,s,p", [CASES[0], CASES[2], CASES[3], CASES[5]], ids=lambda v: str(v))
def test_avg_pool_backward_numeric(shape, k, s, p):
    shape = (1,) + tuple(shape[1:])
    x = rng(11).normal(size=shape)
    wts = rng(12).normal(size=A(_core.avg_pool2d_forward(T(x), k, s, p)).shape)
    loss = lambda a: float((A(_core.avg_pool2d_forward(T(a), k, s, p)) * wts).sum())  # noqa: E731
    dx = _core.avg_pool2d_backward(T(wts), list(shape), k, s, p)
    np.testing.assert_allclose(A(dx), ref.numeric_grad(loss, x), rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------------------------ adaptive
@pytest.mark.parametrize("shape,out", ADAPTIVE, ids=[f"{s}->{o}" for s, o in ADAPTIVE])
def test_adaptive_avg_pool_matches_reference(shape, out):
    x = rng(13).normal(size=shape)
    y = A(_core.adaptive_avg_pool2d_forward(T(x), out))
    np.testing.assert_allclose(y, ref.adaptive_avg_pool2d(x, out), rtol=1e-13, atol=1e-14)
    y32 = A(_core.adaptive_avg_pool2d_forward(T(x.astype(np.float32)), out))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, ref.adaptive_avg_pool2d(x, out), rtol=1e-5, atol=1e-6)
    dy = rng(14).normal(size=y.shape)
    dx = A(_core.adaptive_avg_pool2d_backward(T(dy), list(shape)))
    np.testing.assert_allclose(dx, ref.adaptive_avg_pool2d_backward(dy, shape), rtol=1e-12, atol=1e-13)
    dx32 = A(_core.adaptive_avg_pool2d_backward(T(dy.astype(np.float32)), list(shape)))
    np.testing.assert_allclose(dx32, ref.adaptive_avg_pool2d_backward(dy, shape), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,out", [((1, 2, 7, 5), (3, 2)), ((1, 1, 4, 6), (7, 8)), ((1, 1, 5, 5), (2, 4))])
def test_adaptive_avg_pool_backward_numeric(shape, out):
    x = rng(15).normal(size=shape)
    wts = rng(16).normal(size=shape[:2] + out)
    loss = lambda a: float((A(_core.adaptive_avg_pool2d_forward(T(a), out)) * wts).sum())  # noqa: E731
    dx = A(_core.adaptive_avg_pool2d_backward(T(wts), list(shape)))
    np.testing.assert_allclose(dx, ref.numeric_grad(loss, x), rtol=1e-6, atol=1e-8)


def test_adaptive_identity_and_global():
    x = rng(17).normal(size=(2, 3, 5, 4))
    np.testing.assert_array_equal(A(_core.adaptive_avg_pool2d_forward(T(x), (5, 4))), x)
    np.testing.assert_allclose(A(_core.adaptive_avg_pool2d_forward(T(x), (1, 1)))[..., 0, 0], x.mean(axis=(2, 3)),
                               rtol=1e-13)


# ------------------------------------------------------------------------------------- PyTorch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,k,s,p", CASES[:8], ids=IDS[:8])
def test_torch_parity_max_and_avg(shape, k, s, p, dtype):
    torch = import_torch()
    F = torch.nn.functional
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    x = rng(18).normal(size=shape).astype(dtype)
    # max: values, indices, gradient
    tx = torch.tensor(x, requires_grad=True)
    ty, tidx = F.max_pool2d(tx, k, s, p, return_indices=True)
    y, idx = _core.max_pool2d_forward(T(x), k, s, p)
    np.testing.assert_array_equal(A(y), ty.detach().numpy())
    np.testing.assert_array_equal(A(idx), tidx.numpy())
    dy = rng(19).normal(size=ty.shape).astype(dtype)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(A(_core.max_pool2d_backward(T(dy), idx, list(shape))), tx.grad.numpy(), **tol)
    # avg, count_include_pad=True
    tx = torch.tensor(x, requires_grad=True)
    ty = F.avg_pool2d(tx, k, s, p, ceil_mode=False, count_include_pad=True)
    np.testing.assert_allclose(A(_core.avg_pool2d_forward(T(x), k, s, p)), ty.detach().numpy(), **tol)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(A(_core.avg_pool2d_backward(T(dy), list(shape), k, s, p)), tx.grad.numpy(), **tol)


def test_torch_parity_max_ties_and_nan():
    torch = import_torch()
    F = torch.nn.functional
    x = np.round(rng(20).normal(size=(2, 3, 9, 8)))  # many ties
    x[0, 0, 3, 3] = np.nan
    x[1, 2, 0, 0] = np.nan
    for k, s, p in [((3, 3), (2, 2), (1, 1)), ((2, 2), (1, 1), (0, 0)), ((4, 3), (2, 3), (2, 1))]:
        ty, tidx = F.max_pool2d(torch.tensor(x), k, s, p, return_indices=True)
        y, idx = _core.max_pool2d_forward(T(x), k, s, p)
        np.testing.assert_array_equal(A(y), ty.numpy())
        np.testing.assert_array_equal(A(idx), tidx.numpy())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,out", ADAPTIVE, ids=[f"{s}->{o}" for s, o in ADAPTIVE])
def test_torch_parity_adaptive(shape, out, dtype):
    torch = import_torch()
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    x = rng(21).normal(size=shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, out)
    np.testing.assert_allclose(A(_core.adaptive_avg_pool2d_forward(T(x), out)), ty.detach().numpy(), **tol)
    dy = rng(22).normal(size=ty.shape).astype(dtype)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(A(_core.adaptive_avg_pool2d_backward(T(dy), list(shape))), tx.grad.numpy(), **tol)


# ----------------------------------------------------------------------------------- bad input
X = np.zeros((2, 3, 6, 6))


@pytest.mark.parametrize("fn", ["max", "avg"])
@pytest.mark.parametrize("x,k,s,p,err,match", [
    (np.zeros((3, 6, 6)), (2, 2), (2, 2), (0, 0), ValueError, r"4 dimensions \(N, C, H, W\).*\(3, 6, 6\).*reshape\(1,"),
    (np.zeros((6, 6)), (2, 2), (2, 2), (0, 0), ValueError, r"4 dimensions.*\(6, 6\)"),
    (np.zeros((1, 2, 0, 5)), (1, 1), (1, 1), (0, 0), ValueError, r"non-empty H x W.*\(1, 2, 0, 5\)"),
    (X, (0, 2), (1, 1), (0, 0), ValueError, r"kernel_size must be >= 1.*\(0, 2\)"),
    (X, (2, 2), (1, 0), (0, 0), ValueError, r"stride must be >= 1.*\(1, 0\)"),
    (X, (2, 2), (1, 1), (0, -1), ValueError, r"padding must be >= 0.*\(0, -1\)"),
    (X, (3, 3), (1, 1), (2, 1), ValueError, r"at most half of kernel size.*padding=\(2, 1\).*kernel_size=\(3, 3\)"
                                              r".*kernel_size // 2 = \(1, 1\)"),
    (X, (7, 2), (1, 1), (0, 0), ValueError, r"output size would be 0x5 for input \(2, 3, 6, 6\).*kernel_size=\(7, 2\)"),
    (X.astype(np.int64), (2, 2), (2, 2), (0, 0), TypeError, r"float32 or float64.*int64"),
])
def test_pool_bad_inputs(fn, x, k, s, p, err, match):
    f = _core.max_pool2d_forward if fn == "max" else _core.avg_pool2d_forward
    name = "max_pool2d" if fn == "max" else "avg_pool2d"
    with pytest.raises(err, match=match) as e:
        f(T(x), k, s, p)
    assert str(e.value).startswith(name + ":")


def test_pool_bad_tuple_arguments():
    with pytest.raises(TypeError):
        _core.max_pool2d_forward(T(X), (2, 2, 2), (2, 2), (0, 0))
    with pytest.raises(TypeError):
        _core.avg_pool2d_forward(T(X), (2, 2), "ab", (0, 0))


def test_max_pool_backward_bad_inputs():
    x = rng(23).normal(size=(2, 3, 6, 6))
    y, idx = _core.max_pool2d_forward(T(x), (2, 2), (2, 2), (0, 0))
    dy = T(np.ones((2, 3, 3, 3)))
    shape = [2, 3, 6, 6]
    with pytest.raises(TypeError, match=r"max_pool2d_backward: expected argmax of dtype int64, got float64"):
        _core.max_pool2d_backward(dy, T(np.zeros((2, 3, 3, 3))), shape)
    with pytest.raises(ValueError, match=r"expected grad_output of shape \(2, 3, 3, 2\).*got \(2, 3, 3, 3\)"):
        _core.max_pool2d_backward(dy, T(np.zeros((2, 3, 3, 2), np.int64)), shape)
    with pytest.raises(ValueError, match=r"expected grad_output of shape \(2, 4, OH, OW\).*\(2, 4, 6, 6\).*got "
                                         r"\(2, 3, 3, 3\)"):
        _core.max_pool2d_backward(dy, idx, [2, 4, 6, 6])
    with pytest.raises(ValueError, match=r"expected grad_output of shape \(2, 3, OH, OW\).*got \(2, 3, 9\)"):
        _core.max_pool2d_backward(T(np.ones((2, 3, 9))), idx, shape)
    with pytest.raises(ValueError, match=r"input_shape of 4 dimensions"):
        _core.max_pool2d_backward(dy, idx, [3, 6, 6])
    bad = A(idx).copy()
    bad[1, 2, 0, 1] = 36
    with pytest.raises(ValueError, match=r"argmax\(1, 2, 0, 1\) = 36 is outside \[0, 36\).*6x6"):
        _core.max_pool2d_backward(dy, T(bad), shape)
    bad[1, 2, 0, 1] = -1
    with pytest.raises(ValueError, match=r"argmax\(1, 2, 0, 1\) = -1 is outside"):
        _core.max_pool2d_backward(dy, T(bad), shape)
    with pytest.raises(TypeError, match=r"float32 or float64"):
        _core.max_pool2d_backward(T(np.ones((2, 3, 3, 3), np.int64)), idx, shape)


def test_max_pool_backward_names_the_first_bad_argmax_of_a_large_tensor():
    # The range check runs vectorised over blocks of 65536 indices (several threads past 2^18):
    # the error still names the first bad index, wherever the bad ones sit.
    x = rng(24).normal(size=(40, 16, 30, 30)).astype(np.float32)
    y, idx = _core.max_pool2d_forward(T(x), (2, 2), (2, 2), (0, 0))
    dy = T(np.ones(tuple(y.shape), np.float32))
    bad = A(idx).copy()  # 144,000 indices
    bad[39, 15, 14, 14] = -(2 ** 63)
    bad[30, 3, 7, 2] = 900
    with pytest.raises(ValueError, match=r"argmax\(30, 3, 7, 2\) = 900 is outside \[0, 900\)"):
        _core.max_pool2d_backward(dy, T(bad), [40, 16, 30, 30])
    bad[30, 3, 7, 2] = idx.numpy()[30, 3, 7, 2]
    with pytest.raises(ValueError, match=r"argmax\(39, 15, 14, 14\) = -9223372036854775808 is outside"):
        _core.max_pool2d_backward(dy, T(bad), [40, 16, 30, 30])
    big = np.concatenate([A(idx)] * 3)  # 432,000 indices: the threaded check
    big[100, 0, 0, 0] = 901
    with pytest.raises(ValueError, match=r"argmax\(100, 0, 0, 0\) = 901"):
        _core.max_pool2d_backward(T(np.ones(big.shape, np.float32)), T(big), [120, 16, 30, 30])


def test_avg_and_adaptive_backward_bad_inputs():
    dy = T(np.ones((2, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"avg_pool2d_backward: expected grad_output of shape \(2, 3, 2, 2\), got "
                                         r"\(2, 3, 3, 3\)"):
        _core.avg_pool2d_backward(dy, [2, 3, 6, 6], (3, 3), (3, 3), (0, 0))
    with pytest.raises(ValueError, match=r"avg_pool2d_backward: pad should be at most half"):
        _core.avg_pool2d_backward(dy, [2, 3, 6, 6], (2, 2), (2, 2), (2, 2))
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: output_size must be >= 1.*\(0, 3\)"):
        _core.adaptive_avg_pool2d_forward(T(X), (0, 3))
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: expected input of 4 dimensions"):
        _core.adaptive_avg_pool2d_forward(T(np.zeros((6, 6))), (2, 2))
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d_backward: expected grad_output of shape \(2, 4, OH, OW\)"
                                         r".*got \(2, 3, 3, 3\)"):
        _core.adaptive_avg_pool2d_backward(dy, [2, 4, 6, 6])
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d_backward: expected input_shape with a non-empty"):
        _core.adaptive_avg_pool2d_backward(dy, [2, 3, 0, 6])


# ---------------------------------------------------------------------------------- determinism
def test_pool_deterministic_across_runs_and_thread_counts():
    x = rng(24).normal(size=(8, 16, 33, 31)).astype(np.float32)
    x[:, :, ::2, ::3] = 0.5  # ties
    k, s, p = (3, 3), (2, 2), (1, 1)
    old = pc.get_num_threads()

    def run():
        y, idx = _core.max_pool2d_forward(T(x), k, s, p)
        dy = np.ones(A(y).shape, np.float32) * 0.1
        out = [A(y).copy(), A(idx).copy(), A(_core.max_pool2d_backward(T(dy), idx, list(x.shape))).copy()]
        out.append(A(_core.avg_pool2d_forward(T(x), k, s, p)).copy())
        out.append(A(_core.avg_pool2d_backward(T(dy), list(x.shape), k, s, p)).copy())
        ya = _core.adaptive_avg_pool2d_forward(T(x), (5, 7))
        out.append(A(ya).copy())
        out.append(A(_core.adaptive_avg_pool2d_backward(T(np.ones((8, 16, 5, 7), np.float32) / 3), list(x.shape))).copy())
        return out

    try:
        first = run()
        runs = [run()]
        pc.set_num_threads(1)
        runs.append(run())
        pc.set_num_threads(max(old, 3))
        runs.append(run())
    finally:
        pc.set_num_threads(old)
    for r in runs:
        for a, b in zip(first, r):
            assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (2, 3), (28, 28), (4, 32), (3, 33), (5, 70), (6, 18)])
def test_max_pool_2x2_stride2_fast_path_matches_reference(dt, hw):
    # The 2x2/stride-2 layer has its own vectorised loop (16 / 8 / 4 outputs per step, masked row
    # tails); it must pick exactly what the general rule picks: first maximum on ties, a NaN wins
    # (the later of two NaNs), -inf windows keep the first. Rows of 1 to 35 outputs cover full
    # vectors, tails and several steps per row.
    x = rng(11).integers(-2, 3, size=(2, 3) + hw).astype(np.float64)  # many ties
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = np.nan
    x[0, 1, :2, :2] = -np.inf
    x[1, 2, 0, 1] = np.nan
    ow = hw[1] // 2  # the last window of the first row pair, and NaNs scattered over every lane
    x[1, 0, 0, 2 * ow - 1] = x[1, 0, 1, 2 * ow - 2] = np.nan
    x[1, 1].flat[rng(12).choice(hw[0] * hw[1], size=max(1, hw[0] * hw[1] // 9), replace=False)] = np.nan
    y, idx = _core.max_pool2d_forward(T(x.astype(dt)), (2, 2), (2, 2), (0, 0))
    ry, ridx = ref.max_pool2d(x, 2, 2, 0)
    np.testing.assert_array_equal(A(y), ry.astype(dt))
    np.testing.assert_array_equal(A(idx), ridx)


def test_max_pool_backward_with_window_geometry_matches_and_checks_it():
    # The layer passes kernel/stride/padding along (the CUDA kernel then gathers per input
    # element); the result is the same, and a geometry that does not fit grad_output is refused.
    x = rng(5).normal(size=(2, 3, 9, 8))
    for k, s, p in [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 2), (1, 2), (1, 0))]:
        y, idx = _core.max_pool2d_forward(T(x), k, s, p)
        dy = rng(6).normal(size=A(y).shape)
        plain = _core.max_pool2d_backward(T(dy), idx, list(x.shape))
        windowed = _core.max_pool2d_backward(T(dy), idx, list(x.shape), k, s, p)
        np.testing.assert_array_equal(A(plain), A(windowed))
        np.testing.assert_array_equal(A(windowed), A(pc.functional.max_pool2d_backward(T(dy), idx, x.shape, k, s, p)))
    y, idx = _core.max_pool2d_forward(T(x), (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match=r"max_pool2d_backward: expected grad_output of shape \(2, 3, 3, 2\) .* got \(2, 3, 4, 4\)"):
        _core.max_pool2d_backward(T(np.zeros(A(y).shape)), idx, list(x.shape), (3, 3), (3, 3), (0, 0))
    with pytest.raises(ValueError, match="need kernel_size"):
        _core.max_pool2d_backward(T(np.zeros(A(y).shape)), idx, list(x.shape), None, (2, 2))


# ------------------------------------------------ every device against the CPU kernels (`cuda`)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,s,p,shape", [((2, 2), (2, 2), (0, 0), (2, 3, 8, 8)), ((3, 3), (2, 2), (1, 1), (2, 2, 9, 7)),
                                         ((3, 2), (1, 2), (1, 0), (1, 4, 6, 5)), ((5, 5), (3, 3), (2, 2), (3, 1, 13, 11))])
def test_pool2d_on_device(device, k, s, p, shape, dtype):
    rng = np.random.default_rng(4)
    x = rnd(rng, shape, dtype)
    y, am = compare(lambda x: _core.max_pool2d_forward(x, k, s, p), x, dtype=dtype, device=device)
    dy = rnd(rng, y.shape, dtype)
    compare(lambda dy, am: _core.max_pool2d_backward(dy, am, list(shape)), dy, am, dtype=dtype, device=device)
    # with the window geometry (what nn.MaxPool2d passes) CUDA gathers per input element
    compare(lambda dy, am: _core.max_pool2d_backward(dy, am, list(shape), k, s, p), dy, am, dtype=dtype, device=device)
    ya = compare(lambda x: _core.avg_pool2d_forward(x, k, s, p), x, dtype=dtype, device=device)
    compare(lambda dy: _core.avg_pool2d_backward(dy, list(shape), k, s, p), rnd(rng, ya.shape, dtype),
            dtype=dtype, device=device)
    for out in [(1, 1), (3, 2), (shape[2] + 1, shape[3])]:
        yd = compare(lambda x: _core.adaptive_avg_pool2d_forward(x, out), x, dtype=dtype, device=device)
        compare(lambda dy: _core.adaptive_avg_pool2d_backward(dy, list(shape)), rnd(rng, yd.shape, dtype),
                dtype=dtype, device=device)
