"""pycnn beside other thread pools: a conv forward+backward timed as is, under
`threadpoolctl.threadpool_limits(n)`, and with PyTorch imported first and used between the calls
(cases: pycnn/bench/threads_cases.py).

    python -m benchmarks.threads [--threads N] [--rounds R] [--min-time S] [--batch B] [--out DIR]

Results go to benchmarks/results/threads-<date>-<host>.{json,md} (or to --out DIR).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.checkout import RESULTS, use_checkout


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.threads", description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    # 15: with 5, one row in three runs came out 1.12-1.19x on this VM by noise alone (2026-12-07)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--min-time", type=float, default=0.3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    use_checkout()
    import pycnn as pc
    from pycnn.bench import threads_cases as tc
    from pycnn.bench.harness import dated_stem, machine_info, report_paths, write_report

    pc.set_num_threads(args.threads)
    limits = tc.run_limits(args.rounds, args.min_time, args.batch)
    order = tc.run_import_order(str(Path(pc.__file__).resolve().parents[1]), args.threads, args.rounds,
                                args.min_time, args.batch)
    import torch  # only now: the in-process rows are measured without it

    report = {"meta": machine_info(args.threads, torch),
              "settings": {"rounds": args.rounds, "min_time_s": args.min_time, "batch": args.batch,
                           "case": f"conv2d 3x3 64->64 32x32 batch {args.batch}, forward + backward"},
              "limits": limits, "import_order": order}
    md = tc.markdown(report)
    paths = report_paths(None, args.out, dated_stem("threads"))
    write_report(report, md, paths)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
