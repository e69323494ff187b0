"""`python -m benchmarks`: the CPU benchmark of the pycnn package (pycnn.bench, also
`python -m pycnn bench`) run from a checkout, its results kept in benchmarks/results/.

    python -m benchmarks [--threads N] [--quick] [--json PATH] [--cases a,b] [--no-torch] [--memory]
    python benchmarks/run.py ...

Results go to benchmarks/results/cpu-<date>-<host>-t<threads>.{json,md} (or to --json PATH and
PATH.md); --memory runs benchmarks.memory afterwards.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

if __name__ == "__main__":  # `python benchmarks/run.py`: the checkout's root is not on the path yet
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.checkout import RESULTS, set_thread_env, use_checkout  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int, default=2)
    threads = pre.parse_known_args(argv)[0].threads
    if threads >= 1:
        set_thread_env(threads)  # before pycnn and NumPy load (the full parser lives in pycnn.bench)
    use_checkout()
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
