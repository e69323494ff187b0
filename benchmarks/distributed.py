"""Data-parallel training on this machine: LeNet-5 on the MNIST sample under pc.distributed.

    python -m benchmarks.distributed [--epochs 2] [--json PATH] [--no-paper-models]

Three configurations, each in its own processes, batch 32 per process (pycnn train's setting):
  1 process, 2 threads (no MPI) | mpiexec -n 1, 1 thread | mpiexec -n 2, 1 thread each.
For each: samples/s over the timed epochs (global samples / the slowest rank's wall time), the time
backward spends waiting for the gradient all-reduce per step (DistributedDataParallel.comm_seconds),
the bytes all-reduced per step, and a standalone blocking all-reduce of the same bytes.
With paper models on (default), the per-sample time of a ResNet-18 and a VGG-16 training step at
224 x 224 (2 threads, one process) is measured too, for benchmarks/README.md's scaling model.
The cases, the scaling model and the report: pycnn/bench/distributed_cases.py.
Results: benchmarks/results/distributed-<date>-<host>.{json,md} (or --json PATH and PATH.md).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional

from benchmarks.checkout import RESULTS, ROOT, use_checkout

use_checkout()
# tests/test_distributed.py checks the scaling model through this module's names
from pycnn.bench.distributed_cases import largest_p, ring_allreduce_s  # noqa: E402,F401


def _mpiexec() -> str:
    exe = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = exe if os.path.exists(exe) else shutil.which("mpiexec")
    if found is None:
        raise SystemExit("benchmarks.distributed: needs mpiexec (pip install mpi4py mpich)")
    return found


def _run(cmd: List[str], out: str, timeout: float = 900) -> Dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"benchmarks.distributed: {' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    with open(out) as f:
        return json.load(f)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=2, help="timed epochs over each rank's shard (default 2)")
    p.add_argument("--json", default=None, help="write the JSON here (and PATH.md) instead of benchmarks/results/")
    p.add_argument("--no-paper-models", action="store_true", help="skip the ResNet-18 / VGG-16 step timings")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--paper-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mpi", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--bucket-mb", type=float, default=25.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from pycnn.bench import distributed_cases as dc

    if args.worker:
        dc.worker(args.threads, args.mpi, args.epochs, args.out, args.bucket_mb)
        return 0
    if args.paper_worker:
        dc.paper_models(args.out)
        return 0
    me = [sys.executable, "-m", "benchmarks.distributed", "--epochs", str(args.epochs)]
    mpiexec = _mpiexec()
    configs = [("1 process, 2 threads (no MPI)", [*me, "--worker", "--threads", "2"]),
               ("1 rank (mpiexec -n 1)", [mpiexec, "-n", "1", *me, "--worker", "--mpi", "--threads", "1"]),
               ("2 ranks (mpiexec -n 2)", [mpiexec, "-n", "2", *me, "--worker", "--mpi", "--threads", "1"]),
               # LeNet-5's 247 KB fit one 25 MB bucket, sent once backward is done; 50 KB buckets leave
               # during backward (the fully connected layers' first): what overlapping buys here
               ("2 ranks, 0.05 MB buckets", [mpiexec, "-n", "2", *me, "--worker", "--mpi", "--threads", "1",
                                             "--bucket-mb", "0.05"])]
    runs: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, cmd) in enumerate(configs):
            out = os.path.join(tmp, f"run{i}.json")
            runs[name] = _run(cmd + ["--out", out], out)
            print(f"{name}: {runs[name]['samples_per_s']:,.0f} samples/s", flush=True)
        paper = None
        if not args.no_paper_models:
            out = os.path.join(tmp, "paper.json")
            paper = _run([*me, "--paper-worker", "--out", out], out)
    import pycnn as pc
    from pycnn.bench.harness import dated_stem, machine_info, report_paths, write_report

    meta = machine_info(2)
    meta.update({"threads": {name: r["threads"] for name, r in runs.items()}, "mpi": pc.distributed.status()["mpi"],
                 "precision": "float32", "epochs": args.epochs, "batch_per_process": dc.BATCH})
    report = {"meta": meta, "runs": runs, "paper_models": paper, "scaling_model": dc.scaling_model(runs, paper)}
    md = dc.markdown(report)
    write_report(report, md, report_paths(args.json, RESULTS, dated_stem("distributed")))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
