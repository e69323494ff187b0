"""Issue 12.5: a float64 input fed to a float32 model gets the likely fix first (convert the input)."""
import numpy as np
import pytest

import pycnn as pc
from pycnn import nn


@pytest.mark.parametrize("layer,shape", [(lambda: nn.Conv2d(1, 2, 3), (2, 1, 5, 5)), (lambda: nn.Linear(4, 3), (2, 4)),
                                         (lambda: nn.BatchNorm2d(3), (2, 3, 2, 2)),
                                         (lambda: nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (2, 1, 2, 2))])
def test_float64_input_hint_names_converting_the_input_first(layer, shape):
    m = layer()
    x = np.random.default_rng(0).normal(size=shape)  # NumPy's default float64
    with pytest.raises(TypeError) as e:
        m(pc.from_numpy(x))
    msg = str(e.value)
    assert "is float64 but" in msg and "is float32" in msg
    fix = msg.split("; ", 1)[1]
    assert fix.startswith("convert the input: x.to(pycnn.float32) (a NumPy array: x.astype(np.float32))"), msg
    assert "or the model with model.to(pycnn.float64)" in fix
    # the first fix works
    assert m(pc.from_numpy(x.astype(np.float32))).dtype == pc.float32
