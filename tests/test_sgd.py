"""sgd_step of pycnn._core: one fused, in-place step for a whole parameter group, with
torch.optim.SGD's exact rule (checked against the NumPy reference and, where installed, PyTorch)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import pycnn as pc
from pycnn import _core

from helpers import T, DEVICES, DTYPES, assert_tree_close, host, on, rnd
import reference as ref


def A(t):
    return np.asarray(t)


SHAPES = [(3,), (4, 5), (2, 3, 3, 3), (1,), (200, 300)]
CONFIGS = [  # momentum, dampening, weight_decay, nesterov
    (0.0, 0.0, 0.0, False),
    (0.0, 0.0, 1e-2, False),
    (0.9, 0.0, 0.0, False),
    (0.9, 0.1, 5e-4, False),
    (0.9, 0.0, 5e-4, True),
    (0.5, 0.0, 0.0, True),
]


def group(seed, dtype=np.float64):
    r = np.random.default_rng(seed)
    return [r.normal(size=s).astype(dtype) for s in SHAPES]


@pytest.mark.parametrize("momentum,dampening,wd,nesterov", CONFIGS)
def test_matches_reference_over_steps(momentum, dampening, wd, nesterov):
    lr = 0.05
    params_np = group(1)
    params = [T(p.copy()) for p in params_np]
    bufs = [T(np.zeros_like(p)) for p in params_np] if momentum else []
    ref_bufs = [None] * len(params_np)
    for step in range(4):
        grads_np = group(10 + step)
        _core.sgd_step(params, [T(g) for g in grads_np], bufs, lr, momentum, dampening, wd, nesterov, step == 0)
        for i, g in enumerate(grads_np):
            params_np[i], ref_bufs[i] = ref.sgd_step(params_np[i], g, ref_bufs[i], lr, momentum, dampening, wd,
                                                     nesterov, first_step=step == 0)
        for i in range(len(params_np)):
            np.testing.assert_allclose(A(params[i]), params_np[i], rtol=1e-14, atol=1e-15)
            if momentum:
                np.testing.assert_allclose(A(bufs[i]), ref_bufs[i], rtol=1e-14, atol=1e-15)


def test_updates_in_place_and_shares_memory_with_numpy():
    p = np.ones((2, 3))
    t = T(p)  # shares memory
    _core.sgd_step([t], [T(np.full((2, 3), 2.0))], [], 0.25, 0.0, 0.0, 0.0, False, False)
    np.testing.assert_array_equal(p, np.full((2, 3), 0.5))
    # keyword defaults: momentum=0, dampening=0, weight_decay=0, nesterov=False, first_step=False
    _core.sgd_step(params=[t], grads=[T(np.ones((2, 3)))], momentum_buffers=[], lr=0.5)
    np.testing.assert_array_equal(p, np.zeros((2, 3)))


def test_empty_group_is_a_no_op():
    _core.sgd_step([], [], [], 0.1, 0.9, 0.0, 0.0, False, True)


def test_float32():
    params_np = group(2, np.float32)
    params = [T(p.copy()) for p in params_np]
    bufs = [T(np.zeros_like(p)) for p in params_np]
    grads_np = group(3, np.float32)
    for step in range(3):
        _core.sgd_step(params, [T(g) for g in grads_np], bufs, 0.1, 0.9, 0.0, 1e-3, True, step == 0)
    p64, b64 = group(2), [None] * len(SHAPES)
    for step in range(3):
        for i, g in enumerate(grads_np):
            p64[i], b64[i] = ref.sgd_step(p64[i], g, b64[i], 0.1, 0.9, 0.0, 1e-3, True, first_step=step == 0)
    for i in range(len(SHAPES)):
        assert params[i].dtype == pc.float32
        np.testing.assert_allclose(A(params[i]), p64[i], rtol=1e-5, atol=1e-5)


def test_matches_torch_optim_sgd_exactly():
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(4)
    shapes = [(4, 3, 3, 3), (4,), (10, 36), (10,)]
    for (momentum, dampening, wd, nesterov), lr in itertools.product(CONFIGS, (0.1, 0.01)):
        init = [r.normal(size=s) for s in shapes]
        tparams = [torch.tensor(p, requires_grad=True) for p in init]
        opt = torch.optim.SGD(tparams, lr=lr, momentum=momentum, dampening=dampening, weight_decay=wd,
                              nesterov=nesterov)
        params = [T(p.copy()) for p in init]
        bufs = [T(np.zeros(s)) for s in shapes] if momentum else []
        for step in range(5):
            grads = [r.normal(size=s) for s in shapes]
            for tp, g in zip(tparams, grads):
                tp.grad = torch.tensor(g)
            opt.step()
            _core.sgd_step(params, [T(g) for g in grads], bufs, lr, momentum, dampening, wd, nesterov, step == 0)
            for p, tp in zip(params, tparams):
                np.testing.assert_allclose(A(p), tp.detach().numpy(), rtol=0, atol=1e-12)
            if momentum:
                for b, tp in zip(bufs, tparams):
                    np.testing.assert_allclose(A(b), opt.state[tp]["momentum_buffer"].numpy(), rtol=0, atol=1e-12)


def test_bad_inputs():
    p, g = T(np.zeros(3)), T(np.zeros(3))
    with pytest.raises(ValueError, match="sgd: Invalid learning rate: -0.1"):
        _core.sgd_step([p], [g], [], -0.1, 0.0, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match="sgd: Invalid momentum value: -0.5"):
        _core.sgd_step([p], [g], [], 0.1, -0.5, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match="sgd: Invalid weight_decay value: -0.01"):
        _core.sgd_step([p], [g], [], 0.1, 0.0, 0.0, -0.01, False, False)
    with pytest.raises(ValueError, match="sgd: Nesterov momentum requires a momentum and zero dampening"):
        _core.sgd_step([p], [g], [], 0.1, 0.0, 0.0, 0.0, True, False)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero dampening"):
        _core.sgd_step([p], [g], [T(np.zeros(3))], 0.1, 0.9, 0.1, 0.0, True, False)
    with pytest.raises(ValueError, match="sgd: expected one gradient per parameter, got 1 gradients for 2 parameters"):
        _core.sgd_step([p, p], [g], [], 0.1, 0.0, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match="sgd: momentum=0.9 needs one momentum buffer per parameter, got 0 buffers "
                                         "for 1 parameters"):
        _core.sgd_step([p], [g], [], 0.1, 0.9, 0.0, 0.0, False, True)
    with pytest.raises(ValueError, match=r"sgd: expected grads\[1\] of shape \(2, 2\) \(the shape of params\[1\]\), "
                                         r"got \(4,\)"):
        _core.sgd_step([p, T(np.zeros((2, 2)))], [g, T(np.zeros(4))], [], 0.1, 0.0, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match=r"sgd: expected momentum_buffers\[0\] of shape \(3,\)"):
        _core.sgd_step([p], [g], [T(np.zeros(2))], 0.1, 0.9, 0.0, 0.0, False, False)
    with pytest.raises(TypeError, match=r"sgd: params\[0\] is float64 but grads\[0\] is float32"):
        _core.sgd_step([p], [T(np.zeros(3, np.float32))], [], 0.1, 0.0, 0.0, 0.0, False, False)
    with pytest.raises(TypeError, match=r"sgd: params\[0\] is int64; parameters must be float32 or float64"):
        _core.sgd_step([T(np.zeros(3, np.int64))], [T(np.zeros(3, np.int64))], [], 0.1, 0.0, 0.0, 0.0, False, False)
    # a bad tensor anywhere leaves the whole group untouched
    p0 = np.ones(3)
    with pytest.raises(ValueError):
        _core.sgd_step([T(p0), T(np.zeros(2))], [T(np.ones(3)), T(np.zeros(5))], [], 0.1, 0.0, 0.0, 0.0, False, False)
    np.testing.assert_array_equal(p0, np.ones(3))


# ------------------------------------------------ every device against the CPU kernels (`cuda`)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,dampening,wd,nesterov", [(0.0, 0.0, 0.0, False), (0.9, 0.0, 1e-4, False),
                                                           (0.9, 0.1, 0.0, False), (0.8, 0.0, 0.01, True)])
def test_sgd_on_device(device, momentum, dampening, wd, nesterov, dtype):
    rng = np.random.default_rng(10)
    shapes = [(5, 3), (7,), (2, 3, 4)]
    params0 = [rnd(rng, s, dtype) for s in shapes]
    results = {}
    for dev in ("cpu", device):
        params = [on(p.copy(), dev) for p in params0]
        bufs = [on(np.zeros(s, dtype), dev) for s in shapes] if momentum else []
        for step in range(3):
            grads = [on(np.random.default_rng(100 + step).standard_normal(s).astype(dtype), dev) for s in shapes]
            _core.sgd_step(params, grads, bufs, 0.1, momentum, dampening, wd, nesterov, step == 0)
        results[dev] = host(params + bufs)
    assert_tree_close(results[device], results["cpu"], dtype)
