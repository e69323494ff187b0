"""conv2d's weight gradient and forward vectorised over output channels (csrc/ops/conv2d_channels.*):
groups 1, kernels larger than 1x1 with at least 64 taps per output channel, at least 16 output
channels (padded to whole vectors by at most a quarter); the weight gradient with output rows of 8
or more, the forward (where neither the direct nor the Winograd path applies: strided, dilated,
wide layers) from batch 2 with 128 or more wide positions per sample and at most 2048 taps; any
stride, padding and dilation. Every case below takes the path. Checked against the float64 NumPy
reference (tile and sample-block tails included), float64 gradcheck, PyTorch, bit-for-bit
repeatability at 1 and 2 threads, and non-finite values (the path multiplies exactly what im2col
multiplies)."""
import numpy as np
import pytest

from pycnn import _core

import reference as ref
from helpers import T, conv_gradcheck, masks_and_values_agree, same_bits_across_threads

RNG = np.random.default_rng(17)
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def weight_grad(x, w, dy, g, dtype):
    return np.asarray(_core.conv2d_backward(T(dy, dtype), T(x, dtype), T(w, dtype), *g, False, True, False)[1])


def forward(x, w, b, g, dtype):
    return np.asarray(_core.conv2d_forward(T(x, dtype), T(w, dtype), None if b is None else T(b, dtype), *g[:3], 1))


def rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-300))


def inputs(shape, geom):
    N, C, O, H, W, kh, kw = shape
    x, w = RNG.standard_normal((N, C, H, W)), RNG.standard_normal((O, C, kh, kw))
    dy = RNG.standard_normal(ref.conv2d(x, w, None, *geom[:3]).shape)
    return x, w, dy


# (N, C, O, H, W, kh, kw), (stride, padding (top, bottom, left, right), dilation, groups)
CASES = [
    ((2, 8, 16, 10, 10, 3, 3), ((1, 1), (1, 1, 1, 1), (1, 1), 1)),    # one vector of channels
    ((3, 8, 48, 9, 12, 3, 3), ((1, 1), (1, 0, 2, 1), (1, 1), 1)),     # 48 channels: tiles of 4, 2, 1 vectors
    ((2, 4, 32, 11, 10, 5, 5), ((1, 1), (2, 2, 2, 2), (1, 1), 1)),    # 100 taps: tap tiles of 6, 3, 1
    ((2, 9, 32, 11, 10, 3, 3), ((1, 1), (1, 1, 1, 1), (1, 1), 1)),    # 81 taps: tap tiles of 6, 3
    ((2, 8, 24, 10, 10, 3, 3), ((1, 1), (1, 1, 1, 1), (1, 1), 1)),    # 24 channels padded to 32
    ((2, 12, 32, 17, 15, 3, 3), ((2, 2), (1, 1, 1, 1), (1, 1), 1)),   # stride 2
    ((2, 8, 16, 19, 30, 3, 5), ((3, 2), (0, 2, 1, 0), (1, 1), 1)),    # unequal strides, 3x5 kernel
    ((2, 12, 16, 16, 18, 3, 3), ((1, 1), (2, 2, 2, 2), (2, 2), 1)),   # dilation
    ((37, 8, 16, 8, 8, 3, 3), ((1, 1), (1, 1, 1, 1), (1, 1), 1)),     # 8x8: blocks of 4 samples, a tail of 1
    ((1, 16, 32, 12, 12, 3, 3), ((1, 1), (1, 1, 1, 1), (1, 1), 1)),   # batch 1
    ((2, 6, 16, 14, 14, 5, 5), ((1, 1), (0, 0, 0, 0), (1, 1), 1)),    # LeNet conv2
    ((3, 3, 64, 23, 23, 7, 7), ((2, 2), (3, 3, 3, 3), (1, 1), 1)),    # a 7x7 stride-2 stem
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,geom", CASES)
def test_matches_float64_reference(shape, geom, dtype):
    x, w, dy = inputs(shape, geom)
    got = weight_grad(x, w, dy, geom, dtype)
    exp = ref.conv2d_backward(dy, x, w, *geom[:3])[1]
    assert got.shape == exp.shape
    assert rel(got, exp) < TOL[dtype], f"{rel(got, exp):.3g} for {shape} {geom} {dtype.__name__}"


def test_gradcheck_float64():
    geom = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert conv_gradcheck(RNG.standard_normal((2, 8, 9, 10)), RNG.standard_normal((16, 8, 3, 3)) * 0.3, geom)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(16, 16, 32, 12, 12, 3, 3), (37, 8, 16, 8, 8, 3, 3)])
def test_bit_for_bit_repeatable_across_calls_and_thread_counts(shape, dtype):
    geom = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    x, w, dy = inputs(shape, geom)
    same_bits_across_threads(lambda: weight_grad(x, w, dy, geom, dtype))


@pytest.mark.parametrize("where", ["x", "dy"])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_non_finite_values_give_what_the_reference_gives(where, value):
    """An inf in dy meets the zero padding as im2col's columns do (NaN in the taps that read it);
    an inf in x reaches every tap that reads it, and nothing else."""
    geom = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    x, w, dy = inputs((2, 8, 16, 10, 10, 3, 3), geom)
    a = {"x": x, "dy": dy}[where]
    a[0, 1, 2, 1] = value
    a[1, 2, 0, 0] = value  # at the padded border
    exp = ref.conv2d_backward(dy, x, w, *geom[:3])[1]
    for dtype in (np.float32, np.float64):
        masks_and_values_agree(weight_grad(x, w, dy, geom, dtype), exp)


def test_torch_parity_float32():
    torch = pytest.importorskip("torch")
    for (N, C, O, H, k, s, p) in [(4, 64, 64, 16, 3, 1, 1), (4, 32, 64, 17, 3, 2, 1), (8, 6, 16, 14, 5, 1, 0)]:
        x = RNG.standard_normal((N, C, H, H)).astype(np.float32)
        w = (RNG.standard_normal((O, C, k, k)) / k).astype(np.float32)
        tx, tw = torch.tensor(x), torch.tensor(w, requires_grad=True)
        ty = torch.nn.functional.conv2d(tx, tw, stride=s, padding=p)
        dy = RNG.standard_normal(ty.shape).astype(np.float32)
        ty.backward(torch.from_numpy(dy))
        got = weight_grad(x, w, dy, ((s, s), (p, p, p, p), (1, 1), 1), np.float32)
        assert rel(got, tw.grad.double().numpy()) < 2e-5


# Forward cases: not the direct path (more than 256 taps or 64 channels) nor Winograd (not 3x3 stride 1).
FWD_CASES = [
    ((2, 32, 48, 31, 31, 3, 3), ((2, 2), (1, 1, 1, 1), (1, 1), 1)),   # stride 2; 48 channels: tiles of 4, 2, 1 vectors
    ((2, 32, 16, 20, 20, 3, 3), ((1, 1), (2, 2, 2, 2), (2, 2), 1)),   # dilation 2
    ((2, 12, 24, 16, 16, 5, 5), ((1, 1), (0, 0, 0, 0), (1, 1), 1)),   # 5x5, 24 channels padded to 32
    ((3, 24, 32, 23, 30, 3, 5), ((2, 1), (0, 2, 1, 0), (1, 1), 1)),   # unequal strides, uneven padding
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,geom", FWD_CASES)
def test_forward_matches_float64_reference(shape, geom, dtype):
    N, C, O, H, W, kh, kw = shape
    x, w, b = RNG.standard_normal((N, C, H, W)), RNG.standard_normal((O, C, kh, kw)), RNG.standard_normal(O)
    for bias in (b, None):
        got, exp = forward(x, w, bias, geom, dtype), ref.conv2d(x, w, bias, *geom[:3])
        assert got.shape == exp.shape
        assert rel(got, exp) < TOL[dtype], f"{rel(got, exp):.3g} for {shape} {geom} {dtype.__name__}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_bit_for_bit_repeatable_across_calls_and_thread_counts(dtype):
    shape, geom = FWD_CASES[0]
    N, C, O, H, W, kh, kw = shape
    x, w, b = RNG.standard_normal((8, C, H, W)), RNG.standard_normal((O, C, kh, kw)), RNG.standard_normal(O)
    same_bits_across_threads(lambda: forward(x, w, b, geom, dtype))


@pytest.mark.parametrize("where", ["x", "w"])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_forward_non_finite_values_give_what_the_reference_gives(where, value):
    """The wide columns the path drops read the next row's values: an inf there must not reach a
    kept output; an inf weight meets the zero padding as in im2col (NaN at the border)."""
    shape, geom = FWD_CASES[1]
    N, C, O, H, W, kh, kw = shape
    x, w, b = RNG.standard_normal((N, C, H, W)), RNG.standard_normal((O, C, kh, kw)), RNG.standard_normal(O)
    a = {"x": x, "w": w}[where]
    a[0, 1, 2, 1] = value
    a[1, 2, 0, 0] = value
    exp = ref.conv2d(x, w, b, *geom[:3])
    for dtype in (np.float32, np.float64):
        masks_and_values_agree(forward(x, w, b, geom, dtype), exp)


def test_forward_torch_parity_float32():
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((4, 64, 32, 32)).astype(np.float32)
    w = (RNG.standard_normal((128, 64, 3, 3)) / 24).astype(np.float32)
    b = RNG.standard_normal(128).astype(np.float32)
    ty = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=2, padding=1)
    got = forward(x, w, b, ((2, 2), (1, 1, 1, 1), (1, 1), 1), np.float32)
    assert rel(got, ty.double().numpy()) < 2e-5


@pytest.mark.parametrize("O", [16, 28])
@pytest.mark.parametrize("pad", [0, 1])
def test_stride2_rows_of_every_width(pad, O):
    """Stride 2 on input rows 6..27 wide (the weight gradient takes the path from 16): the polyphase
    rows' even-column copies (8 at a time, the last 8 overlapping, fewer than 8 one by one, never
    reading past the row), the transposes between channels-last tiles and NCHW (8 x 8 tiles, row and
    column tails) and, in the input gradient (im2col), col2im's even-column adds at every length."""
    geom = ((2, 2), (pad,) * 4, (1, 1), 1)
    for W in range(6, 28):
        x, w, dy = inputs((2, 32, O, 96, W, 3, 3), geom)  # 288 taps, 48 rows: this path (forward from W = 6)
        exp_y, exp_dw = ref.conv2d(x, w, None, *geom[:3]), ref.conv2d_backward(dy, x, w, *geom[:3])[1]
        got_y, got_dw = forward(x, w, None, geom, np.float32), weight_grad(x, w, dy, geom, np.float32)
        got_dx = np.asarray(_core.conv2d_backward(T(dy, np.float32), T(x, np.float32), T(w, np.float32), *geom,
                                                  True, False, False)[0])
        assert rel(got_y, exp_y) < 2e-5, f"forward, W={W}"
        assert rel(got_dw, exp_dw) < 2e-5, f"weight gradient, W={W}"
        assert rel(got_dx, ref.conv2d_backward(dy, x, w, *geom[:3])[0]) < 2e-5, f"input gradient, W={W}"
