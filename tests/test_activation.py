"""activation_forward / activation_backward (relu, leaky_relu, elu, sigmoid, tanh, softplus) and
prelu_forward / prelu_backward of pycnn._core on every device against the CPU kernels. The NumPy and
PyTorch checks of the activations run through their layers in tests/test_nn_layers.py,
tests/test_nn_vs_torch.py and tests/test_functional.py."""
from __future__ import annotations

import numpy as np
import pytest

from pycnn import _core

from helpers import DEVICES, DTYPES, compare, rnd


ACTS = [("relu", 0.0), ("leaky_relu", 0.1), ("elu", 1.3), ("sigmoid", 0.0), ("tanh", 0.0), ("softplus", 1.5)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,alpha", ACTS)
def test_activation_on_device(device, kind, alpha, dtype):
    rng = np.random.default_rng(1)
    act = getattr(_core.Act, kind)
    x = rnd(rng, (4, 3, 17), dtype, away_from_zero=True) * 4
    x.flat[:3] = [30.0, -30.0, 15.0]  # softplus threshold, sigmoid tails
    dy = rnd(rng, x.shape, dtype)
    compare(lambda x: _core.activation_forward(x, act, alpha), x, dtype=dtype, device=device)
    compare(lambda dy, x: _core.activation_backward(dy, x, act, alpha), dy, x, dtype=dtype, device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,c", [((5, 4, 3, 3), 4), ((2, 3, 7), 3), ((6, 11), 1), ((3, 2, 1000), 2)])
def test_prelu_on_device(device, shape, c, dtype):
    rng = np.random.default_rng(2)
    x = rnd(rng, shape, dtype, away_from_zero=True)
    w = (rng.random(c) * 0.5).astype(dtype)
    dy = rnd(rng, shape, dtype)
    compare(_core.prelu_forward, x, w, dtype=dtype, device=device)
    compare(_core.prelu_backward, dy, x, w, dtype=dtype, device=device)
