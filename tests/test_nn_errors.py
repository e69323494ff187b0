"""pycnn.nn errors name the layer: bad inputs, bad constructor arguments, loss arguments, backward
before forward."""
from __future__ import annotations

import math

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn


# ----------------------------------------------------------------------------------------------
# errors name the layer
# ----------------------------------------------------------------------------------------------
def test_conv2d_wrong_input_message():
    m = nn.Conv2d(3, 16, 3)
    with pytest.raises(ValueError) as e:
        m(pc.zeros(8, 1, 28, 28))
    msg = str(e.value)
    assert msg.startswith("Conv2d(3, 16, kernel_size=(3, 3)")
    assert "(N, 3, H, W)" in msg and "(8, 1, 28, 28)" in msg


@pytest.mark.parametrize("layer, x, exc, name", [
    (lambda: nn.Conv2d(3, 4, 3), np.zeros((3, 28, 28), np.float32), ValueError, "Conv2d(3, 4"),
    (lambda: nn.Conv2d(1, 4, 5), np.zeros((1, 1, 3, 3), np.float32), ValueError, "Conv2d(1, 4"),
    (lambda: nn.Conv2d(1, 4, 3), np.zeros((1, 1, 5, 5), np.float64), TypeError, "Conv2d(1, 4"),
    (lambda: nn.Conv2d(1, 4, 3), [[1.0]], TypeError, "Conv2d(1, 4"),
    (lambda: nn.Linear(10, 2), np.zeros((4, 9), np.float32), ValueError, "Linear(in_features=10"),
    (lambda: nn.Linear(10, 2), np.zeros((4, 2, 5), np.float32), ValueError, "Linear(in_features=10"),
    (lambda: nn.BatchNorm2d(3), np.zeros((2, 4, 5, 5), np.float32), ValueError, "BatchNorm2d(3"),
    (lambda: nn.BatchNorm2d(3), np.zeros((2, 3), np.float32), ValueError, "BatchNorm2d(3"),
    (lambda: nn.BatchNorm1d(3), np.zeros((1, 3), np.float32), ValueError, "BatchNorm1d(3"),
    (lambda: nn.MaxPool2d(2), np.zeros((3, 8, 8), np.float32), ValueError, "MaxPool2d(kernel_size=2"),
    (lambda: nn.MaxPool2d(5), np.zeros((1, 1, 3, 3), np.float32), ValueError, "MaxPool2d(kernel_size=5"),
    (lambda: nn.AvgPool2d(5), np.zeros((1, 1, 3, 3), np.float32), ValueError, "AvgPool2d(kernel_size=5"),
    (lambda: nn.AdaptiveAvgPool2d(2), np.zeros((4, 4), np.float32), ValueError, "AdaptiveAvgPool2d"),
    (lambda: nn.PReLU(3), np.zeros((2, 4, 5), np.float32), ValueError, "PReLU(num_parameters=3)"),
    (lambda: nn.Softmax(dim=0), np.zeros((2, 4), np.float32), ValueError, "Softmax(dim=0)"),
    (lambda: nn.Flatten(2), np.zeros((2, 4), np.float32), ValueError, "Flatten"),
    (lambda: nn.Residual(nn.Conv2d(1, 2, 1)), np.zeros((1, 1, 3, 3), np.float32), ValueError, "Residual"),
    (lambda: nn.Concat(nn.Conv2d(1, 2, 1), nn.Conv2d(1, 2, 3)), np.zeros((1, 1, 4, 4), np.float32), ValueError,
     "Concat"),
    (lambda: nn.ReLU(), "x", TypeError, "ReLU()"),
])
def test_bad_input_names_the_layer(layer, x, exc, name):
    with pytest.raises(exc) as e:
        layer()(x)
    assert name in str(e.value)


def test_loss_errors():
    ce = nn.CrossEntropyLoss()
    logits = pc.zeros(4, 3)
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\).*\(4,\)"):
        ce(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\)"):
        ce(logits, np.array([0, 1, 2, 3]))  # 3 is out of range
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\)"):
        ce(logits, np.array([0, 1, -1, 2]))
    with pytest.raises(TypeError, match=r"CrossEntropyLoss\(\)"):
        ce(logits, np.array([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\).*\(N, C\)"):
        ce(pc.zeros(4), np.array([0, 1, 2, 1]))
    loss = ce(logits, [0, 1, 2, 1])  # a list of ints works too
    assert loss.shape == () and loss.item() == pytest.approx(math.log(3), rel=1e-6)
    with pytest.raises(ValueError, match=r"MSELoss\(\)"):
        nn.MSELoss()(pc.zeros(2, 3), np.zeros((3, 2), np.float32))
    with pytest.raises(RuntimeError, match=r"MSELoss\(\).*before forward"):
        nn.MSELoss().backward()


@pytest.mark.parametrize("layer", [
    lambda: nn.Conv2d(1, 2, 3), lambda: nn.Linear(2, 3), lambda: nn.MaxPool2d(2), lambda: nn.AvgPool2d(2),
    lambda: nn.AdaptiveAvgPool2d(1), lambda: nn.BatchNorm2d(2), lambda: nn.BatchNorm1d(2), lambda: nn.ReLU(),
    lambda: nn.Tanh(), lambda: nn.PReLU(), lambda: nn.Softmax(), lambda: nn.Flatten(), lambda: nn.Dropout(),
    lambda: nn.CrossEntropyLoss(), lambda: nn.Residual(nn.ReLU()), lambda: nn.Concat(nn.ReLU()),
])
def test_backward_before_forward(layer):
    m = layer()
    with pytest.raises(RuntimeError) as e:
        m.backward(pc.ones(1, 2, 4, 4))
    assert str(e.value).startswith(type(m).__name__ + "(")
    assert "before forward" in str(e.value)


def test_backward_frees_the_cache():
    m = nn.Conv2d(1, 2, 3)
    m(pc.randn(1, 1, 5, 5))
    m.backward(pc.ones(1, 2, 3, 3))
    assert m._cache is None
    with pytest.raises(RuntimeError, match="Conv2d"):
        m.backward(pc.ones(1, 2, 3, 3))


@pytest.mark.parametrize("make, exc, words", [
    (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, ["in_channels", "groups"]),
    (lambda: nn.Conv2d(4, 6, 3, groups=4), ValueError, ["out_channels", "groups"]),
    (lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"), ValueError, ["same"]),
    (lambda: nn.Conv2d(3, 4, 0), ValueError, ["kernel_size"]),
    (lambda: nn.Conv2d(3, 4, 3.0), TypeError, ["kernel_size"]),
    (lambda: nn.Conv2d(3, 4, 3, stride=0), ValueError, ["stride"]),
    (lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, ["padding"]),
    (lambda: nn.Conv2d(3, 4, 3, padding="circular"), ValueError, ["padding"]),
    (lambda: nn.Conv2d(0, 4, 3), ValueError, ["in_channels"]),
    (lambda: nn.Conv2d(3.0, 4, 3), TypeError, ["in_channels"]),
    (lambda: nn.Linear(0, 3), ValueError, ["in_features"]),
    (lambda: nn.Linear(3, "4"), TypeError, ["out_features"]),
    (lambda: nn.MaxPool2d(0), ValueError, ["kernel_size"]),
    (lambda: nn.MaxPool2d(2, padding=2), ValueError, ["padding"]),
    (lambda: nn.AvgPool2d(2, stride=-1), ValueError, ["stride"]),
    (lambda: nn.AdaptiveAvgPool2d(0), ValueError, ["output_size"]),
    (lambda: nn.Dropout(1.5), ValueError, ["Dropout", "between 0 and 1"]),
    (lambda: nn.BatchNorm2d(0), ValueError, ["num_features"]),
    (lambda: nn.BatchNorm2d(3, momentum=2.0), ValueError, ["momentum"]),
    (lambda: nn.PReLU(0), ValueError, ["num_parameters"]),
    (lambda: nn.Softplus(threshold=10), ValueError, ["threshold"]),
    (lambda: nn.CrossEntropyLoss(reduction="none"), ValueError, ["reduction"]),
    (lambda: nn.Residual("block"), TypeError, ["Residual"]),
])
def test_constructor_errors(make, exc, words):
    with pytest.raises(exc) as e:
        make()
    for w in words:
        assert w in str(e.value)
