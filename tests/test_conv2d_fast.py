"""conv2d's Winograd F(2x2, 3x3) path (csrc/ops/conv2d_winograd.*): 3x3, stride 1, groups 1, with
at least 32 channels for the forward, 64 for the input gradient, and 64 in and 96 out (or 64 out
with 1024 output positions) for the weight gradient; the 16 products by the path's own
register-tiled kernel (row and column tails, several chunks of tiles). Checked against the float64
NumPy reference, float64 gradcheck, bit-for-bit repeatability, non-finite values, and the fall-back
shapes."""
import numpy as np
import pytest

import pycnn as pc
from pycnn import _core

import reference as ref
from helpers import conv_gradcheck, masks_and_values_agree, same_bits_across_threads

RNG = np.random.default_rng(15)


def T(a, dtype):
    return pc.from_numpy(np.ascontiguousarray(a, dtype=dtype))


def fwd(x, w, b, pad, dtype):
    return np.asarray(_core.conv2d_forward(T(x, dtype), T(w, dtype), None if b is None else T(b, dtype), (1, 1),
                                           tuple(pad), (1, 1), 1))


def bwd(dy, x, w, pad, dtype):
    out = _core.conv2d_backward(T(dy, dtype), T(x, dtype), T(w, dtype), (1, 1), tuple(pad), (1, 1), 1,
                                True, True, True)
    return tuple(np.asarray(t) for t in out)


def rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-300))


TOL = {np.float32: 1e-5, np.float64: 1e-12}
PADS = [(0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 1, 0), (2, 1, 0, 2), (3, 3, 3, 3)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pad", PADS)
@pytest.mark.parametrize("shape", [(2, 32, 32, 8, 8), (3, 33, 40, 7, 9), (1, 48, 32, 5, 5), (2, 32, 36, 3, 11),
                                   (3, 32, 37, 48, 46)])
def test_forward_matches_float64_reference(shape, pad, dtype):
    N, C, O, H, W = shape
    x, w, b = RNG.standard_normal((N, C, H, W)), RNG.standard_normal((O, C, 3, 3)), RNG.standard_normal(O)
    expect = ref.conv2d(x, w, b, padding=pad)
    assert rel(fwd(x, w, b, pad, dtype), expect) < TOL[dtype]
    assert rel(fwd(x, w, None, pad, dtype), ref.conv2d(x, w, None, padding=pad)) < TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pad", PADS)
@pytest.mark.parametrize("shape", [(2, 128, 128, 5, 7), (1, 130, 128, 6, 6), (2, 128, 129, 3, 4), (2, 64, 64, 9, 10),
                                   (1, 70, 64, 6, 6)])
def test_input_grad_matches_float64_reference(shape, pad, dtype):
    N, C, O, H, W = shape
    x, w = RNG.standard_normal((N, C, H, W)), RNG.standard_normal((O, C, 3, 3))
    OH, OW = H + pad[0] + pad[1] - 2, W + pad[2] + pad[3] - 2
    dy = RNG.standard_normal((N, O, OH, OW))
    edx, edw, edb = ref.conv2d_backward(dy, x, w, padding=pad)
    dx, dw, db = bwd(dy, x, w, pad, dtype)
    assert rel(dx, edx) < TOL[dtype]
    assert rel(dw, edw) < TOL[dtype]
    assert rel(db, edb) < TOL[dtype]


def weight_grad(dy, x, w, pad, dtype):
    return np.asarray(_core.conv2d_backward(T(dy, dtype), T(x, dtype), T(w, dtype), (1, 1), tuple(pad), (1, 1), 1,
                                            False, True, False)[1])


# Weight-gradient shapes that take the Winograd path: odd output sizes (clipped tiles), output
# channels that are not whole vectors (129, 100: pad lanes), input channels split unevenly between
# threads (130, 97), several chunks of tiles (3 x 96 x 24 x 23), 64 output channels with 32 x 32 outputs.
WGRAD_SHAPES = [(2, 96, 96, 7, 9), (1, 130, 129, 6, 5), (3, 97, 100, 24, 23), (1, 64, 64, 34, 34)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pad", PADS)
@pytest.mark.parametrize("shape", WGRAD_SHAPES)
def test_weight_grad_matches_float64_reference(shape, pad, dtype):
    N, C, O, H, W = shape
    x, w = RNG.standard_normal((N, C, H, W)), RNG.standard_normal((O, C, 3, 3))
    dy = RNG.standard_normal((N, O, H + pad[0] + pad[1] - 2, W + pad[2] + pad[3] - 2))
    assert rel(weight_grad(dy, x, w, pad, dtype), ref.conv2d_backward(dy, x, w, padding=pad)[1]) < TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_grad_same_bits_across_thread_counts(dtype):
    N, C, O, H, W = WGRAD_SHAPES[2]
    x, w, dy = RNG.standard_normal((N, C, H, W)), RNG.standard_normal((O, C, 3, 3)), RNG.standard_normal((N, O, H, W))
    same_bits_across_threads(lambda: weight_grad(dy, x, w, (1, 1, 1, 1), dtype))


@pytest.mark.parametrize("where", ["x", "dy"])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_weight_grad_non_finite_values_give_what_the_reference_gives(where, value):
    """The transforms would carry an inf to other places than im2col's products (inf - inf = NaN
    inside a tile): the path hands such a call to the channel path, which gives the reference's."""
    N, C, O, H, W = WGRAD_SHAPES[0]
    x, w, dy = RNG.standard_normal((N, C, H, W)), RNG.standard_normal((O, C, 3, 3)), RNG.standard_normal((N, O, H, W))
    a = {"x": x, "dy": dy}[where]
    a[0, 1, 2, 1] = value
    a[1, 2, 0, 0] = value  # at the padded border
    exp = ref.conv2d_backward(dy, x, w, padding=(1, 1, 1, 1))[1]
    for dtype in (np.float32, np.float64):
        masks_and_values_agree(weight_grad(dy, x, w, (1, 1, 1, 1), dtype), exp)


def test_gradcheck_float64():
    geom = ((1, 1), (1, 0, 1, 1), (1, 1), 1)
    assert conv_gradcheck(RNG.standard_normal((1, 32, 4, 5)), RNG.standard_normal((32, 32, 3, 3)) * 0.1, geom)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bit_for_bit_repeatable_across_calls_and_thread_counts(dtype):
    x, w = RNG.standard_normal((4, 128, 12, 12)), RNG.standard_normal((128, 128, 3, 3))
    dy = RNG.standard_normal((4, 128, 12, 12))
    pad = (1, 1, 1, 1)
    same_bits_across_threads(lambda: (fwd(x, w, None, pad, dtype),) + bwd(dy, x, w, pad, dtype))


@pytest.mark.parametrize("kw", [dict(stride=(2, 2)), dict(dilation=(2, 2)), dict(groups=2)])
def test_unsupported_shapes_fall_back_and_stay_exact(kw):
    groups = kw.get("groups", 1)
    x, w = RNG.standard_normal((2, 64, 9, 9)), RNG.standard_normal((64, 64 // groups, 3, 3))
    stride, dilation = kw.get("stride", (1, 1)), kw.get("dilation", (1, 1))
    pad = (1, 1, 1, 1)
    y = np.asarray(_core.conv2d_forward(T(x, np.float64), T(w, np.float64), None, stride, pad, dilation, groups))
    assert rel(y, ref.conv2d(x, w, None, stride=stride, padding=pad, dilation=dilation, groups=groups)) < 1e-12


def test_torch_parity_float32():
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((2, 128, 10, 10)).astype(np.float32)
    w = (RNG.standard_normal((128, 128, 3, 3)) / 34).astype(np.float32)
    b = RNG.standard_normal(128).astype(np.float32)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, padding=1)
    dy = RNG.standard_normal(ty.shape).astype(np.float32)
    ty.backward(torch.from_numpy(dy))
    pad = (1, 1, 1, 1)
    assert rel(fwd(x, w, b, pad, np.float32), ty.detach().double().numpy()) < 1e-5
    dx, dw, db = bwd(dy, x, w, pad, np.float32)
    for a, t in ((dx, tx), (dw, tw), (db, tb)):
        assert rel(a, t.grad.double().numpy()) < 1e-5
