"""Peak resident memory of a training step, pycnn vs PyTorch, each run in its own subprocess.

    python -m benchmarks.memory [--threads N] [--steps 1000] [--json PATH] [--no-torch] [--no-vgg]

- LeNet-5 (28x28, batch 64) and VGG-11 (32x32 inputs, num_classes=10, batch 64; pc.models.vgg11
  with torchvision's layout, i.e. adaptive 7x7 pooling before a 25088-4096-4096-10 classifier):
  resident memory before the first step and the peak (VmHWM) over the first steps.
- LeNet-5 step repeated --steps (1000) times: VmRSS and VmHWM at steps 1, 10, 100 and 1000; the
  growth from step 100 to step 1000 shows whether memory stays flat (no leak, no cache creep).

The cases and the report: pycnn/bench/memory_cases.py.
Results: benchmarks/results/memory-<date>-<host>-t<threads>.{json,md} (or --json PATH and PATH.md).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from benchmarks.checkout import RESULTS, ROOT, THREAD_VARS, set_thread_env, use_checkout


def run_child(framework: str, model: str, batch: int, steps: int, threads: int, timeout: float = 600) -> Dict[str, Any]:
    """memory_cases.child in a fresh process: its JSON result."""
    env = dict(os.environ)
    env.update({var: str(threads) for var in THREAD_VARS})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, "-m", "benchmarks.memory", "--child", framework, model, str(batch), str(steps),
           "--threads", str(threads)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=1000, help="LeNet steps for the flat-memory check (default 1000)")
    p.add_argument("--quick", action="store_true", help="200 LeNet steps, no VGG-11")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-vgg", action="store_true")
    p.add_argument("--child", nargs=4, metavar=("FRAMEWORK", "MODEL", "BATCH", "STEPS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    set_thread_env(args.threads)
    use_checkout()
    from pycnn.bench import memory_cases as mc

    if args.child:
        fw, model, batch, steps = args.child
        print(json.dumps(mc.child(fw, model, int(batch), int(steps), args.threads)))
        return 0

    from pycnn.bench.harness import dated_stem, machine_info, report_paths, write_report

    steps = 200 if args.quick and args.steps == 1000 else args.steps
    fws = ["pycnn"] + ([] if args.no_torch or importlib.util.find_spec("torch") is None else ["torch"])
    t0 = time.perf_counter()
    raw, peak, flat = [], [], []
    for fw in fws:  # LeNet: the peak of the first steps, and the long run, in one process
        r = run_child(fw, "lenet5", 64, steps, args.threads)
        s = mc.summarise(r)
        raw.append(r)
        peak.append(s)
        flat.append(mc.flat_row(r, s))
        print(f"  lenet5 {fw:6s} peak {s['peak_first_steps_mib']:.1f} MiB, growth 100->{steps}: "
              f"{s['hwm_growth_100_to_last_mib']:+.2f} MiB", file=sys.stderr)
    if not (args.quick or args.no_vgg):
        for fw in fws:
            r = run_child(fw, "vgg11", 64, 3, args.threads)
            s = mc.summarise(r)
            raw.append(r)
            peak.append(s)
            print(f"  vgg11  {fw:6s} peak {s['peak_first_steps_mib']:.1f} MiB", file=sys.stderr)
    torch_mod = None
    if "torch" in fws:
        import torch as torch_mod  # versions only
    report = {"meta": machine_info(args.threads, torch_mod), "steps": steps,
              "flat_tolerance_mib": {"rss": mc.FLAT_RSS_MIB, "hwm": mc.FLAT_HWM_MIB},
              "peak": peak, "flat": flat, "raw": raw, "wall_s": round(time.perf_counter() - t0, 1)}
    md = mc.markdown(report)
    paths = report_paths(args.json, RESULTS, dated_stem("memory", args.threads))
    write_report(report, md, paths)
    print(md[md.index("| model"):])
    print(f"wrote {paths[0]} and {paths[1]} ({report['wall_s']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
