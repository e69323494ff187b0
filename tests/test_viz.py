"""pc.viz: saliency (vs finite differences), activations, top-activating patches, plots."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn
from pycnn import viz


def _tiny(dtype=None):
    pc.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 3),
                      nn.Tanh(), nn.Flatten(), nn.Linear(4 * 2 * 2, 5))
    return m.double() if dtype == "float64" else m


def _logits(model, x):
    return np.asarray(model(pc.from_numpy(np.ascontiguousarray(x))).numpy())


def test_saliency_matches_finite_differences():
    model = _tiny("float64")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 8, 8))
    target = np.array([1, 4])
    sal = viz.saliency(model, x, target)
    assert sal.shape == (2, 8, 8)

    model.eval()
    h = 1e-6
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        n = idx[0]
        grad[idx] = (_logits(model, xp)[n, target[n]] - _logits(model, xm)[n, target[n]]) / (2 * h)
    expected = np.abs(grad).max(axis=1)
    np.testing.assert_allclose(sal, expected, rtol=1e-5, atol=1e-7)


def test_saliency_leaves_model_state_alone():
    model = _tiny()
    model.train()
    for p in list(model.parameters())[:2]:
        p.requires_grad = False
    flags = [p.requires_grad for p in model.parameters()]
    x = pc.randn(3, 2, 8, 8)
    sal = viz.saliency(model, x, 2)  # one class for every image
    assert sal.shape == (3, 8, 8) and sal.dtype == np.float32
    assert np.all(sal >= 0)
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    # the same as a per-image target list
    np.testing.assert_array_equal(sal, viz.saliency(model, x, [2, 2, 2]))
    with pytest.raises(ValueError, match="target"):
        viz.saliency(model, x, 5)
    with pytest.raises(ValueError):
        viz.saliency(model, np.zeros((2, 8, 8), np.float32), 0)


def test_saliency_definition_on_a_linear_model():
    # logits = W x + b: the gradient of logit t is W[t], so saliency = max_c |W[t, c, h, w]|
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    w = np.asarray(model[1].weight.numpy()).reshape(2, 3, 4, 4)
    sal = viz.saliency(model, np.ones((1, 3, 4, 4), np.float32), 1)
    np.testing.assert_allclose(sal[0], np.abs(w[1]).max(axis=0), rtol=1e-6)


def test_activations():
    model = _tiny()
    x = pc.randn(2, 2, 8, 8)
    a = viz.activations(model, "2", x)
    assert a.shape == (2, 3, 4, 4)
    b = viz.activations(model, model[2], x)
    np.testing.assert_array_equal(a, b)
    assert viz.activations(model, 0, x).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="not found"):
        viz.activations(model, "nope", x)


def test_top_activating_patches_finds_the_bright_spots():
    # one 3x3 "blob detector": the strongest responses are where the dataset has bright squares
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    w = np.zeros((2, 1, 3, 3), np.float32)
    w[0] = 1.0
    w[1] = -1.0
    conv.weight.data = w
    model = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 0.1, size=(20, 1, 8, 8)).astype(np.float32)
    spots = {3: (2, 5, 5.0), 11: (4, 1, 4.0), 17: (6, 6, 3.0)}  # index: (row, col, brightness)
    for i, (r, c, v) in spots.items():
        data[i, 0, r - 1:r + 2, c - 1:c + 2] = v

    patches, acts, locs = viz.top_activating_patches(model, "0", 0, data, k=3, batch_size=7,
                                                     return_indices=True)
    assert patches.shape == (3, 1, 3, 3)  # conv 3x3: receptive field 3
    assert list(locs[:, 0]) == [3, 11, 17]
    assert [tuple(l[1:]) for l in locs] == [(2, 5), (4, 1), (6, 6)]
    assert np.all(np.diff(acts) <= 0)
    np.testing.assert_allclose(acts[0], 9 * 5.0, rtol=1e-5)
    np.testing.assert_allclose(patches[0, 0], np.full((3, 3), 5.0))
    # the activation values are the layer's own outputs
    a = viz.activations(model, "0", data)
    np.testing.assert_allclose(acts, [a[i, 0].max() for i in (3, 11, 17)], rtol=1e-6)

    # after the pool the field is 4x4 with jump 2; dataset given as (x, y) and k default 9
    patches2, acts2 = viz.top_activating_patches(model, model[2], 0, (data, np.zeros(20, np.int64)))
    assert patches2.shape == (9, 1, 4, 4) and acts2.shape == (9,)
    # a border unit: its field runs past the image and is zero-padded
    edge = np.zeros((1, 1, 8, 8), np.float32)
    edge[0, 0, 0, 0] = 1.0
    p, v, loc = viz.top_activating_patches(model, "0", 0, edge, k=1, return_indices=True)
    assert tuple(loc[0, 1:]) == (0, 0)
    np.testing.assert_array_equal(p[0, 0], [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    # flat layers: the patch is the whole image
    p3, v3 = viz.top_activating_patches(model, "4", 1, data[:5], k=2)
    assert p3.shape == (2, 1, 8, 8)


def test_top_activating_patches_with_a_dataset_object():
    data_mod = pytest.importorskip("pycnn.data")
    if not hasattr(data_mod, "TensorDataset"):
        pytest.skip("pycnn.data.TensorDataset not available")
    model = _tiny()
    x = np.random.default_rng(1).standard_normal((10, 2, 8, 8)).astype(np.float32)
    ds = data_mod.TensorDataset(x, np.zeros(10, np.int64))
    p, v = viz.top_activating_patches(model, "3", 1, ds, k=4)
    ref_p, ref_v = viz.top_activating_patches(model, "3", 1, x, k=4)
    np.testing.assert_allclose(v, ref_v, rtol=1e-6)
    assert p.shape == ref_p.shape == (4, 2, 8, 8)  # conv 3 -> pool 2 -> conv 3: field 8


# ------------------------------------------------------------------------------------------------
# plots
# ------------------------------------------------------------------------------------------------
def _is_png(path):
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    model = _tiny()
    figs = {
        "filters": viz.plot_filters(model),
        "filters_rgb": viz.plot_filters(nn.Conv2d(3, 10, 5), ncols=4),
        "maps": viz.plot_feature_maps(model, "1", pc.randn(2, 2, 8, 8)),
        "history": viz.plot_history({"loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.8, 0.7],
                                     "accuracy": [0.5, 0.7, 0.8], "val_accuracy": [0.4, 0.6, 0.7]}),
        "cm": viz.plot_confusion_matrix(np.array([[5, 1], [2, 7]]), class_names=["cat", "dog"]),
        "cm_norm": viz.plot_confusion_matrix(np.eye(3, dtype=np.int64) * 4, normalize=True),
    }
    import matplotlib.pyplot as plt

    for name, fig in figs.items():
        assert isinstance(fig, matplotlib.figure.Figure), name
        out = tmp_path / f"{name}.png"
        fig.savefig(out)
        plt.close(fig)
        assert _is_png(out), name

    class History:  # a Trainer History-like object
        history = {"loss": [0.3, 0.2]}

    fig, ax = plt.subplots()
    assert viz.plot_history(History(), ax=ax) is fig
    plt.close(fig)
    with pytest.raises(ValueError):
        viz.plot_confusion_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        viz.plot_filters(nn.Sequential(nn.Linear(2, 2)))


def test_plotting_without_matplotlib_says_how_to_install(monkeypatch):
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ImportError, match=r"pip install pycnn\[viz\]"):
        viz.plot_history({"loss": [1.0]})
    # saliency needs no matplotlib
    assert viz.saliency(_tiny(), pc.randn(1, 2, 8, 8), 0).shape == (1, 8, 8)
