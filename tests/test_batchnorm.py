"""batch_norm_forward_train / _eval / _backward of pycnn._core against the NumPy reference,
finite differences and, where installed, torch.nn.functional.batch_norm over several steps."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn as pc
from pycnn import _core

from helpers import T, DEVICES, DTYPES, assert_tree_close, compare, host, on, rnd
import reference as ref


def A(t):
    return np.asarray(t)


SHAPES = [(2, 1), (8, 3), (4, 3, 5), (2, 4, 3, 3), (5, 2, 4, 6), (3, 5, 2, 2, 2), (1, 2, 7, 7)]
EPS = 1e-5


def make(shape, seed=0, dtype=np.float64):
    r = np.random.default_rng(seed)
    C = shape[1]
    x = (r.normal(size=shape) * 2.0 + 0.5).astype(dtype)
    gamma = r.uniform(0.5, 1.5, size=C).astype(dtype)
    beta = r.normal(size=C).astype(dtype)
    return x, gamma, beta


def n_per_channel(shape):
    return int(np.prod(shape)) // shape[1]


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_train_and_running_stats_float64(shape):
    x, gamma, beta = make(shape, 1)
    C = shape[1]
    rm0, rv0 = np.random.default_rng(2).normal(size=C), np.random.default_rng(3).uniform(0.5, 2, size=C)
    rm, rv = T(rm0.copy()), T(rv0.copy())
    y, save_mean, save_invstd = _core.batch_norm_forward_train(T(x), T(gamma), T(beta), rm, rv, 0.1, EPS)
    y_ref, mean_ref, var_ref = ref.batch_norm_train(x, gamma, beta, EPS)
    np.testing.assert_allclose(A(y), y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(A(save_mean), mean_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(A(save_invstd), 1 / np.sqrt(var_ref + EPS), rtol=1e-12)
    new_m, new_v = ref.update_running_stats(rm0, rv0, mean_ref, var_ref, n_per_channel(shape), 0.1)
    np.testing.assert_allclose(A(rm), new_m, rtol=1e-12, atol=1e-14)  # updated in place
    np.testing.assert_allclose(A(rv), new_v, rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_train_float32_close(shape):
    x, gamma, beta = make(shape, 4, np.float32)
    C = shape[1]
    rm, rv = T(np.zeros(C, np.float32)), T(np.ones(C, np.float32))
    y, m, s = _core.batch_norm_forward_train(T(x), T(gamma), T(beta), rm, rv, 0.1, EPS)
    assert y.dtype == pc.float32 and m.dtype == pc.float32 and s.dtype == pc.float32
    y_ref, mean_ref, var_ref = ref.batch_norm_train(x, gamma, beta, EPS)
    np.testing.assert_allclose(A(y), y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(A(m), mean_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(A(s), 1 / np.sqrt(var_ref + EPS), rtol=1e-6)
    _, new_v = ref.update_running_stats(np.zeros(C), np.ones(C), mean_ref, var_ref, n_per_channel(shape), 0.1)
    np.testing.assert_allclose(A(rv), new_v, rtol=1e-6)


def test_float32_stats_accurate_with_large_offset():
    # double accumulators: a mean of 1000 with unit spread still gives an accurate variance
    r = np.random.default_rng(5)
    x = (r.normal(size=(64, 4, 8, 8)) + 1000.0).astype(np.float32)
    _, m, s = _core.batch_norm_forward_train(T(x), None, None, None, None, 0.1, EPS)
    _, mean_ref, var_ref = ref.batch_norm_train(x, None, None, EPS)
    np.testing.assert_allclose(A(m), mean_ref, rtol=1e-7)
    np.testing.assert_allclose(A(s), 1 / np.sqrt(var_ref + EPS), rtol=1e-6)


def test_no_affine_no_running_stats():
    x, _, _ = make((6, 3, 2, 2), 6)
    y, m, s = _core.batch_norm_forward_train(T(x), None, None, None, None, 0.1, EPS)
    np.testing.assert_allclose(A(y), ref.batch_norm_train(x, None, None, EPS)[0], rtol=1e-12, atol=1e-12)
    dy = np.random.default_rng(7).normal(size=x.shape)
    dx, dg, db = _core.batch_norm_backward(T(dy), T(x), None, m, s)
    dx_ref, dg_ref, db_ref = ref.batch_norm_backward(dy, x, None, EPS)
    np.testing.assert_allclose(A(dx), dx_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(A(dg), dg_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(A(db), db_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_eval(shape):
    x, gamma, beta = make(shape, 8)
    C = shape[1]
    rm, rv = np.random.default_rng(9).normal(size=C), np.random.default_rng(10).uniform(0.5, 2, size=C)
    y = _core.batch_norm_forward_eval(T(x), T(gamma), T(beta), T(rm), T(rv), EPS)
    np.testing.assert_allclose(A(y), ref.batch_norm_eval(x, rm, rv, gamma, beta, EPS), rtol=1e-12, atol=1e-12)
    y32 = _core.batch_norm_forward_eval(*(T(a.astype(np.float32)) for a in (x, gamma, beta, rm, rv)), EPS)
    np.testing.assert_allclose(A(y32), ref.batch_norm_eval(x, rm, rv, gamma, beta, EPS), rtol=1e-5, atol=1e-5)
    y_na = _core.batch_norm_forward_eval(T(x), None, None, T(rm), T(rv), EPS)
    np.testing.assert_allclose(A(y_na), ref.batch_norm_eval(x, rm, rv, None, None, EPS), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_reference(shape):
    x, gamma, beta = make(shape, 11)
    dy = np.random.default_rng(12).normal(size=shape)
    _, m, s = _core.batch_norm_forward_train(T(x), T(gamma), T(beta), None, None, 0.1, EPS)
    dx, dg, db = _core.batch_norm_backward(T(dy), T(x), T(gamma), m, s)
    dx_ref, dg_ref, db_ref = ref.batch_norm_backward(dy, x, gamma, EPS)
    np.testing.assert_allclose(A(dx), dx_ref, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(A(dg), dg_ref, rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(A(db), db_ref, rtol=1e-12, atol=1e-12)
    # float32
    x32, g32, dy32 = x.astype(np.float32), gamma.astype(np.float32), dy.astype(np.float32)
    _, m, s = _core.batch_norm_forward_train(T(x32), T(g32), None, None, None, 0.1, EPS)
    dx, dg, db = _core.batch_norm_backward(T(dy32), T(x32), T(g32), m, s)
    dx_ref, dg_ref, db_ref = ref.batch_norm_backward(dy32, x32, g32, EPS)
    np.testing.assert_allclose(A(dx), dx_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(A(dg), dg_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(A(db), db_ref, rtol=1e-5, atol=1e-5)


def test_backward_numeric_grad():
    x, gamma, beta = make((3, 2, 2, 2), 13)
    w = np.random.default_rng(14).normal(size=x.shape)  # loss = sum(y * w)

    def loss(x_, g_, b_):
        y, _, _ = _core.batch_norm_forward_train(T(x_), T(g_), T(b_), None, None, 0.1, EPS)
        return float((A(y) * w).sum())

    _, m, s = _core.batch_norm_forward_train(T(x), T(gamma), T(beta), None, None, 0.1, EPS)
    dx, dg, db = (A(t) for t in _core.batch_norm_backward(T(w), T(x), T(gamma), m, s))
    np.testing.assert_allclose(dx, ref.numeric_grad(lambda z: loss(z, gamma, beta), x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dg, ref.numeric_grad(lambda z: loss(x, z, beta), gamma), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, ref.numeric_grad(lambda z: loss(x, gamma, z), beta), rtol=1e-6, atol=1e-8)


def test_repeats_bit_for_bit():
    x, gamma, beta = make((32, 8, 16, 16), 15, np.float32)
    dy = np.random.default_rng(16).normal(size=x.shape).astype(np.float32)
    outs = []
    for _ in range(2):
        rm, rv = T(np.zeros(8, np.float32)), T(np.ones(8, np.float32))
        y, m, s = _core.batch_norm_forward_train(T(x), T(gamma), T(beta), rm, rv, 0.1, EPS)
        dx, dg, db = _core.batch_norm_backward(T(dy), T(x), T(gamma), m, s)
        outs.append([A(t).tobytes() for t in (y, m, s, rm, rv, dx, dg, db)])
    assert outs[0] == outs[1]


def test_matches_torch_over_several_steps():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    r = np.random.default_rng(17)
    C, momentum = 4, 0.3
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-4)):
        gamma = r.uniform(0.5, 1.5, size=C).astype(dtype)
        beta = r.normal(size=C).astype(dtype)
        rm, rv = T(np.zeros(C, dtype)), T(np.ones(C, dtype))
        tdt = torch.from_numpy(gamma).dtype
        trm, trv = torch.zeros(C, dtype=tdt), torch.ones(C, dtype=tdt)
        for step in range(4):
            x = (r.normal(size=(6, C, 3, 5)) * (step + 1) + step).astype(dtype)
            dy = r.normal(size=x.shape).astype(dtype)
            tx = torch.tensor(x, requires_grad=True)
            tg, tb = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
            ty = F.batch_norm(tx, trm, trv, tg, tb, training=True, momentum=momentum, eps=EPS)
            ty.backward(torch.tensor(dy))
            y, m, s = _core.batch_norm_forward_train(T(x), T(gamma), T(beta), rm, rv, momentum, EPS)
            dx, dg, db = _core.batch_norm_backward(T(dy), T(x), T(gamma), m, s)
            np.testing.assert_allclose(A(y), ty.detach().numpy(), rtol=tol, atol=tol)
            np.testing.assert_allclose(A(rm), trm.numpy(), rtol=tol, atol=tol)
            np.testing.assert_allclose(A(rv), trv.numpy(), rtol=tol, atol=tol)
            np.testing.assert_allclose(A(dx), tx.grad.numpy(), rtol=tol, atol=tol)
            np.testing.assert_allclose(A(dg), tg.grad.numpy(), rtol=tol, atol=tol)
            np.testing.assert_allclose(A(db), tb.grad.numpy(), rtol=tol, atol=tol)
        x = r.normal(size=(5, C, 2, 2)).astype(dtype)
        ty = F.batch_norm(torch.tensor(x), trm, trv, torch.tensor(gamma), torch.tensor(beta), training=False, eps=EPS)
        y = _core.batch_norm_forward_eval(T(x), T(gamma), T(beta), rm, rv, EPS)
        np.testing.assert_allclose(A(y), ty.numpy(), rtol=tol, atol=tol)


def test_bad_inputs():
    x = T(np.zeros((8, 3, 4, 4)))
    c3 = T(np.ones(3))
    with pytest.raises(ValueError, match=r"batch_norm: expected more than 1 value per channel when training, "
                                         r"got input of shape \(1, 3\)"):
        _core.batch_norm_forward_train(T(np.zeros((1, 3))), None, None, None, None, 0.1, EPS)
    with pytest.raises(ValueError, match=r"more than 1 value per channel .*\(1, 3, 1, 1\)"):
        _core.batch_norm_forward_train(T(np.zeros((1, 3, 1, 1))), c3, c3, None, None, 0.1, EPS)
    # one sample with several positions is fine (n = H*W > 1)
    _core.batch_norm_forward_train(T(np.random.default_rng(0).normal(size=(1, 3, 2, 2))), c3, c3, None, None, 0.1, EPS)
    with pytest.raises(ValueError, match=r"batch_norm: expected input of at least 2 dimensions \(N, C, \.\.\.\), "
                                         r"got shape \(5,\)"):
        _core.batch_norm_forward_train(T(np.zeros(5)), None, None, None, None, 0.1, EPS)
    with pytest.raises(ValueError, match=r"batch_norm: expected weight \(gamma\) of shape \(3,\) .*for input of "
                                         r"shape \(8, 3, 4, 4\), got \(4,\)"):
        _core.batch_norm_forward_train(x, T(np.ones(4)), c3, None, None, 0.1, EPS)
    with pytest.raises(ValueError, match=r"expected bias \(beta\) of shape \(3,\)"):
        _core.batch_norm_forward_eval(x, c3, T(np.ones((3, 1))), c3, c3, EPS)
    with pytest.raises(ValueError, match=r"expected running_var of shape \(3,\) .*got \(2,\)"):
        _core.batch_norm_forward_train(x, c3, c3, c3, T(np.ones(2)), 0.1, EPS)
    with pytest.raises(ValueError, match="give both running_mean and running_var"):
        _core.batch_norm_forward_train(x, c3, c3, c3, None, 0.1, EPS)
    with pytest.raises(ValueError, match="batch_norm: running_mean is missing"):
        _core.batch_norm_forward_eval(x, c3, c3, None, c3, EPS)
    with pytest.raises(TypeError, match="batch_norm: input is float64 but weight \\(gamma\\) is float32"):
        _core.batch_norm_forward_train(x, T(np.ones(3, np.float32)), c3, None, None, 0.1, EPS)
    with pytest.raises(TypeError, match="batch_norm: expected a float32 or float64 tensor, got int64"):
        _core.batch_norm_forward_eval(T(np.zeros((2, 3), np.int64)), None, None, T(np.zeros(3, np.int64)),
                                      T(np.ones(3, np.int64)), EPS)
    with pytest.raises(ValueError, match="batch_norm: eps must be >= 0"):
        _core.batch_norm_forward_train(x, c3, c3, None, None, 0.1, -1.0)
    with pytest.raises(ValueError, match=r"batch_norm: expected grad_output of shape \(8, 3, 4, 4\), got \(8, 3\)"):
        _core.batch_norm_backward(T(np.zeros((8, 3))), x, c3, c3, c3)
    with pytest.raises(ValueError, match=r"expected save_invstd of shape \(3,\)"):
        _core.batch_norm_backward(x, x, c3, c3, T(np.ones(5)))
    with pytest.raises(ValueError, match="batch_norm: save_mean is missing"):
        _core.batch_norm_backward(x, x, c3, None, c3)


# ------------------------------------------------ every device against the CPU kernels (`cuda`)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,affine,running", [((8, 3, 5, 4), True, True), ((16, 5), False, True),
                                                  ((2, 4, 300), True, False), ((3, 2, 2, 2), False, False)])
def test_batchnorm_on_device(device, shape, affine, running, dtype):
    rng = np.random.default_rng(9)
    C = shape[1]
    x = rnd(rng, shape, dtype) * 3 + 1
    gamma = rnd(rng, (C,), dtype) if affine else None
    beta = rnd(rng, (C,), dtype) if affine else None
    rm0 = rnd(rng, (C,), dtype) if running else None
    rv0 = (rng.random(C) + 0.5).astype(dtype) if running else None
    results = {}
    for dev in ("cpu", device):
        rm, rv = on(rm0, dev), on(rv0, dev)
        y, mean, invstd = _core.batch_norm_forward_train(on(x, dev), on(gamma, dev), on(beta, dev), rm, rv, 0.1, 1e-5)
        results[dev] = host([y, mean, invstd, rm, rv])
    assert_tree_close(results[device], results["cpu"], dtype)
    mean_np, invstd_np = results["cpu"][1], results["cpu"][2]
    dy = rnd(rng, shape, dtype)
    compare(lambda dy, x, g, m, s: _core.batch_norm_backward(dy, x, g, m, s), dy, x, gamma, mean_np, invstd_np,
            dtype=dtype, device=device)
    rv_eval = (rng.random(C) + 0.5).astype(dtype)
    compare(lambda x, g, b, m, v: _core.batch_norm_forward_eval(x, g, b, m, v, 1e-5), x, gamma, beta,
            rnd(rng, (C,), dtype), rv_eval, dtype=dtype, device=device)
