"""What every benchmark command line needs from the checkout, before pycnn (and NumPy) load: the
folders, the checkout's pycnn on the path, and the thread environment. Imports nothing heavy."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def in_place_build() -> bool:
    """The checkout has a build of its own (tools/dev_build.sh puts _core into src/pycnn)."""
    return any((ROOT / "src" / "pycnn").glob("_core*.so"))


def use_checkout() -> None:
    """Puts the benchmarks package on the path, and the checkout's pycnn when it has an in-place
    build, before an installed one (as tests/conftest.py does); else the installed pycnn is used."""
    for path, wanted in ((ROOT / "src", in_place_build()), (ROOT, importlib.util.find_spec("benchmarks") is None)):
        if wanted and str(path) not in sys.path:
            sys.path.insert(0, str(path))


def set_thread_env(n: int) -> None:
    """Thread counts for every runtime that reads the environment at load time (OpenMP of pycnn
    and torch, NumPy's and pycnn's OpenBLAS, torch's MKL). Must run before NumPy is imported to
    take effect on NumPy's BLAS."""
    for var in THREAD_VARS:
        os.environ[var] = str(n)
