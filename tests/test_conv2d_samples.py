"""conv2d's input gradient with samples in the vector lanes (csrc/ops/conv2d_samples.*): layers with
few taps per output channel (C/groups*kh*kw <= 256), 6 to 64 output channels per group, a batch
that fills at least three quarters of its groups of 16 samples, and at most 0.8 of the gather form's
products useful (L*sh*sw <= 0.8*H*W: LeNet's 6->16 5x5 and other unpadded layers). Checked against
the float64 NumPy reference (partial groups, strides, dilation, groups, uneven padding), float64
gradcheck, bit-for-bit repeatability at 1 and 2 threads, inf/NaN propagation and PyTorch."""
import numpy as np
import pytest

from pycnn import _core

import reference as ref
from helpers import T, conv_gradcheck, masks_and_values_agree, same_bits_across_threads

RNG = np.random.default_rng(17)
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def dx_of(dy, x, w, g, dtype):
    dx, _, _ = _core.conv2d_backward(T(dy, dtype), T(x, dtype), T(w, dtype), *g, True, False, False)
    return np.asarray(dx)


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
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,geom", CASES)
def test_input_grad_matches_float64_reference(shape, geom, dtype):
    N, C, O, H, W, kh, kw = shape
    st, pad, dil, groups = geom
    x, w = RNG.standard_normal((N, C, H, W)), RNG.standard_normal((O, C // groups, kh, kw))
    y = ref.conv2d(x, w, None, stride=st, padding=pad, dilation=dil, groups=groups)
    L = y.shape[2] * y.shape[3]
    assert 5 * L * st[0] * st[1] <= 4 * H * W, "the case must take the path"
    dy = RNG.standard_normal(y.shape)
    want = ref.conv2d_backward(dy, x, w, stride=st, padding=pad, dilation=dil, groups=groups)[0]
    got = dx_of(dy, x, w, geom, dtype)
    assert got.shape == want.shape
    assert rel(got, want) < TOL[dtype], f"dx: {rel(got, want):.3g} for {shape} {geom} {dtype.__name__}"


def test_gradcheck_float64():
    g = ((1, 2), (0, 1, 0, 0), (1, 1), 1)
    assert conv_gradcheck(RNG.standard_normal((12, 2, 9, 10)), RNG.standard_normal((6, 2, 3, 3)) * 0.3, g)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_bits_across_calls_and_thread_counts(dtype):
    x, w = RNG.standard_normal((40, 6, 14, 14)), RNG.standard_normal((16, 6, 5, 5))
    dy = RNG.standard_normal((40, 16, 10, 10))
    g = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    same_bits_across_threads(lambda: (dx_of(dy, x, w, g, dtype),))


@pytest.mark.parametrize("where", ["w", "dy"])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_non_finite_values_give_what_the_reference_gives(where, value):
    """Every product is one of col2im's (no padding zero, no empty lane is ever stored): an inf
    gives the reference's inf, NaN and finite elements."""
    x, w = RNG.standard_normal((13, 6, 14, 14)), RNG.standard_normal((16, 6, 5, 5))
    dy = RNG.standard_normal((13, 16, 10, 10))
    a = {"w": w, "dy": dy}[where]
    a[0, 1, 2, 1] = value
    a[1, 2, 0, 4] = value  # at dy's corner / the kernel's edge
    g = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    want = ref.conv2d_backward(dy, x, w)[0]
    for dtype in (np.float32, np.float64):
        masks_and_values_agree(dx_of(dy, x, w, g, dtype), want)


def test_torch_parity_float32():
    torch = pytest.importorskip("torch")
    for (N, C, O, H, k, s) in [(32, 6, 16, 14, 5, 1), (16, 1, 6, 32, 5, 1), (16, 6, 16, 28, 5, 2)]:
        x = RNG.standard_normal((N, C, H, H)).astype(np.float32)
        w = (RNG.standard_normal((O, C, k, k)) / k).astype(np.float32)
        tx, tw = (torch.tensor(a, requires_grad=True) for a in (x, w))
        ty = torch.nn.functional.conv2d(tx, tw, stride=s)
        dy = RNG.standard_normal(ty.shape).astype(np.float32)
        ty.backward(torch.from_numpy(dy))
        got = dx_of(dy, x, w, ((s, s), (0, 0, 0, 0), (1, 1), 1), np.float32)
        assert rel(got, tx.grad.double().numpy()) < 2e-5
