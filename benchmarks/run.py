"""`python -m benchmarks`: the CPU benchmark of the pycnn package (pycnn.bench, also
`python -m pycnn bench`) run from a checkout, its results kept in benchmarks/results/.

    python -m benchmarks [--threads N] [--quick] [--json PATH] [--cases a,b] [--no-torch] [--memory]
    python benchmarks/run.py ...

Results go to benchmarks/results/cpu-<date>-<host>-t<threads>.{json,md} (or to --json PATH and
PATH.md); --memory runs benchmarks.memory afterwards.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"


def _ensure_paths() -> None:
    """Lets `python benchmarks/run.py` find the checkout's pycnn and the benchmarks package."""
    if importlib.util.find_spec("benchmarks") is None and str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if importlib.util.find_spec("pycnn") is None and str(ROOT / "src") not in sys.path:
        sys.path.insert(0, str(ROOT / "src"))  # the in-place build of tools/dev_build.sh


# The package's names that benchmarks/memory.py, gpu.py and the tests import from here, loaded on
# first use: importing this module must not load pycnn (and NumPy) before set_thread_env has run.
_FROM_PACKAGE = {"pycnn_lenet5": "cases", "pycnn_sgd": "cases", "rel_err": "cases", "host_tag": "machine",
                 "machine_info": "machine"}


def __getattr__(name: str):
    if name in _FROM_PACKAGE:
        _ensure_paths()
        return getattr(importlib.import_module(f"pycnn.bench.{_FROM_PACKAGE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def set_thread_env(n: int) -> None:
    """Thread counts for every runtime that reads the environment at load time (OpenMP of pycnn
    and torch, NumPy's and pycnn's OpenBLAS, torch's MKL). Must run before NumPy is imported to
    take effect on NumPy's BLAS."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int, default=2)
    threads = pre.parse_known_args(argv)[0].threads
    if threads >= 1:
        set_thread_env(threads)  # before pycnn and NumPy load (the full parser lives in pycnn.bench)
    _ensure_paths()
    from pycnn.bench import run as bench

    parser = bench.build_parser("python -m benchmarks")
    parser.add_argument("--memory", action="store_true", help="afterwards run benchmarks.memory too")
    args = parser.parse_args(argv)
    rc = bench.run(args, results_dir=RESULTS)
    if rc == 0 and args.memory and not args.list:
        from benchmarks import memory

        return memory.main(["--threads", str(args.threads)] + (["--quick"] if args.quick else []))
    return rc


if __name__ == "__main__":
    _ensure_paths()
    sys.exit(main())
