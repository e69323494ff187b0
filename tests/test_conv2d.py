"""conv2d / conv2d_backward / im2col bindings of pycnn._core against the NumPy reference
(tests/reference.py), numerical gradients and PyTorch."""
import threading

import numpy as np
import pytest

import pycnn as pc
from pycnn import _core

from helpers import DEVICES, DTYPES, compare, on, rnd
import reference as ref


# ------------------------------------------------------------------------------------ helpers
def T(a, dtype=np.float64):
    return pc.from_numpy(np.ascontiguousarray(a, dtype=dtype))


def conv(x, w, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1, dtype=np.float64):
    y = _core.conv2d_forward(T(x, dtype), T(w, dtype), None if b is None else T(b, dtype), tuple(stride),
                             tuple(padding), tuple(dilation), groups)
    return np.asarray(y)


def conv_bwd(dy, x, w, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1, dtype=np.float64,
             need=(True, True, True)):
    out = _core.conv2d_backward(T(dy, dtype), T(x, dtype), T(w, dtype), tuple(stride), tuple(padding),
                                tuple(dilation), groups, *need)
    return tuple(None if t is None else np.asarray(t) for t in out)


def assert_close(a, b, rtol=1e-10, atol=None):
    b = np.asarray(b, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    if atol is None:
        atol = rtol * max(1.0, float(np.abs(b).max(initial=0.0)))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def random_config(rng, small=False):
    """A valid random conv: odd sizes, stride 1-3, asymmetric padding, dilation 1-3, groups."""
    kind = rng.choice(["g1", "g1", "g2", "g3", "dw"])
    cg = int(rng.integers(1, 3 if small else 4))
    if kind == "g1":
        groups = 1
    elif kind == "g2":
        groups = 2
    elif kind == "g3":
        groups = 3
    else:  # depthwise: one input channel per group, a multiplier of 1 or 2
        groups, cg = int(rng.integers(2, 5)), 1
    C = cg * groups
    O = groups * int(rng.integers(1, 3 if small else 4))
    kh, kw = (int(v) for v in rng.integers(1, 4 if small else 6, size=2))
    sh, sw = (int(v) for v in rng.integers(1, 4, size=2))
    dh, dw = (int(v) for v in rng.integers(1, 3 if small else 4, size=2))
    pad = tuple(int(v) for v in rng.integers(0, 3, size=4))
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    H = max(1, ekh - pad[0] - pad[1]) + int(rng.integers(0, 4 if small else 9))
    W = max(1, ekw - pad[2] - pad[3]) + int(rng.integers(0, 4 if small else 9))
    N = int(rng.choice([1, 2, 3] if small else [1, 2, 3, 5]))
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((O, cg, kh, kw))
    b = rng.standard_normal(O) if rng.random() < 0.6 else None
    return dict(x=x, w=w, b=b, stride=(sh, sw), padding=pad, dilation=(dh, dw), groups=groups)


def configs(n, seed, small=False):
    rng = np.random.default_rng(seed)
    return [random_config(rng, small) for _ in range(n)]


def geom(c):
    return dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"], groups=c["groups"])


CONFIGS = configs(32, seed=1234)
SMALL = configs(6, seed=99, small=True)
# Hand-picked: pointwise (1x1, skips im2col), several chunks with a remainder, one-sample chunks.
SPECIAL = [
    dict(x=np.random.default_rng(1).standard_normal((4, 6, 5, 7)), w=np.random.default_rng(2).standard_normal((8, 6, 1, 1)),
         b=np.arange(8.0), stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1),
    dict(x=np.random.default_rng(3).standard_normal((3, 6, 5, 4)), w=np.random.default_rng(4).standard_normal((4, 3, 1, 1)),
         b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=2),
    dict(x=np.random.default_rng(5).standard_normal((2, 3, 6, 6)), w=np.random.default_rng(6).standard_normal((4, 3, 1, 1)),
         b=np.ones(4), stride=(2, 2), padding=(1, 0, 0, 1), dilation=(1, 1), groups=1),  # 1x1 but strided/padded
    dict(x=np.random.default_rng(7).standard_normal((12, 2, 32, 30)), w=np.random.default_rng(8).standard_normal((3, 2, 3, 3)),
         b=np.ones(3), stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1),  # chunks of 5: 5+5+2
    dict(x=np.random.default_rng(9).standard_normal((3, 2, 66, 66)), w=np.random.default_rng(10).standard_normal((2, 1, 3, 3)),
         b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=2),  # 64x64 output: one sample a chunk
    # Large batches of small planes: several samples share one GEMM, a last item of one sample,
    # dW partial sums over several blocks.
    dict(x=np.random.default_rng(11).standard_normal((40, 3, 6, 7)), w=np.random.default_rng(12).standard_normal((4, 3, 3, 3)),
         b=np.ones(4), stride=(1, 1), padding=(1, 0, 1, 2), dilation=(1, 1), groups=1),
    dict(x=np.random.default_rng(13).standard_normal((37, 4, 5, 5)), w=np.random.default_rng(14).standard_normal((6, 2, 2, 2)),
         b=None, stride=(2, 2), padding=(0, 1, 1, 0), dilation=(1, 1), groups=2),
    dict(x=np.random.default_rng(15).standard_normal((48, 6, 3, 3)), w=np.random.default_rng(16).standard_normal((4, 6, 1, 1)),
         b=np.arange(4.0), stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1),  # 1x1, large batch of small planes
    dict(x=np.random.default_rng(17).standard_normal((33, 4, 4, 4)), w=np.random.default_rng(18).standard_normal((8, 1, 3, 3)),
         b=np.ones(8), stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=4),  # depthwise x2
]


def ids(cs):
    return [f"x{c['x'].shape}-w{c['w'].shape}-s{c['stride']}-p{c['padding']}-d{c['dilation']}-g{c['groups']}"
            f"{'-b' if c['b'] is not None else ''}" for c in cs]


# ------------------------------------------------------------------------------------ forward
@pytest.mark.parametrize("c", CONFIGS + SPECIAL, ids=ids(CONFIGS + SPECIAL))
def test_forward_matches_reference(c):
    y = conv(c["x"], c["w"], c["b"], **geom(c))
    assert_close(y, ref.conv2d(c["x"], c["w"], c["b"], **geom(c)), rtol=1e-10)


def test_configs_cover_the_space():
    cs = CONFIGS
    assert {c["stride"][0] for c in cs} | {c["stride"][1] for c in cs} >= {1, 2, 3}
    assert {c["dilation"][0] for c in cs} | {c["dilation"][1] for c in cs} >= {1, 2, 3}
    assert any(c["padding"][0] != c["padding"][1] or c["padding"][2] != c["padding"][3] for c in cs)
    assert any(c["groups"] > 1 and c["w"].shape[1] == 1 for c in cs)  # depthwise
    assert any(c["groups"] > 1 and c["w"].shape[1] > 1 for c in cs)
    assert any(c["b"] is None for c in cs) and any(c["b"] is not None for c in cs)
    assert any(c["x"].shape[0] == 1 for c in cs) and any(c["x"].shape[0] > 1 for c in cs)


@pytest.mark.parametrize("c", CONFIGS[:12] + SPECIAL, ids=ids(CONFIGS[:12] + SPECIAL))
def test_float32_close_to_float64(c):
    y32 = conv(c["x"], c["w"], c["b"], dtype=np.float32, **geom(c))
    assert y32.dtype == np.float32
    y64 = conv(c["x"], c["w"], c["b"], **geom(c))
    assert_close(y32, y64, rtol=1e-4)


def test_output_dtype_and_shape():
    x = np.zeros((2, 3, 9, 7), np.float32)
    w = np.zeros((5, 3, 3, 2), np.float32)
    y = _core.conv2d_forward(T(x, np.float32), T(w, np.float32), None, (2, 1), (0, 1, 2, 0), (1, 2), 1)
    assert np.asarray(y).dtype == np.float32
    assert tuple(y.shape) == (2, 5, ref.conv_out_size(9, 3, 2, 0, 1, 1), ref.conv_out_size(7, 2, 1, 2, 0, 2))


def test_empty_batch():
    x = np.zeros((0, 3, 5, 5))
    w = np.ones((4, 3, 3, 3))
    y = conv(x, w, np.ones(4), padding=(1, 1, 1, 1))
    assert y.shape == (0, 4, 5, 5)
    dx, dw, db = conv_bwd(np.zeros((0, 4, 5, 5)), x, w, padding=(1, 1, 1, 1))
    assert dx.shape == (0, 3, 5, 5)
    np.testing.assert_array_equal(dw, 0.0)
    np.testing.assert_array_equal(db, 0.0)


# ------------------------------------------------------------------------------- course examples
def test_blur_kernel_example():
    x = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    k = np.array([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]).reshape(1, 1, 3, 3)
    y = conv(x, k, padding=(1, 1, 1, 1))
    assert y.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(y[0, 0, 0], [24, 40, 52, 45])
    np.testing.assert_array_equal(y[0, 0, 1], [64, 96, 112, 92])
    np.testing.assert_array_equal(y, ref.conv2d(x, k, padding=1))
    y32 = conv(x, k, padding=(1, 1, 1, 1), dtype=np.float32)
    np.testing.assert_array_equal(y32, y)


def test_vertical_edge_detector_example():
    img = np.zeros((1, 1, 6, 6))
    img[..., :3] = 10.0
    k = np.array([[1.0, 0, -1]] * 3).reshape(1, 1, 3, 3)
    y = conv(img, k)
    assert y.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(y[0, 0], np.tile([0.0, 30.0, 30.0, 0.0], (4, 1)))


@pytest.mark.parametrize("s", [1, 2, 3])
@pytest.mark.parametrize("p", [0, 1, 2])
@pytest.mark.parametrize("f", [1, 2, 3, 5])
def test_output_size_formula(s, p, f):
    for n in range(max(1, f - 2 * p), 13):
        x = np.ones((1, 1, n, n + 1))
        w = np.ones((1, 1, f, f))
        y = conv(x, w, stride=(s, s), padding=(p, p, p, p))
        assert y.shape[2] == (n + 2 * p - f) // s + 1
        assert y.shape[3] == (n + 1 + 2 * p - f) // s + 1
        assert y.shape[2] == ref.conv_out_size(n, f, s, p, p)


# ------------------------------------------------------------------------------------ backward
@pytest.mark.parametrize("c", CONFIGS + SPECIAL, ids=ids(CONFIGS + SPECIAL))
def test_backward_matches_reference(c):
    y = ref.conv2d(c["x"], c["w"], c["b"], **geom(c))
    dy = np.random.default_rng(0).standard_normal(y.shape)
    dx, dw, db = conv_bwd(dy, c["x"], c["w"], **geom(c))
    rdx, rdw, rdb = ref.conv2d_backward(dy, c["x"], c["w"], **geom(c))
    assert_close(dx, rdx)
    assert_close(dw, rdw)
    assert_close(db, rdb)


@pytest.mark.parametrize("c", CONFIGS[:8] + SPECIAL, ids=ids(CONFIGS[:8] + SPECIAL))
def test_backward_float32(c):
    y = ref.conv2d(c["x"], c["w"], c["b"], **geom(c))
    dy = np.random.default_rng(0).standard_normal(y.shape)
    got = conv_bwd(dy, c["x"], c["w"], dtype=np.float32, **geom(c))
    want = ref.conv2d_backward(dy, c["x"], c["w"], **geom(c))
    for g, r in zip(got, want):
        assert g.dtype == np.float32
        assert_close(g, r, rtol=1e-4)


@pytest.mark.parametrize("c", SMALL, ids=ids(SMALL))
def test_backward_numeric_grad(c):
    x, w = c["x"], c["w"]
    b = c["b"] if c["b"] is not None else np.zeros(w.shape[0])
    g = geom(c)
    y = conv(x, w, b, **g)
    r = np.random.default_rng(5).standard_normal(y.shape)
    dx, dw, db = conv_bwd(r, x, w, **g)
    assert_close(dx, ref.numeric_grad(lambda v: (conv(v, w, b, **g) * r).sum(), x), rtol=1e-6)
    assert_close(dw, ref.numeric_grad(lambda v: (conv(x, v, b, **g) * r).sum(), w), rtol=1e-6)
    assert_close(db, ref.numeric_grad(lambda v: (conv(x, w, v, **g) * r).sum(), b), rtol=1e-6)


@pytest.mark.parametrize("need", [(a, b_, c) for a in (0, 1) for b_ in (0, 1) for c in (0, 1)])
@pytest.mark.parametrize("c", [CONFIGS[3], SPECIAL[0], SPECIAL[3], SPECIAL[6]],
                         ids=ids([CONFIGS[3], SPECIAL[0], SPECIAL[3], SPECIAL[6]]))
def test_need_flags(c, need):
    need = tuple(bool(v) for v in need)
    y = ref.conv2d(c["x"], c["w"], None, **geom(c))
    dy = np.random.default_rng(1).standard_normal(y.shape)
    full = conv_bwd(dy, c["x"], c["w"], **geom(c))
    part = conv_bwd(dy, c["x"], c["w"], need=need, **geom(c))
    for want, got, asked in zip(full, part, need):
        if asked:
            np.testing.assert_array_equal(got, want)
        else:
            assert got is None


def test_need_flags_default_true():
    c = CONFIGS[0]
    dy = np.ones(ref.conv2d(c["x"], c["w"], None, **geom(c)).shape)
    out = _core.conv2d_backward(T(dy), T(c["x"]), T(c["w"]), c["stride"], c["padding"], c["dilation"], c["groups"])
    assert all(t is not None for t in out)
    out = _core.conv2d_backward(T(dy), T(c["x"]), T(c["w"]), c["stride"], c["padding"], c["dilation"], c["groups"],
                                need_dx=False, need_db=False)
    assert out[0] is None and out[1] is not None and out[2] is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_is_deterministic(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((35, 8, 9, 10))
    w = rng.standard_normal((12, 4, 3, 3))
    g = dict(stride=(1, 2), padding=(1, 2, 0, 1), dilation=(2, 1), groups=2)
    dy = rng.standard_normal(ref.conv2d(x, w, **g).shape)
    first = conv_bwd(dy, x, w, dtype=dtype, **g)
    for _ in range(3):
        again = conv_bwd(dy, x, w, dtype=dtype, **g)
        for a, b in zip(first, again):
            assert a.tobytes() == b.tobytes()
    y1 = conv(x, w, np.ones(12), dtype=dtype, **g)
    y2 = conv(x, w, np.ones(12), dtype=dtype, **g)
    assert y1.tobytes() == y2.tobytes()


@pytest.mark.parametrize("c", [CONFIGS[5], SPECIAL[3], SPECIAL[5], SPECIAL[6]], ids=ids([CONFIGS[5], SPECIAL[3], SPECIAL[5], SPECIAL[6]]))
def test_thread_count_does_not_change_results(c):
    """The schedule (items, dW blocks) depends on the shape only; one thread or two agree."""
    y = ref.conv2d(c["x"], c["w"], None, **geom(c))
    dy = np.random.default_rng(2).standard_normal(y.shape)
    old = pc.get_num_threads()
    try:
        out = {}
        for nt in (1, 2):
            pc.set_num_threads(nt)
            out[nt] = (conv(c["x"], c["w"], c["b"], **geom(c)),) + conv_bwd(dy, c["x"], c["w"], **geom(c))
            again = (conv(c["x"], c["w"], c["b"], **geom(c)),) + conv_bwd(dy, c["x"], c["w"], **geom(c))
            for a, b in zip(out[nt], again):
                assert a.tobytes() == b.tobytes()
    finally:
        pc.set_num_threads(old)
    for a, b in zip(out[1], out[2]):
        assert_close(a, b, rtol=1e-12)


def test_two_python_threads():
    """Each thread has its own workspace: concurrent convolutions of different sizes stay right."""
    jobs = [CONFIGS[i] for i in range(6)] + SPECIAL[3:4] + SPECIAL[5:7]
    want = [ref.conv2d(c["x"], c["w"], c["b"], **geom(c)) for c in jobs]
    errors = []

    def run(order):
        try:
            for _ in range(5):
                for k in order:
                    c = jobs[k]
                    assert_close(conv(c["x"], c["w"], c["b"], **geom(c)), want[k])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(o,))
               for o in (range(len(jobs)), range(len(jobs) - 1, -1, -1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


# -------------------------------------------------------------------------------------- im2col
@pytest.mark.parametrize("c", CONFIGS[:10] + SPECIAL[2:4], ids=ids(CONFIGS[:10] + SPECIAL[2:4]))
def test_im2col_matches_reference(c):
    k = c["w"].shape[2:]
    cols = np.asarray(_core.im2col(T(c["x"]), k, c["stride"], c["padding"], c["dilation"]))
    want = ref.im2col(c["x"], k, c["stride"], c["padding"], c["dilation"])
    assert cols.shape == want.shape
    np.testing.assert_array_equal(cols, want)
    cols32 = np.asarray(_core.im2col(T(c["x"], np.float32), k, c["stride"], c["padding"], c["dilation"]))
    np.testing.assert_array_equal(cols32, want.astype(np.float32))


def test_im2col_layout_is_unfold_order():
    x = np.arange(2 * 2 * 3 * 3, dtype=np.float64).reshape(2, 2, 3, 3)
    cols = np.asarray(_core.im2col(T(x), (2, 2), (1, 1), (0, 0, 0, 0), (1, 1)))
    assert cols.shape == (2, 2 * 2 * 2, 4)
    # row c*kh*kw + i*kw + j, column oh*OW + ow
    for n in range(2):
        for c in range(2):
            for i in range(2):
                for j in range(2):
                    for oh in range(2):
                        for ow in range(2):
                            assert cols[n, c * 4 + i * 2 + j, oh * 2 + ow] == x[n, c, oh + i, ow + j]


def test_im2col_bad_input():
    with pytest.raises(ValueError, match=r"\(3, 4, 4\)"):
        _core.im2col(T(np.ones((3, 4, 4))), (2, 2), (1, 1), (0, 0, 0, 0), (1, 1))
    with pytest.raises(ValueError, match=r"larger than the padded input"):
        _core.im2col(T(np.ones((1, 1, 4, 4))), (5, 5), (1, 1), (0, 0, 0, 0), (1, 1))
    with pytest.raises(ValueError, match=r"stride"):
        _core.im2col(T(np.ones((1, 1, 4, 4))), (2, 2), (0, 1), (0, 0, 0, 0), (1, 1))
    with pytest.raises(TypeError, match=r"int64"):
        _core.im2col(pc.from_numpy(np.ones((1, 1, 4, 4), np.int64)), (2, 2), (1, 1), (0, 0, 0, 0), (1, 1))


# ------------------------------------------------------------------------------ PyTorch parity
@pytest.mark.parametrize("c", CONFIGS[:16] + SPECIAL, ids=ids(CONFIGS[:16] + SPECIAL))
def test_pytorch_parity(c):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = torch.tensor(c["x"], requires_grad=True)
    w = torch.tensor(c["w"], requires_grad=True)
    b = None if c["b"] is None else torch.tensor(c["b"], requires_grad=True)
    t, bo, l, r = c["padding"]
    y = F.conv2d(F.pad(x, (l, r, t, bo)), w, b, stride=c["stride"], dilation=c["dilation"], groups=c["groups"])
    dy = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y.backward(dy)
    ours = conv(c["x"], c["w"], c["b"], **geom(c))
    assert_close(ours, y.detach().numpy())
    dx, dw, db = conv_bwd(dy.numpy(), c["x"], c["w"], **geom(c))
    assert_close(dx, x.grad.numpy())
    assert_close(dw, w.grad.numpy())
    if b is not None:
        assert_close(db, b.grad.numpy())


# ---------------------------------------------------------------------------------- bad inputs
def _fwd(x, w, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    return _core.conv2d_forward(x, w, b, stride, padding, dilation, groups)


X = np.ones((2, 3, 8, 8))
W = np.ones((4, 3, 3, 3))


@pytest.mark.parametrize("case", [
    ("wrong input rank", lambda: _fwd(T(np.ones((3, 8, 8))), T(W)), ValueError, [r"\(3, 8, 8\)", "batch"]),
    ("wrong weight rank", lambda: _fwd(T(X), T(np.ones((4, 3, 3)))), ValueError, [r"\(4, 3, 3\)"]),
    ("channel mismatch", lambda: _fwd(T(X), T(np.ones((8, 4, 3, 3)))), ValueError,
     [r"\(O, C/groups=3, kh, kw\)", r"\(8, 4, 3, 3\)", "3 channels", "groups=1"]),
    ("groups not dividing C", lambda: _fwd(T(X), T(np.ones((4, 1, 3, 3))), groups=2), ValueError,
     ["groups=2", r"\(2, 3, 8, 8\)"]),
    ("groups not dividing O", lambda: _fwd(T(np.ones((2, 4, 8, 8))), T(np.ones((3, 2, 3, 3))), groups=2), ValueError,
     ["groups=2", r"\(3, 2, 3, 3\)"]),
    ("zero groups", lambda: _fwd(T(X), T(W), groups=0), ValueError, ["groups", r"\(2, 3, 8, 8\)"]),
    ("kernel too large", lambda: _fwd(T(np.ones((1, 1, 4, 4))), T(np.ones((1, 1, 5, 5)))), ValueError,
     [r"the 5x5 kernel \(dilated extent 5x5\) is larger than the padded input 4x4 "
      r"\(input 4x4 \+ padding 0\+0, 0\+0\); reduce the kernel or add padding"]),
    ("dilated kernel too large", lambda: _fwd(T(np.ones((1, 1, 6, 6))), T(np.ones((1, 1, 3, 3))), dilation=(3, 1)),
     ValueError, ["dilated extent 7x3", "padded input 6x6"]),
    ("zero stride", lambda: _fwd(T(X), T(W), stride=(0, 1)), ValueError, ["stride", r"\(0, 1\)", r"\(2, 3, 8, 8\)"]),
    ("zero dilation", lambda: _fwd(T(X), T(W), dilation=(1, 0)), ValueError, ["dilation", r"\(4, 3, 3, 3\)"]),
    ("negative padding", lambda: _fwd(T(X), T(W), padding=(0, -1, 0, 0)), ValueError,
     ["padding", r"\(0, -1, 0, 0\)", r"\(2, 3, 8, 8\)"]),
    ("dtype mix", lambda: _fwd(T(X, np.float32), T(W)), TypeError, ["float32", "float64", r"\(2, 3, 8, 8\)",
                                                                     r"\(4, 3, 3, 3\)"]),
    ("bias dtype mix", lambda: _fwd(T(X), T(W), T(np.ones(4), np.float32)), TypeError, ["bias", r"\(4,\)"]),
    ("int64 input", lambda: _fwd(pc.from_numpy(np.ones((2, 3, 8, 8), np.int64)), T(W)), TypeError,
     ["int64", r"\(2, 3, 8, 8\)"]),
    ("bias shape", lambda: _fwd(T(X), T(W), T(np.ones(3))), ValueError, [r"\(4,\)", r"\(3,\)"]),
    ("bias rank", lambda: _fwd(T(X), T(W), T(np.ones((4, 1)))), ValueError, [r"\(4, 1\)"]),
], ids=lambda c: c[0])
def test_bad_input_raises(case):
    _, call, err, patterns = case
    with pytest.raises(err) as info:
        call()
    msg = str(info.value)
    assert msg.startswith("conv2d"), msg
    for p in patterns:
        assert __import__("re").search(p, msg), (p, msg)


def test_bad_grad_output():
    good = np.ones((2, 4, 6, 6))
    with pytest.raises(ValueError) as info:
        conv_bwd(np.ones((2, 4, 5, 5)), X, W)
    msg = str(info.value)
    for s in ["conv2d_backward", "(2, 4, 6, 6)", "(2, 4, 5, 5)", "(2, 3, 8, 8)", "(4, 3, 3, 3)"]:
        assert s in msg, msg
    with pytest.raises(ValueError, match=r"\(2, 4, 36\)"):
        conv_bwd(np.ones((2, 4, 36)), X, W)
    with pytest.raises(TypeError, match="grad_output"):
        _core.conv2d_backward(T(good, np.float32), T(X), T(W), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    # the checks of the forward apply to the backward too
    with pytest.raises(ValueError, match=r"conv2d_backward: .*\(8, 4, 3, 3\)"):
        conv_bwd(good, X, np.ones((8, 4, 3, 3)))
    with pytest.raises(ValueError, match="stride"):
        conv_bwd(good, X, W, stride=(1, 0))


# ------------------------------------------------ every device against the CPU kernels (`cuda`)
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


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", CONV, ids=[f"conv{i}" for i in range(len(CONV))])
def test_conv2d_on_device(device, c, dtype):
    rng = np.random.default_rng(3)
    x = rnd(rng, (c["N"], c["C"], c["H"], c["W"]), dtype)
    w = rnd(rng, (c["O"], c["cg"], *c["k"]), dtype)
    b = rnd(rng, (c["O"],), dtype) if c["bias"] else None
    g = (c["stride"], c["padding"], c["dilation"], c["groups"])
    y = compare(lambda x, w, b: _core.conv2d_forward(x, w, b, *g), x, w, b, dtype=dtype, device=device)
    dy = rnd(rng, y.shape, dtype)
    compare(lambda dy, x, w: _core.conv2d_backward(dy, x, w, *g, True, True, True), dy, x, w,
            dtype=dtype, device=device)
    compare(lambda dy, x, w: _core.conv2d_backward(dy, x, w, *g, True, False, False), dy, x, w,
            dtype=dtype, device=device)
    compare(lambda dy, x, w: _core.conv2d_backward(dy, x, w, *g, False, True, True), dy, x, w,
            dtype=dtype, device=device)
    compare(lambda x: _core.im2col(x, c["k"], c["stride"], c["padding"], c["dilation"]), x, dtype=dtype, device=device)
