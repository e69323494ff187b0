"""`python -m benchmarks`: the CPU benchmark of the pycnn package (pycnn.bench, also
`python -m pycnn bench`) run from a checkout, its results kept in benchmarks/results/.

    python -m benchmarks [--threads N] [--quick] [--json PATH] [--cases a,b] [--no-torch] [--memory]
    python benchmarks/run.py ...

Results go to benchmarks/results/cpu-<date>-<host>-t<threads>.{json,md} (or to --json PATH and
PATH.md); --memory runs benchmarks.memory afterwards.
"""
from __future__ import annotations

import importlib.util
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


_ensure_paths()

# the names benchmarks/memory.py, gpu.py and the tests import from here
from pycnn.bench.cases import pycnn_lenet5, pycnn_sgd, rel_err  # noqa: E402,F401
from pycnn.bench.machine import host_tag, machine_info, set_thread_env  # noqa: E402,F401


def main(argv: Optional[List[str]] = None) -> int:
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
    sys.exit(main())
