"""pycnn beside other thread pools: a conv forward+backward timed as is, under
`threadpoolctl.threadpool_limits(n)`, and with PyTorch imported first and used between the calls.

    python -m benchmarks.threads [--threads N] [--rounds R] [--min-time S] [--batch B] [--out DIR]

Each ratio is against the baseline of the same run, measured interleaved with it:
- in one process, rounds of (baseline sample, one sample under each limit); a sample is a loop of
  calls lasting >= --min-time seconds, the median sample is reported;
- import order needs fresh processes: rounds alternate a "pycnn imported first" process and a
  "torch imported first" one, both running NumPy and PyTorch work between pycnn's calls.
Results go to benchmarks/results/threads-<date>-<host>.{json,md} (or to --out DIR).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LIMITS = [(1, None), (2, None), (4, None), (4, "blas")]


def _pycnn_path() -> str:
    """The checkout's in-place build (tools/dev_build.sh) when there is one, else the installed pycnn."""
    src = ROOT / "src"
    return str(src) if list((src / "pycnn").glob("_core*.so")) else ""


def cpu_model() -> str:
    """lscpu's model name, family/model and CPU count, and the widest vector ISA (it varies here)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no lscpu)"
    f = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    isa = "AVX-512" if "avx512f" in f.get("Flags", "") else "AVX2" if "avx2" in f.get("Flags", "") else "no AVX2"
    return (f"{f.get('Model name', '?')} (family {f.get('CPU family', '?')}, model {f.get('Model', '?')}), "
            f"{f.get('CPU(s)', '?')} CPUs, {isa}")


def make_step(batch: int):
    """VGG-style 3x3 64->64 conv on 32x32 maps, forward + backward, float32."""
    import numpy as np
    import pycnn as pc
    from pycnn import functional as F

    r = np.random.default_rng(0)
    x = pc.from_numpy(r.standard_normal((batch, 64, 32, 32)).astype(np.float32))
    w = pc.from_numpy(r.standard_normal((64, 64, 3, 3)).astype(np.float32))
    dy = pc.from_numpy(r.standard_normal((batch, 64, 32, 32)).astype(np.float32))

    def step():
        F.conv2d(x, w, padding=1)
        F.conv2d_backward(dy, x, w, padding=1)

    return step


def sample(fn, min_time: float, between=None) -> float:
    """Seconds per call of fn over a loop lasting >= min_time (between() runs untimed before each)."""
    total, calls = 0.0, 0
    while total < min_time or calls < 2:
        if between is not None:
            between()
        t0 = time.perf_counter()
        fn()
        total += time.perf_counter() - t0
        calls += 1
    return total / calls


def run_limits(args) -> list:
    from threadpoolctl import threadpool_limits

    step = make_step(args.batch)
    for _ in range(3):
        step()
    names = ["baseline"] + [f"threadpool_limits({n}{', user_api=' + repr(api) if api else ''})" for n, api in LIMITS]
    times = {k: [] for k in names}
    for _ in range(args.rounds):
        times["baseline"].append(sample(step, args.min_time))
        for name, (n, api) in zip(names[1:], LIMITS):
            with threadpool_limits(n, user_api=api):
                times[name].append(sample(step, args.min_time))
    base = statistics.median(times["baseline"])
    return [{"case": k, "ms": 1e3 * statistics.median(v), "ratio": statistics.median(v) / base} for k, v in times.items()]


CHILD = """
import sys, json, statistics
sys.path[:0] = [p for p in {paths!r} if p]
{imports}
import numpy as np
from benchmarks.threads import make_step, sample
import pycnn as pc
pc.set_num_threads({threads})
step = make_step({batch})
r = np.random.default_rng(1)
a = r.standard_normal((256, 256)).astype(np.float32)
t, tw = torch.randn(8, 16, 32, 32), torch.randn(16, 16, 3, 3)
def between():
    b = a
    for _ in range(4):
        b = np.tanh(b @ a)
    torch.nn.functional.conv2d(t, tw, padding=1)
for _ in range(3):
    between(); step()
print(json.dumps(statistics.median(sample(step, {min_time}, between) for _ in range(5))))
"""


def run_import_order(args) -> list:
    env = dict(os.environ)
    for var in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(var, None)  # as a user's script would run: pycnn picks the policy
    orders = {"pycnn imported first, torch used between calls": "import pycnn, torch",
              "torch imported first, torch used between calls": "import torch, pycnn"}
    times = {k: [] for k in orders}
    for _ in range(args.rounds):
        for name, imports in orders.items():
            code = CHILD.format(paths=[str(ROOT), _pycnn_path()], imports=imports, threads=args.threads,
                                batch=args.batch, min_time=args.min_time)
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            times[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = statistics.median(next(iter(times.values())))
    return [{"case": k, "ms": 1e3 * statistics.median(v), "ratio": statistics.median(v) / base} for k, v in times.items()]


def write(results: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"threads-{results['date']}-{results['host']}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# pycnn beside other thread pools ({results['date']}, {results['host']})", "",
             f"CPU: {results['cpu']}; pycnn threads: {results['threads']}; {results['precision']}; "
             f"case: {results['case']}; median of {results['rounds']} interleaved rounds.", ""]
    for title, rows in (("In one process", results["limits"]), ("Import order (one process each)",
                                                                 results["import_order"])):
        lines += [f"## {title}", "", "| case | ms | ratio to the first row |", "| --- | ---: | ---: |"]
        lines += [f"| {r['case']} | {r['ms']:.1f} | {r['ratio']:.2f} |" for r in rows] + [""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    return stem


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    if _pycnn_path() and _pycnn_path() not in sys.path:
        sys.path.insert(0, _pycnn_path())
    import pycnn as pc

    pc.set_num_threads(args.threads)
    results = {"date": _dt.date.today().isoformat(), "host": socket.gethostname(), "cpu": cpu_model(),
               "threads": args.threads, "precision": "float32", "rounds": args.rounds,
               "case": f"conv2d 3x3 64->64 32x32 batch {args.batch}, forward + backward",
               "limits": run_limits(args), "import_order": run_import_order(args)}
    stem = write(results, args.out)
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
