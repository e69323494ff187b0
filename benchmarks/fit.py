"""`python -m benchmarks.fit`: an epoch of Fashion-MNIST-sized training (60,000 images, LeNet-5,
batch 64) with pycnn's Trainer.fit, with the same work as a plain pycnn step loop, and as a plain
PyTorch loop, in one process (cases: pycnn/bench/fit_cases.py).

    python -m benchmarks.fit [--threads 2] [--rounds 5] [--samples 60000] [--json PATH] [--no-torch]

Each implementation first trains one warm-up epoch; then rounds of one epoch each are interleaved
(fit, loop, torch, fit, ...), with a short idle before each, and the medians are compared:
fit / loop - 1 is what the Trainer adds, fit / torch the ratio to PyTorch (issue 15's targets:
<= 5% and <= 0.6x). Results go to benchmarks/results/fit-<date>-<host>-t<threads>.{json,md}
(or to --json PATH and PATH.md).
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

from benchmarks.checkout import RESULTS, set_thread_env, use_checkout


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fit", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads for pycnn, NumPy's BLAS and PyTorch (default 2)")
    p.add_argument("--rounds", type=int, default=5, help="timed epochs per implementation, after a warm-up epoch "
                                                         "(default 5)")
    p.add_argument("--samples", type=int, default=60_000, help="images per epoch (default 60,000; fewer for tests)")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--cooldown", type=float, default=0.15, help="seconds of idle before every epoch, so that the "
                                                                "previous implementation's thread pools are asleep")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    p.add_argument("--json", metavar="PATH", help="write the JSON report here (and the markdown to PATH.md)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    args = p.parse_args(argv)
    for name in ("threads", "rounds", "samples", "batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    set_thread_env(args.threads)  # before pycnn and NumPy load
    use_checkout()
    import pycnn as pc
    from pycnn.bench import fit_cases as fc
    from pycnn.bench.harness import (Mismatch, dated_stem, load_average, machine_info, measure, report_paths,
                                     set_threads, write_report)

    torch = set_threads(args.threads, not args.no_torch, "the fit/torch ratio is left out")
    t_start, load_start = time.perf_counter(), load_average()
    x, y = fc.synthetic_data(args.samples, args.seed)
    try:
        impls, errs = fc.build(pc, torch, x, y, args.batch)
    except Mismatch as e:
        print(f"benchmarks.fit: ABORT, results differ, nothing was timed: {e}", file=sys.stderr)
        return 2
    detail = measure(impls, repeats=args.rounds, warmup=1, min_time=0.0, cooldown=args.cooldown)
    ms = {k: v["ms"] for k, v in detail.items()}
    ratios = fc.ratios(ms)
    report = {
        "meta": machine_info(args.threads, torch),
        "settings": {"samples": args.samples, "batch": args.batch, "rounds": args.rounds, "warmup_epochs": 1,
                     "cooldown_s": args.cooldown, "seed": args.seed, "lr": fc.SGD_LR, "momentum": fc.SGD_MOMENTUM,
                     "trainer_metrics": ["accuracy"], "shuffle": True},
        "impls": {k: fc.IMPL_NAMES[k] for k in ms},
        "ms_per_epoch": ms,
        "samples_per_s": {k: args.samples / (v / 1e3) for k, v in ms.items()},
        "ratios": ratios,
        "fit_overhead": ratios["fit/bare"] - 1.0,
        "per_round_ratios": fc.per_round_ratios(detail),
        "targets": {k: {"max": t, "met": ratios[k] <= t} for k, t in fc.TARGETS.items() if k in ratios},
        "check_max_rel_err": errs,
        "detail": detail,
        "loadavg_start": load_start,
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    md = fc.markdown(report)
    print(md[md.index("| loop"):])
    paths = report_paths(args.json, RESULTS, dated_stem("fit", args.threads))
    write_report(report, md, paths)
    print(f"wrote {paths[0]} and {paths[1]} ({report['wall_s']:.0f} s)", file=sys.stderr)
    return 0 if fc.finite_ratios(ratios) else 1


if __name__ == "__main__":
    sys.exit(main())
