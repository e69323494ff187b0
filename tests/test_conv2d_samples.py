"""conv2d with samples in the vector lanes (csrc/ops/conv2d_samples.*), for layers with few taps per
output channel (C/groups*kh*kw <= 256, <= 64 output channels a group) and a batch that fills at
least three quarters of its groups of 16 samples: the forward (8 or more output channels a group,
5x5 or larger kernels or unpadded layers), the input gradient (6 or more output channels a group,
at most 0.8 of the gather form's products useful: L*sh*sw <= 0.8*H*W) and the weight gradient
(<= 1024 output positions). Checked against the float64 NumPy reference (partial groups, strides,
dilation, groups, uneven padding), float64 gradcheck, bit-for-bit repeatability at 1 and 2
threads, inf/NaN propagation and PyTorch."""
import numpy as np
import pytest

import pycnn as pc
from pycnn import _core

import reference as ref
from helpers import T, conv_gradcheck, masks_and_values_agree, same_bits_across_threads

RNG = np.random.default_rng(17)
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def conv(x, w, b, dy, g, dtype):
    """(y, dx, dw) of pycnn's conv2d for the geometry g, inputs cast to dtype."""
    y = _core.conv2d_forward(T(x, dtype), T(w, dtype), T(b, dtype), *g)
    dx, dw, _ = _core.conv2d_backward(T(dy, dtype), T(x, dtype), T(w, dtype), *g, True, True, False)
    return tuple(np.asarray(t) for t in (y, dx, dw))


def rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-300))


# (N, C, O, H, W, kh, kw), (stride, padding (top, bottom, left, right), dilation, groups): every one
# inside the rule above.
CASES = [
    ((64, 6, 16, 14, 14, 5, 5), ((1, 1), (0, 0, 0, 0), (1, 1), 1)),   # LeNet conv2, 4 full groups
    ((13, 6, 16, 14, 14, 5, 5), ((1, 1), (0, 0, 0, 0), (1, 1), 1)),   # one group, 3 empty lanes
    ((45, 1, 6, 32, 32, 5, 5), ((1, 1), (0, 0, 0, 0), (1, 1), 1)),    # 1->6, the last group 13 of 16
    ((16, 5, 7, 13, 11, 3, 5), ((1, 1), (0, 1, 1, 0), (1, 1), 1)),    # odd sizes, uneven padding
    ((16, 6, 16, 28, 27, 5, 5), ((2, 2), (0, 0, 0, 0), (1, 1), 1)),   # stride 2, a clipped last row
    ((14, 4, 9, 17, 16, 3, 5), ((2, 1), (1, 0, 0, 0), (1, 1), 1)),    # unequal strides
    ((16, 8, 8, 20, 20, 3, 3), ((1, 1), (0, 0, 0, 0), (2, 3), 1)),    # dilation
    ((24, 12, 14, 12, 12, 3, 3), ((1, 1), (0, 0, 0, 0), (1, 1), 2)),  # groups: 7 output channels each
    ((16, 4, 70, 9, 9, 3, 3), ((1, 1), (0, 0, 0, 0), (1, 1), 2)),     # 35 channels a group: tile tails
    ((12, 3, 6, 10, 40, 3, 7), ((1, 3), (0, 0, 1, 0), (1, 1), 1)),    # wide and flat, 8 x 12 outputs
    ((16, 16, 16, 16, 16, 3, 3), ((1, 1), (1, 1, 1, 1), (1, 1), 16)),  # depthwise (weight gradient only)
    ((30, 3, 64, 32, 32, 7, 7), ((2, 2), (3, 3, 3, 3), (1, 1), 1)),    # 7x7 stride-2 stem (forward, dw)
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,geom", CASES)
def test_matches_float64_reference(shape, geom, dtype):
    N, C, O, H, W, kh, kw = shape
    st, pad, dil, groups = geom
    x, w, b = RNG.standard_normal((N, C, H, W)), RNG.standard_normal((O, C // groups, kh, kw)), RNG.standard_normal(O)
    y = ref.conv2d(x, w, b, stride=st, padding=pad, dilation=dil, groups=groups)
    assert y.shape[2] * y.shape[3] <= 1024, "the weight gradient must take the path"
    dy = RNG.standard_normal(y.shape)
    dx, dw, _ = ref.conv2d_backward(dy, x, w, stride=st, padding=pad, dilation=dil, groups=groups)
    for name, got, want in zip(("y", "dx", "dw"), conv(x, w, b, dy, geom, dtype), (y, dx, dw)):
        assert got.shape == want.shape, name
        assert rel(got, want) < TOL[dtype], f"{name}: {rel(got, want):.3g} for {shape} {geom} {dtype.__name__}"


def test_gradcheck_float64():
    g = ((1, 2), (0, 1, 0, 0), (1, 1), 1)
    assert conv_gradcheck(RNG.standard_normal((12, 2, 9, 10)), RNG.standard_normal((8, 2, 3, 3)) * 0.3, g)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_bits_across_calls_and_thread_counts(dtype):
    x, w, b = RNG.standard_normal((40, 6, 14, 14)), RNG.standard_normal((16, 6, 5, 5)), RNG.standard_normal(16)
    dy = RNG.standard_normal((40, 16, 10, 10))
    g = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    same_bits_across_threads(lambda: conv(x, w, b, dy, g, dtype))


@pytest.mark.parametrize("where", ["x", "w", "dy"])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_non_finite_values_give_what_the_reference_gives(where, value):
    """Every product is one of im2col's and col2im's (padding zeros included, lanes past the batch
    zero and never stored): an inf gives the reference's inf, NaN and finite elements."""
    x, w, b = RNG.standard_normal((29, 6, 14, 14)), RNG.standard_normal((16, 6, 5, 5)), RNG.standard_normal(16)
    dy = RNG.standard_normal((29, 16, 12, 12))
    a = {"x": x, "w": w, "dy": dy}[where]
    a[0, 1, 2, 1] = value
    a[14, 2, 0, 4] = value  # at the border / the kernel's edge; sample 14: a lane the second group leaves empty
    g = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    want = (ref.conv2d(x, w, b, padding=1),) + ref.conv2d_backward(dy, x, w, padding=1)[:2]
    old = pc.get_num_threads()
    try:
        for threads, dtype in ((1, np.float32), (2, np.float32), (1, np.float64)):  # 1: both groups on one buffer
            pc.set_num_threads(threads)
            for got, e in zip(conv(x, w, b, dy, g, dtype), want):
                masks_and_values_agree(got, e)
    finally:
        pc.set_num_threads(old)


def test_torch_parity_float32():
    torch = pytest.importorskip("torch")
    for (N, C, O, H, k, s) in [(32, 6, 16, 14, 5, 1), (16, 1, 6, 32, 5, 1), (16, 6, 16, 28, 5, 2)]:
        x = RNG.standard_normal((N, C, H, H)).astype(np.float32)
        w = (RNG.standard_normal((O, C, k, k)) / k).astype(np.float32)
        b = RNG.standard_normal(O).astype(np.float32)
        tx, tw = (torch.tensor(a, requires_grad=True) for a in (x, w))
        ty = torch.nn.functional.conv2d(tx, tw, torch.from_numpy(b), stride=s)
        dy = RNG.standard_normal(ty.shape).astype(np.float32)
        ty.backward(torch.from_numpy(dy))
        y, dx, dw = conv(x, w, b, dy, ((s, s), (0, 0, 0, 0), (1, 1), 1), np.float32)
        for got, want in ((y, ty), (dx, tx.grad), (dw, tw.grad)):
            assert rel(got, want.detach().double().numpy()) < 2e-5
