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


# ----------------------------------------------------------------------------- Trainer
def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def _run(x, y, model_fn, on_nonfinite="raise", dampening=0.0, **fit_kw):
    pc.manual_seed(0)
    model = model_fn()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, dampening=dampening)
    tr = Trainer(model, opt, nn.CrossEntropyLoss(), on_nonfinite=on_nonfinite)
    err = None
    try:
        tr.fit(x, y, batch_size=8, shuffle=False, verbose=0, **fit_kw)
    except FloatingPointError as e:
        err = e
    state = {k: np.array(v.numpy()) for k, v in model.state_dict().items()}
    bufs = [np.array(opt.state[p]["momentum_buffer"].numpy()) for p in model.parameters() if p in opt.state]
    return state, bufs, err, tr


def _mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


class _NaNGradAt(nn.Linear):
    """A Linear whose weight gradient becomes NaN at its k-th backward (the loss stays finite)."""

    def __init__(self, at):
        super().__init__(8, 2)
        object.__setattr__(self, "at", at)
        object.__setattr__(self, "calls", 0)

    def backward(self, g):
        dx = super().backward(g)
        object.__setattr__(self, "calls", self.calls + 1)
        if self.calls == self.at:
            self.weight.grad = pc.from_numpy(np.full(tuple(self.weight.shape), np.nan, np.float32))
        return dx


@pytest.mark.parametrize("dampening", [0.0, 0.3])
def test_nan_batch_raises_with_the_weights_of_before_it(dampening):
    """Batch 3 (of 12, logging every 10) is NaN: FloatingPointError, and the weights and momentum
    buffers are exactly those after batches 1-2, although batches 4-10 ran before the check."""
    x, y = _data()
    good_w, good_b, err, _ = _run(x[:16], y[:16], _mlp, dampening=dampening, epochs=1)
    assert err is None
    x_bad = x.copy()
    x_bad[20, 1] = np.nan
    bad_w, bad_b, err, _ = _run(x_bad, y, _mlp, dampening=dampening, epochs=2)
    assert err is not None and "epoch 1, batch 3" in str(err) and "the loss became nan" in str(err)
    assert "before that batch" in str(err)
    for k in good_w:
        np.testing.assert_array_equal(bad_w[k], good_w[k], err_msg=k)
    assert len(bad_b) == len(good_b) == 4
    for u, v in zip(bad_b, good_b):
        np.testing.assert_array_equal(u, v)


def test_nan_gradient_with_a_finite_loss_raises_with_the_weights_of_before_it():
    x, y = _data()
    good_w, _, err, _ = _run(x[:32], y[:32], lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), _NaNGradAt(99)),
                             epochs=1)
    assert err is None
    bad_w, _, err, _ = _run(x, y, lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), _NaNGradAt(5)), epochs=1)
    assert err is not None and "epoch 1, batch 5" in str(err) and "gradient" in str(err)
    for k in good_w:
        np.testing.assert_array_equal(bad_w[k], good_w[k], err_msg=k)


def test_skip_mode_skips_bad_gradients_and_counts_them():
    x, y = _data()
    w, _, err, tr = _run(x, y, lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), _NaNGradAt(5)),
                         on_nonfinite="skip", epochs=2)
    assert err is None
    assert tr.history.history["skipped_batches"] == [1.0, 0.0]
    assert all(np.isfinite(v).all() for v in w.values())


def test_the_first_step_being_skipped_leaves_no_trace():
    """Batch 1 is NaN, on_nonfinite='skip': the run equals one that starts at batch 2 (momentum and
    dampening included, the first-step rule applied to batch 2)."""
    x, y = _data()
    x_bad = x.copy()
    x_bad[3, 0] = np.inf
    for damp in (0.0, 0.3):
        w_bad, b_bad, _, _ = _run(x_bad, y, _mlp, on_nonfinite="skip", dampening=damp, epochs=1)
        w_ref, b_ref, _, _ = _run(x[8:], y[8:], _mlp, on_nonfinite="skip", dampening=damp, epochs=1)
        for k in w_ref:
            np.testing.assert_array_equal(w_bad[k], w_ref[k], err_msg=k)
        for u, v in zip(b_bad, b_ref):
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("on_nonfinite", ["raise", "skip"])
def test_large_finite_losses_are_no_false_alarm(on_nonfinite):
    """20 batches of 8 with a loss of ~1e37 each: the float32 epoch sum (~1.6e39) would overflow."""
    pc.manual_seed(0)
    model = nn.Linear(4, 1)  # outputs 3e18 for zero inputs: MSE losses near 1e37, finite gradients
    model.weight.data.copy_(pc.from_numpy(np.zeros((1, 4), np.float32)))
    model.bias.data.copy_(pc.from_numpy(np.full(1, 3e18, np.float32)))
    tr = Trainer(model, optim.SGD(model.parameters(), lr=0.0), nn.MSELoss(), metrics=None,
                 on_nonfinite=on_nonfinite)
    x = np.zeros((160, 4), np.float32)
    h = tr.fit(x, np.zeros((160, 1), np.float32), batch_size=8, epochs=1, verbose=0)
    assert math.isclose(h.history["loss"][0], float(np.float32(3e18)) ** 2, rel_tol=1e-6)
    assert h.history.get("skipped_batches", [0.0]) == [0.0]


def test_an_optimizer_without_found_inf_is_still_guarded():
    class Plain:
        def __init__(self, params):
            self.inner = optim.SGD(params, lr=0.1)
            self.steps = 0

        def step(self):
            self.steps += 1
            self.inner.step()

        def zero_grad(self):
            self.inner.zero_grad()

    pc.manual_seed(0)
    model = _mlp()
    opt = Plain(model.parameters())
    x, y = _data(32)
    x[9, 0] = np.nan
    with pytest.raises(FloatingPointError, match="batch 2"):
        Trainer(model, opt, nn.CrossEntropyLoss()).fit(x, y, batch_size=8, shuffle=False, verbose=0)
    assert opt.steps == 1
    assert all(np.isfinite(p.numpy()).all() for p in model.parameters())


# ----------------------------------------------------------------------------- buffers (BatchNorm statistics)
@pytest.mark.parametrize("device", DEVICES)
def test_keep_or_undo(device):
    t = T(np.arange(4.0), device)
    i = T(np.array([3], np.int64), device)
    b, ib = T(np.zeros(4), device), T(np.zeros(1, np.int64), device)
    _core.keep_or_undo_([t, i], [b, ib], T(np.float32(0.0), device))  # keep: backups take the values
    np.testing.assert_array_equal(b.numpy(), np.arange(4.0))
    assert ib.numpy().tolist() == [3]
    t.fill_(9.0)
    _core.keep_or_undo_([t, i], [b, ib], T(np.float32(1.0), device))  # undo: the tensors get them back
    np.testing.assert_array_equal(t.numpy(), np.arange(4.0))
    with pytest.raises(ValueError, match="keep_or_undo_: expected one backup per tensor"):
        _core.keep_or_undo_([t], [], T(np.float32(0.0), device))
    with pytest.raises(ValueError, match=r"keep_or_undo_: expected backups\[0\] of shape \(4,\)"):
        _core.keep_or_undo_([t], [T(np.zeros(3), device)], T(np.float32(0.0), device))


def _bn_mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def test_a_nan_batch_leaves_batchnorm_statistics_as_they_were():
    """raise: the running statistics (and batch count) are those of before the NaN batch, as the
    weights; skip: the run equals one without that batch, statistics included."""
    x, y = _data()
    x_bad = x.copy()
    x_bad[20, 1] = np.nan  # batch 3
    good, _, err, _ = _run(x[:16], y[:16], _bn_mlp, epochs=1)
    bad, _, err, _ = _run(x_bad, y, _bn_mlp, epochs=1)
    assert err is not None
    assert set(bad) >= {"1.running_mean", "1.running_var", "1.num_batches_tracked"}
    for k in good:
        np.testing.assert_array_equal(bad[k], good[k], err_msg=k)
    keep = np.r_[0:16, 24:96]
    ref, _, _, _ = _run(x[keep], y[keep], _bn_mlp, on_nonfinite="skip", epochs=1)
    skipped, _, _, tr = _run(x_bad, y, _bn_mlp, on_nonfinite="skip", epochs=1)
    assert tr.history.history["skipped_batches"] == [1.0]
    for k in ref:
        np.testing.assert_array_equal(skipped[k], ref[k], err_msg=k)


@pytest.mark.cuda
@pytest.mark.skipif(not pc.cuda.is_available(), reason="no CUDA device available")
def test_cuda_graph_replays_never_apply_a_nan_batch():
    """Trainer(cuda_graph=True): batch 6 (a replay) is NaN; FloatingPointError at the logging point,
    and weights and BatchNorm statistics equal a run of batches 1-5 only."""
    x, y = _data()
    x_bad = x.copy()
    x_bad[44, 0] = np.nan

    def run(xs, ys):
        pc.manual_seed(0)
        model = _bn_mlp()
        tr = Trainer(model, optim.SGD(model.parameters(), lr=0.1, momentum=0.9), nn.CrossEntropyLoss(),
                     device="cuda", cuda_graph=True)
        err = None
        try:
            tr.fit(xs, ys, batch_size=8, shuffle=False, verbose=0)
        except FloatingPointError as e:
            err = e
        return {k: np.array(v.numpy()) for k, v in model.state_dict().items()}, err, tr

    good, err, _ = run(x[:40], y[:40])
    assert err is None
    bad, err, tr = run(x_bad, y)
    assert err is not None and "batch 6" in str(err)
    assert tr._graph_step.replays >= 4
    for k in good:
        np.testing.assert_array_equal(bad[k], good[k], err_msg=k)


# ----------------------------------------------------------------------------- the public guard ops
def test_public_guard_ops_match_the_core():
    grads = [T(np.ones(5, np.float32)), T(np.array([1.0, np.inf], np.float32))]
    assert optim.nonfinite_flag(grads).item() == 1.0
    assert optim.nonfinite_flag(grads[:1]).item() == 0.0
    buf, backup = T(np.array([1.0, 2.0])), T(np.array([5.0, 6.0]))
    optim.keep_or_undo_([buf], [backup], optim.nonfinite_flag(grads[:1]))  # kept: the backup follows
    np.testing.assert_array_equal(backup.numpy(), [1.0, 2.0])
    buf.fill_(9.0)
    optim.keep_or_undo_([buf], [backup], optim.nonfinite_flag(grads))  # undone: the buffer goes back
    np.testing.assert_array_equal(buf.numpy(), [1.0, 2.0])


def test_public_guard_ops_name_the_bad_argument():
    with pytest.raises(TypeError, match=r"nonfinite_flag: tensors must be a list or tuple of Tensors, got Tensor"):
        optim.nonfinite_flag(T(np.ones(2)))
    with pytest.raises(TypeError, match=r"nonfinite_flag: tensors\[1\] must be a Tensor, got ndarray"):
        optim.nonfinite_flag([T(np.ones(2)), np.ones(2)])
    with pytest.raises(ValueError, match=r"keep_or_undo_: expected as many backups as tensors, got 0 backups for 1"):
        optim.keep_or_undo_([T(np.ones(2))], [], T(np.zeros((), np.float32)))
    with pytest.raises(TypeError, match=r"keep_or_undo_: found_inf must be a Tensor"):
        optim.keep_or_undo_([T(np.ones(2))], [T(np.ones(2))], 0.0)


def test_count_correct_on_the_device_equals_accuracy():
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((50, 7)).astype(np.float32), rng.integers(0, 7, 50)
    n = pc.metrics.count_correct(T(logits), T(labels))
    assert n.dtype == pc.int64 and tuple(n.shape) == ()
    assert n.item() == round(pc.metrics.accuracy(logits, labels) * 50)
    with pytest.raises(TypeError, match=r"count_correct: logits and labels must be pycnn Tensors.*ndarray"):
        pc.metrics.count_correct(T(logits), labels)
    with pytest.raises(ValueError, match=r"count_correct: expected labels of shape \(50,\)"):
        pc.metrics.count_correct(T(logits), T(labels[:3]))
