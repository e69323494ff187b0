"""What the compiled wheel promises: one version string, CUDA's unavailability explained in one call,
cuBLAS asked for at build time only when CUDA is built (backend/pycnn_build.py)."""
from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import re
import stat
import sys
from pathlib import Path

import pytest

import pycnn as pc

ROOT = Path(__file__).resolve().parents[1]
REASONS = ("no NVIDIA driver", "driver too old for the CUDA ", "no GPU", "cuBLAS not found: pip install 'pycnn[cuda]'")


def _driver_loadable() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------- version
def test_one_version_string():
    """The build reads its version from src/pycnn/__init__.py (scikit-build-core's regex provider),
    so pyproject.toml holds none of its own, and an installed pycnn's metadata says pc.__version__."""
    pyproject, init = ROOT / "pyproject.toml", ROOT / "src" / "pycnn" / "__init__.py"
    if not (pyproject.exists() and init.exists()):
        pytest.skip("run outside the checkout: no pyproject.toml and src/")
    text = pyproject.read_text()
    assert re.search(r'^dynamic = \["version"\]', text, re.M)
    assert not re.search(r'^version = "', text, re.M)
    assert re.findall(r'^__version__ = "([^"]+)"', init.read_text(), re.M) == [pc.__version__]
    dist_files = importlib.metadata.files("pycnn") if _installed_here() else None
    if dist_files is not None:
        assert importlib.metadata.version("pycnn") == pc.__version__


def _installed_here() -> bool:
    """Whether the imported pycnn is the installed distribution (not the checkout's src/)."""
    try:
        dist = importlib.metadata.distribution("pycnn")
    except importlib.metadata.PackageNotFoundError:
        return False
    return Path(dist.locate_file("pycnn")).resolve() == Path(pc.__file__).resolve().parent


def test_build_info_version_and_cli(capsys):
    from pycnn import cli

    assert pc.build_info()["version"] == pc.__version__
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pycnn {pc.__version__}"


# ------------------------------------------------------------------------------ CUDA availability
def test_unavailable_reason_names_the_cause():
    info = pc.build_info()
    reason = pc.cuda.unavailable_reason()
    assert info["cuda_unavailable_reason"] == reason
    if pc.cuda.is_available():
        assert reason is None
        return
    assert isinstance(reason, str) and reason
    if not info["cuda"]:
        assert reason == "this build of pycnn was compiled without CUDA"
    else:
        assert reason.startswith(REASONS), reason
        if not _driver_loadable():
            assert reason.startswith("no NVIDIA driver"), reason
        assert info["cublas"] is None  # no GPU: cuBLAS was never loaded


def test_cuda_tensor_request_raises_with_the_reason():
    if pc.cuda.is_available():
        pytest.skip("a usable GPU is present")
    reason = pc.cuda.unavailable_reason()
    with pytest.raises(RuntimeError) as e:
        pc.zeros(2, device="cuda")
    if pc.build_info()["cuda"]:
        assert reason in str(e.value)
    else:
        assert "this pycnn build has no CUDA backend" in str(e.value)


def test_cuda_build_searches_the_cublas_wheel_first():
    from pycnn import _core, _core_loader

    paths = _core_loader._cublas_paths()
    if not pc.build_info()["cuda"]:
        assert paths == [] and _core.cublas_soname() == ""
        return
    soname = _core.cublas_soname()
    assert re.fullmatch(r"libcublas\.so\.\d+", soname)
    assert soname in paths  # the dynamic loader's own search, after the wheel
    wheel = [p for p in paths if os.sep in p and "nvidia" in p]
    assert paths[: len(wheel)] == wheel and all(p.endswith(soname) for p in wheel)


# ------------------------------------------------------------------------ build backend (backend/)
@pytest.fixture
def backend(monkeypatch, tmp_path):
    pytest.importorskip("scikit_build_core")
    path = ROOT / "backend" / "pycnn_build.py"
    if not path.exists():
        pytest.skip("run outside the checkout: no backend/")
    spec = importlib.util.spec_from_file_location("pycnn_build_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for var in ("CUDACXX", "CUDA_HOME", "CUDA_PATH", "PYCNN_CUDA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return mod


def _fake_nvcc(tmp_path: Path, release: str = "13.0") -> Path:
    """An nvcc that answers --version and --dryrun (its INCLUDES) the way the real one does."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    (tmp_path / "inc").mkdir(exist_ok=True)
    nvcc = tmp_path / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\ncase \"$*\" in\n"
                    f"  *--dryrun*) echo '#$ INCLUDES=\"-I{tmp_path / 'inc'}\"' >&2 ;;\n"
                    f"  *) echo 'Cuda compilation tools, release {release}, V{release}.1' ;;\nesac\n")
    nvcc.chmod(nvcc.stat().st_mode | stat.S_IXUSR)
    return nvcc


@pytest.mark.skipif(sys.platform != "linux", reason="nvcc stand-in is a shell script")
def test_backend_adds_cublas_headers_only_for_a_cuda_build(backend, tmp_path, monkeypatch):
    assert backend.cuda_requirements() == []  # AUTO without nvcc: a CPU build, nothing extra
    _fake_nvcc(tmp_path)
    assert backend.cuda_requirements() == ["nvidia-cublas>=13,<14"]  # AUTO with nvcc, toolkit without cuBLAS
    monkeypatch.setenv("PYCNN_CUDA", "ON")
    assert backend.cuda_requirements() == ["nvidia-cublas>=13,<14"]
    monkeypatch.setenv("PYCNN_CUDA", "off")
    assert backend.cuda_requirements() == []
    monkeypatch.setenv("PYCNN_CUDA", "AUTO")
    (tmp_path / "inc" / "cublas_v2.h").write_text("/* the toolkit's own cuBLAS */\n")
    assert backend.cuda_requirements() == []  # the toolkit has the headers: no download


@pytest.mark.skipif(sys.platform != "linux", reason="nvcc stand-in is a shell script")
def test_backend_matches_nvcc_major_and_finds_cuda_home(backend, tmp_path, monkeypatch):
    nvcc = _fake_nvcc(tmp_path, release="12.8")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))  # $CUDA_HOME/bin/nvcc
    assert backend.find_nvcc() == str(nvcc)
    assert backend.cuda_requirements() == ["nvidia-cublas-cu12"]
    reqs = backend.get_requires_for_build_wheel({})
    assert "nvidia-cublas-cu12" in reqs
