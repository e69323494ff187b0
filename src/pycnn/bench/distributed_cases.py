"""The data-parallel benchmark's cases (benchmarks/distributed.py is their command line, which
starts them in processes of their own, under mpiexec or not): LeNet-5 on the MNIST sample under
pc.distributed, batch 32 per process (pycnn train's setting), each rank on its own shard; the
per-sample step time of a ResNet-18 and a VGG-16 at 224 x 224; and the scaling model on paper.
"""
from __future__ import annotations

import json
import time
from typing import Any, Dict, Optional

from .harness import cpu_line

BATCH = 32
WARMUP_STEPS = 10
ALLREDUCE_REPEATS = 200


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


def _p_text(p: Optional[int]) -> str:
    return "any" if p is None else (str(p) if p >= 2 else "none (< 2)")


def markdown(report: Dict[str, Any]) -> str:
    m = report["meta"]
    lines = [f"# Data-parallel LeNet-5 on the MNIST sample ({m['date']}, host {m['host']})", "",
             f"CPU: {cpu_line(m['cpu'])}; "
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
