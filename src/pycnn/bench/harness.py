"""The benchmarks' harness, apart from their cases (llm.c's dev/cuda/common.h): the machine a
benchmark ran on, the agreement check every case passes before it is timed, the timing loops and
the writing of a report (JSON and markdown). Every benchmark -- the CPU suite (run.py, cases.py),
the GPU, memory, fit, threads and distributed ones -- uses these and writes nothing of its own.

Importing this module imports nothing heavy (NumPy, pycnn and torch load inside the functions).
"""
from __future__ import annotations

import datetime as _dt
import gc
import json
import os
import platform
import re
import socket
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple


# ----------------------------------------------------------------------------------------------
# machine information
# ----------------------------------------------------------------------------------------------
def cpu_info() -> Dict[str, Any]:
    info: Dict[str, Any] = {"model": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count()}
    flags: set = set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, val = line.partition(":")
            key, val = key.strip(), val.strip()
            if key == "model name" and "model_name_set" not in info:
                info["model"], info["model_name_set"] = val, True
            elif key == "cpu family" and "family" not in info:
                info["family"] = int(val)
            elif key == "model" and "model_number" not in info:
                info["model_number"] = int(val)
            elif key == "vendor_id" and "vendor" not in info:
                info["vendor"] = val
            elif key == "flags" and not flags:
                flags = set(val.split())
    except OSError:
        pass
    info.pop("model_name_set", None)
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["usable_cpus"] = os.cpu_count()
    info["avx2"] = "avx2" in flags
    info["fma"] = "fma" in flags
    # the kernel lists avx512f only when it saves the AVX-512 state (XCR0), i.e. when usable
    info["avx512_usable"] = "avx512f" in flags
    info["avx512_flags"] = sorted(f for f in flags if f.startswith("avx512"))
    info["hypervisor"] = "hypervisor" in flags
    return info


def machine_info(threads: int, torch_mod: Any = None) -> Dict[str, Any]:
    import numpy as np
    import pycnn as pc

    bi = pc.build_info()
    meta: Dict[str, Any] = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "cpu": cpu_info(),
        "threads": threads,
        "precision": "float32 (TF32: n/a on CPU)",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {"pycnn": pc.__version__, "numpy": np.__version__,
                     "torch": getattr(torch_mod, "__version__", None)},
        "pycnn_build_info": bi,
        "pycnn_blas_core": bi.get("blas_core"),
        "pycnn_num_threads": pc.get_num_threads(),
        "loadavg": load_average(),
        "scheduler": _scheduler(),
        "git": _git(),
    }
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        meta["numpy_blas"] = {"name": blas.get("name"), "version": blas.get("version"),
                              "config": blas.get("openblas configuration")}
    except Exception:  # noqa: BLE001  (older NumPy)
        meta["numpy_blas"] = None
    try:
        from threadpoolctl import threadpool_info

        meta["threadpools"] = [{k: d.get(k) for k in ("user_api", "internal_api", "num_threads", "version",
                                                     "architecture", "filepath")} for d in threadpool_info()]
    except Exception:  # noqa: BLE001
        meta["threadpools"] = None
    if torch_mod is not None:
        meta["torch"] = {"version": torch_mod.__version__, "num_threads": torch_mod.get_num_threads(),
                         "mkldnn": bool(torch_mod.backends.mkldnn.is_available()),
                         "cpu_capability": _torch_cpu_capability(torch_mod)}
    return meta


def load_average() -> Optional[List[float]]:
    """1, 5 and 15 minute load averages: a busy machine makes every timing here meaningless."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


_PKG_DIR = Path(__file__).resolve().parent  # inside a checkout, its git state; else none


def _git() -> Optional[Dict[str, Any]]:
    """The checkout's commit and whether it had uncommitted changes (None outside a git checkout)."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_PKG_DIR, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_PKG_DIR,
                               capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def _scheduler() -> Optional[str]:
    """The process's CPU scheduling policy (a shared machine may be measured under `chrt -f`)."""
    try:
        pol = os.sched_getscheduler(0)
        names = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_FIFO: "SCHED_FIFO", os.SCHED_RR: "SCHED_RR"}
        prio = os.sched_getparam(0).sched_priority
        return names.get(pol, str(pol)) + (f" priority {prio}" if prio else "") + f", nice {os.nice(0)}"
    except (AttributeError, OSError):
        return None


def _torch_cpu_capability(torch_mod: Any) -> Optional[str]:
    try:
        return str(torch_mod.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001
        return None


def host_tag() -> str:
    """The host name as it goes into result file names."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:40] or "host"


def cpu_line(cpu: Dict[str, Any]) -> str:
    """One line for a report: model, family/model numbers, cores and the widest vector ISA."""
    isa = "AVX-512" if cpu.get("avx512_usable") else "AVX2" if cpu.get("avx2") else "no AVX2"
    return (f"{cpu.get('model')} (family {cpu.get('family')}, model {cpu.get('model_number')}), "
            f"{cpu.get('usable_cpus')} usable cores, {isa}" + (", virtualised" if cpu.get("hypervisor") else ""))



def busy(loadavg_start: Optional[List[float]], loadavg_end: Optional[List[float]], threads: int) -> bool:
    """Others were running: load above ~1 before we started, or above our own threads at the end."""
    return (loadavg_start or [0])[0] > 1.0 or (loadavg_end or [0])[0] > threads + 1.0


def set_threads(threads: int, with_torch: bool, without_torch: str) -> Any:
    """pycnn's threads, and PyTorch's when it is wanted and importable: returns torch or None
    (printing `without_torch`, what the report then leaves out, when it cannot be imported)."""
    import sys

    import pycnn as pc

    pc.set_num_threads(threads)
    if not with_torch:
        return None
    try:
        import torch
    except ImportError:
        print(f"PyTorch is not importable: {without_torch}", file=sys.stderr)
        return None
    torch.set_num_threads(threads)
    return torch


# ----------------------------------------------------------------------------------------------
# agreement checks
# ----------------------------------------------------------------------------------------------
class Mismatch(AssertionError):
    """Two implementations' outputs differ: the benchmark stops before timing anything."""


def as_numpy(a: Any):
    import numpy as np

    if hasattr(a, "detach"):  # torch (CUDA tensors come to the host)
        return a.detach().cpu().numpy()
    if hasattr(a, "numpy") and not isinstance(a, np.ndarray):  # pycnn Tensor, any device
        return a.numpy()
    return np.asarray(a)


def rel_err(a: Any, b: Any) -> float:
    """max |a - b| / max |b| (0 when both are 0)."""
    import numpy as np

    a, b = as_numpy(a).astype(np.float64), as_numpy(b).astype(np.float64)
    if a.shape != b.shape:
        raise Mismatch(f"shape {a.shape} vs {b.shape}")
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    return diff / scale if scale > 0 else diff


def agree(case: str, what: str, got: Any, want: Any, rtol: float, who: str = "pycnn and torch") -> float:
    """rel_err(got, want); raises Mismatch above rtol (NaN included)."""
    e = rel_err(got, want)
    if not e <= rtol:
        raise Mismatch(f"{case}: {who} differ in {what}: max rel err {e:.3g} > {rtol:g}")
    return e


def compare(case: str, what: str, results: Dict[str, Any], rtol: float) -> Dict[str, float]:
    """Every implementation's `what` against pycnn's; {"impl:what": error}."""
    ref = results["pycnn"]
    return {f"{impl}:{what}": agree(case, what, val, ref, rtol, f"{impl} and pycnn")
            for impl, val in results.items() if impl != "pycnn"}


# ----------------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------------
class Impl:
    """fn(): one call of the timed work; reset(): optional, run (untimed) before every sample."""

    def __init__(self, fn: Callable[[], Any], reset: Optional[Callable[[], None]] = None):
        self.fn, self.reset = fn, reset


def measure(impls: Dict[str, Impl], repeats: int, warmup: int, min_time: float,
            budget: float = float("inf"), cooldown: float = 0.0) -> Dict[str, Dict[str, Any]]:
    """Median seconds per call of each implementation, in interleaved rounds (the dict's order:
    a, b, c, a, b, c, ...). `budget` (seconds) caps the rounds of a slow case (never below 3), so
    that a loaded or slow machine still finishes. min_time 0: one call per sample.

    `cooldown` seconds of sleep before every sample: the thread pools of the implementation that
    ran before (OpenBLAS workers spin ~0.1 s after a call, OpenMP workers spin too) would
    otherwise still occupy the cores while the next implementation starts, which penalises
    whichever implementation follows another thread pool in the rotation."""
    order = list(impls)
    inner: Dict[str, int] = {}
    per_call: Dict[str, float] = {}
    for k in order:  # warm-up, and calls per sample so that a sample lasts >= min_time
        im = impls[k]
        if im.reset:
            im.reset()
        best = float("inf")
        for _ in range(max(1, warmup)):
            t0 = time.perf_counter()
            im.fn()
            best = min(best, time.perf_counter() - t0)
        inner[k] = max(1, int(min_time / max(best, 1e-7) + 0.5))
        per_call[k] = best
    round_s = sum(inner[k] * per_call[k] for k in order)
    if budget / max(round_s, 1e-9) < repeats:
        repeats = max(min(3, repeats), int(budget / max(round_s, 1e-9)))
    samples: Dict[str, List[float]] = {k: [] for k in order}
    gc.collect()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for k in order:
                im = impls[k]
                if im.reset:
                    im.reset()
                n = inner[k]
                fn = im.fn
                if cooldown > 0:
                    time.sleep(cooldown)
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                samples[k].append((time.perf_counter() - t0) / n)
    finally:
        if gc_was:
            gc.enable()
    return {k: {"ms": 1e3 * statistics.median(samples[k]), "min_ms": 1e3 * min(samples[k]),
                "samples_ms": [round(1e3 * s, 5) for s in samples[k]], "calls_per_sample": inner[k],
                "rounds": repeats}
            for k in order}


def sample(fn: Callable[[], Any], min_time: float, between: Optional[Callable[[], Any]] = None) -> float:
    """Seconds per call of fn over calls lasting >= min_time in all (at least 2); between() runs
    untimed before each call."""
    total, calls = 0.0, 0
    while total < min_time or calls < 2:
        if between is not None:
            between()
        t0 = time.perf_counter()
        fn()
        total += time.perf_counter() - t0
        calls += 1
    return total / calls


# ----------------------------------------------------------------------------------------------
# report writing
# ----------------------------------------------------------------------------------------------
def dated_stem(kind: str, threads: Optional[int] = None) -> str:
    """<kind>-<date>-<host>[-t<threads>]: the results file name of a run, without its suffix."""
    return f"{kind}-{_dt.date.today().isoformat()}-{host_tag()}" + (f"-t{threads}" if threads else "")


def report_paths(json_path: Optional[str], results_dir: Optional[Path],
                 stem: str) -> Optional[Tuple[Path, Path]]:
    """(JSON, markdown) paths: a --json PATH and PATH.md (PATH's .json swapped for .md), else
    results_dir/<stem>.{json,md}; None where neither is given (print only)."""
    if json_path:
        jpath = Path(json_path)
        return jpath, (jpath.with_suffix(".md") if jpath.suffix == ".json" else Path(str(jpath) + ".md"))
    if results_dir is not None:
        return Path(results_dir) / f"{stem}.json", Path(results_dir) / f"{stem}.md"
    return None


def write_report(report: Dict[str, Any], md: str, paths: Tuple[Path, Path]) -> None:
    """The full report as JSON and its markdown, folders made as needed."""
    jpath, mpath = paths
    jpath.parent.mkdir(parents=True, exist_ok=True)
    jpath.write_text(json.dumps(report, indent=1, default=float) + "\n")
    mpath.write_text(md)
