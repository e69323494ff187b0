"""The CUDA backend: every op of pycnn._core on CUDA against the CPU kernels (forward and backward,
float32 and float64), tensor round trips, the caching allocator's statistics, out-of-memory
errors, run-to-run determinism, whole-step CUDA graphs (pc.cuda.CUDAGraph, Trainer(cuda_graph=True))
and the absence of host syncs inside training steps.

Tests marked `cuda` are skipped unless `pc.cuda.is_available()`. One unmarked test checks that a
machine without CUDA gets a clear RuntimeError when it asks for a CUDA tensor.

Self-check of this file without a GPU: `PYCNN_TEST_CUDA_AS=cpu python -m pytest tests/test_cuda.py`
runs every comparison with "cpu" standing in for "cuda" (allocator tests are then skipped).
"""
from __future__ import annotations

import gc
import os

import numpy as np
import pytest

import pycnn as pc
from pycnn import _core

DEV = os.environ.get("PYCNN_TEST_CUDA_AS", "cuda")
HAVE_DEV = DEV == "cpu" or pc.cuda.is_available()
REAL_CUDA = DEV != "cpu" and pc.cuda.is_available()

needs_cuda = pytest.mark.skipif(not HAVE_DEV, reason="no CUDA device available")
needs_real_cuda = pytest.mark.skipif(not REAL_CUDA, reason="needs a real CUDA device")

DTYPES = [np.float32, np.float64]


# ------------------------------------------------------------------------------------ helpers
def on(a, dev):
    """A NumPy array (or None / anything else, passed through) as a tensor on `dev`."""
    if isinstance(a, np.ndarray):
        t = pc.from_numpy(np.ascontiguousarray(a))
        return t if dev == "cpu" else t.to(dev)
    if isinstance(a, list):
        return [on(v, dev) for v in a]
    return a


def host(out):
    """Op results (tensors, tuples, lists, None, Python numbers) as NumPy / plain values."""
    if isinstance(out, (tuple, list)):
        return [host(o) for o in out]
    if out is None or isinstance(out, (bool, int, float)):
        return out
    return np.array(out.numpy())


def devices_of(out):
    if isinstance(out, (tuple, list)):
        return [d for o in out for d in devices_of(o)]
    if out is None or isinstance(out, (bool, int, float)):
        return []
    return [out.device]


def tol(dtype):
    return (2e-4, 2e-5) if dtype == np.float32 else (1e-10, 1e-12)


def assert_tree_close(got, want, dtype, path="out"):
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            assert_tree_close(g, w, dtype, f"{path}[{i}]")
        return
    if want is None or isinstance(want, (bool, int)):
        assert got == want, path
        return
    if isinstance(want, float):
        np.testing.assert_allclose(got, want, rtol=tol(dtype)[0], err_msg=path)
        return
    assert got.shape == want.shape and got.dtype == want.dtype, (path, got.shape, want.shape, got.dtype, want.dtype)
    if want.dtype == np.int64:
        np.testing.assert_array_equal(got, want, err_msg=path)
        return
    rtol, atol = tol(dtype)
    scale = max(1.0, float(np.nanmax(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, err_msg=path, equal_nan=True)


def compare(fn, *args, dtype=np.float64):
    """fn(*args) on the CPU and on DEV; same results within the dtype's tolerance, outputs on DEV."""
    want = fn(*[on(a, "cpu") for a in args])
    got_t = fn(*[on(a, DEV) for a in args])
    if DEV != "cpu":
        assert all(d.startswith("cuda") for d in devices_of(got_t)), devices_of(got_t)
    got = host(got_t)
    assert_tree_close(got, host(want), dtype)
    return got


def rnd(rng, shape, dtype, away_from_zero=False):
    a = rng.standard_normal(shape).astype(dtype)
    if away_from_zero:  # keep off the kinks of relu & co, where CPU and GPU may round to either side
        a[np.abs(a) < 1e-2] = 0.5
    return a


def cuda_test(f):
    return pytest.mark.cuda(needs_cuda(f))


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


# ------------------------------------------------------------------------------------- ops
ACTS = [("relu", 0.0), ("leaky_relu", 0.1), ("elu", 1.3), ("sigmoid", 0.0), ("tanh", 0.0), ("softplus", 1.5)]


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,alpha", ACTS)
def test_activation(kind, alpha, dtype):
    rng = np.random.default_rng(1)
    act = getattr(_core.Act, kind)
    x = rnd(rng, (4, 3, 17), dtype, away_from_zero=True) * 4
    x.flat[:3] = [30.0, -30.0, 15.0]  # softplus threshold, sigmoid tails
    dy = rnd(rng, x.shape, dtype)
    compare(lambda x: _core.activation_forward(x, act, alpha), x, dtype=dtype)
    compare(lambda dy, x: _core.activation_backward(dy, x, act, alpha), dy, x, dtype=dtype)


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,c", [((5, 4, 3, 3), 4), ((2, 3, 7), 3), ((6, 11), 1), ((3, 2, 1000), 2)])
def test_prelu(shape, c, dtype):
    rng = np.random.default_rng(2)
    x = rnd(rng, shape, dtype, away_from_zero=True)
    w = (rng.random(c) * 0.5).astype(dtype)
    dy = rnd(rng, shape, dtype)
    compare(_core.prelu_forward, x, w, dtype=dtype)
    compare(_core.prelu_backward, dy, x, w, dtype=dtype)


def conv_configs(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        groups = int(rng.choice([1, 1, 2, 3]))
        cg = int(rng.integers(1, 4))
        C, O = cg * groups, groups * int(rng.integers(1, 4))
        kh, kw = (int(v) for v in rng.integers(1, 5, size=2))
        sh, sw = (int(v) for v in rng.integers(1, 3, size=2))
        dh, dw = (int(v) for v in rng.integers(1, 3, size=2))
        pad = tuple(int(v) for v in rng.integers(0, 3, size=4))
        H = max(1, dh * (kh - 1) + 1 - pad[0] - pad[1]) + int(rng.integers(0, 8))
        W = max(1, dw * (kw - 1) + 1 - pad[2] - pad[3]) + int(rng.integers(0, 8))
        N = int(rng.integers(1, 5))
        out.append(dict(N=N, C=C, H=H, W=W, O=O, cg=cg, k=(kh, kw), stride=(sh, sw), padding=pad,
                         dilation=(dh, dw), groups=groups, bias=bool(rng.random() < 0.7)))
    # pointwise, and a batch large enough for several samples per GEMM
    out.append(dict(N=3, C=6, H=5, W=7, O=8, cg=6, k=(1, 1), stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
                    groups=1, bias=True))
    out.append(dict(N=16, C=3, H=28, W=28, O=8, cg=3, k=(3, 3), stride=(1, 1), padding=(1, 1, 1, 1),
                    dilation=(1, 1), groups=1, bias=True))
    return out


CONV = conv_configs(12, seed=7)


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", CONV, ids=[f"conv{i}" for i in range(len(CONV))])
def test_conv2d(c, dtype):
    rng = np.random.default_rng(3)
    x = rnd(rng, (c["N"], c["C"], c["H"], c["W"]), dtype)
    w = rnd(rng, (c["O"], c["cg"], *c["k"]), dtype)
    b = rnd(rng, (c["O"],), dtype) if c["bias"] else None
    g = (c["stride"], c["padding"], c["dilation"], c["groups"])
    y = compare(lambda x, w, b: _core.conv2d_forward(x, w, b, *g), x, w, b, dtype=dtype)
    dy = rnd(rng, y.shape, dtype)
    compare(lambda dy, x, w: _core.conv2d_backward(dy, x, w, *g, True, True, True), dy, x, w, dtype=dtype)
    compare(lambda dy, x, w: _core.conv2d_backward(dy, x, w, *g, True, False, False), dy, x, w, dtype=dtype)
    compare(lambda dy, x, w: _core.conv2d_backward(dy, x, w, *g, False, True, True), dy, x, w, dtype=dtype)
    compare(lambda x: _core.im2col(x, c["k"], c["stride"], c["padding"], c["dilation"]), x, dtype=dtype)


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,s,p,shape", [((2, 2), (2, 2), (0, 0), (2, 3, 8, 8)), ((3, 3), (2, 2), (1, 1), (2, 2, 9, 7)),
                                         ((3, 2), (1, 2), (1, 0), (1, 4, 6, 5)), ((5, 5), (3, 3), (2, 2), (3, 1, 13, 11))])
def test_pool2d(k, s, p, shape, dtype):
    rng = np.random.default_rng(4)
    x = rnd(rng, shape, dtype)
    y, am = compare(lambda x: _core.max_pool2d_forward(x, k, s, p), x, dtype=dtype)
    dy = rnd(rng, y.shape, dtype)
    compare(lambda dy, am: _core.max_pool2d_backward(dy, am, list(shape)), dy, am, dtype=dtype)
    # with the window geometry (what nn.MaxPool2d passes) CUDA gathers per input element
    compare(lambda dy, am: _core.max_pool2d_backward(dy, am, list(shape), k, s, p), dy, am, dtype=dtype)
    ya = compare(lambda x: _core.avg_pool2d_forward(x, k, s, p), x, dtype=dtype)
    compare(lambda dy: _core.avg_pool2d_backward(dy, list(shape), k, s, p), rnd(rng, ya.shape, dtype), dtype=dtype)
    for out in [(1, 1), (3, 2), (shape[2] + 1, shape[3])]:
        yd = compare(lambda x: _core.adaptive_avg_pool2d_forward(x, out), x, dtype=dtype)
        compare(lambda dy: _core.adaptive_avg_pool2d_backward(dy, list(shape)), rnd(rng, yd.shape, dtype), dtype=dtype)


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,i,o,bias", [(7, 5, 3, True), (64, 300, 10, True), (1, 4, 9, False), (33, 1, 1, True),
                                        (1000, 8, 300, True)])
def test_linear(n, i, o, bias, dtype):
    rng = np.random.default_rng(5)
    x, w = rnd(rng, (n, i), dtype), rnd(rng, (o, i), dtype)
    b = rnd(rng, (o,), dtype) if bias else None
    compare(_core.linear_forward, x, w, b, dtype=dtype)
    dy = rnd(rng, (n, o), dtype)
    compare(lambda dy, x, w: _core.linear_backward(dy, x, w, True, True, bias), dy, x, w, dtype=dtype)
    compare(lambda dy, x, w: _core.linear_backward(dy, x, w, False, True, False), dy, x, w, dtype=dtype)


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", [(5, 10), (3, 1), (2, 1000), (257, 7)])
def test_softmax_cross_entropy(n, c, dtype):
    rng = np.random.default_rng(6)
    x = rnd(rng, (n, c), dtype) * 5
    x[0, 0] = 1e4  # the max shift keeps this finite
    compare(_core.softmax_forward, x, dtype=dtype)
    compare(_core.log_softmax_forward, x, dtype=dtype)
    y = host(_core.softmax_forward(on(x, "cpu")))
    compare(_core.softmax_backward, rnd(rng, (n, c), dtype), y, dtype=dtype)
    labels = rng.integers(0, c, size=n).astype(np.int64)
    loss, probs = compare(_core.cross_entropy_forward, x, labels, dtype=dtype)
    assert loss.shape == ()
    compare(lambda p, l: _core.cross_entropy_backward(p, l, 0.5), probs, labels, dtype=dtype)


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (4, 3, 5), (100_001,)])
def test_mse(shape, dtype):
    rng = np.random.default_rng(7)
    x, t = rnd(rng, shape, dtype), rnd(rng, shape, dtype)
    compare(_core.mse_forward, x, t, dtype=dtype)
    compare(lambda x, t: _core.mse_backward(x, t, 0.25), x, t, dtype=dtype)


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_same_mask_as_cpu(dtype):
    rng = np.random.default_rng(8)
    x = rnd(rng, (6, 5, 33), dtype)
    pc.manual_seed(123)
    y_cpu, m_cpu = host(_core.dropout_forward(on(x, "cpu"), 0.3))
    pc.manual_seed(123)
    y_dev, m_dev = host(_core.dropout_forward(on(x, DEV), 0.3))
    np.testing.assert_array_equal(m_dev, m_cpu)
    np.testing.assert_array_equal(y_dev, y_cpu)
    assert 0.5 < (m_cpu != 0).mean() < 0.9
    compare(_core.dropout_backward, rnd(rng, x.shape, dtype), m_cpu, dtype=dtype)


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,affine,running", [((8, 3, 5, 4), True, True), ((16, 5), False, True),
                                                  ((2, 4, 300), True, False), ((3, 2, 2, 2), False, False)])
def test_batchnorm(shape, affine, running, dtype):
    rng = np.random.default_rng(9)
    C = shape[1]
    x = rnd(rng, shape, dtype) * 3 + 1
    gamma = rnd(rng, (C,), dtype) if affine else None
    beta = rnd(rng, (C,), dtype) if affine else None
    rm0 = rnd(rng, (C,), dtype) if running else None
    rv0 = (rng.random(C) + 0.5).astype(dtype) if running else None
    results = {}
    for dev in ("cpu", DEV):
        rm, rv = on(rm0, dev), on(rv0, dev)
        y, mean, invstd = _core.batch_norm_forward_train(on(x, dev), on(gamma, dev), on(beta, dev), rm, rv, 0.1, 1e-5)
        results[dev] = host([y, mean, invstd, rm, rv])
    assert_tree_close(results[DEV], results["cpu"], dtype)
    mean_np, invstd_np = results["cpu"][1], results["cpu"][2]
    dy = rnd(rng, shape, dtype)
    compare(lambda dy, x, g, m, s: _core.batch_norm_backward(dy, x, g, m, s), dy, x, gamma, mean_np, invstd_np,
            dtype=dtype)
    rv_eval = (rng.random(C) + 0.5).astype(dtype)
    compare(lambda x, g, b, m, v: _core.batch_norm_forward_eval(x, g, b, m, v, 1e-5), x, gamma, beta,
            rnd(rng, (C,), dtype), rv_eval, dtype=dtype)


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,dampening,wd,nesterov", [(0.0, 0.0, 0.0, False), (0.9, 0.0, 1e-4, False),
                                                           (0.9, 0.1, 0.0, False), (0.8, 0.0, 0.01, True)])
def test_sgd(momentum, dampening, wd, nesterov, dtype):
    rng = np.random.default_rng(10)
    shapes = [(5, 3), (7,), (2, 3, 4)]
    params0 = [rnd(rng, s, dtype) for s in shapes]
    results = {}
    for dev in ("cpu", DEV):
        params = [on(p.copy(), dev) for p in params0]
        bufs = [on(np.zeros(s, dtype), dev) for s in shapes] if momentum else []
        for step in range(3):
            grads = [on(np.random.default_rng(100 + step).standard_normal(s).astype(dtype), dev) for s in shapes]
            _core.sgd_step(params, grads, bufs, 0.1, momentum, dampening, wd, nesterov, step == 0)
        results[dev] = host(params + bufs)
    assert_tree_close(results[DEV], results["cpu"], dtype)


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES + [np.int64])
def test_add_and_in_place(dtype):
    rng = np.random.default_rng(11)
    a = (rng.standard_normal((4, 9)) * 10).astype(dtype)
    b = (rng.standard_normal((4, 9)) * 10).astype(dtype)
    compare(_core.add, a, b, dtype=dtype)
    for alpha in (1.0, -2.0):
        res = {}
        for dev in ("cpu", DEV):
            d = on(a.copy(), dev)
            _core.add_(d, on(b, dev), alpha)
            res[dev] = host(d)
        assert_tree_close(res[DEV], res["cpu"], dtype)
    if dtype != np.int64:
        res = {}
        for dev in ("cpu", DEV):
            d = on(a.copy(), dev)
            _core.scale_(d, 0.3)
            res[dev] = host(d)
        assert_tree_close(res[DEV], res["cpu"], dtype)


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES + [np.int64])
def test_concat_split(dtype):
    rng = np.random.default_rng(12)
    parts = [(rng.standard_normal((2, n, 3)) * 10).astype(dtype) for n in (1, 4, 2)]
    for dim in (1, -2):
        compare(lambda *ts: _core.concat(list(ts), dim), *parts, dtype=dtype)
    same = [(rng.standard_normal((2, 3, 4)) * 10).astype(dtype) for _ in range(3)]
    for dim in (0, 2, -1):
        compare(lambda *ts: _core.concat(list(ts), dim), *same, dtype=dtype)
    x = np.concatenate(parts, axis=1)
    compare(lambda x: _core.split(x, [1, 4, 2], 1), x, dtype=dtype)
    compare(lambda x: _core.split(x, [0, 3], 2), x, dtype=dtype)


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 1000, 300_007])
def test_sum_all(n, dtype):
    x = np.random.default_rng(13).standard_normal(n).astype(dtype)
    compare(_core.sum_all, x, dtype=dtype)


@cuda_test
@pytest.mark.parametrize("dtype", DTYPES)
def test_count_correct_and_isfinite(dtype):
    rng = np.random.default_rng(14)
    logits = rnd(rng, (50, 7), dtype)
    labels = logits.argmax(1).astype(np.int64)
    labels[::3] = (labels[::3] + 1) % 7
    logits[5, 2] = np.nan
    out = compare(_core.count_correct, logits, labels, dtype=dtype)
    assert out.dtype == np.int64
    clean = rnd(rng, (1000, 3), dtype)
    assert _core.isfinite_all(on(clean, DEV)) is True
    for bad in (np.nan, np.inf, -np.inf):
        d = clean.copy()
        d[999, 2] = bad
        assert _core.isfinite_all(on(d, DEV)) is False


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
