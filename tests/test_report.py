"""pc.viz.report: the HTML explainer page (its content, self-containedness and errors), rendered in
headless Chromium when it is installed; `pycnn train --report`."""
from __future__ import annotations

import base64
import html
import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn

from chromium_page import find_chromium, render

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ("prediction", "saliency", "summary", "conv-layers", "top-patches", "history")
try:
    import matplotlib  # noqa: F401
    HAVE_MPL = True
except ImportError:
    HAVE_MPL = False
needs_mpl = pytest.mark.skipif(not HAVE_MPL, reason="viz.report draws with matplotlib: pip install pycnn[viz]")
needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="headless Chromium is not installed (Debian: apt-get install chromium); the page is not rendered")


def _model():
    pc.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 2 * 2, 7))


def _data(n=40):
    rng = np.random.default_rng(0)
    return rng.random((n, 1, 8, 8), dtype=np.float32), rng.integers(0, 7, n)


@pytest.fixture(scope="module")
def trained():
    model = _model()
    x, y = _data()
    trainer = pc.Trainer(model, pc.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss())
    history = trainer.fit(x, y, batch_size=8, epochs=2, verbose=0)
    return model, x, y, history


@pytest.fixture(scope="module")
def page(trained, tmp_path_factory):
    model, x, y, history = trained
    path = str(tmp_path_factory.mktemp("report") / "report.html")
    assert pc.viz.report(model, x[0], path, target=int(y[0]), dataset=(x, y), history=history) == path
    with open(path, encoding="utf-8") as f:
        return path, f.read()


def _logits(model, x):
    model.eval()
    return np.asarray(model(pc.from_numpy(np.ascontiguousarray(x[None]))).numpy(), dtype=np.float64)[0]


@needs_mpl
def test_the_page_has_every_section_and_loads_nothing(page):
    _, text = page
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in text, anchor
    assert "pass dataset=" not in text and "pass history=" not in text
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "<script" not in text.lower() and "<link" not in text.lower() and "@import" not in text
    srcs = re.findall(r'<img src="([^"]*)"', text)
    # input, saliency, filters + maps of both convolutions, top patches, learning curves
    assert len(srcs) == 1 + 1 + 2 * 2 + 1 + 1 == text.count("<img")
    for s in srcs:
        prefix = "data:image/png;base64,"
        assert s.startswith(prefix)
        assert base64.b64decode(s[len(prefix):])[:8] == b"\x89PNG\r\n\x1a\n"


@needs_mpl
def test_top5_are_the_softmax_of_the_logits_and_the_table_is_the_summary(trained, page):
    model, x, y, _ = trained
    _, text = page
    z = _logits(model, x[0])
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    shown = re.findall(r'<tr><td>(\d)(?: \(target\))?</td><td class="num">([^<]+)</td>', text)
    assert [int(c) for c, _ in shown] == list(np.argsort(-p, kind="stable")[:5])
    values = [float(v[:-1]) / 100 if v.endswith("%") else float(v) for _, v in shown]  # "12.34%" or "4.0e-07"
    np.testing.assert_allclose(values, np.sort(p)[::-1][:5], rtol=0.05, atol=5e-5)
    assert f"{int(y[0])} (target)" in text or int(y[0]) not in [int(c) for c, _ in shown]
    s = pc.summary(model, (1, 8, 8))
    for r in s.rows:
        if r.formula:
            assert f"<td>{html.escape(r.formula)}</td>" in text
        if r.mac_formula:
            assert f"<td>{html.escape(r.mac_formula.split(' = ')[0])}</td>" in text
        if r.receptive_field is not None:
            assert f"each output pixel sees {r.receptive_field} input pixels" in text or r.type != "Conv2d"
    assert f"{s.total_params:,} parameters" in text and f"{s.total_mult_adds:,} multiply-adds" in text


@needs_mpl
def test_the_model_is_left_as_it_was(trained, tmp_path):
    model, x, y, _ = trained
    model.train()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    grads = [None if p.grad is None else p.grad.numpy().copy() for p in model.parameters()]
    flags = [p.requires_grad for p in model.parameters()]
    pc.viz.report(model, pc.from_numpy(x[1]), tmp_path / "r.html", dataset=x)  # a Tensor, a PathLike
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
    for p, g, flag in zip(model.parameters(), grads, flags):
        assert p.requires_grad == flag
        assert (p.grad is None) == (g is None) and (g is None or np.array_equal(p.grad.numpy(), g))


@needs_mpl
def test_without_dataset_and_history_the_page_says_how_to_get_them(tmp_path):
    model = _model()
    x, _ = _data(1)
    path = tmp_path / "r.html"
    pc.viz.report(model, x[0:1], path)  # (1, C, H, W) works as well as (C, H, W)
    text = path.read_text(encoding="utf-8")
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in text
    assert "pass dataset=" in text and "pass history=" in text
    assert text.count("<img") == 1 + 1 + 2 * 2


@needs_mpl
def test_text_is_escaped(tmp_path):
    model = _model()
    x, _ = _data(1)
    names = ["<b>zero</b>", "a & b", "\"quoted\"", "<script>alert(1)</script>", "4", "5", "6"]
    path = tmp_path / "r.html"
    pc.viz.report(model, x[0], path, target=3, class_names=names, title="<i>mine</i> & <script>x</script>")
    text = path.read_text(encoding="utf-8")
    assert "<script" not in text and "<b>zero" not in text and "<i>mine" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; (target)" in text
    assert "&lt;i&gt;mine&lt;/i&gt; &amp; &lt;script&gt;x&lt;/script&gt;" in text


@needs_mpl
def test_a_target_the_model_does_not_predict_is_explained_and_flagged(trained, tmp_path):
    model, x, _, _ = trained
    z = _logits(model, x[2])
    pred, other = int(np.argmax(z)), int(np.argmin(z))
    path = tmp_path / "r.html"
    pc.viz.report(model, x[2], path, target=other)
    text = path.read_text(encoding="utf-8")
    assert f"The model predicts {pred}, not the target {other}" in text
    assert f"the score of the target class <b>{other}</b>" in text
    pc.viz.report(model, x[2], path)
    text = path.read_text(encoding="utf-8")
    assert "not the target" not in text and f"the score of the predicted class <b>{pred}</b>" in text


def test_probabilities_are_not_rounded_to_certainty_or_to_zero():
    from pycnn.viz.report import _percent

    assert [_percent(p) for p in (0.5, 0.123456, 1.0, 0.0)] == ["50.00%", "12.35%", "100.00%", "0.00%"]
    assert _percent(1 - 1e-7) == "> 99.99%" and _percent(4e-7) == "4.0e-07"


@pytest.mark.parametrize("x, message", [
    (np.zeros((2, 1, 8, 8), np.float32), r"viz\.report: x must be one image, \(C, H, W\) or \(1, C, H, W\); "
                                         r"got shape \(2, 1, 8, 8\) \(pick one"),
    (np.zeros((8, 8), np.float32), r"viz\.report: x must be one image.*got shape \(8, 8\)"),
    (np.zeros((3, 8, 8), np.float32), r"viz\.report: x has 3 channel\(s\) \(shape \(1, 3, 8, 8\)\) but the "
                                      r"model's first convolution '0' expects 1"),
    (np.zeros((1, 12, 12), np.float32), r"viz\.report: the model cannot run on x of shape \(1, 1, 12, 12\): .*24"),
    (np.full((1, 8, 8), np.nan, np.float32), r"viz\.report: x contains NaN"),
])
def test_bad_inputs_are_named(tmp_path, x, message):
    with pytest.raises(ValueError, match=message):
        pc.viz.report(_model(), x, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_bad_arguments_are_named(tmp_path):
    model, (x, _) = _model(), _data()
    ok = tmp_path / "r.html"
    with pytest.raises(FileNotFoundError, match=r"viz\.report: cannot write .*folder .*nope.* does not exist"):
        pc.viz.report(model, x[0], tmp_path / "nope" / "r.html")
    with pytest.raises(IsADirectoryError, match=r"viz\.report: path .* is a folder"):
        pc.viz.report(model, x[0], tmp_path)
    with pytest.raises(ValueError, match=r"viz\.report: target must be a class in \[0, 7\), got 7"):
        pc.viz.report(model, x[0], ok, target=7)
    with pytest.raises(TypeError, match=r"viz\.report: target must be one class index"):
        pc.viz.report(model, x[0], ok, target=1.5)
    with pytest.raises(ValueError, match=r"viz\.report: 2 class names for a model with 7 outputs"):
        pc.viz.report(model, x[0], ok, class_names=["a", "b"])
    with pytest.raises(TypeError, match=r"viz\.report: history must be the History"):
        pc.viz.report(model, x[0], ok, history=[0.5, 0.4])
    with pytest.raises(ValueError, match=r"viz\.report: dataset images have shape \(1, 9, 9\) but x has \(1, 8, 8\)"):
        pc.viz.report(model, x[0], ok, dataset=(np.zeros((4, 1, 9, 9)), np.zeros(4)))
    with pytest.raises(ValueError, match=r"viz\.report: dataset is empty"):
        pc.viz.report(model, x[0], ok, dataset=x[:0])
    with pytest.raises(ValueError, match=r"viz\.report: the model must return class scores of shape \(1, classes\)"):
        pc.viz.report(model[:3], x[0], ok)
    assert not ok.exists()


@needs_mpl
def test_a_pycnn_dataset_and_its_class_names(tmp_path):
    from pycnn.data import TensorDataset

    model = _model()
    x, y = _data()
    ds = TensorDataset(x, y)
    ds.classes = [f"class-{i}" for i in range(7)]
    path = tmp_path / "r.html"
    pc.viz.report(model, x[0], path, dataset=ds)
    text = path.read_text(encoding="utf-8")
    assert "class-" in text and f"({len(x):,} images searched)" in text


# ------------------------------------------------------------------------------------------------
# in a browser
# ------------------------------------------------------------------------------------------------
@needs_chromium
def test_the_browser_check_sees_broken_images_and_console_errors(tmp_path):
    """The check below can fail: a page with a broken image and a console error is caught."""
    good = base64.b64encode(_png_bytes()).decode()
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><title>t</title></head><body>'
                   f'<img src="data:image/png;base64,{good}"><img src="data:image/png;base64,AAAA">'
                   '<script>console.error("boom")</script></body></html>', encoding="utf-8")
    out = render(str(bad))
    assert [i["width"] > 0 for i in out["images"]] == [True, False]
    assert any("boom" in e for e in out["errors"]), out["errors"]


@needs_mpl
@needs_chromium
def test_the_page_renders_in_chromium_with_every_image(page, tmp_path):
    path, text = page
    out = render(path, width=1000, height=800)
    assert out["errors"] == []
    assert len(out["images"]) == text.count("<img") == 8
    for im in out["images"]:
        assert im["complete"] and im["width"] > 0 and im["height"] > 0, im
    assert out["title"].startswith("Sequential")
    from matplotlib.image import imread

    shot = imread(io.BytesIO(out["png"]), format="png")
    assert shot.shape[:2] == (800, 1000) and shot[..., :3].std() > 0.05  # a page, not a blank screen
    (tmp_path / "shot.png").write_bytes(out["png"])


def _png_bytes():
    """A valid 2x2 grey PNG, made without matplotlib."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([0, 255]) for _ in range(2))  # filter byte 0, then the pixels
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# ------------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------------
def _cli(*args):
    # the package under test (the in-place build or the installed one), never a src/ without _core
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(pc.__file__)))
    env = dict(os.environ, PYTHONPATH=pkg_parent + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "pycnn", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_cli_refuses_a_report_name_that_is_not_html_before_training(tmp_path):
    r = _cli("train", "--epochs", "50", "--report", str(tmp_path / "report.png"))
    assert r.returncode == 2 and "--report" in r.stderr and ".html" in r.stderr, r.stderr
    assert "Epoch 1/50" not in r.stderr and os.listdir(tmp_path) == []
    r = _cli("train", "--epochs", "50", "--report", str(tmp_path / "nope" / "report.html"))
    assert r.returncode == 2 and "does not exist" in r.stderr


@needs_mpl
def test_cli_train_writes_the_report(tmp_path):
    out = tmp_path / "demo.html"
    r = _cli("train", "--epochs", "1", "--limit", "200", "--quiet", "--report", str(out))
    assert r.returncode == 0, r.stderr
    assert f"wrote the model's explainer page to {out}" in r.stdout
    text = out.read_text(encoding="utf-8")
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in text
    assert "LeNet-5 on one MNIST test digit" in text and "pass dataset=" not in text
