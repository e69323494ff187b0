"""Helpers shared by the test files: tensors from NumPy (`T`, `T64`), seeded generators (`rng`), and
the device harness that checks every op on each non-CPU device against its CPU kernels.

Device cases: an op's test file takes a `device` parameter over `DEVICES` (one `cuda` case, marked
`cuda`, skipped without a GPU) and calls `compare(fn, *numpy_args, device=device)`. Without a GPU,
`PYCNN_TEST_CUDA_AS=cpu python -m pytest -m cuda` runs every such case with "cpu" standing in for
"cuda" (a self-check of the comparisons themselves; tests that need the real device then skip).

Also the helpers that several test files of one topic share: float64 comparisons of tensors (`N`,
`close`, `away_from_zero`), the Trainer tests' toy problems (`blobs`, `mlp`, `images`, `small_cnn`,
`make_trainer`, `weights`), the configurations both reference test files run (`CONV_CONFIGS`,
`_conv_case`, `POOL_CONFIGS`) and the conv fast paths' shared checks (`conv_gradcheck`,
`same_bits_across_threads`, `masks_and_values_agree`).

tests/ is on sys.path (conftest.py), so a test file imports this module as `helpers`.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn, optim
from pycnn.train import Trainer


def T(a, dtype=None):
    """A pycnn tensor over a C-contiguous `a` (no copy when `a` already is one; 0-d stays 0-d)."""
    a = np.asarray(a, dtype=dtype)
    return pc.from_numpy(a if a.flags.c_contiguous else np.ascontiguousarray(a))


def T64(a):
    """A float64 pycnn tensor holding a copy of `a`."""
    return pc.tensor(np.asarray(a, dtype=np.float64), dtype=pc.float64)


def rng(seed=0):
    return np.random.default_rng(seed)


# ------------------------------------------------------ float64 checks (test_nn_*.py, test_reference.py)
def N(t):
    return np.asarray(t.numpy())


def close(actual, expected, rtol=1e-10, atol=1e-12):
    a = N(actual) if isinstance(actual, (pc.Tensor, nn.Parameter)) else actual
    np.testing.assert_allclose(a, expected, rtol=rtol, atol=atol)


def away_from_zero(a, margin=0.05):
    """Move values off the kinks at 0 so that finite differences are valid."""
    a = np.array(a, dtype=np.float64)
    small = np.abs(a) < margin
    a[small] = np.where(a[small] >= 0, margin, -margin) * 2
    return a


# ----------------------------------------------------------------------- the device harness
DEV = os.environ.get("PYCNN_TEST_CUDA_AS", "cuda")
HAVE_DEV = DEV == "cpu" or pc.cuda.is_available()
REAL_CUDA = DEV != "cpu" and pc.cuda.is_available()

needs_cuda = pytest.mark.skipif(not HAVE_DEV, reason="no CUDA device available")
needs_real_cuda = pytest.mark.skipif(not REAL_CUDA, reason="needs a real CUDA device")

# The devices an op is compared on against its CPU kernels: `@pytest.mark.parametrize("device", DEVICES)`.
DEVICES = [pytest.param(DEV, marks=(pytest.mark.cuda, needs_cuda), id="cuda")]

DTYPES = [np.float32, np.float64]


def cuda_test(f):
    return pytest.mark.cuda(needs_cuda(f))


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


def compare(fn, *args, dtype=np.float64, device=DEV):
    """fn(*args) on the CPU and on `device`; same results within the dtype's tolerance, outputs on `device`."""
    want = fn(*[on(a, "cpu") for a in args])
    got_t = fn(*[on(a, device) for a in args])
    if device != "cpu":
        assert all(d.startswith(device) for d in devices_of(got_t)), devices_of(got_t)
    got = host(got_t)
    assert_tree_close(got, host(want), dtype)
    return got


def rnd(rng, shape, dtype, away_from_zero=False):
    a = rng.standard_normal(shape).astype(dtype)
    if away_from_zero:  # keep off the kinks of relu & co, where CPU and GPU may round to either side
        a[np.abs(a) < 1e-2] = 0.5
    return a


# ------------------------------------------------ toy problems for the Trainer (test_trainer*.py)
def blobs(n=256, seed=0, classes=3):
    """Separable 2-D Gaussian blobs."""
    rng = np.random.default_rng(seed)
    centers = np.array([[3.0, 0.0], [-3.0, 1.0], [0.0, -3.0], [0.5, 3.5]])[:classes]
    y = rng.integers(0, classes, n)
    x = centers[y] + 0.5 * rng.standard_normal((n, 2))
    return x.astype(np.float32), y.astype(np.int64)


def mlp(classes=3):
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, classes))


def images(n=192, seed=0):
    """4 classes of 8x8 images: the bright quadrant is the class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = 0.1 * rng.standard_normal((n, 1, 8, 8))
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, 0, 4 * r:4 * r + 4, 4 * q:4 * q + 4] += 1.0
    return x, y  # float64 on purpose: the trainer converts to the model's float32


def small_cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 4))


def make_trainer(model=None, lr=0.1, momentum=0.9, **kw):
    model = model if model is not None else mlp()
    return Trainer(model, optim.SGD(model.parameters(), lr=lr, momentum=momentum), nn.CrossEntropyLoss(), **kw)


def weights(model):
    return {k: np.array(v.numpy(), copy=True) for k, v in model.state_dict().items()}


# ------------------------------------------ configurations of the reference's tests (test_reference*.py)
# (N, C, H, W, O, kh, kw, stride, padding(t,b,l,r), dilation, groups, bias)
CONV_CONFIGS = [
    (2, 3, 5, 6, 4, 3, 3, (1, 1), (0, 0, 0, 0), (1, 1), 1, True),
    (1, 2, 7, 6, 3, 3, 2, (2, 1), (1, 1, 1, 1), (1, 1), 1, False),
    (2, 4, 6, 7, 6, 3, 3, (1, 2), (1, 0, 2, 1), (1, 1), 2, True),
    (1, 3, 8, 8, 3, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2), 3, True),  # depthwise, dilated
    (2, 4, 7, 5, 2, 2, 3, (2, 2), (0, 1, 1, 0), (2, 1), 2, True),
    (1, 2, 5, 5, 4, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 2, True),  # 1x1
    (1, 1, 6, 6, 1, 3, 3, (3, 3), (0, 2, 0, 2), (1, 1), 1, True),
]


def _conv_case(cfg, seed=0):
    N, C, H, W, O, kh, kw, stride, pad, dil, groups, bias = cfg
    r = rng(seed)
    x = r.normal(size=(N, C, H, W))
    w = r.normal(size=(O, C // groups, kh, kw))
    b = r.normal(size=O) if bias else None
    return x, w, b, stride, pad, dil, groups


POOL_CONFIGS = [  # (H, W, kernel, stride, padding)
    (6, 6, 2, None, 0),
    (7, 5, 3, 2, 1),
    (5, 8, (2, 3), (1, 2), (1, 1)),
    (6, 7, 3, 1, 1),
]


# ------------------------------------------------------ conv fast paths (test_conv2d_direct/_channels/_fast.py)
def conv_gradcheck(x, w, geom):
    """float64 gradcheck of _core's conv2d forward and its (dx, dw) for geom = (stride, padding
    (top, bottom, left, right), dilation, groups)."""
    from pycnn import _core
    from pycnn.testing import gradcheck

    def f(x, w):
        return _core.conv2d_forward(x, w, None, *geom)

    def g(dy, x, w):
        return tuple(_core.conv2d_backward(dy, x, w, *geom, True, True, False)[:2])

    return gradcheck((f, g), [pc.from_numpy(np.asarray(x, np.float64)), pc.from_numpy(np.asarray(w, np.float64))])


def same_bits_across_threads(run):
    """run() (an array or a sequence of arrays) gives the same bits at 1, 2, 2 and 1 threads."""
    old = pc.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 2, 1):
            pc.set_num_threads(n)
            out = run()
            runs.append([np.asarray(a) for a in (out if isinstance(out, (tuple, list)) else (out,))])
    finally:
        pc.set_num_threads(old)
    for r in runs[1:]:
        for a, b in zip(runs[0], r):
            assert a.tobytes() == b.tobytes()


def masks_and_values_agree(got, exp, rtol=1e-5):
    """NaN, +inf and -inf where the float64 reference has them, the finite values close to it."""
    got = np.asarray(got, np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(exp))
    assert np.array_equal(np.isposinf(got), np.isposinf(exp)) and np.array_equal(np.isneginf(got), np.isneginf(exp))
    fin = np.isfinite(exp)
    assert np.allclose(got[fin], exp[fin], rtol=rtol, atol=rtol * max(np.abs(exp[fin]).max(initial=0), 1))
