"""The command line: `python -m pycnn train|info` in a subprocess, and `pycnn.cli.main` in process."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import pycnn as pc
from pycnn import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__)))  # installed or src/


def run(*args, timeout=300):
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-m", "pycnn", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_train_one_epoch_quiet_subprocess():
    r = run("train", "--epochs", "1", "--quiet", "--limit", "300")
    assert r.returncode == 0, r.stderr
    assert "test accuracy:" in r.stdout and "/1000)" in r.stdout
    assert "time:" in r.stdout and "1 epoch(s) on 300 digits" in r.stdout
    assert "Epoch 1/1" not in r.stderr  # --quiet: no progress bar
    acc = float(r.stdout.split("test accuracy:")[1].split()[0])
    assert 0.0 <= acc <= 1.0


def test_train_progress_bar_and_save(tmp_path):
    path = tmp_path / "lenet.safetensors"
    r = run("train", "--epochs", "2", "--limit", "640", "--batch-size", "64", "--lr", "0.05", "--threads", "1",
            "--seed", "3", "--save", str(path))
    assert r.returncode == 0, r.stderr
    assert "LeNet-5 (61,706 parameters)" in r.stdout and "1 thread(s)" in r.stdout
    assert "Epoch 1/2" in r.stderr and "Epoch 2/2" in r.stderr and "samples/s" in r.stderr
    assert f"saved weights to {path}" in r.stdout
    from pycnn.models import lenet5

    model = lenet5()
    model.load_state_dict(pc.io.load(str(path)))
    assert model(pc.zeros(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.parametrize("args,message", [
    (["train", "--epochs", "0"], "--epochs must be >= 1"),
    (["train", "--epochs", "two"], "--epochs must be a whole number"),
    (["train", "--lr", "-1"], "--lr must be > 0"),
    (["train", "--lr", "nan"], "--lr must be > 0"),
    (["train", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["train", "--momentum", "-0.5"], "--momentum must be >= 0"),
    (["train", "--device", "tpu"], "device must be 'cpu', 'cuda' or 'cuda:N'"),
    (["train", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["train", "--save", "/no/such/folder/w.safetensors"], "does not exist"),
    (["fly"], "invalid choice"),
    ([], "a command is required"),
])
def test_bad_options_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        code = cli.main(args)
        raise SystemExit(code)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_option_subprocess_exit_2():
    r = run("train", "--epochs", "-3")
    assert r.returncode == 2
    assert "--epochs must be >= 1" in r.stderr and "usage:" in r.stderr
    assert r.stdout == ""


@pytest.mark.skipif(pc.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_unavailable_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--device", "cuda"])
    assert e.value.code == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_info_subprocess():
    r = run("info")
    assert r.returncode == 0, r.stderr
    assert "version" in r.stdout and pc.__version__ in r.stdout
    for key in ("cuda", "blas", "openmp", "num_threads"):
        assert key in r.stdout
    reason = next(x for x in r.stdout.splitlines() if x.startswith("cuda_unavailable_reason"))
    assert reason.split(None, 1)[1] == str(pc.cuda.unavailable_reason())


def test_help_lists_bench_and_bench_help_is_its_own():
    r = run("--help")
    assert r.returncode == 0 and "{train,info,bench}" in r.stdout
    b = run("bench", "--help")
    assert b.returncode == 0, b.stderr
    assert b.stdout.startswith("usage: pycnn bench") and "--quick" in b.stdout and "--json PATH" in b.stdout


def test_main_in_process_and_train_lenet(capsys):
    threads = pc.get_num_threads()
    try:
        assert cli.main(["train", "--epochs", "1", "--limit", "128", "--quiet", "--threads", "1"]) == 0
    finally:
        pc.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "test accuracy:" in out
    assert cli.main(["--version"]) == 0
    assert pc.__version__ in capsys.readouterr().out


def test_cli_runs_are_reproducible():
    threads = pc.get_num_threads()
    pc.set_num_threads(1)
    try:
        a = cli.train_lenet(epochs=1, limit=256, seed=5, verbose=0)
        b = cli.train_lenet(epochs=1, limit=256, seed=5, verbose=0)
    finally:
        pc.set_num_threads(threads)
    assert a["history"].history == b["history"].history
    for (k, v), (_, w) in zip(a["model"].state_dict().items(), b["model"].state_dict().items()):
        np.testing.assert_array_equal(v.numpy(), w.numpy(), err_msg=k)


def test_train_plot_saves_learning_curves(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "curves.png"
    r = run("train", "--epochs", "2", "--quiet", "--limit", "200", "--plot", str(out))
    assert r.returncode == 0, r.stderr
    assert "saved learning curves" in r.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_plot_into_missing_folder_exits_2(tmp_path):
    r = run("train", "--epochs", "1", "--quiet", "--plot", str(tmp_path / "nope" / "c.png"))
    assert r.returncode == 2 and "--plot" in r.stderr


def test_train_twice_with_the_same_seed_writes_identical_files(tmp_path):
    """Issue 10.4: same weights, same file, byte for byte."""
    files = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.safetensors"
        r = run("train", "--epochs", "1", "--quiet", "--limit", "256", "--threads", "1", "--seed", "5",
                "--save", str(path))
        assert r.returncode == 0, r.stderr
        files.append(path.read_bytes())
    assert files[0] == files[1]


def test_train_plot_reports_the_file_it_writes_and_refuses_unknown_types(tmp_path):
    """Issue 12.5: `--plot curves` writes curves.png and says so; `--plot c.xyz` fails before training."""
    pytest.importorskip("matplotlib")
    r = run("train", "--epochs", "1", "--quiet", "--limit", "100", "--plot", str(tmp_path / "curves"))
    assert r.returncode == 0, r.stderr
    assert f"saved learning curves to {tmp_path / 'curves.png'}\n" in r.stdout
    assert os.listdir(tmp_path) == ["curves.png"]
    t0 = time.perf_counter()
    r = run("train", "--epochs", "50", "--plot", str(tmp_path / "c.xyz"))
    assert r.returncode == 2 and "unknown image type '.xyz'" in r.stderr and ".png" in r.stderr
    assert "Epoch 1/50" not in r.stderr and time.perf_counter() - t0 < 60
    assert not (tmp_path / "c.xyz").exists()
