"""The benchmark suite: the NumPy peer agrees with pycnn, and `python -m benchmarks --quick` works."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pycnn as pc
from pycnn import functional as F

from pycnn.bench import numpy_peer as npp
from pycnn.bench.harness import rel_err

ROOT = Path(__file__).resolve().parents[1]

RTOL = 1e-4
PKG_PARENT = str(Path(pc.__file__).resolve().parents[1])  # the pycnn under test: installed, or src/


def _child_env():
    """A child Python that imports the same pycnn as this process, and the checkout's benchmarks/."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PKG_PARENT, str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def close(a, b, rtol=RTOL):
    e = rel_err(np.asarray(a), np.asarray(b))
    assert e <= rtol, f"max relative error {e:.3g} > {rtol:g}"


@pytest.mark.parametrize("xs,o,k,stride,pad", [
    ((2, 1, 12, 12), 3, 5, 1, 2),            # LeNet conv1-like
    ((2, 3, 9, 9), 4, 5, 1, 0),               # LeNet conv2-like
    ((2, 4, 8, 8), 5, 3, 1, 1),               # 3x3 pad 1
    ((2, 4, 9, 9), 6, 3, 2, 1),               # strided, odd size
    ((1, 2, 7, 6), 3, (3, 2), (2, 1), (1, 0, 2, 1)),  # rectangular kernel, asymmetric padding
])
def test_conv2d_peer_agrees(xs, o, k, stride, pad):
    rng = np.random.default_rng(0)
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal((o, xs[1], kh, kw), dtype=np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    st = (stride, stride) if isinstance(stride, int) else stride
    p4 = (pad,) * 4 if isinstance(pad, int) else pad
    y, cache = npp.conv2d_forward(x, w, b, st, p4)
    yp = F.conv2d(x, w, b, st, p4)
    close(y, yp)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    dx, dw, db = npp.conv2d_backward(dy, cache)
    pdx, pdw, pdb = F.conv2d_backward(dy, x, w, st, p4)
    close(dx, pdx)
    close(dw, pdw)
    close(db, pdb)
    assert dx.shape == x.shape and dx.dtype == np.float32


@pytest.mark.parametrize("xs", [(2, 3, 8, 8), (1, 2, 7, 9)])
def test_max_pool_peer_agrees(xs):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs, dtype=np.float32)
    y, cache = npp.max_pool2x2_forward(x)
    yp, idx = F.max_pool2d(x, 2, 2, 0, return_indices=True)
    close(y, yp)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    close(npp.max_pool2x2_backward(dy, cache), F.max_pool2d_backward(dy, idx, xs))


def test_linear_relu_softmax_ce_peer_agrees():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 7), dtype=np.float32)
    w = rng.standard_normal((4, 7), dtype=np.float32)
    b = rng.standard_normal(4, dtype=np.float32)
    y = npp.linear_forward(x, w, b)
    close(y, F.linear(x, w, b))
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    for a, p in zip(npp.linear_backward(dy, x, w), F.linear_backward(dy, x, w)):
        close(a, p)
    close(npp.relu_forward(x), F.relu(x))
    close(npp.relu_backward(dy, y), F.relu_backward(dy, y))
    labels = rng.integers(0, 4, size=5).astype(np.int64)
    loss, d = npp.softmax_cross_entropy(y, labels)
    close(loss, F.cross_entropy(y, labels).numpy())
    close(d, F.cross_entropy_backward(y, labels))


def test_lenet_step_peer_agrees():
    """One LeNet-5 step from pycnn's initial weights: logits, gradients and updated weights."""
    pc.manual_seed(0)
    model = pc.models.lenet5(num_classes=10)
    params0 = [np.array(p.numpy(), dtype=np.float32, copy=True) for p in model.parameters()]
    assert [p.shape for p in params0] == [tuple(s) for s in npp.LeNet5.SHAPES]
    rng = np.random.default_rng(3)
    x = rng.random((4, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, size=4).astype(np.int64)
    ref = npp.lenet_step_outputs(params0, x, y, lr=0.01, momentum=0.9)

    opt = pc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    crit = pc.nn.CrossEntropyLoss()
    logits = model(pc.from_numpy(x))
    loss = crit(logits, y)
    model.zero_grad()
    model.backward(crit.backward())
    opt.step()
    close(logits, ref["logits"])
    close(loss.numpy(), ref["loss"])
    for p, g, q in zip(model.parameters(), ref["grads"], ref["params"]):
        close(p.grad, g)
        close(p.numpy(), q)


def test_quick_run_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    env = _child_env()
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--cases", "lenet_conv1", "--json", str(out)],
                       cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=180)
    elapsed = time.perf_counter() - t0
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(out.read_text())
    names = [c["name"] for c in report["cases"]]
    assert names == ["lenet_conv1.fwd", "lenet_conv1.fwd+bwd"]
    for c in report["cases"]:
        assert c["ms"]["pycnn"] > 0 and c["ms"]["numpy"] > 0
        assert c["pycnn_gflops"] > 0
        assert c["check_max_rel_err"] and max(c["check_max_rel_err"].values()) <= RTOL
    meta = report["meta"]
    assert meta["threads"] == 2 and meta["precision"].startswith("float32")
    assert meta["pycnn_blas_core"] and "avx512_usable" in meta["cpu"]
    assert report["blas_peak"]["gflops"]["pycnn"] > 0
    assert report["blas_peak"]["fma_peak_gflops"] > report["blas_peak"]["gflops"]["pycnn"] * 0.5
    assert out.with_suffix(".md").read_text().count("lenet_conv1") >= 2
    # < 30 s on an idle machine; a loaded one (oversubscribed OpenMP) is allowed more slack
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    assert elapsed < (30 if load < (os.cpu_count() or 1) else 180), f"took {elapsed:.1f} s (load {load:.1f})"


def test_fit_benchmark_writes_its_ratios(tmp_path):
    """`python -m benchmarks.fit` on a small sample: the report's fields and finite positive
    ratios (the speed itself is the benchmark's business, not the test's)."""
    import math

    out = tmp_path / "fit.json"
    p = subprocess.run([sys.executable, "-m", "benchmarks.fit", "--samples", "640", "--rounds", "1", "--cooldown", "0",
                        "--json", str(out)], cwd=str(ROOT), env=_child_env(), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(out.read_text())
    meta = report["meta"]
    assert meta["threads"] == 2 and meta["precision"].startswith("float32") and meta["cpu"]["model"]
    assert meta["date"] and report["settings"]["samples"] == 640 and report["settings"]["batch"] == 64
    impls = {"fit", "bare"} | ({"torch"} if meta["versions"]["torch"] else set())
    assert set(report["ms_per_epoch"]) == impls
    assert all(v > 0 for v in report["ms_per_epoch"].values())
    assert set(report["ratios"]) >= {"fit/bare"} | ({"fit/torch"} if "torch" in impls else set())
    assert all(math.isfinite(v) and v > 0 for v in report["ratios"].values())
    assert report["fit_overhead"] == pytest.approx(report["ratios"]["fit/bare"] - 1)
    assert report["targets"]["fit/bare"]["max"] == 1.05
    md = out.with_suffix(".md").read_text()
    assert "| pycnn Trainer.fit |" in md and "| fit/bare |" in md


def test_gpu_benchmark_without_gpu_exits_with_a_clear_message():
    if pc.cuda.is_available():
        pytest.skip("a GPU is present: python -m benchmarks.gpu would run the full benchmark")
    env = _child_env()
    p = subprocess.run([sys.executable, "-m", "benchmarks.gpu"], cwd=str(ROOT), env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 3, (p.returncode, p.stderr[-2000:])
    assert "no CUDA GPU available" in p.stderr
    h = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--help"], cwd=str(ROOT), env=env,
                       capture_output=True, text=True, timeout=60)
    assert h.returncode == 0 and "--quick" in h.stdout


def test_fma_peak_probe():
    from pycnn import _core

    assert _core.fma_peak_gflops(iters=20_000, repeats=1) > 0
    with pytest.raises(ValueError, match="iters and repeats must be >= 1"):
        _core.fma_peak_gflops(iters=0)


def test_pycnn_bench_runs_from_any_folder(tmp_path):
    """The suite ships in the package: `python -m pycnn bench` runs where no checkout is (the child
    sees only the pycnn under test), checks agreement, prints the table and writes the report."""
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG_PARENT
    p = subprocess.run([sys.executable, "-m", "pycnn", "bench", "--quick", "--cases", "lenet5_step.b1,maxpool_lenet",
                        "--no-blas-peak", "--json", str(out)], cwd=str(tmp_path), env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "agreement: 2 cases" in p.stderr
    assert "| lenet5_step.b1 |" in p.stdout and "| maxpool_lenet.fwd+bwd |" in p.stdout
    report = json.loads(out.read_text())
    assert [c["name"] for c in report["cases"]] == ["maxpool_lenet.fwd+bwd", "lenet5_step.b1"]
    assert report["meta"]["versions"]["pycnn"] == pc.__version__
    assert all(max(c["check_max_rel_err"].values()) <= RTOL for c in report["cases"])


def test_pycnn_bench_without_json_writes_nothing(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG_PARENT
    p = subprocess.run([sys.executable, "-m", "pycnn", "bench", "--quick", "--cases", "maxpool_lenet", "--no-torch",
                        "--no-blas-peak"], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "| maxpool_lenet.fwd+bwd |" in p.stdout
    assert list(tmp_path.iterdir()) == []


def test_pycnn_bench_rejects_unknown_options():
    from pycnn import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--no-such-option"])
    assert e.value.code == 2
