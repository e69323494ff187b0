"""Peak resident memory of a training step, pycnn vs PyTorch, each run in its own subprocess.

    python -m benchmarks.memory [--threads N] [--steps 1000] [--json PATH] [--no-torch] [--no-vgg]

- LeNet-5 (28x28, batch 64) and VGG-11 (32x32 inputs, num_classes=10, batch 64; pc.models.vgg11
  with torchvision's layout, i.e. adaptive 7x7 pooling before a 25088-4096-4096-10 classifier):
  resident memory before the first step and the peak (VmHWM) over the first steps. The peak is
  reset (``/proc/self/clear_refs`` = 5) once the model, data and optimizer exist, so the
  initialisation's temporaries do not hide the step's own peak.
- LeNet-5 step repeated --steps (1000) times: VmRSS and VmHWM at steps 1, 10, 100 and 1000; the
  growth from step 100 to step 1000 shows whether memory stays flat (no leak, no cache creep).

Every training step: forward, cross-entropy, backward, SGD (lr 0.01, momentum 0.9).
Results: benchmarks/results/memory-<date>-<host>.{json,md} (or --json PATH and PATH.md).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import glob
import importlib.util
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
MIB = 1024.0 * 1024.0
VGG11_CFG = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
CHECKPOINTS = (1, 2, 3, 10, 100, 250, 500, 750, 1000)
FLAT_RSS_MIB, FLAT_HWM_MIB = 1.0, 2.0  # "flat": growth from step 100 to the last step below these


def _status_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def mem_now() -> Dict[str, Optional[float]]:
    """VmRSS and VmHWM in MiB (None where /proc is missing) and ru_maxrss in MiB."""
    rss, hwm = _status_kib("VmRSS"), _status_kib("VmHWM")
    return {"rss_mib": None if rss is None else rss / 1024.0, "hwm_mib": None if hwm is None else hwm / 1024.0,
            "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------
# child: one framework, one model, in this process
# ----------------------------------------------------------------------------------------------
def _pycnn_setup(model: str, batch: int, threads: int):
    import numpy as np

    sys.path.insert(0, str(ROOT))
    if glob.glob(str(ROOT / "src" / "pycnn" / "_core*.so")) and importlib.util.find_spec("pycnn") is None:
        sys.path.insert(0, str(ROOT / "src"))  # the in-place build of tools/dev_build.sh
    import pycnn as pc
    from pycnn import nn

    from benchmarks.run import pycnn_lenet5, pycnn_sgd

    pc.set_num_threads(threads)
    pc.manual_seed(0)
    rng = np.random.default_rng(0)
    if model == "lenet5":
        m, source = pycnn_lenet5(pc)
        x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    else:
        m, source = pc.models.vgg11(num_classes=10), "pc.models.vgg11(num_classes=10)"
        x = rng.random((batch, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, size=batch).astype(np.int64)
    px, py = pc.from_numpy(x), pc.from_numpy(y)
    crit = nn.CrossEntropyLoss()
    m.train()
    opt, opt_source = pycnn_sgd(pc, m.parameters())

    def step():
        logits = m(px)
        loss = crit(logits, py)
        m.zero_grad()
        m.backward(crit.backward(), need_input_grad=False)
        opt.step()
        return loss

    return step, {"model_source": source, "optimizer": opt_source, "pycnn": pc.__version__,
                  "params": int(sum(p.numel() for p in m.parameters()))}


def _torch_setup(model: str, batch: int, threads: int):
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    if model == "lenet5":
        m = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                          nn.Linear(84, 10))
        x = torch.from_numpy(rng.random((batch, 1, 28, 28), dtype=np.float32))
    else:
        layers: List[Any] = []
        c = 3
        for v in VGG11_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        # torchvision's vgg11 layout (ReLU(inplace=True) as torchvision uses)
        m = nn.Sequential(nn.Sequential(*layers), nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(),
                          nn.Sequential(nn.Linear(512 * 49, 4096), nn.ReLU(True), nn.Dropout(0.5),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5), nn.Linear(4096, 10)))
        x = torch.from_numpy(rng.random((batch, 3, 32, 32), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, size=batch).astype(np.int64))
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        return loss

    return step, {"model_source": "torch.nn (torchvision layout)" if model != "lenet5" else "torch.nn",
                  "optimizer": "torch.optim.SGD", "torch": torch.__version__,
                  "params": int(sum(p.numel() for p in m.parameters()))}


def child(framework: str, model: str, batch: int, steps: int, threads: int) -> Dict[str, Any]:
    out: Dict[str, Any] = {"framework": framework, "model": model, "batch": batch, "steps": steps}
    out["start"] = mem_now()
    setup = _pycnn_setup if framework == "pycnn" else _torch_setup
    t0 = time.perf_counter()
    step, info = setup(model, batch, threads)
    out.update(info)
    out["after_setup"] = mem_now()
    out["setup_s"] = round(time.perf_counter() - t0, 2)
    out["peak_reset"] = reset_peak()
    out["before_step"] = mem_now()
    marks = {}
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        loss = step()
        if i in CHECKPOINTS or i == steps:
            marks[str(i)] = mem_now()
            if i == 1:
                out["first_step_s"] = round(time.perf_counter() - t0, 3)
    out["loss_last"] = float(loss.item())
    out["steps_s"] = round(time.perf_counter() - t0, 2)
    out["marks"] = marks
    return out


# ----------------------------------------------------------------------------------------------
# parent
# ----------------------------------------------------------------------------------------------
def run_child(framework: str, model: str, batch: int, steps: int, threads: int, timeout: float = 600) -> Dict[str, Any]:
    from benchmarks.run import set_thread_env

    env = dict(os.environ)
    set_thread_env(threads)
    env.update({k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, "-m", "benchmarks.memory", "--child", framework, model, str(batch), str(steps),
           "--threads", str(threads)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def summarise(r: Dict[str, Any]) -> Dict[str, Any]:
    before = r["before_step"]["rss_mib"]
    marks = r["marks"]
    first = marks.get("1") or marks[min(marks, key=int)]
    early = marks.get("3") or first
    s = {"framework": r["framework"], "model": r["model"], "batch": r["batch"], "params": r["params"],
         "rss_after_setup_mib": r["after_setup"]["rss_mib"], "rss_before_step_mib": before,
         "peak_first_steps_mib": early["hwm_mib"] if r["peak_reset"] else None,
         "step_working_set_mib": (early["hwm_mib"] - before) if r["peak_reset"] else None,
         "ru_maxrss_mib": marks[max(marks, key=int)]["ru_maxrss_mib"],
         "first_step_s": r.get("first_step_s"), "step_ms": 1e3 * r["steps_s"] / r["steps"]}
    if "100" in marks and str(r["steps"]) in marks and r["steps"] > 100:
        last = marks[str(r["steps"])]
        s["rss_growth_100_to_last_mib"] = last["rss_mib"] - marks["100"]["rss_mib"]
        s["hwm_growth_100_to_last_mib"] = last["hwm_mib"] - marks["100"]["hwm_mib"]
    return s


def markdown(report: Dict[str, Any]) -> str:
    m = report["meta"]
    cpu = m["cpu"]
    lines = [f"# pycnn memory benchmark, {m['date'][:10]}", "",
             f"- CPU: {cpu.get('model')}, {cpu.get('usable_cpus')} usable cores; threads {m['threads']}",
             f"- pycnn {m['versions']['pycnn']}, NumPy {m['versions']['numpy']}, PyTorch "
             f"{m['versions'].get('torch') or 'not available'}; float32; each run in its own process",
             "- peak = VmHWM over the first 3 steps, reset after model/data/optimizer creation; "
             "working set = peak - RSS before the first step", "",
             "| model (batch) | framework | params | RSS before step MiB | peak RSS MiB | step working set MiB | "
             "step ms |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    f = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for s in report["peak"]:
        lines.append(f"| {s['model']} ({s['batch']}) | {s['framework']} | {s['params']:,} | "
                     f"{f(s['rss_before_step_mib'])} | {f(s['peak_first_steps_mib'])} | {f(s['step_working_set_mib'])} | "
                     f"{s['step_ms']:.1f} |")
    lines += ["", f"LeNet-5 step (batch 64) repeated {report['steps']} times:", "",
              "| framework | RSS at step 100 MiB | RSS at last step MiB | RSS growth MiB | VmHWM growth MiB | flat |",
              "| --- | ---: | ---: | ---: | ---: | --- |"]
    for s in report["flat"]:
        lines.append(f"| {s['framework']} | {f(s['rss_at_100_mib'])} | {f(s['rss_at_last_mib'])} | "
                     f"{s['rss_growth_100_to_last_mib']:+.2f} | {s['hwm_growth_100_to_last_mib']:+.2f} | "
                     f"{'yes' if s['flat'] else 'NO'} |")
    tol = report["flat_tolerance_mib"]
    lines += ["", f"flat = between step 100 and step {report['steps']}, VmRSS grows by less than {tol['rss']} MiB "
                  f"and the peak (VmHWM) by less than {tol['hwm']} MiB (a leak of one float per parameter per "
                  f"step would add ~{61706 * 4 * (report['steps'] - 100) / MIB:.0f} MiB)."]
    return "\n".join(lines) + "\n"


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

    if args.child:
        fw, model, batch, steps = args.child
        from benchmarks.run import set_thread_env

        set_thread_env(args.threads)
        print(json.dumps(child(fw, model, int(batch), int(steps), args.threads)))
        return 0

    sys.path.insert(0, str(ROOT))
    if glob.glob(str(ROOT / "src" / "pycnn" / "_core*.so")) and importlib.util.find_spec("pycnn") is None:
        sys.path.insert(0, str(ROOT / "src"))  # the in-place build of tools/dev_build.sh
    from benchmarks.run import host_tag, machine_info, set_thread_env

    set_thread_env(args.threads)
    steps = 200 if args.quick and args.steps == 1000 else args.steps
    fws = ["pycnn"] + ([] if args.no_torch or not _has_torch() else ["torch"])
    t0 = time.perf_counter()
    raw, peak, flat = [], [], []
    for fw in fws:  # LeNet: the peak of the first steps, and the long run, in one process
        r = run_child(fw, "lenet5", 64, steps, args.threads)
        raw.append(r)
        s = summarise(r)
        peak.append(s)
        marks = r["marks"]
        flat.append({"framework": fw, "steps": steps, "rss_at_100_mib": marks["100"]["rss_mib"],
                     "rss_at_last_mib": marks[str(steps)]["rss_mib"],
                     "hwm_at_100_mib": marks["100"]["hwm_mib"], "hwm_at_last_mib": marks[str(steps)]["hwm_mib"],
                     "rss_growth_100_to_last_mib": s["rss_growth_100_to_last_mib"],
                     "hwm_growth_100_to_last_mib": s["hwm_growth_100_to_last_mib"],
                     "rss_by_step_mib": {k: round(v["rss_mib"], 2) for k, v in marks.items()},
                     "flat": (s["rss_growth_100_to_last_mib"] < FLAT_RSS_MIB
                              and s["hwm_growth_100_to_last_mib"] < FLAT_HWM_MIB)})
        print(f"  lenet5 {fw:6s} peak {s['peak_first_steps_mib']:.1f} MiB, growth 100->{steps}: "
              f"{s['hwm_growth_100_to_last_mib']:+.2f} MiB", file=sys.stderr)
    if not (args.quick or args.no_vgg):
        for fw in fws:
            r = run_child(fw, "vgg11", 64, 3, args.threads)
            raw.append(r)
            s = summarise(r)
            peak.append(s)
            print(f"  vgg11  {fw:6s} peak {s['peak_first_steps_mib']:.1f} MiB", file=sys.stderr)
    torch_mod = None
    if "torch" in fws:
        import torch as torch_mod  # noqa: F811  (versions only)
    report = {"meta": machine_info(args.threads, torch_mod), "steps": steps,
              "flat_tolerance_mib": {"rss": FLAT_RSS_MIB, "hwm": FLAT_HWM_MIB},
              "peak": peak, "flat": flat, "raw": raw, "wall_s": round(time.perf_counter() - t0, 1)}
    md = markdown(report)
    if args.json:
        jpath = Path(args.json)
        mpath = jpath.with_suffix(".md") if jpath.suffix == ".json" else Path(str(jpath) + ".md")
    else:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stem = f"memory-{_dt.date.today().isoformat()}-{host_tag()}-t{args.threads}"
        jpath, mpath = RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"
    jpath.parent.mkdir(parents=True, exist_ok=True)
    jpath.write_text(json.dumps(report, indent=1) + "\n")
    mpath.write_text(md)
    print(md[md.index("| model"):])
    print(f"wrote {jpath} and {mpath} ({report['wall_s']:.0f} s)", file=sys.stderr)
    return 0


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


if __name__ == "__main__":
    sys.exit(main())
