"""Data-parallel training on this machine: LeNet-5 on the MNIST sample under pc.distributed.

    python -m benchmarks.distributed [--epochs 2] [--json PATH] [--no-paper-models]

Three configurations, each in its own processes, batch 32 per process (pycnn train's setting):
  1 process, 2 threads (no MPI) | mpiexec -n 1, 1 thread | mpiexec -n 2, 1 thread each.
For each: samples/s over the timed epochs (global samples / the slowest rank's wall time), the time
backward spends waiting for the gradient all-reduce per step (DistributedDataParallel.comm_seconds),
the bytes all-reduced per step, and a standalone blocking all-reduce of the same bytes.
With paper models on (default), the per-sample time of a ResNet-18 and a VGG-16 training step at
224 x 224 (2 threads, one process) is measured too, for benchmarks/README.md's scaling model.
Results: benchmarks/results/distributed-<date>-<host>.{json,md} (or --json PATH and PATH.md).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 32
WARMUP_STEPS = 10
ALLREDUCE_REPEATS = 200


def _cpu_model() -> Dict[str, Any]:
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("unknown", platform.processor()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "logical_cpus": os.cpu_count(), "avx2": "avx2" in flags, "avx512f": "avx512f" in flags}


# ---------------------------------------------------------------------------------------------------
# worker: one process of one configuration
# ---------------------------------------------------------------------------------------------------
def worker(threads: int, use_mpi: bool, epochs: int, out: str, bucket_mb: float = 25.0) -> None:
    import numpy as np

    import pycnn as pc
    from pycnn import nn, optim

    dist = pc.distributed
    if use_mpi:
        dist.init_process_group(timeout=600)
    pc.set_num_threads(threads)
    rank, world = dist.get_rank(), dist.get_world_size()
    pc.manual_seed(0)
    x, y, _, _ = pc.data.datasets.load_mnist_sample()
    x, y = x[rank::world], y[rank::world]  # this rank's shard
    model = pc.models.lenet5()
    ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=bucket_mb) if use_mpi else None
    net = ddp if ddp is not None else model
    opt = optim.SGD(net.parameters(), lr=0.03, momentum=0.9)
    crit = nn.CrossEntropyLoss()
    batches = [(pc.tensor(x[i:i + BATCH]), pc.tensor(y[i:i + BATCH])) for i in range(0, len(x) - BATCH + 1, BATCH)]

    def step(xb: Any, yb: Any) -> None:
        crit(net(xb), yb)
        opt.zero_grad()
        net.backward(crit.backward(), need_input_grad=False)
        opt.step()

    for xb, yb in batches[:WARMUP_STEPS]:
        step(xb, yb)
    if ddp is not None:
        dist.barrier()
        ddp.comm_seconds, ddp.comm_bytes = 0.0, 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in batches:
            step(xb, yb)
    wall = time.perf_counter() - t0
    steps = epochs * len(batches)
    result: Dict[str, Any] = {"threads": threads, "mpi": use_mpi, "world_size": world, "steps_per_rank": steps,
                              "buckets": len(ddp._buckets) if ddp is not None else 0,
                              "samples_per_rank": steps * BATCH, "wall_s": wall}
    if ddp is not None:
        walls = np.array([wall])
        dist.all_reduce(walls, "max")
        result["wall_s"] = float(walls[0])
        result["allreduce_wait_ms_per_step"] = 1e3 * ddp.comm_seconds / steps
        result["bytes_per_step"] = ddp.comm_bytes / steps
        grads = np.ones(sum(p.numel() for p in model.parameters()), dtype=np.float32)
        dist.barrier()
        t1 = time.perf_counter()
        for _ in range(ALLREDUCE_REPEATS):
            dist.all_reduce(grads, "sum")
        result["standalone_allreduce_ms"] = 1e3 * (time.perf_counter() - t1) / ALLREDUCE_REPEATS
    result["samples_per_s"] = world * result["samples_per_rank"] / result["wall_s"]
    if rank == 0:
        with open(out, "w") as f:
            json.dump(result, f)


def paper_models(out: str) -> None:
    """Seconds per sample of a ResNet-18 and a VGG-16 training step at 224 x 224, 2 threads."""
    import pycnn as pc
    from pycnn import nn, optim

    pc.set_num_threads(2)
    pc.manual_seed(0)
    res: Dict[str, Any] = {}
    for name, batch in (("resnet18", 4), ("vgg16", 2)):
        model = getattr(pc.models, name)(num_classes=1000)
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        crit = nn.CrossEntropyLoss()
        xb, yb = pc.randn(batch, 3, 224, 224), pc.tensor(list(range(batch)))
        times = []
        for _ in range(3):  # the first is warm-up
            t0 = time.perf_counter()
            crit(model(xb), yb)
            opt.zero_grad()
            model.backward(crit.backward(), need_input_grad=False)
            opt.step()
            times.append(time.perf_counter() - t0)
        res[name] = {"batch": batch, "s_per_sample": min(times[1:]) / batch,
                     "parameters": sum(p.numel() for p in model.parameters()),
                     "mult_adds_per_sample": pc.summary(model, (3, 224, 224)).total_mult_adds}
    with open(out, "w") as f:
        json.dump(res, f)


# ---------------------------------------------------------------------------------------------------
# the scaling model on paper
# ---------------------------------------------------------------------------------------------------
NODES = (8, 16, 32, 64)
LINKS_GBIT = (25, 100)
GPU_TFLOPS = 33.0  # an assumed sustained strict-FP32 rate for one GPU node (about half an H100's peak)


def ring_allreduce_s(p: int, grad_bytes: float, gbit: float) -> float:
    """Bandwidth term of a ring all-reduce: 2 (p - 1) / p x bytes / bandwidth (latency left out)."""
    return 2 * (p - 1) / p * grad_bytes / (gbit * 1e9 / 8)


def largest_p(compute_s: float, grad_bytes: float, gbit: float, overlap: bool, target: float = 0.8) -> Optional[int]:
    """Largest p with compute / (compute + all-reduce) >= target (no overlap), or with
    compute / max(compute, all-reduce) >= target (communication fully hidden behind backward);
    None: any p."""
    allowed = compute_s / target if overlap else compute_s * (1 - target) / target  # all-reduce time allowed
    x = allowed / (grad_bytes / (gbit * 1e9 / 8))  # 2 (p - 1) / p must stay <= x
    if x >= 2:
        return None
    return max(1, int(1 / (1 - x / 2)))


def scaling_model(runs: Dict[str, Any], paper: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Per model: gradient bytes (float32) and the compute time of a step of batch 32 per node, for a
    node like this machine (measured: 2 threads) and for a GPU node (FLOPs / GPU_TFLOPS, assumed)."""
    one = runs["1 process, 2 threads (no MPI)"]
    models = {"lenet5": {"parameters": 61706, "cpu_step_s": BATCH / one["samples_per_s"],
                         "mult_adds_per_sample": 416520}}
    for name, r in (paper or {}).items():
        models[name] = {"parameters": r["parameters"], "cpu_step_s": BATCH * r["s_per_sample"],
                        "mult_adds_per_sample": r["mult_adds_per_sample"]}
    out: Dict[str, Any] = {}
    for name, m in models.items():
        grad = 4 * m["parameters"]
        gpu_step = BATCH * 3 * 2 * m["mult_adds_per_sample"] / (GPU_TFLOPS * 1e12)  # fwd + bwd = 3 x fwd
        nodes = [("cpu", m["cpu_step_s"])] + ([("gpu", gpu_step)] if name != "lenet5" else [])  # LeNet-5 on a
        for node, step in nodes:  # GPU is kernel-launch bound: its FLOPs say nothing about its step time
            for gbit in LINKS_GBIT:
                key = f"{name}/{node}/{gbit}Gb"
                ar = {p: ring_allreduce_s(p, grad, gbit) for p in NODES}
                out[key] = {"grad_bytes": grad, "compute_s": step,
                            "allreduce_s": {str(p): t for p, t in ar.items()},
                            "efficiency": {str(p): step / (step + t) for p, t in ar.items()},
                            "largest_p_80": largest_p(step, grad, gbit, overlap=False),
                            "largest_p_80_overlapped": largest_p(step, grad, gbit, overlap=True)}
    return out


# ---------------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------------
def _mpiexec() -> str:
    exe = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = exe if os.path.exists(exe) else shutil.which("mpiexec")
    if found is None:
        raise SystemExit("benchmarks.distributed: needs mpiexec (pip install mpi4py mpich)")
    return found


def _run(cmd: List[str], out: str, timeout: float = 900) -> Dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"benchmarks.distributed: {' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    with open(out) as f:
        return json.load(f)


def _p_text(p: Optional[int]) -> str:
    return "any" if p is None else (str(p) if p >= 2 else "none (< 2)")


def markdown(report: Dict[str, Any]) -> str:
    m = report["meta"]
    lines = [f"# Data-parallel LeNet-5 on the MNIST sample ({m['date']}, host {m['host']})", "",
             f"CPU: {m['cpu']['model']} ({m['cpu']['logical_cpus']} logical CPUs, AVX-512: {m['cpu']['avx512f']}); "
             f"{m['mpi']}; precision {m['precision']}; batch {BATCH} per process; {m['epochs']} timed epoch(s) "
             f"after {WARMUP_STEPS} warm-up steps.", "",
             "| configuration | threads per process | buckets | samples/s "
             "| all-reduce wait per step (ms, incl. waiting for the slower rank) | bytes per step "
             "| standalone all-reduce (ms) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in report["runs"].items():
        wait = f"{r['allreduce_wait_ms_per_step']:.3f}" if "allreduce_wait_ms_per_step" in r else "-"
        nbytes = f"{r['bytes_per_step']:,.0f}" if "bytes_per_step" in r else "-"
        alone = f"{r['standalone_allreduce_ms']:.3f}" if "standalone_allreduce_ms" in r else "-"
        lines.append(f"| {name} | {r['threads']} | {r.get('buckets') or '-'} | {r['samples_per_s']:,.0f} | {wait} | "
                     f"{nbytes} | {alone} |")
    if report.get("paper_models"):
        lines += ["", "Per-sample training-step time at 224 x 224, one process, 2 threads (for the scaling model):", ""]
        for name, r in report["paper_models"].items():
            lines.append(f"- {name}: {1e3 * r['s_per_sample']:.0f} ms per sample (batch {r['batch']}), "
                         f"{r['parameters']:,} parameters, {r['mult_adds_per_sample']:,} multiply-adds per sample")
    lines += ["", f"Scaling model on paper (batch {BATCH} per node, ring all-reduce 2(p-1)/p x gradient bytes / "
              "bandwidth, latency left out; efficiency = compute / (compute + all-reduce), or compute / "
              "max(compute, all-reduce) when the all-reduce is fully overlapped with backward). "
              f"cpu: a node like this one (measured step time); gpu: FLOPs / {GPU_TFLOPS:g} TFLOP/s (assumed).", "",
              "| model / node / link | gradient MB | step compute (ms) | " +
              " | ".join(f"all-reduce p={p} (ms), eff." for p in NODES) + " | largest p >= 80% | same, overlapped |",
              "| --- | --- | --- | " + " | ".join("---" for _ in NODES) + " | --- | --- |"]
    for key, r in report["scaling_model"].items():
        cells = " | ".join(f"{1e3 * r['allreduce_s'][str(p)]:.2f}, {100 * r['efficiency'][str(p)]:.0f}%" for p in NODES)
        best = [_p_text(r["largest_p_80"]), _p_text(r["largest_p_80_overlapped"])]
        lines.append(f"| {key} | {r['grad_bytes'] / 1e6:.2f} | {1e3 * r['compute_s']:.1f} | {cells} | {best[0]} | "
                     f"{best[1]} |")
    return "\n".join(lines) + "\n"


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
    if args.worker:
        worker(args.threads, args.mpi, args.epochs, args.out, args.bucket_mb)
        return 0
    if args.paper_worker:
        paper_models(args.out)
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
    sys.path.insert(0, os.path.join(ROOT, "src"))
    import pycnn as pc

    now = datetime.datetime.now()
    host = socket.gethostname().split(".")[0]
    report = {"meta": {"date": now.isoformat(timespec="seconds"), "host": host, "cpu": _cpu_model(),
                       "mpi": pc.distributed.status()["mpi"], "precision": "float32", "epochs": args.epochs,
                       "batch_per_process": BATCH, "pycnn": pc.__version__, "loadavg": os.getloadavg()},
              "runs": runs, "paper_models": paper, "scaling_model": scaling_model(runs, paper)}
    path = args.json or os.path.join(ROOT, "benchmarks", "results", f"distributed-{now:%Y-%m-%d}-{host}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    md = markdown(report)
    with open(path[:-5] + ".md" if path.endswith(".json") else path + ".md", "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
