"""The memory benchmark's cases (benchmarks/memory.py is their command line, which runs each in a
process of its own): a training step of LeNet-5 or VGG-11 in pycnn or PyTorch, and what the
process's resident memory does around it.

- Peak: VmHWM over the first steps, reset (``/proc/self/clear_refs`` = 5) once the model, data and
  optimizer exist, so that the initialisation's temporaries do not hide the step's own peak.
- Flat: VmRSS and VmHWM at steps 1, 10, 100, ... of a long LeNet-5 run; the growth from step 100
  to the last step shows whether memory stays flat (no leak, no cache creep).

Every step: forward, cross-entropy, backward, SGD (lr 0.01, momentum 0.9).
"""
from __future__ import annotations

import resource
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .cases import SGD_LR, SGD_MOMENTUM, torch_lenet5

MIB = 1024.0 * 1024.0
VGG11_CFG = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
CHECKPOINTS = (1, 2, 3, 10, 100, 250, 500, 750, 1000)
FLAT_RSS_MIB, FLAT_HWM_MIB = 1.0, 2.0  # "flat": growth from step 100 to the last step below these
LENET_PARAMS = 61706


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
# one framework, one model
# ----------------------------------------------------------------------------------------------
def pycnn_setup(model: str, batch: int, threads: int) -> Tuple[Callable[[], Any], Dict[str, Any]]:
    import numpy as np

    import pycnn as pc
    from pycnn import models, nn, optim

    pc.set_num_threads(threads)
    pc.manual_seed(0)
    rng = np.random.default_rng(0)
    if model == "lenet5":
        m, source = models.lenet5(num_classes=10), "pc.models.lenet5"
        x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    else:
        m, source = models.vgg11(num_classes=10), "pc.models.vgg11(num_classes=10)"
        x = rng.random((batch, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, size=batch).astype(np.int64)
    px, py = pc.from_numpy(x), pc.from_numpy(y)
    crit = nn.CrossEntropyLoss()
    m.train()
    opt = optim.SGD(m.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)

    def step():
        logits = m(px)
        loss = crit(logits, py)
        m.zero_grad()
        m.backward(crit.backward(), need_input_grad=False)
        opt.step()
        return loss

    return step, {"model_source": source, "optimizer": "pc.optim.SGD", "pycnn": pc.__version__,
                  "params": int(sum(p.numel() for p in m.parameters()))}


def torch_vgg11(torch: Any) -> Any:
    """torchvision's vgg11 layout for 10 classes (ReLU(inplace=True) as torchvision uses)."""
    nn = torch.nn
    layers: List[Any] = []
    c = 3
    for v in VGG11_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(nn.Sequential(*layers), nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(),
                         nn.Sequential(nn.Linear(512 * 49, 4096), nn.ReLU(True), nn.Dropout(0.5),
                                       nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5), nn.Linear(4096, 10)))


def torch_setup(model: str, batch: int, threads: int) -> Tuple[Callable[[], Any], Dict[str, Any]]:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    if model == "lenet5":
        m = torch_lenet5(torch)
        x = torch.from_numpy(rng.random((batch, 1, 28, 28), dtype=np.float32))
    else:
        m = torch_vgg11(torch)
        x = torch.from_numpy(rng.random((batch, 3, 32, 32), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, size=batch).astype(np.int64))
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)

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
    """Sets up one framework's model in this process and runs `steps` steps, reading the memory."""
    out: Dict[str, Any] = {"framework": framework, "model": model, "batch": batch, "steps": steps}
    out["start"] = mem_now()
    setup = pycnn_setup if framework == "pycnn" else torch_setup
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
# summaries and the report
# ----------------------------------------------------------------------------------------------
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


def flat_row(r: Dict[str, Any], s: Dict[str, Any]) -> Dict[str, Any]:
    """The flat-memory verdict of a long run `r` (summarised as `s`)."""
    marks, steps = r["marks"], r["steps"]
    return {"framework": r["framework"], "steps": steps, "rss_at_100_mib": marks["100"]["rss_mib"],
            "rss_at_last_mib": marks[str(steps)]["rss_mib"],
            "hwm_at_100_mib": marks["100"]["hwm_mib"], "hwm_at_last_mib": marks[str(steps)]["hwm_mib"],
            "rss_growth_100_to_last_mib": s["rss_growth_100_to_last_mib"],
            "hwm_growth_100_to_last_mib": s["hwm_growth_100_to_last_mib"],
            "rss_by_step_mib": {k: round(v["rss_mib"], 2) for k, v in marks.items()},
            "flat": (s["rss_growth_100_to_last_mib"] < FLAT_RSS_MIB and s["hwm_growth_100_to_last_mib"] < FLAT_HWM_MIB)}


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
                  f"step would add ~{LENET_PARAMS * 4 * (report['steps'] - 100) / MIB:.0f} MiB)."]
    return "\n".join(lines) + "\n"
