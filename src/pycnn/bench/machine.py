"""The machine a benchmark ran on: CPU, load, scheduling, library versions, thread settings."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import socket
from pathlib import Path
from typing import Any, Dict, List, Optional


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
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:40] or "host"

