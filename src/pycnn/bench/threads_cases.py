"""The thread-pool benchmark's cases (benchmarks/threads.py is their command line): a VGG-style conv
forward+backward timed as is, under `threadpoolctl.threadpool_limits(n)`, and with PyTorch imported
first and used between the calls.

Each ratio is against the baseline of the same run, measured interleaved with it:
- in one process, rounds of (baseline sample, one sample under each limit); a sample is a loop of
  calls lasting >= min_time seconds (harness.sample), the median sample is reported;
- import order needs fresh processes: rounds alternate a "pycnn imported first" process and a
  "torch imported first" one, both running NumPy and PyTorch work between pycnn's calls.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any, Callable, Dict, List

from .harness import cpu_line, sample

LIMITS = [(1, None), (2, None), (4, None), (4, "blas")]


def make_step(batch: int) -> Callable[[], None]:
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


def _rows(times: Dict[str, List[float]]) -> List[Dict[str, Any]]:
    base = statistics.median(next(iter(times.values())))
    return [{"case": k, "ms": 1e3 * statistics.median(v), "ratio": statistics.median(v) / base}
            for k, v in times.items()]


def run_limits(rounds: int, min_time: float, batch: int) -> List[Dict[str, Any]]:
    from threadpoolctl import threadpool_limits

    step = make_step(batch)
    for _ in range(3):
        step()
    names = ["baseline"] + [f"threadpool_limits({n}{', user_api=' + repr(api) if api else ''})" for n, api in LIMITS]
    times: Dict[str, List[float]] = {k: [] for k in names}
    for _ in range(rounds):
        times["baseline"].append(sample(step, min_time))
        for name, (n, api) in zip(names[1:], LIMITS):
            with threadpool_limits(n, user_api=api):
                times[name].append(sample(step, min_time))
    return _rows(times)


CHILD = """
import sys, json, statistics
sys.path[:0] = [p for p in {paths!r} if p]
{imports}
import numpy as np
from pycnn.bench.harness import sample
from pycnn.bench.threads_cases import make_step
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


def run_import_order(pycnn_parent: str, threads: int, rounds: int, min_time: float, batch: int) -> List[Dict[str, Any]]:
    """Fresh processes that import pycnn (from `pycnn_parent`) and torch in either order."""
    env = dict(os.environ)
    for var in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(var, None)  # as a user's script would run: pycnn picks the policy
    orders = {"pycnn imported first, torch used between calls": "import pycnn, torch",
              "torch imported first, torch used between calls": "import torch, pycnn"}
    times: Dict[str, List[float]] = {k: [] for k in orders}
    for _ in range(rounds):
        for name, imports in orders.items():
            code = CHILD.format(paths=[pycnn_parent], imports=imports, threads=threads, batch=batch, min_time=min_time)
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            times[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return _rows(times)


def markdown(report: Dict[str, Any]) -> str:
    m, st = report["meta"], report["settings"]
    lines = [f"# pycnn beside other thread pools ({m['date'][:10]}, {m['host']})", "",
             f"CPU: {cpu_line(m['cpu'])}; pycnn threads: {m['threads']}; {m['precision']}; "
             f"case: {st['case']}; median of {st['rounds']} interleaved rounds.", ""]
    for title, rows in (("In one process", report["limits"]), ("Import order (one process each)",
                                                               report["import_order"])):
        lines += [f"## {title}", "", "| case | ms | ratio to the first row |", "| --- | ---: | ---: |"]
        lines += [f"| {r['case']} | {r['ms']:.1f} | {r['ratio']:.2f} |" for r in rows] + [""]
    return "\n".join(lines)
