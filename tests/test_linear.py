"""pycnn._core linear_forward / linear_backward against the NumPy reference (tests/reference.py),
finite differences and PyTorch's F.linear; bad inputs; determinism of the bias gradient."""
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


def make(N, fin, fout, seed=0, dtype=np.float64):
    r = rng(seed)
    return (r.normal(size=(N, fin)).astype(dtype), r.normal(size=(fout, fin)).astype(dtype),
            r.normal(size=(fout,)).astype(dtype))


SHAPES = [(1, 1, 1), (5, 7, 3), (64, 400, 120), (3, 17, 1), (1, 9, 33), (37, 70, 45)]
EDGE = [(0, 4, 3), (3, 0, 4), (3, 4, 0)]  # empty batch, no input features, no outputs


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("N,fin,fout", SHAPES + EDGE)
def test_forward_float64_matches_reference(N, fin, fout, bias):
    x, w, b = make(N, fin, fout, seed=1)
    y = A(_core.linear_forward(T(x), T(w), T(b) if bias else None))
    assert y.shape == (N, fout) and y.dtype == np.float64
    np.testing.assert_allclose(y, ref.linear(x, w, b if bias else None), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("N,fin,fout", SHAPES)
def test_forward_float32_close(N, fin, fout):
    x, w, b = make(N, fin, fout, seed=2, dtype=np.float32)
    y = A(_core.linear_forward(T(x), T(w), T(b)))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, ref.linear(x, w, b), rtol=1e-4, atol=1e-4 * np.sqrt(fin))


def test_forward_default_bias_is_none():
    x, w, _ = make(4, 5, 6, seed=3)
    np.testing.assert_allclose(A(_core.linear_forward(T(x), T(w))), x @ w.T, rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N,fin,fout", SHAPES + EDGE)
def test_backward_matches_reference(N, fin, fout, dtype):
    x, w, _ = make(N, fin, fout, seed=4, dtype=dtype)
    dy = rng(5).normal(size=(N, fout)).astype(dtype)
    dx, dw, db = _core.linear_backward(T(dy), T(x), T(w), True, True, True)
    if min(N, fin, fout) > 0:
        rdx, rdw, rdb = ref.linear_backward(dy, x, w)
    else:  # (the reference cannot reshape empty arrays)
        x64, w64, dy64 = x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64)
        rdx, rdw, rdb = dy64 @ w64, dy64.T @ x64, dy64.sum(axis=0)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4 * np.sqrt(max(N, fout, 1)))
    for got, want, shape in [(dx, rdx, (N, fin)), (dw, rdw, (fout, fin)), (db, rdb, (fout,))]:
        assert A(got).shape == shape and A(got).dtype == dtype
        np.testing.assert_allclose(A(got), want, **tol)


def test_backward_only_what_is_asked():
    x, w, _ = make(6, 5, 4, seed=6)
    dy = rng(7).normal(size=(6, 4))
    rdx, rdw, rdb = ref.linear_backward(dy, x, w)
    for flags in [(True, False, False), (False, True, False), (False, False, True), (False, False, False),
                  (True, True, False), (False, True, True)]:
        out = _core.linear_backward(T(dy), T(x), T(w), *flags)
        assert isinstance(out, tuple) and len(out) == 3
        for need, got, want in zip(flags, out, (rdx, rdw, rdb)):
            if need:
                np.testing.assert_allclose(A(got), want, rtol=1e-12, atol=1e-12)
            else:
                assert got is None
    # keyword names and defaults (everything asked for)
    dx, dw, db = _core.linear_backward(grad_output=T(dy), x=T(x), w=T(w))
    np.testing.assert_allclose(A(db), rdb, rtol=1e-13)


def test_backward_numeric():
    x, w, b = make(3, 4, 5, seed=8)
    wts = rng(9).normal(size=(3, 5))
    dx, dw, db = _core.linear_backward(T(wts), T(x), T(w), True, True, True)

    def loss(xx, ww, bb):
        return float((A(_core.linear_forward(T(xx), T(ww), T(bb))) * wts).sum())

    np.testing.assert_allclose(A(dx), ref.numeric_grad(lambda a: loss(a, w, b), x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(A(dw), ref.numeric_grad(lambda a: loss(x, a, b), w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(A(db), ref.numeric_grad(lambda a: loss(x, w, a), b), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N,fin,fout", [(5, 7, 3), (64, 400, 120), (1, 9, 33)])
def test_torch_parity(N, fin, fout, dtype):
    torch = import_torch()
    x, w, b = make(N, fin, fout, seed=10, dtype=dtype)
    dy = rng(11).normal(size=(N, fout)).astype(dtype)
    tol = dict(rtol=1e-11, atol=1e-11) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.linear(tx, tw, tb)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(A(_core.linear_forward(T(x), T(w), T(b))), ty.detach().numpy(), **tol)
    np.testing.assert_allclose(A(_core.linear_forward(T(x), T(w), None)),
                               torch.nn.functional.linear(tx, tw).detach().numpy(), **tol)
    dx, dw, db = _core.linear_backward(T(dy), T(x), T(w), True, True, True)
    np.testing.assert_allclose(A(dx), tx.grad.numpy(), **tol)
    np.testing.assert_allclose(A(dw), tw.grad.numpy(), **tol)
    np.testing.assert_allclose(A(db), tb.grad.numpy(), **tol)


# ----------------------------------------------------------------------------------- bad input
def test_forward_bad_inputs():
    x, w, b = make(64, 256, 10, seed=12)
    w400 = rng(13).normal(size=(120, 400))
    with pytest.raises(ValueError, match=r"^linear: expected input of shape \(N, 400\) for in_features=400, "
                                         r"got \(64, 256\)"):
        _core.linear_forward(T(x), T(w400), None)
    with pytest.raises(ValueError, match=r"^linear: expected input of 2 dimensions \(N, in_features=400\), got shape "
                                         r"\(64, 16, 5, 5\); flatten it first, e.g. x.reshape\(64, -1\)"):
        _core.linear_forward(T(np.zeros((64, 16, 5, 5))), T(w400), None)
    with pytest.raises(ValueError, match=r"^linear: expected input of 2 dimensions.*got shape \(400,\); add a batch"):
        _core.linear_forward(T(np.zeros(400)), T(w400), None)
    with pytest.raises(ValueError, match=r"^linear: expected weight of 2 dimensions \(out_features, in_features\), "
                                         r"got shape \(256,\)"):
        _core.linear_forward(T(x), T(np.zeros(256)), None)
    with pytest.raises(ValueError, match=r"^linear: expected bias of shape \(10,\) for out_features=10, got \(11,\)"):
        _core.linear_forward(T(x), T(w), T(np.zeros(11)))
    with pytest.raises(ValueError, match=r"^linear: expected bias of shape \(10,\).*got \(1, 10\)"):
        _core.linear_forward(T(x), T(w), T(np.zeros((1, 10))))
    with pytest.raises(TypeError, match=r"^linear: input is float32 but weight is float64"):
        _core.linear_forward(T(x.astype(np.float32)), T(w), None)
    with pytest.raises(TypeError, match=r"^linear: input is float64 but bias is float32"):
        _core.linear_forward(T(x), T(w), T(b.astype(np.float32)))
    with pytest.raises(TypeError, match=r"^linear: expected a float32 or float64 tensor, got int64"):
        _core.linear_forward(T(x.astype(np.int64)), T(w.astype(np.int64)), None)


def test_backward_bad_inputs():
    x, w, _ = make(8, 6, 4, seed=14)
    with pytest.raises(ValueError, match=r"^linear_backward: expected grad_output of shape \(8, 4\) \(N, out_features\)"
                                         r".*got \(8, 5\)"):
        _core.linear_backward(T(np.zeros((8, 5))), T(x), T(w), True, True, True)
    with pytest.raises(ValueError, match=r"^linear_backward: expected grad_output of shape \(8, 4\).*got \(32,\)"):
        _core.linear_backward(T(np.zeros(32)), T(x), T(w), True, True, True)
    with pytest.raises(TypeError, match=r"^linear_backward: grad_output is float32 but input is float64"):
        _core.linear_backward(T(np.zeros((8, 4), np.float32)), T(x), T(w), True, True, True)
    with pytest.raises(ValueError, match=r"^linear_backward: expected input of shape \(N, 6\) for in_features=6"):
        _core.linear_backward(T(np.zeros((8, 4))), T(x[:, :5]), T(w), True, True, True)


# ---------------------------------------------------------------------------------- determinism
def test_bias_grad_is_a_fixed_order_sum():
    """db[c] = ((dy[0,c] + dy[1,c]) + dy[2,c]) + ...: bit for bit, on any thread count."""
    N, fin, fout = 2000, 8, 600
    x, w, _ = make(N, fin, fout, seed=15, dtype=np.float32)
    dy = (rng(16).normal(size=(N, fout)) * np.exp(rng(17).normal(size=(N, 1)) * 3)).astype(np.float32)
    want = np.zeros(fout, np.float32)
    for r in range(N):
        want = want + dy[r]
    old = pc.get_num_threads()
    try:
        for threads in (1, max(old, 3), old):
            pc.set_num_threads(threads)
            db = A(_core.linear_backward(T(dy), T(x), T(w), False, False, True)[2])
            assert db.tobytes() == want.tobytes()
    finally:
        pc.set_num_threads(old)


def test_repeatable():
    x, w, b = make(157, 200, 130, seed=18, dtype=np.float32)
    dy = rng(19).normal(size=(157, 130)).astype(np.float32)

    def run():
        y = A(_core.linear_forward(T(x), T(w), T(b))).copy()
        return [y] + [A(g).copy() for g in _core.linear_backward(T(dy), T(x), T(w), True, True, True)]

    first = run()
    for _ in range(3):
        for a, c in zip(first, run()):
            assert a.tobytes() == c.tobytes()


# ------------------------------------------------ every device against the CPU kernels (`cuda`)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,i,o,bias", [(7, 5, 3, True), (64, 300, 10, True), (1, 4, 9, False), (33, 1, 1, True),
                                        (1000, 8, 300, True)])
def test_linear_on_device(device, n, i, o, bias, dtype):
    rng = np.random.default_rng(5)
    x, w = rnd(rng, (n, i), dtype), rnd(rng, (o, i), dtype)
    b = rnd(rng, (o,), dtype) if bias else None
    compare(_core.linear_forward, x, w, b, dtype=dtype, device=device)
    dy = rnd(rng, (n, o), dtype)
    compare(lambda dy, x, w: _core.linear_backward(dy, x, w, True, True, bias), dy, x, w, dtype=dtype, device=device)
    compare(lambda dy, x, w: _core.linear_backward(dy, x, w, False, True, False), dy, x, w, dtype=dtype, device=device)
