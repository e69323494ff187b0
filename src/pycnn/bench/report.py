"""The CPU suite's report: the markdown table (also printed) from the JSON report."""
from __future__ import annotations

from typing import Any, Dict, Optional

from .harness import busy, cpu_line


def _fmt(v: Optional[float], nd: int = 3) -> str:
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.1f}"
    if v >= 10:
        return f"{v:.2f}"
    if v < 1 and v != 0:
        return f"{v:.{max(nd, 2)}g}"
    return f"{v:.{nd}f}"


def markdown(report: Dict[str, Any]) -> str:
    m = report["meta"]
    cpu = m["cpu"]
    tv = m["versions"].get("torch") or "not available"
    lines = [
        f"# pycnn CPU benchmark, {m['date'][:10]}",
        "",
        f"- CPU: {cpu_line(cpu)}",
        f"- Threads: {m['threads']} (pycnn, NumPy's BLAS, PyTorch); precision {m['precision']}",
        f"- pycnn {m['versions']['pycnn']} (BLAS: {m['pycnn_build_info'].get('blas')}, core "
        f"**{m['pycnn_blas_core']}**, OpenMP {m['pycnn_build_info'].get('openmp')}), NumPy {m['versions']['numpy']} "
        f"({(m.get('numpy_blas') or {}).get('name')} {(m.get('numpy_blas') or {}).get('version')}), PyTorch {tv}"
        + (f" (oneDNN {'on' if m['torch']['mkldnn'] else 'off'}, CPU capability {m['torch']['cpu_capability']})"
           if m.get("torch") else ""),
        "- LeNet-5: pc.models.lenet5, the same layers in torch.nn with its weights, numpy_peer.LeNet5; "
        "optimizer: SGD (pc.optim, torch.optim, numpy_peer)",
        f"- Timing: median of {report['settings']['repeats']} interleaved samples after warm-up, each sample "
        f">= {report['settings']['min_time_s'] * 1e3:.0f} ms of back-to-back calls after "
        f"{report['settings']['cooldown_s'] * 1e3:.0f} ms idle"
        + (" (--quick)" if report["settings"]["quick"] else ""),
        f"- Load average (1 min) at start / end: {(report.get('loadavg_start') or ['?'])[0]} / "
        f"{(m.get('loadavg') or ['?'])[0]} on {cpu.get('usable_cpus')} cores"
        + ((" -- other work was running: the benchmark ran at real-time priority (below), expect run-to-run "
            "noise of ~10-20%" if _realtime(m) else " -- the machine was busy: treat the timings with suspicion")
           if busy(report.get("loadavg_start"), m.get("loadavg"), m["threads"]) else " (idle machine)"),
        f"- Scheduling: {m.get('scheduler')}"
        + (" (real-time: other processes could not preempt the benchmark, except in the kernel's 5% RT throttle)"
           if _realtime(m) else ""),
        f"- Agreement checked before timing: all implementations within rtol {report['settings']['rtol']:g} "
        f"of pycnn (worst relative error {report['worst_check_error']:.2e})",
        "",
        "| case | pycnn ms | numpy ms | torch ms | pycnn/numpy | pycnn/torch | pycnn GFLOP/s | % of BLAS peak "
        "| % of FMA peak |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in report["cases"]:
        ms = c["ms"]
        lines.append(
            f"| {c['name']} | {_fmt(ms.get('pycnn'))} | {_fmt(ms.get('numpy'))} | {_fmt(ms.get('torch'))} | "
            f"{_fmt(c.get('pycnn/numpy'), 2)} | {_fmt(c.get('pycnn/torch'), 2)} | {_fmt(c.get('pycnn_gflops'), 1)} | "
            f"{_fmt(c.get('pct_blas_peak'), 0) if c.get('pct_blas_peak') is not None else '-'} | "
            f"{_fmt(c.get('pct_fma_peak'), 0) if c.get('pct_fma_peak') is not None else '-'} |")
    bp = report.get("blas_peak")
    if bp:
        g = bp["gflops"]
        lines += ["", f"Achievable BLAS peak (SGEMM {bp['size']}): pycnn {g['pycnn']:.1f} GFLOP/s "
                      f"({bp['how']}), NumPy {g['numpy']:.1f}"
                  + (f", PyTorch {g['torch']:.1f}" if "torch" in g else "") + " GFLOP/s."]
        if bp.get("fma_peak_gflops"):
            lines += ["", f"Measured float32 FMA peak of the {m['threads']} threads (csrc/fma_peak.cpp, widest vectors "
                          f"the CPU has): {bp['fma_peak_gflops']:.1f} GFLOP/s; pycnn's SGEMM reaches "
                          f"{100 * g['pycnn'] / bp['fma_peak_gflops']:.0f}% of it."]
    lines += ["", "Cases:", ""] + [f"- `{c['name']}`: {c['desc']}" for c in report["cases"]]
    lines += ["", "GFLOP/s = 2 x MACs / time; conv forward MACs = N*O*OH*OW*C/g*kh*kw, fwd+bwd = 3x forward; "
                  "LeNet step: all conv and linear MACs x 3."]
    return "\n".join(lines) + "\n"


def _realtime(meta: Dict[str, Any]) -> bool:
    return any(p in str(meta.get("scheduler")) for p in ("SCHED_FIFO", "SCHED_RR"))


def print_table(report: Dict[str, Any]) -> None:
    text = markdown(report)
    start = text.index("| case |")
    print(text[start:])
