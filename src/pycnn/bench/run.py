"""CPU benchmark: pycnn vs NumPy (numpy_peer.py) vs PyTorch CPU (when installed), in one process.

    python -m pycnn bench [--threads N] [--quick] [--json PATH] [--cases a,b] [--no-torch] [--list]
    python -m benchmarks ...     (from a checkout: the same, results kept in benchmarks/results/)

Every case is first checked for equal results (pycnn vs NumPy vs PyTorch, float32, rtol 1e-4
relative to the largest magnitude); the run aborts before timing anything if they differ.
Timing: after warm-up, interleaved rounds (pycnn, numpy, torch, pycnn, ...), each sample a loop
of enough calls to last >= --min-time seconds; the median sample is reported. The table is
printed; --json PATH also writes the full report to PATH and the table to PATH.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .cases import SGD_LR, SGD_MOMENTUM, all_cases, select_cases
from .harness import (Impl, Mismatch, dated_stem, load_average, machine_info, measure, report_paths, set_threads,
                      write_report)
from .report import markdown, print_table


def blas_peak(env: Dict[str, Any], repeats: int) -> Dict[str, Any]:
    """SGEMM GFLOP/s at 1024^3: pycnn's GEMM door through linear_forward (x @ w.T), and, for
    reference, NumPy's and PyTorch's own BLAS."""
    import numpy as np

    pc, torch = env["pc"], env.get("torch")
    from pycnn import _core

    n = 1024
    rng = np.random.default_rng(3)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    pa, pb = pc.from_numpy(a), pc.from_numpy(b)
    impls = {"pycnn": Impl(lambda: _core.linear_forward(pa, pb, None)), "numpy": Impl(lambda: a @ b.T)}
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        impls["torch"] = Impl(lambda: ta @ tb.T)
    res = measure(impls, repeats=repeats, warmup=2, min_time=0.05, cooldown=env.get("cooldown", 0.0))
    flops = 2.0 * n ** 3
    return {"size": f"{n}x{n} @ ({n}x{n})^T", "how": "pycnn: _core.linear_forward (blas::gemm door)",
            "gflops": {k: flops / (v["ms"] * 1e-3) / 1e9 for k, v in res.items()},
            "ms": {k: v["ms"] for k, v in res.items()},
            # the hardware's float32 multiply-add peak on the same threads (csrc/fma_peak.cpp)
            "fma_peak_gflops": _core.fma_peak_gflops()}


# ----------------------------------------------------------------------------------------------
def build_parser(prog: str = "pycnn bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads for pycnn, NumPy's BLAS and PyTorch (default 2)")
    p.add_argument("--quick", action="store_true", help="few repeats and short samples (for tests)")
    p.add_argument("--json", metavar="PATH", help="write the JSON report here (and the markdown to PATH.md)")
    p.add_argument("--cases", help="comma-separated substrings of case names, e.g. lenet_conv1,lenet5_step")
    p.add_argument("--repeats", type=int, help="samples per implementation (default 9, quick 3)")
    p.add_argument("--min-time", type=float, help="seconds per sample (default 0.05, quick 0.005)")
    p.add_argument("--case-budget", type=float, help="seconds of timed rounds per case at most (default 15, "
                                                     "quick 2); at least 3 rounds are always run")
    p.add_argument("--cooldown", type=float, help="seconds of idle before every sample, so that the previous "
                                                  "implementation's spinning thread pools are asleep (default 0.15, "
                                                  "quick 0.02)")
    p.add_argument("--rtol", type=float, default=1e-4, help="agreement tolerance (relative to max |pycnn|)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--no-blas-peak", action="store_true", help="skip the 1024^3 SGEMM reference")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    return p


def main(argv: Optional[List[str]] = None, prog: str = "pycnn bench") -> int:
    return run(build_parser(prog).parse_args(argv))


def run(args: argparse.Namespace, results_dir: Optional[Path] = None) -> int:
    """Runs the benchmark `args` asks for. Without --json the report goes to results_dir (as
    cpu-<date>-<host>-t<threads>.{json,md}) when one is given, else it is only printed."""
    if args.list:
        for c in all_cases():
            print(c.name)
        return 0
    if args.threads < 1:
        raise SystemExit("--threads must be >= 1")
    # NumPy came loaded with pycnn: unless the environment chose its BLAS threads before that
    # (`python -m benchmarks` does, benchmarks/run.py), threadpoolctl sets them now (pycnn keeps its
    # own OpenBLAS pool single-threaded whatever that sets).
    if os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads)
        except ImportError:
            print("threadpoolctl is not installed: NumPy's BLAS keeps its default threads", file=sys.stderr)
    import pycnn as pc
    from pycnn import functional as F

    torch = set_threads(args.threads, not args.no_torch, "the torch column is left empty")

    repeats = args.repeats or (3 if args.quick else 9)
    min_time = args.min_time if args.min_time is not None else (0.005 if args.quick else 0.05)
    warmup = 1 if args.quick else 3
    cooldown = args.cooldown if args.cooldown is not None else (0.02 if args.quick else 0.15)
    budget = args.case_budget if args.case_budget is not None else (2.0 if args.quick else 15.0)
    env: Dict[str, Any] = {"pc": pc, "F": F, "torch": torch, "rtol": args.rtol, "cooldown": cooldown}
    cases = select_cases(all_cases(), args.cases)
    t_start = time.perf_counter()
    load_start = load_average()

    # 1. agreement, for every case, before anything is timed
    built = []
    check_errs: Dict[str, Dict[str, float]] = {}
    for c in cases:
        try:
            impls, errs = c.build(env)
        except Mismatch as e:
            print(f"ABORT: results differ, nothing was timed: {e}", file=sys.stderr)
            return 2
        built.append((c, impls))
        check_errs[c.name] = errs
    worst = max([e for d in check_errs.values() for e in d.values()] or [0.0])
    print(f"agreement: {len(cases)} cases, pycnn/numpy/torch within rtol {args.rtol:g} "
          f"(worst {worst:.2e})", file=sys.stderr)

    # 2. timing
    peak = None if args.no_blas_peak else blas_peak(env, repeats=3 if args.quick else 7)
    peak_pc = peak["gflops"]["pycnn"] if peak else None
    rows = []
    for c, impls in built:
        res = measure(impls, repeats, warmup, min_time, budget, cooldown)
        ms = {k: v["ms"] for k, v in res.items()}
        row: Dict[str, Any] = {"name": c.name, "desc": c.desc, "ms": ms, "detail": res, "flops": c.flops,
                               "check_max_rel_err": check_errs[c.name]}
        row["pycnn/numpy"] = ms["pycnn"] / ms["numpy"] if "numpy" in ms else None
        row["pycnn/torch"] = ms["pycnn"] / ms["torch"] if "torch" in ms else None
        if c.flops:
            row["pycnn_gflops"] = c.flops / (ms["pycnn"] * 1e-3) / 1e9
            row["gflops"] = {k: c.flops / (v * 1e-3) / 1e9 for k, v in ms.items()}
            if peak_pc and not c.name.startswith("lenet5_step"):
                row["pct_blas_peak"] = 100.0 * row["pycnn_gflops"] / peak_pc
                row["pct_fma_peak"] = 100.0 * row["pycnn_gflops"] / peak["fma_peak_gflops"]
        rows.append(row)
        print(f"  {c.name:32s} " + "  ".join(f"{k} {v:9.3f} ms" for k, v in ms.items()), file=sys.stderr)

    report = {
        "meta": machine_info(args.threads, torch),
        "settings": {"repeats": repeats, "warmup": warmup, "min_time_s": min_time, "case_budget_s": budget, "cooldown_s": cooldown, "quick": bool(args.quick),
                     "rtol": args.rtol, "cases": args.cases, "sgd": {"lr": SGD_LR, "momentum": SGD_MOMENTUM}},
        "worst_check_error": worst,
        "loadavg_start": load_start,
        "blas_peak": peak,
        "cases": rows,
        "wall_s": round(time.perf_counter() - t_start, 2),
    }
    md = markdown(report)
    print_table(report)
    paths = report_paths(args.json, results_dir, dated_stem("cpu", args.threads))
    if paths:
        write_report(report, md, paths)
        print(f"wrote {paths[0]} and {paths[1]} ({report['wall_s']:.0f} s)", file=sys.stderr)
    else:
        print(f"({report['wall_s']:.0f} s; --json PATH keeps the full report)", file=sys.stderr)
    return 0
