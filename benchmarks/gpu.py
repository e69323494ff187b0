"""pycnn GPU benchmarks against PyTorch on the same GPU, in the same run.

Cases (pycnn/bench/gpu_cases.py): a LeNet-5 training step (batch 64 and 256; pycnn eager, pycnn CUDA
graph, PyTorch eager, PyTorch CUDA graph), conv2d forward+backward for the VGG/ResNet 3x3 layers of
the CPU suite, SGEMM through pycnn's GEMM (a large Linear forward) against the GPU's FP32 peak, and
ReLU forward on a 256 MiB tensor against the GPU's HBM bandwidth. Strict FP32 in both libraries (no
TF32). Outputs agree before anything is timed. Timing: CUDA events around a loop of calls after
warm-up, the median of several samples. Results: benchmarks/results/gpu-<date>-<device>.{json,md}.

    python -m benchmarks.gpu [--quick] [--out DIR] [--cases lenet,conv,sgemm,relu]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import platform
import sys
from pathlib import Path
from typing import List, Optional

from benchmarks.checkout import RESULTS, use_checkout

NO_GPU_EXIT = 3


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller GEMM/ReLU, few short samples (smoke test)")
    p.add_argument("--out", metavar="DIR", default=str(RESULTS),
                   help="folder for gpu-<date>-<device>.{json,md} (default benchmarks/results)")
    p.add_argument("--cases", default="lenet,conv,sgemm,relu", help="comma-separated subset of lenet,conv,sgemm,relu")
    p.add_argument("--repeats", type=int, help="samples per implementation (default 11, quick 3)")
    p.add_argument("--min-ms", type=float, help="milliseconds per sample (default 100, quick 10)")
    p.add_argument("--rtol", type=float, default=1e-4, help="agreement tolerance relative to max |torch|")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    use_checkout()
    import pycnn as pc

    if not pc.cuda.is_available():
        print(f"benchmarks.gpu: no CUDA GPU available to pycnn ({pc._core.cuda_status()}); this benchmark needs a "
              "CUDA build of pycnn on a machine with an NVIDIA GPU and PyTorch with CUDA", file=sys.stderr)
        return NO_GPU_EXIT
    try:
        import torch
    except ImportError:
        print("benchmarks.gpu: PyTorch is not installed; it is the reference of every case", file=sys.stderr)
        return NO_GPU_EXIT
    if not torch.cuda.is_available():
        print("benchmarks.gpu: this PyTorch has no CUDA (a CPU-only build?)", file=sys.stderr)
        return NO_GPU_EXIT
    from pycnn.bench import gpu_cases as gc
    from pycnn.bench.harness import Mismatch, write_report

    pc.backends.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = pc.cuda.get_device_name(0)
    peak = gc.peak_for(device)
    repeats = args.repeats or (3 if args.quick else 11)
    timer = gc.Timer(torch, pc, repeats, args.min_ms or (10.0 if args.quick else 100.0))
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(wanted) - set(gc.CASE_GROUPS)
    if unknown:
        print(f"benchmarks.gpu: unknown cases {sorted(unknown)}; choose from {','.join(gc.CASE_GROUPS)}",
              file=sys.stderr)
        return 2
    try:
        cases = gc.run_cases(pc, torch, timer, wanted, args.rtol, peak, args.quick)
    except Mismatch as e:
        print(f"benchmarks.gpu: outputs disagree, nothing timed is reported: {e}", file=sys.stderr)
        return 2
    date = _dt.date.today().isoformat()
    info = pc.build_info()
    meta = {"date": date, "device": device, "peak": peak, "peak_note": gc.PEAK_NOTE,
            "pycnn_version": info["version"], "pycnn_cuda_version": info["cuda_version"],
            "pycnn_allow_tf32": pc.backends.allow_tf32, "torch_version": torch.__version__,
            "torch_cuda_version": torch.version.cuda, "cudnn_version": torch.backends.cudnn.version(),
            "torch_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "torch_cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "python": platform.python_version(),
            "repeats": repeats, "min_ms_per_sample": timer.min_ms, "quick": args.quick,
            "timing": "CUDA events around a loop of calls, both libraries synchronised; median of samples"}
    report = {"meta": meta, "cases": cases}
    stem = Path(args.out) / f"gpu-{date}-{gc.device_slug(device)}"
    md = gc.markdown(report)
    write_report(report, md, (stem.with_suffix(".json"), stem.with_suffix(".md")))
    print(md)
    print(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
