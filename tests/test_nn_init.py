"""pycnn.nn.init (kaiming / xavier / uniform / normal / constant, calculate_gain against PyTorch) and
the layers' default initialisation (Conv2d, Linear: PyTorch's bounds, reproducible under a seed)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn

from helpers import N


# ----------------------------------------------------------------------------------------------
# nn.init
# ----------------------------------------------------------------------------------------------
def test_init_functions():
    pc.manual_seed(5)
    w = nn.Parameter(pc.zeros(64, 32, 3, 3))
    fan_in, fan_out = 32 * 9, 64 * 9
    assert nn.init.kaiming_uniform_(w, a=0, nonlinearity="relu") is w
    bound = math.sqrt(2) * math.sqrt(3 / fan_in)
    a = N(w)
    assert np.abs(a).max() <= bound * (1 + 1e-6) and abs(a.std() - bound / math.sqrt(3)) < 0.02 * bound
    t = pc.zeros(64, 32, 3, 3, dtype=pc.float64)
    nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu")
    assert abs(N(t).std() - math.sqrt(2 / fan_out)) < 0.02 * math.sqrt(2 / fan_out)
    nn.init.xavier_uniform_(t, gain=2.0)
    xb = 2.0 * math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(N(t)).max() <= xb and np.abs(N(t)).max() > 0.95 * xb
    nn.init.xavier_normal_(t)
    assert abs(N(t).std() - math.sqrt(2 / (fan_in + fan_out))) < 0.03 * math.sqrt(2 / (fan_in + fan_out))
    nn.init.uniform_(t, -2, 3)
    assert N(t).min() >= -2 and N(t).max() <= 3
    nn.init.normal_(t, 1.0, 0.5)
    assert abs(N(t).mean() - 1.0) < 0.02 and abs(N(t).std() - 0.5) < 0.02
    nn.init.constant_(t, 0.25)
    assert (N(t) == 0.25).all()
    nn.init.zeros_(w)
    assert (N(w) == 0).all()
    nn.init.ones_(w)
    assert (N(w) == 1).all()
    pc.manual_seed(9)
    a1 = N(nn.init.kaiming_uniform_(pc.zeros(4, 4))).copy()
    pc.manual_seed(9)
    np.testing.assert_array_equal(N(nn.init.kaiming_uniform_(pc.zeros(4, 4))), a1)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_uniform_(pc.zeros(5))
    with pytest.raises(TypeError):
        nn.init.zeros_(np.zeros(3))
    with pytest.raises(ValueError):
        nn.init.kaiming_uniform_(w, mode="fan_avg")


def test_calculate_gain_matches_torch():
    torch = pytest.importorskip("torch")
    for nl, p in [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                  ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)), ("selu", None)]:
        assert nn.init.calculate_gain(nl, p) == pytest.approx(torch.nn.init.calculate_gain(nl, p))
    with pytest.raises(ValueError):
        nn.init.calculate_gain("swish")


def test_default_init_bounds_and_seed():
    pc.manual_seed(7)
    m = nn.Conv2d(3, 8, 5, groups=1)
    bound = 1 / math.sqrt(3 * 25)
    w, b = N(m.weight), N(m.bias)
    assert w.shape == (8, 3, 5, 5) and b.shape == (8,) and w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.9 * bound and abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound
    pc.manual_seed(7)
    np.testing.assert_array_equal(N(nn.Conv2d(3, 8, 5).weight), w)
    lin = nn.Linear(50, 20)
    assert np.abs(N(lin.weight)).max() <= 1 / math.sqrt(50)
    assert np.abs(N(lin.bias)).max() <= 1 / math.sqrt(50)
    g = nn.Conv2d(4, 8, 3, groups=4)
    assert g.weight.shape == (8, 1, 3, 3)
    assert np.abs(N(g.weight)).max() <= 1 / 3
