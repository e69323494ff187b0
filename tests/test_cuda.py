"""The CUDA backend beyond single ops: tensor round trips, the caching allocator's statistics,
out-of-memory errors, run-to-run determinism of a whole training step, whole-step CUDA graphs
(pc.cuda.CUDAGraph, Trainer(cuda_graph=True)), the absence of host syncs inside training steps and
errors deferred to the next host sync. Each op's CUDA-against-CPU cases live in its own test file
(tests/test_<op>.py, the `device` parameter over helpers.DEVICES).

Tests marked `cuda` are skipped unless `pc.cuda.is_available()`. One unmarked test checks that a
machine without CUDA gets a clear RuntimeError when it asks for a CUDA tensor.

Self-check without a GPU: `PYCNN_TEST_CUDA_AS=cpu python -m pytest -m cuda` runs every comparison
with "cpu" standing in for "cuda" (tests that need the real device are then skipped).
"""
from __future__ import annotations

import gc

import numpy as np
import pytest

import pycnn as pc
from pycnn import _core

from helpers import DEV, DTYPES, REAL_CUDA, assert_tree_close, cuda_test, host, needs_cuda, needs_real_cuda, on, rnd


# ------------------------------------------------------------------------- no CUDA: clear error
def test_cuda_tensor_without_cuda_raises_clear_error():
    if pc.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert pc.cuda.device_count() == 0
    with pytest.raises(RuntimeError, match="CUDA") as e:
        pc.zeros(2, device="cuda")
    msg = str(e.value)
    assert "no CUDA backend" in msg or "no usable CUDA device" in msg, msg
    with pytest.raises(RuntimeError, match="CUDA"):
        pc.tensor([1.0, 2.0]).to("cuda")
    # CPU work carries on
    assert pc.zeros(2).numpy().tolist() == [0.0, 0.0]
    info = pc.build_info()
    assert info["cuda_available"] is False
    if info["cuda"]:
        assert info["cuda_version"]
        assert _core.cuda_status() != "ok"


# -------------------------------------------------------------------------------- round trips
@cuda_test
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_round_trip(dtype):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((3, 5, 7)) * 100).astype(dtype)
    t = pc.from_numpy(a).to(DEV)
    assert t.device.startswith(DEV)
    assert t.shape == (3, 5, 7)
    np.testing.assert_array_equal(t.numpy(), a)
    np.testing.assert_array_equal(np.asarray(t.cpu()), a)
    c = t.clone()  # device -> device
    assert c.device == t.device
    np.testing.assert_array_equal(c.numpy(), a)
    r = t.reshape(5, 21)
    np.testing.assert_array_equal(r.numpy(), a.reshape(5, 21))
    np.testing.assert_array_equal(t.to("cpu").to(DEV).numpy(), a)


@cuda_test
def test_creation_fill_item():
    z = pc.zeros(4, 3, device=DEV)
    assert z.device.startswith(DEV)
    np.testing.assert_array_equal(z.numpy(), np.zeros((4, 3), np.float32))
    o = pc.ones(2, 2, dtype=pc.float64, device=DEV)
    np.testing.assert_array_equal(o.numpy(), np.ones((2, 2)))
    f = pc.full((3,), 2.5, device=DEV)
    np.testing.assert_array_equal(f.numpy(), np.full(3, 2.5, np.float32))
    f.fill_(-1.0)
    np.testing.assert_array_equal(f.numpy(), np.full(3, -1.0, np.float32))
    assert pc.full((1,), 7.0, device=DEV).item() == 7.0
    e = pc.empty(0, device=DEV)
    assert e.numel() == 0 and e.numpy().shape == (0,)


@cuda_test
def test_large_round_trip():
    a = np.arange(3 << 20, dtype=np.float32)  # 12 MiB: a large allocator bucket
    t = pc.from_numpy(a).to(DEV)
    np.testing.assert_array_equal(t.numpy(), a)


# ------------------------------------------------------------------- determinism & TF32
def training_step(dev, dtype, seed=0):
    """conv -> bn -> relu -> pool -> linear -> cross-entropy, forward and backward."""
    rng = np.random.default_rng(seed)
    x = on(rnd(rng, (16, 3, 12, 12), dtype), dev)
    w = on(rnd(rng, (8, 3, 3, 3), dtype) * 0.3, dev)
    b = on(rnd(rng, (8,), dtype), dev)
    gamma, beta = on(np.ones(8, dtype), dev), on(np.zeros(8, dtype), dev)
    fw = on(rnd(rng, (10, 8 * 6 * 6), dtype) * 0.1, dev)
    labels = on(rng.integers(0, 10, 16).astype(np.int64), dev)
    g = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    relu = _core.Act.relu
    y1 = _core.conv2d_forward(x, w, b, *g)
    y2, mean, invstd = _core.batch_norm_forward_train(y1, gamma, beta, None, None, 0.1, 1e-5)
    y3 = _core.activation_forward(y2, relu, 0.0)
    y4, am = _core.max_pool2d_forward(y3, (2, 2), (2, 2), (0, 0))
    flat = y4.reshape(16, -1)
    logits = _core.linear_forward(flat, fw, None)
    loss, probs = _core.cross_entropy_forward(logits, labels)
    dlogits = _core.cross_entropy_backward(probs, labels, 1.0)
    dflat, dfw, _ = _core.linear_backward(dlogits, flat, fw, True, True, False)
    dy4 = dflat.reshape(16, 8, 6, 6)
    dy3 = _core.max_pool2d_backward(dy4, am, [16, 8, 12, 12])
    dy2 = _core.activation_backward(dy3, y2, relu, 0.0)
    dy1, dgamma, dbeta = _core.batch_norm_backward(dy2, y1, gamma, mean, invstd)
    dx, dw, db = _core.conv2d_backward(dy1, x, w, *g, True, True, True)
    total = _core.sum_all(dx)
    return host([loss, logits, dx, dw, db, dfw, dgamma, dbeta, total])


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES)
def test_deterministic_bit_identical(dtype):
    a = training_step(DEV, dtype)
    b = training_step(DEV, dtype)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES)
def test_training_step_matches_cpu(dtype):
    assert_tree_close(training_step(DEV, dtype), training_step("cpu", dtype), dtype)


@cuda_test
def test_tf32_toggle():
    old = pc.backends.allow_tf32
    try:
        pc.backends.allow_tf32 = False
        strict = training_step(DEV, np.float32)
        pc.backends.allow_tf32 = True
        fast = training_step(DEV, np.float32)
        for u, v in zip(fast, strict):  # TF32 keeps 10 mantissa bits: loose agreement only
            np.testing.assert_allclose(u, v, rtol=5e-2, atol=5e-2 * max(1.0, float(np.abs(v).max(initial=0))))
    finally:
        pc.backends.allow_tf32 = old


# ------------------------------------------------------------------------ caching allocator
@needs_real_cuda
@pytest.mark.cuda
def test_allocator_stats_and_reuse():
    pc.cuda.synchronize()
    stats = pc.cuda.memory_stats()
    for key in ("allocated_bytes", "max_allocated_bytes", "reserved_bytes", "device_allocs", "frees", "cache_hits"):
        assert key in stats, key
    before = pc.cuda.memory_allocated()
    t = pc.zeros(1000, device="cuda")
    assert pc.cuda.memory_allocated() >= before + 4000
    assert pc.cuda.memory_stats()["reserved_bytes"] >= pc.cuda.memory_allocated()
    del t
    assert pc.cuda.memory_allocated() == before
    # a repeated training step reuses cached blocks: no new cudaMalloc after the warm-up
    training_step("cuda", np.float32)
    training_step("cuda", np.float32)
    s0 = pc.cuda.memory_stats()
    for _ in range(3):
        training_step("cuda", np.float32)
    s1 = pc.cuda.memory_stats()
    assert s1["device_allocs"] == s0["device_allocs"]
    assert s1["cache_hits"] > s0["cache_hits"]
    assert s1["allocated_bytes"] == s0["allocated_bytes"]
    pc.cuda.reset_peak_memory_stats()
    assert pc.cuda.max_memory_allocated() == pc.cuda.memory_allocated()
    pc.cuda.empty_cache()
    s2 = pc.cuda.memory_stats()
    assert s2["reserved_bytes"] - s2.get("cached_bytes", 0) >= 0
    assert s2.get("cached_bytes", 0) == 0


@needs_real_cuda
@pytest.mark.cuda
def test_out_of_memory_is_memory_error():
    with pytest.raises(MemoryError, match="CUDA out of memory") as e:
        pc.empty(1 << 42, device="cuda")  # 16 TiB of float32
    assert "cuda:0" in str(e.value) and "MiB" in str(e.value)
    # the device still works afterwards
    t = pc.ones(10, device="cuda")
    assert float(_core.sum_all(t).item()) == 10.0


@needs_real_cuda
@pytest.mark.cuda
def test_device_queries():
    assert pc.cuda.device_count() >= 1
    assert isinstance(pc.cuda.get_device_name(0), str) and pc.cuda.get_device_name(0)
    assert _core.cuda_status() == "ok"
    info = pc.build_info()
    assert info["cuda"] and info["cuda_available"] and info["cuda_version"]
    with pytest.raises(RuntimeError, match="invalid device index"):
        pc.zeros(1, device=f"cuda:{pc.cuda.device_count()}")


# ---------------------------------------------------------------- CUDA graphs: errors without a GPU
def test_cuda_graph_without_cuda_raises_clear_error():
    if pc.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RuntimeError, match="CUDAGraph") as e:
        pc.cuda.CUDAGraph()
    msg = str(e.value)
    if pc.build_info()["cuda"]:
        assert "no usable CUDA device" in msg, msg
        assert pc.cuda.host_sync_count() == 0
    else:
        assert "this pycnn build has no CUDA" in msg, msg
        with pytest.raises(RuntimeError, match="CUDA"):
            pc.cuda.host_sync_count()


def test_cuda_graph_argument_errors():
    with pytest.raises(TypeError, match="pc.cuda.CUDAGraph"):
        pc.cuda.graph(object())
    with pytest.raises(ValueError, match="expected a CUDA device, got 'cpu'"):
        pc.cuda.CUDAGraph("cpu")


def test_trainer_cuda_graph_on_cpu_is_value_error():
    from pycnn import nn, optim

    model = pc.models.lenet5()
    opt = optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(ValueError, match="cuda_graph=True needs a CUDA device.*'cpu'"):
        pc.Trainer(model, opt, nn.CrossEntropyLoss(), cuda_graph=True)
    with pytest.raises(TypeError, match="cuda_graph must be a bool"):
        pc.Trainer(model, opt, nn.CrossEntropyLoss(), cuda_graph="yes")
    assert pc.Trainer(model, opt, nn.CrossEntropyLoss(), cuda_graph=False).cuda_graph is False


# ------------------------------------------------------------------------ CUDA graphs on a GPU
def _graph_model(seed=0):
    from pycnn import nn, optim

    pc.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Dropout(0.3), nn.Linear(4 * 7 * 7, 10)).to("cuda")
    return model, optim.SGD(model.parameters(), lr=0.05, momentum=0.9), nn.CrossEntropyLoss()


def _graph_batches(k, n=16):
    rng = np.random.default_rng(1)
    return [(rng.standard_normal((n, 1, 14, 14)).astype(np.float32), rng.integers(0, 10, n).astype(np.int64))
            for _ in range(k)]


def _manual_step(model, opt, crit, x, y):
    loss = crit(model(x), y)
    opt.zero_grad()
    model.zero_grad()
    model.backward(crit.backward())
    opt.step()
    return loss


def _captured_run(batches):
    """The docs' manual loop: warm-up, capture, copy each batch into the static inputs, replay."""
    model, opt, crit = _graph_model()
    sx = pc.tensor(batches[0][0], device="cuda")
    sy = pc.tensor(batches[0][1], device="cuda")
    _manual_step(model, opt, crit, sx, sy)  # warm-up on batch 0
    g = pc.cuda.CUDAGraph()
    sx.copy_(pc.from_numpy(batches[1][0]))
    sy.copy_(pc.from_numpy(batches[1][1]))
    with pc.cuda.graph(g):
        static_loss = _manual_step(model, opt, crit, sx, sy)
    g.replay()
    for x, y in batches[2:]:
        sx.copy_(pc.from_numpy(x))
        sy.copy_(pc.from_numpy(y))
        g.replay()
    return model, g, static_loss, (sx, sy)


@needs_real_cuda
@pytest.mark.cuda
def test_cuda_graph_step_bitwise_equals_eager_steps():
    batches = _graph_batches(6)
    model, opt, crit = _graph_model()
    for x, y in batches:
        loss = _manual_step(model, opt, crit, pc.tensor(x, device="cuda"), pc.tensor(y, device="cuda"))
    want = [p.data.numpy().copy() for p in model.parameters()]
    gmodel, g, static_loss, _ = _captured_run(batches)
    got = [p.data.numpy() for p in gmodel.parameters()]
    assert g.captured and g.pool_bytes() > 0
    for u, v in zip(got, want):
        np.testing.assert_array_equal(u, v)  # same kernels, same dropout masks: bit for bit
    assert static_loss.item() == loss.item()


@needs_real_cuda
@pytest.mark.cuda
def test_cuda_graph_replays_allocate_nothing_and_do_not_sync():
    batches = _graph_batches(4)
    model, g, static_loss, (sx, sy) = _captured_run(batches)
    pc.cuda.synchronize()
    s0, syncs0 = pc.cuda.memory_stats(), pc.cuda.host_sync_count()
    for x, y in batches * 3:
        sx.copy_(pc.from_numpy(x))  # pageable host memory: staged by the driver, no wait
        sy.copy_(pc.from_numpy(y))
        g.replay()
    s1, syncs1 = pc.cuda.memory_stats(), pc.cuda.host_sync_count()
    assert s1["device_allocs"] == s0["device_allocs"]
    assert s1["allocs"] == s0["allocs"]
    assert s1["allocated_bytes"] == s0["allocated_bytes"]
    assert s1["graph_pool_bytes"] == s0["graph_pool_bytes"] > 0
    assert syncs1 == syncs0
    assert np.isfinite(static_loss.item())
    g.reset()
    assert not g.captured and g.pool_bytes() == 0


@needs_real_cuda
@pytest.mark.cuda
def test_cuda_graph_capture_errors_leave_the_device_usable():
    model, opt, crit = _graph_model()
    model.eval()
    x = pc.tensor(_graph_batches(1)[0][0], device="cuda")
    want = model(x).numpy()  # warm-up
    g = pc.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="capturing a CUDA graph"):
        with pc.cuda.graph(g):
            model(x).item()
    assert not g.captured and not g.capturing
    with pytest.raises(RuntimeError, match="no capture is running"):
        g.capture_end()
    with pytest.raises(RuntimeError, match="nothing captured"):
        g.replay()
    # scratch that would have to grow inside the capture is refused with the reason
    big = pc.zeros(1, 64, 384, 384, device="cuda")
    w = pc.zeros(64, 64, 3, 3, device="cuda")
    with pytest.raises(RuntimeError, match="cannot grow during CUDA graph capture"):
        with pc.cuda.graph(g):
            _core.conv2d_forward(big, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    # the stream works normally afterwards, and a fresh capture succeeds
    assert float(_core.sum_all(pc.ones(3, device="cuda")).item()) == 3.0
    with pc.cuda.graph(g):
        y = model(x)
    g.replay()
    assert g.captured
    np.testing.assert_array_equal(y.numpy(), want)


def _trainer_run(cuda_graph, epochs=2, n=100, batch_size=32, scheduler=True):
    from pycnn import nn, optim

    pc.manual_seed(3)
    rng = np.random.default_rng(3)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    model = pc.models.lenet5()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sch = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5) if scheduler else None
    t = pc.Trainer(model, opt, nn.CrossEntropyLoss(), device="cuda", scheduler=sch, cuda_graph=cuda_graph)
    hist = t.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    return t, hist, [p.data.numpy().copy() for p in model.parameters()]


@needs_real_cuda
@pytest.mark.cuda
def test_trainer_cuda_graph_matches_eager():
    # 100 samples in batches of 32: three full batches and a partial one of 4 (eager path)
    t_eager, h_eager, w_eager = _trainer_run(False)
    t_graph, h_graph, w_graph = _trainer_run(True)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(h_graph.history[key], h_eager.history[key], rtol=1e-5, atol=1e-6)
    for u, v in zip(w_graph, w_eager):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    gs = t_graph._graph_step
    assert gs.captures == 2  # the scheduler halved the lr after epoch 1: captured again
    assert gs.replays == 4   # epoch 1: batches 2-3 (batch 1 is the warm-up); epoch 2: batches 2-3
    #                          (the lr changed: batch 1 runs eagerly before the new capture)


@needs_real_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_trainer_steps_do_not_sync_with_the_host(cuda_graph):
    def count(batches):
        from pycnn import nn, optim

        # an earlier Trainer's graph (Trainer <-> GraphStep is a reference cycle) is freed by the
        # cyclic GC, and CUDAGraph.reset waits for the device: collect it here, outside the count
        gc.collect()
        pc.manual_seed(0)
        rng = np.random.default_rng(0)
        x = rng.random((32 * batches, 1, 28, 28), dtype=np.float32)
        y = rng.integers(0, 10, 32 * batches).astype(np.int64)
        model = pc.models.lenet5()
        t = pc.Trainer(model, optim.SGD(model.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss(),
                       device="cuda", cuda_graph=cuda_graph)
        t.log_every = 10_000  # one logging point: the end of the epoch
        t.fit(x, y, batch_size=32, epochs=1, verbose=0)  # warm-up (and capture) outside the count
        before = pc.cuda.host_sync_count()
        t.fit(x, y, batch_size=32, epochs=1, verbose=0)
        return pc.cuda.host_sync_count() - before

    few, many = count(4), count(16)
    assert few == many, (few, many)  # the end-of-epoch reads only, however many steps
    assert few <= 4, few


@needs_real_cuda
@pytest.mark.cuda
def test_bad_label_on_cuda_raises_at_the_next_host_sync():
    # CUDA labels are range-checked by the kernels, not on the host (that would sync every step):
    # the ops return at once, and the next host wait on the device raises ValueError naming them
    logits = pc.tensor(np.zeros((3, 4), np.float32), device="cuda")
    labels = pc.tensor(np.array([0, 7, 1], np.int64), device="cuda")
    pc.cuda.synchronize()
    before = pc.cuda.host_sync_count()
    loss, probs = _core.cross_entropy_forward(logits, labels)
    dx = _core.cross_entropy_backward(probs, labels, 1.0)
    assert pc.cuda.host_sync_count() == before  # no host check inside the ops
    with pytest.raises(ValueError, match=r"^cross_entropy: label 7 at position 1 is out of range for 4 classes "
                                         r"\(expected 0 <= label < 4\); detected on cuda:0 at the first host sync"):
        loss.item()
    assert pc.cuda.host_sync_count() == before + 1  # the flag was read in .item()'s own wait
    # reported once, then cleared: the bad rows are NaN, the others untouched
    assert np.isnan(loss.item())
    d = dx.numpy()
    assert np.isnan(d[1]).all() and np.isfinite(d[[0, 2]]).all()
    # the device works normally again: a good batch gives a finite loss
    good = pc.tensor(np.array([0, 3, 1], np.int64), device="cuda")
    loss2, probs2 = _core.cross_entropy_forward(logits, good)
    assert np.isclose(loss2.item(), np.log(4.0))
    assert np.isfinite(_core.cross_entropy_backward(probs2, good, 1.0).numpy()).all()
    assert int(_core.count_correct(logits, good).item()) == 1
    # backward alone, count_correct, and the other sync points (synchronize, isfinite_all) report too
    neg = pc.tensor(np.array([0, 1, -1], np.int64), device="cuda")
    with pytest.raises(ValueError, match=r"^cross_entropy_backward: label -1 at position 2 .* for 4 classes"):
        _core.cross_entropy_backward(probs2, neg, 1.0).numpy()
    with pytest.raises(ValueError, match=r"^count_correct: label 4 at position 0 .* for 4 classes"):
        _core.count_correct(logits, pc.tensor(np.array([4, 0, 0], np.int64), device="cuda")).item()
    _core.cross_entropy_forward(logits, neg)
    with pytest.raises(ValueError, match=r"^cross_entropy: label -1 at position 2 "):
        pc.cuda.synchronize()
    loss3, _ = _core.cross_entropy_forward(logits, labels)
    with pytest.raises(ValueError, match=r"^cross_entropy: label 7 at position 1 "):
        _core.isfinite_all(loss3)
    # the first op after the last host sync is the one reported
    loss4, probs4 = _core.cross_entropy_forward(logits, labels)
    _core.cross_entropy_backward(probs4, neg, 1.0)
    with pytest.raises(ValueError, match=r"^cross_entropy: label 7 "):
        loss4.item()
    assert float(_core.sum_all(pc.ones(3, device="cuda")).item()) == 3.0


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_trainer_bad_label_raises_value_error(cuda_graph):
    # CPU: at once, from the op; CUDA: at the next logging point (here the end of the epoch), with
    # or without a CUDA graph (most batches are replayed ones)
    if cuda_graph and not REAL_CUDA:
        pytest.skip("CUDA graphs need a real CUDA device")
    from pycnn import nn, optim

    pc.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((128, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 128).astype(np.int64)
    y[70] = 10  # the Trainer shuffles: any batch, any row

    def trainer():
        model = pc.models.lenet5()
        t = pc.Trainer(model, optim.SGD(model.parameters(), lr=0.01), nn.CrossEntropyLoss(), device=DEV,
                       cuda_graph=cuda_graph)
        t.log_every = 10_000
        return t

    with pytest.raises(ValueError, match=r"cross_entropy: label 10 at position \d+ is out of range for 10 classes"):
        trainer().fit(x, y, batch_size=32, epochs=1, verbose=0)
    # on CUDA the steps up to the logging point have run (that model's weights are NaN now): a
    # fresh model on good labels trains normally on the same device
    y[70] = 3
    hist = trainer().fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"]).all()


@needs_real_cuda
@pytest.mark.cuda
def test_batchnorm_training_counts_batches_on_the_device_without_syncing():
    from pycnn import nn

    bn = nn.BatchNorm2d(3).to("cuda")
    x = pc.tensor(np.random.default_rng(0).standard_normal((4, 3, 5, 5), dtype=np.float32), device="cuda")
    bn(x)  # first call makes the device-side increment's constant
    before = pc.cuda.host_sync_count()
    for _ in range(4):
        bn(x)
    assert pc.cuda.host_sync_count() == before
    assert int(bn.num_batches_tracked.item()) == 5
