"""conv2d's direct path (csrc/ops/conv2d_direct.*): kernels larger than 1x1 with few taps per
output channel (C/groups*kh*kw <= 256) and at most 64 output channels per group, LeNet's 1->6 and
6->16 5x5 among them; any stride, padding, dilation and groups (the gradients from batch 2 on, the
weight gradient from 96 taps on, or from batch 32 with <= 8 channels per group, in blocks of
samples). Checked against the float64 NumPy reference, float64 gradcheck, PyTorch, bit-for-bit repeatability at 1 and 2 threads, and the fall-back to
im2col when a non-finite value would meet the path's zero padding."""
import numpy as np
import pytest

import pycnn as pc
from pycnn import _core

import reference as ref
from helpers import T, conv_gradcheck, masks_and_values_agree, same_bits_across_threads

RNG = np.random.default_rng(16)
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def conv(x, w, b, dy, g, dtype):
    """(y, dx, dw, db) of pycnn's conv2d for the geometry g, inputs cast to dtype."""
    y = _core.conv2d_forward(T(x, dtype), T(w, dtype), None if b is None else T(b, dtype), *g)
    dx, dw, db = _core.conv2d_backward(T(dy, dtype), T(x, dtype), T(w, dtype), *g, True, True, True)
    return tuple(np.asarray(t) for t in (y, dx, dw, db))


def expected(x, w, b, dy, g):
    st, pad, dil, groups = g
    y = ref.conv2d(x, w, b, stride=st, padding=pad, dilation=dil, groups=groups)
    return (y,) + ref.conv2d_backward(dy, x, w, stride=st, padding=pad, dilation=dil, groups=groups)


def rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-300))


# (N, C, O, H, W, kh, kw), (stride, padding (top, bottom, left, right), dilation, groups)
CASES = [
    ((3, 1, 6, 28, 28, 5, 5), ((1, 1), (2, 2, 2, 2), (1, 1), 1)),    # LeNet conv1
    ((2, 6, 16, 14, 14, 5, 5), ((1, 1), (0, 0, 0, 0), (1, 1), 1)),   # LeNet conv2
    ((1, 6, 16, 14, 14, 5, 5), ((1, 1), (0, 0, 0, 0), (1, 1), 1)),   # batch 1 (forward only)
    ((2, 3, 9, 11, 13, 3, 3), ((1, 1), (1, 0, 2, 1), (1, 1), 1)),    # odd sizes, uneven padding
    ((2, 11, 9, 11, 13, 3, 3), ((1, 1), (1, 0, 2, 1), (1, 1), 1)),   # the same, weight gradient too
    ((2, 12, 5, 17, 15, 3, 3), ((2, 2), (1, 1, 1, 1), (1, 1), 1)),   # stride 2
    ((2, 8, 7, 19, 16, 3, 5), ((3, 2), (0, 2, 1, 0), (1, 1), 1)),    # unequal strides, odd kernel
    ((2, 12, 3, 16, 18, 3, 3), ((1, 1), (2, 2, 2, 2), (2, 2), 1)),   # dilation
    ((2, 12, 4, 20, 20, 3, 3), ((2, 1), (1, 1, 0, 3), (3, 2), 1)),   # stride and dilation together
    ((2, 36, 12, 12, 12, 3, 3), ((1, 1), (1, 1, 1, 1), (1, 1), 3)),  # groups
    ((2, 8, 8, 10, 9, 3, 3), ((2, 2), (1, 1, 1, 1), (1, 1), 8)),     # depthwise, strided
    ((2, 24, 70, 9, 9, 3, 3), ((1, 1), (1, 1, 1, 1), (1, 1), 2)),    # 35 channels per group: tile tails
    ((2, 7, 1, 5, 40, 2, 7), ((1, 3), (0, 0, 3, 3), (1, 1), 1)),     # one output channel, wide and flat
    ((3, 3, 20, 23, 23, 7, 7), ((2, 2), (3, 3, 3, 3), (1, 1), 1)),   # a 7x7 stride-2 stem
    ((37, 1, 6, 28, 28, 5, 5), ((1, 1), (2, 2, 2, 2), (1, 1), 1)),   # LeNet conv1, weight gradient in 5 sample blocks
    ((33, 16, 16, 9, 9, 3, 3), ((1, 1), (1, 1, 1, 1), (1, 1), 16)),  # depthwise weight gradient, uneven blocks
    ((40, 8, 8, 10, 10, 3, 3), ((2, 1), (1, 1, 1, 1), (1, 1), 1)),   # 8 channels, 72 taps, strided
    ((20, 12, 8, 36, 36, 3, 3), ((1, 1), (1, 1, 1, 1), (1, 1), 1)),  # large samples: several passes per block
    ((2, 4, 3, 8, 20, 5, 5), ((1, 1), (0, 0, 0, 0), (1, 1), 1)),     # compact rows, whole vectors (4 x 16 outputs)
    ((3, 5, 7, 9, 31, 3, 3), ((1, 2), (1, 1, 0, 2), (2, 1), 1)),     # compact rows, stride, dilation, 16-wide rows
]
# Most of these forwards run on compact rows (conv2d_direct.h, compact_forward: a tenth fewer computed
# positions than the wide rows), the output written straight into y with a partial last vector per
# channel; the others (1x1-like reach, tiny planes) on wide rows.


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,geom", CASES)
def test_matches_float64_reference(shape, geom, dtype):
    N, C, O, H, W, kh, kw = shape
    groups = geom[3]
    x, w = RNG.standard_normal((N, C, H, W)), RNG.standard_normal((O, C // groups, kh, kw))
    b = RNG.standard_normal(O)
    dy = RNG.standard_normal(ref.conv2d(x, w, None, *geom[:3], groups=groups).shape)
    got = conv(x, w, b, dy, geom, dtype)
    for name, a, e in zip(("y", "dx", "dw", "db"), got, expected(x, w, b, dy, geom)):
        assert a.shape == e.shape, name
        assert rel(a, e) < TOL[dtype], f"{name}: {rel(a, e):.3g} for {shape} {geom} {dtype.__name__}"


def test_without_bias_and_batch_zero():
    x, w = RNG.standard_normal((2, 6, 14, 14)), RNG.standard_normal((16, 6, 5, 5))
    g = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    y = np.asarray(_core.conv2d_forward(T(x), T(w), None, *g))
    assert rel(y, ref.conv2d(x, w)) < 1e-12
    e = np.zeros((0, 6, 14, 14))
    y0 = _core.conv2d_forward(T(e), T(w), None, *g)
    assert tuple(y0.shape) == (0, 16, 10, 10)


@pytest.mark.parametrize("geom", [((1, 1), (2, 2, 2, 2), (1, 1), 1), ((2, 1), (1, 0, 1, 2), (1, 2), 2)])
def test_gradcheck_float64(geom):
    assert conv_gradcheck(RNG.standard_normal((2, 4, 7, 8)), RNG.standard_normal((6, 4 // geom[3], 3, 3)) * 0.3, geom)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,C,O,H,k", [(16, 6, 16, 14, 5), (40, 1, 6, 28, 5)])
def test_bit_for_bit_repeatable_across_calls_and_thread_counts(N, C, O, H, k, dtype):
    x, w, b = RNG.standard_normal((N, C, H, H)), RNG.standard_normal((O, C, k, k)), RNG.standard_normal(O)
    g = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    dy = RNG.standard_normal((N, O, H + 3 - k, H + 3 - k))

    def run():
        y = _core.conv2d_forward(T(x, dtype), T(w, dtype), T(b, dtype), *g)
        return (y, *_core.conv2d_backward(T(dy, dtype), T(x, dtype), T(w, dtype), *g, True, True, True))

    same_bits_across_threads(run)


@pytest.mark.parametrize("where", ["x", "w", "dy"])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_non_finite_values_give_what_the_reference_gives(where, value):
    """Zero padding and the path's dropped columns must not turn an inf into a NaN where the
    plain sum has none: the weight gradient with a non-finite input and the input gradient with
    non-finite weights go through im2col instead."""
    x, w, b = RNG.standard_normal((2, 12, 12, 12)), RNG.standard_normal((5, 12, 3, 3)), RNG.standard_normal(5)
    dy = RNG.standard_normal((2, 5, 12, 12))
    a = {"x": x, "w": w, "dy": dy}[where]
    a[0, 1, 2, 1] = value
    a[1, 2, 0, 0] = value  # at the padded border of x and dy
    g = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    for dtype in (np.float32, np.float64):
        for a, e in zip(conv(x, w, b, dy, g, dtype), expected(x, w, b, dy, g)):
            masks_and_values_agree(a, e)


def test_layer_trains_through_the_path():
    """A Conv2d layer with LeNet's conv2 shape: its forward and backward give the reference."""
    pc.manual_seed(0)
    layer = pc.nn.Conv2d(6, 16, 5)
    x = RNG.standard_normal((4, 6, 14, 14)).astype(np.float32)
    y = layer(T(x))
    w, b = layer.weight.numpy().astype(np.float64), layer.bias.numpy().astype(np.float64)
    assert rel(y.numpy(), ref.conv2d(x, w, b)) < 2e-5
    dy = RNG.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(T(dy))
    edx, edw, edb = ref.conv2d_backward(dy, x, w)
    assert rel(dx.numpy(), edx) < 2e-5
    assert rel(layer.weight.grad.numpy(), edw) < 2e-5 and rel(layer.bias.grad.numpy(), edb) < 2e-5


def test_torch_parity_float32():
    torch = pytest.importorskip("torch")
    for (N, C, O, H, k, s, p) in [(8, 1, 6, 28, 5, 1, 2), (8, 6, 16, 14, 5, 1, 0), (4, 3, 32, 31, 3, 2, 1)]:
        x = RNG.standard_normal((N, C, H, H)).astype(np.float32)
        w = (RNG.standard_normal((O, C, k, k)) / k).astype(np.float32)
        b = RNG.standard_normal(O).astype(np.float32)
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        ty = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p)
        dy = RNG.standard_normal(ty.shape).astype(np.float32)
        ty.backward(torch.from_numpy(dy))
        g = ((s, s), (p, p, p, p), (1, 1), 1)
        y = np.asarray(_core.conv2d_forward(T(x), T(w), T(b), *g))
        grads = _core.conv2d_backward(T(dy), T(x), T(w), *g, True, True, True)
        assert rel(y, ty.detach().double().numpy()) < 2e-5
        for a, t in zip(grads, (tx, tw, tb)):
            assert rel(np.asarray(a), t.grad.double().numpy()) < 2e-5
