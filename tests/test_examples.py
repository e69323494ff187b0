"""The scripts in examples/ run end to end (tiny data: one epoch on 256 digits, a few seconds each).

Each runs as `python examples/<name>.py` in a subprocess, from the repository root, with
PYTHONPATH pointing at the folder that holds the `pycnn` package in use (in place or installed).
"""
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import pycnn as pc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(pc.__file__)))
HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
QUICK = ["--epochs", "1", "--limit", "256"]

pytestmark = pytest.mark.skipif(not os.path.isdir(EXAMPLES), reason="examples/ is not shipped here")


def run_example(name, *args, timeout=120):
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["MPLBACKEND"] = "Agg"
    r = subprocess.run([sys.executable, os.path.join("examples", name), *map(str, args)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{name} exited with {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def accuracies(text, label):
    """Every number that follows `label` in `text`, checked to be a fraction."""
    found = [float(v) for v in re.findall(re.escape(label) + r"\s*([0-9.]+)", text)]
    assert found, f"no {label!r} in:\n{text}"
    assert all(0.0 <= v <= 1.0 for v in found), found
    return found


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_lenet_mnist(tmp_path):
    out = run_example("lenet_mnist.py", *QUICK, "--out", tmp_path)
    assert "data: 224 training, 32 validation, 1000 test digits" in out
    assert "Epoch 1/1" in out and "val_accuracy" in out
    accuracies(out, "test accuracy:")
    assert "same outputs as the trained model: True" in out
    rows = out.split("confusion matrix (rows: true digit, columns: predicted digit):\n")[1].splitlines()[1:11]
    cm = np.array([[int(v) for v in row.split()[1:]] for row in rows])
    assert cm.shape == (10, 10) and cm.sum() == 1000 and (cm.sum(axis=1) == 100).all()
    for name in ("lenet5.safetensors", "best.safetensors"):
        assert (tmp_path / name).is_file()
    model = pc.models.lenet5()
    model.load_state_dict(pc.load(str(tmp_path / "lenet5.safetensors")))


def test_transfer_learning(tmp_path):
    out = run_example("transfer_learning.py", *QUICK, "--transfer-epochs", "2", "--out", tmp_path)
    assert "target task: digits 7-9, 60 training digits" in out
    accuracies(out, "[1] source model, digits 0-6: test accuracy")
    assert "[2] frozen body + new head: 255 of 61,111 parameters trainable" in out
    assert "[2] features = model[:-1](x): (60, 84)" in out
    accuracies(out, "[2] feature extraction, digits 7-9: test accuracy")
    accuracies(out, "digits 7-9: test accuracy")  # fine-tuning and from scratch too
    assert "[3] fine-tuning (earlier layers lr=0.003, head lr=0.03)" in out
    assert "[4] from scratch" in out
    source = pc.models.lenet5(num_classes=7)
    source.load_state_dict(pc.load(str(tmp_path / "lenet5_digits0-6.safetensors")))
    target = pc.models.lenet5(num_classes=3)
    target.load_state_dict(pc.load(str(tmp_path / "lenet5_digits7-9.safetensors")))
    # the fine-tuned body moved away from the source model's (it was trained at lr/10) ...
    assert not np.array_equal(source[0].weight.numpy(), target[0].weight.numpy())


def test_saliency_with_given_weights(tmp_path):
    pc.manual_seed(1)
    weights = tmp_path / "w.safetensors"
    pc.save(pc.models.lenet5(), str(weights))
    out = run_example("saliency.py", "--weights", weights, "--num", "5", "--out", tmp_path)
    assert f"loaded {weights}" in out
    accuracies(out, "test accuracy:")
    assert len(re.findall(r"test digit #\d+: label \d, predicted \d, \d+% of the saliency", out)) == 5
    maps = np.load(tmp_path / "saliency.npy")
    assert maps.shape == (5, 28, 28) and (maps >= 0).all() and maps.max() > 0
    if HAVE_MPL:
        assert is_png(tmp_path / "saliency.png") and is_png(tmp_path / "filters.png")
    else:
        assert "figures skipped" in out


def test_saliency_trains(tmp_path):
    out = run_example("saliency.py", *QUICK, "--out", tmp_path)
    assert "trained LeNet-5 for 1 epoch(s) on 256 digits" in out
    assert len(re.findall(r"test digit #\d+: label \d", out)) == 8
    assert (tmp_path / "lenet5.safetensors").is_file()


def test_augmentation(tmp_path):
    out = run_example("augmentation.py", *QUICK, "--out", tmp_path)
    assert "RandomCrop(size=(28, 28), padding=(2, 2))" in out and "RandomRotation" in out and "GaussianNoise" in out
    assert "Epoch 1/1" in out
    for name in ("with augmentation", "without augmentation"):
        line = next(ln for ln in out.splitlines() if ln.startswith(name))
        clean, hard = (float(v) for v in line.split()[-2:])
        assert 0.0 <= clean <= 1.0 and 0.0 <= hard <= 1.0
    assert (tmp_path / "lenet5_augmented.safetensors").is_file()
    if HAVE_MPL:
        assert is_png(tmp_path / "augmented_batch.png")
