"""Issue 10.2: a NaN never reaches the weights. `_core.nonfinite_flag` (a device flag, no host sync),
`sgd_step(found_inf=...)`, and the Trainer skipping / raising with the weights of before the bad step."""
from __future__ import annotations

import math

import numpy as np
import pytest

import pycnn as pc
from pycnn import _core, nn, optim
from pycnn.train import Trainer

DEVICES = ["cpu"] + (["cuda"] if pc.cuda.is_available() else [])


def T(a, device="cpu"):
    t = pc.from_numpy(np.asarray(a))
    return t.to(device) if device != "cpu" else t


# ----------------------------------------------------------------------------- the flag
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nonfinite_flag(device, dtype):
    big = np.zeros(70_000, dtype)  # several CPU reduction blocks / CUDA blocks
    for bad in (math.nan, math.inf, -math.inf):
        for where in (0, 33_333, 69_999):
            x = big.copy()
            x[where] = bad
            flag = _core.nonfinite_flag([T(np.ones(3, dtype), device), T(x, device)])
            assert flag.dtype == pc.float32 and tuple(flag.shape) == () and str(flag.device).startswith(device)
            assert flag.item() == 1.0
    ok = _core.nonfinite_flag([T(big, device), T(np.full(5, np.finfo(dtype).max, dtype), device)])
    assert ok.item() == 0.0
    # int64 and empty tensors are finite; a 0-d tensor is read
    assert _core.nonfinite_flag([T(np.zeros(4, np.int64), device), T(np.zeros(0, dtype), device)]).item() == 0.0
    assert _core.nonfinite_flag([T(np.array(np.nan, dtype), device)]).item() == 1.0


def test_nonfinite_flag_bad_input():
    with pytest.raises(ValueError, match="nonfinite_flag: expected at least one tensor"):
        _core.nonfinite_flag([])


@pytest.mark.cuda
@pytest.mark.skipif(not pc.cuda.is_available(), reason="no CUDA device available")
def test_nonfinite_flag_and_skipped_step_need_no_host_sync():
    p = T(np.ones(1000, np.float32), "cuda")
    g = T(np.full(1000, np.nan, np.float32), "cuda")
    pc.cuda.synchronize()
    before = _core.cuda_host_sync_count()
    flag = _core.nonfinite_flag([g])
    _core.sgd_step([p], [g], [], 0.1, found_inf=flag)
    assert _core.cuda_host_sync_count() == before
    np.testing.assert_array_equal(p.numpy(), np.ones(1000, np.float32))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("momentum,dampening,nesterov", [(0.0, 0.0, False), (0.9, 0.0, False), (0.9, 0.0, True),
                                                         (0.9, 0.3, False)])
def test_sgd_step_found_inf(device, momentum, dampening, nesterov):
    r = np.random.default_rng(0)
    p0, b0 = r.normal(size=(7, 5)), r.normal(size=(7, 5))
    p, b = T(p0.copy(), device), T(b0.copy(), device)
    bufs = [b] if momentum else []
    args = (0.1, momentum, dampening, 1e-3, nesterov, False)
    _core.sgd_step([p], [T(np.full((7, 5), np.nan), device)], bufs, *args, found_inf=T(np.float32(1.0), device))
    np.testing.assert_array_equal(p.numpy(), p0)
    np.testing.assert_array_equal(b.numpy(), b0)
    g = r.normal(size=(7, 5))
    q, c = T(p0.copy(), device), T(b0.copy(), device)
    _core.sgd_step([p], [T(g, device)], bufs, *args, found_inf=T(np.float32(0.0), device))
    _core.sgd_step([q], [T(g, device)], [c] if momentum else [], *args)
    np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_sgd_step_found_inf_checks():
    p, g = T(np.zeros(3)), T(np.zeros(3))
    with pytest.raises(ValueError, match="sgd: expected found_inf a one-element float32 tensor"):
        _core.sgd_step([p], [g], [], 0.1, found_inf=T(np.zeros(2, np.float32)))
    with pytest.raises(ValueError, match="sgd: expected found_inf a one-element float32 tensor"):
        _core.sgd_step([p], [g], [], 0.1, found_inf=T(np.zeros((), np.float64)))
