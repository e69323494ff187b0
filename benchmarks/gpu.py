"""pycnn GPU benchmarks against PyTorch on the same GPU, in the same run.

Cases: a LeNet-5 training step (batch 64 and 256; pycnn eager, pycnn CUDA graph, PyTorch eager,
PyTorch CUDA graph), conv2d forward+backward for the VGG/ResNet 3x3 layers of the CPU suite
(pycnn/bench/cases.py), SGEMM through pycnn's GEMM (a large Linear forward) against the GPU's FP32
peak, and ReLU forward on a 256 MiB tensor against the GPU's HBM bandwidth. Strict FP32 in both
libraries (no TF32). Outputs agree before anything is timed. Timing: CUDA events around a loop of
calls after warm-up, the median of several samples. Results: benchmarks/results/gpu-<date>-<device>.{json,md}.

    python -m benchmarks.gpu [--quick] [--out DIR] [--cases lenet,conv,sgemm,relu]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import platform
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

# Published dense FP32 (non-tensor-core) peaks and HBM bandwidths; matched on the device name.
PEAKS = [  # (name pattern, label, FP32 TFLOP/s, HBM TB/s)
    (r"H200", "H200 (SXM)", 67.0, 4.8),
    (r"H100.*PCIe", "H100 PCIe", 51.0, 2.0),
    (r"H100", "H100 SXM", 67.0, 3.35),
    (r"A100", "A100 SXM 80GB", 19.5, 2.0),
]
CONVS = [  # the same 3x3 layers as pycnn/bench/cases.py: name, (N, C, H, W), (O, kh, kw), stride, pad
    ("vgg_3x3_64", (32, 64, 32, 32), (64, 3, 3), 1, 1),
    ("resnet_3x3_128", (32, 128, 16, 16), (128, 3, 3), 1, 1),
    ("strided_3x3_64to128_s2", (32, 64, 32, 32), (128, 3, 3), 2, 1),
]
LENET_BATCHES = (64, 256)
LENET_MACS_PER_SAMPLE = 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10
SGEMM = (8192, 8192, 8192)  # Linear: x (M, K) @ w (N, K)^T
RELU_BYTES = 256 << 20
LR, MOMENTUM = 0.01, 0.9
NO_GPU_EXIT = 3


def peak_for(name: str) -> Optional[Dict[str, Any]]:
    for pat, label, tflops, tbs in PEAKS:
        if re.search(pat, name):
            return {"assumed_device": label, "fp32_tflops": tflops, "hbm_tb_per_s": tbs}
    return None


def rel_err(a: Any, b: Any) -> float:
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shape {a.shape} vs {b.shape}")
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    return diff / scale if scale > 0 else diff


def agree(case: str, what: str, got: Any, want: Any, rtol: float, errs: Dict[str, float]) -> None:
    e = rel_err(got, want)
    errs[what] = e
    if not e <= rtol:
        raise AssertionError(f"{case}: pycnn and torch differ in {what}: max rel err {e:.3g} > {rtol:g}")


class Timer:
    """Median milliseconds per call of fn, timed with CUDA events (torch's, on pycnn's stream
    too: both libraries are synchronised before and after each sample)."""

    def __init__(self, torch: Any, pc: Any, repeats: int, min_ms: float) -> None:
        self.torch, self.pc, self.repeats, self.min_ms = torch, pc, repeats, min_ms

    def sync(self) -> None:
        self.pc.cuda.synchronize()
        self.torch.cuda.synchronize()

    def __call__(self, fn: Callable[[], Any], warmup: int = 3) -> Dict[str, Any]:
        for _ in range(warmup):
            fn()
        self.sync()
        # calls per sample: enough for min_ms
        start, end = self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        self.sync()
        end.record()
        end.synchronize()
        one = max(start.elapsed_time(end), 1e-3)
        loops = max(1, int(self.min_ms / one))
        samples = []
        for _ in range(self.repeats):
            self.sync()
            start.record()
            for _ in range(loops):
                fn()
            self.sync()  # pycnn runs on its own stream: wait for it before the end event
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / loops)
        return {"ms": statistics.median(samples), "samples_ms": samples, "loops": loops}


# ------------------------------------------------------------------------------------- cases
def lenet_cases(pc: Any, torch: Any, timer: Timer, batch: int, rtol: float) -> List[Dict[str, Any]]:
    import numpy as np

    from pycnn import nn, optim

    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)
    pc.manual_seed(0)
    model = pc.models.lenet5().to("cuda")
    params0 = [p.data.numpy().copy() for p in model.parameters()]
    opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    crit = nn.CrossEntropyLoss()
    sx, sy = pc.tensor(x, device="cuda"), pc.tensor(y, device="cuda")

    def pc_step() -> Any:
        loss = crit(model(sx), sy)
        opt.zero_grad()
        model.zero_grad()
        model.backward(crit.backward(), need_input_grad=False)  # as PyTorch: no d/dx of the images
        opt.step()
        return loss

    tnn = torch.nn
    tm = tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5),
                        tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(),
                        tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10)).cuda()
    with torch.no_grad():
        for tp, a in zip(tm.parameters(), params0):
            tp.copy_(torch.from_numpy(a))
    topt = torch.optim.SGD(tm.parameters(), lr=LR, momentum=MOMENTUM)
    tcrit = tnn.CrossEntropyLoss()
    tx, ty = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()

    def t_step() -> Any:
        topt.zero_grad(set_to_none=True)
        loss = tcrit(tm(tx), ty)
        loss.backward()
        topt.step()
        return loss

    # agreement: two steps from the same weights
    errs: Dict[str, float] = {}
    for i in range(2):
        agree(f"lenet5_step.b{batch}", f"loss{i}", pc_step().numpy(), t_step().detach().cpu().numpy(), rtol, errs)
    for j, (p, tp) in enumerate(zip(model.parameters(), tm.parameters())):
        agree(f"lenet5_step.b{batch}", f"param{j}", p.data.numpy(), tp.detach().cpu().numpy(), rtol, errs)

    flops = 2.0 * 3 * LENET_MACS_PER_SAMPLE * batch
    out = []
    r = timer(pc_step)
    out.append({"name": f"lenet5_step.b{batch}", "impl": "pycnn eager", **r})
    g = pc.cuda.CUDAGraph()
    with pc.cuda.graph(g):  # the eager steps above were the warm-up
        pc_step()
    r = timer(g.replay)
    out.append({"name": f"lenet5_step.b{batch}", "impl": "pycnn cuda graph", **r})
    out.append({"name": f"lenet5_step.b{batch}", "impl": "torch eager", **timer(t_step)})
    try:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                t_step()
        torch.cuda.current_stream().wait_stream(s)
        tg = torch.cuda.CUDAGraph()
        topt.zero_grad(set_to_none=True)
        with torch.cuda.graph(tg):
            loss = tcrit(tm(tx), ty)
            loss.backward()
            topt.step()
        out.append({"name": f"lenet5_step.b{batch}", "impl": "torch cuda graph", **timer(tg.replay)})
    except Exception as e:  # capturing torch's optimizer is version-dependent: report, do not fail
        out.append({"name": f"lenet5_step.b{batch}", "impl": "torch cuda graph", "error": str(e)})
    for o in out:
        o["check_max_rel_err"] = errs
        if "ms" in o:
            o["gflops"] = flops / (o["ms"] * 1e-3) / 1e9
    return out


def conv_cases(pc: Any, torch: Any, timer: Timer, rtol: float) -> List[Dict[str, Any]]:
    import numpy as np

    from pycnn import functional as F

    out = []
    for name, xs, ws, stride, pad in CONVS:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(xs, dtype=np.float32)
        w = (rng.standard_normal((ws[0], xs[1], ws[1], ws[2]), dtype=np.float32) / np.sqrt(xs[1] * 9)).astype(np.float32)
        b = (rng.standard_normal(ws[0], dtype=np.float32) * 0.1).astype(np.float32)
        oh = (xs[2] + 2 * pad - ws[1]) // stride + 1
        dy = rng.standard_normal((xs[0], ws[0], oh, oh), dtype=np.float32)
        px, pw, pb, pdy = (pc.tensor(a, device="cuda") for a in (x, w, b, dy))
        st, pd = (stride, stride), (pad, pad, pad, pad)

        def pc_fb() -> Any:
            y = F.conv2d(px, pw, pb, st, pd)
            return (y,) + tuple(F.conv2d_backward(pdy, px, pw, st, pd))

        tx, tw, tb, tdy = (torch.from_numpy(a).cuda() for a in (x, w, b, dy))
        tx.requires_grad_(True), tw.requires_grad_(True), tb.requires_grad_(True)

        def t_fb() -> Any:
            y = torch.nn.functional.conv2d(tx, tw, tb, stride, pad)
            gx, gw, gb = torch.autograd.grad(y, (tx, tw, tb), tdy)
            return y, gx, gw, gb

        errs: Dict[str, float] = {}
        for what, a, t in zip(("y", "dx", "dw", "db"), pc_fb(), t_fb()):
            agree(name, what, a.numpy(), t.detach().cpu().numpy(), rtol, errs)
        macs = xs[0] * ws[0] * oh * oh * xs[1] * ws[1] * ws[2]
        for impl, fn in (("pycnn", pc_fb), ("torch", t_fb)):
            r = timer(fn)
            out.append({"name": f"{name}.fwd+bwd", "impl": impl, **r, "check_max_rel_err": errs,
                        "gflops": 2.0 * 3 * macs / (r["ms"] * 1e-3) / 1e9})
    return out


def sgemm_case(pc: Any, torch: Any, timer: Timer, rtol: float, peak: Optional[Dict[str, Any]],
               quick: bool) -> List[Dict[str, Any]]:
    import numpy as np

    from pycnn import _core

    m, n, k = (2048, 2048, 2048) if quick else SGEMM
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    px, pw = pc.tensor(x, device="cuda"), pc.tensor(w, device="cuda")
    tx, tw = torch.from_numpy(x).cuda(), torch.from_numpy(w).cuda()
    errs: Dict[str, float] = {}
    agree("sgemm", "y", _core.linear_forward(px, pw, None).numpy(), (tx @ tw.T).cpu().numpy(), rtol, errs)
    out = []
    for impl, fn in (("pycnn", lambda: _core.linear_forward(px, pw, None)), ("torch", lambda: tx @ tw.T)):
        r = timer(fn)
        tflops = 2.0 * m * n * k / (r["ms"] * 1e-3) / 1e12
        o = {"name": f"sgemm_{m}x{n}x{k}", "impl": impl, **r, "tflops": tflops, "check_max_rel_err": errs}
        if peak:
            o["fraction_of_fp32_peak"] = tflops / peak["fp32_tflops"]
        out.append(o)
    return out


def relu_case(pc: Any, torch: Any, timer: Timer, peak: Optional[Dict[str, Any]], quick: bool) -> List[Dict[str, Any]]:
    import numpy as np

    from pycnn import _core

    n = (RELU_BYTES // 16 if quick else RELU_BYTES) // 4
    x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    px, tx = pc.tensor(x, device="cuda"), torch.from_numpy(x).cuda()
    errs: Dict[str, float] = {}
    agree("relu", "y", _core.activation_forward(px, _core.Act.relu, 0.0).numpy(), torch.relu(tx).cpu().numpy(), 0.0,
          errs)
    out = []
    for impl, fn in (("pycnn", lambda: _core.activation_forward(px, _core.Act.relu, 0.0)),
                     ("torch", lambda: torch.relu(tx))):
        r = timer(fn)
        tbs = 2.0 * n * 4 / (r["ms"] * 1e-3) / 1e12  # read x, write y
        o = {"name": f"relu_fwd_{n * 4 >> 20}MiB", "impl": impl, **r, "tb_per_s": tbs, "check_max_rel_err": errs}
        if peak:
            o["fraction_of_hbm_peak"] = tbs / peak["hbm_tb_per_s"]
        out.append(o)
    return out


# ------------------------------------------------------------------------------------ report
def markdown(report: Dict[str, Any]) -> str:
    m = report["meta"]
    lines = [f"# pycnn GPU benchmarks: {m['device']} ({m['date']})", "",
             f"pycnn {m['pycnn_version']} (CUDA {m['pycnn_cuda_version']}, allow_tf32={m['pycnn_allow_tf32']}), "
             f"PyTorch {m['torch_version']} (CUDA {m['torch_cuda_version']}, matmul.allow_tf32="
             f"{m['torch_matmul_allow_tf32']}, cudnn.allow_tf32={m['torch_cudnn_allow_tf32']}), float32.", "",
             f"Peaks assumed: {m['peak'] or 'unknown device: no peak fractions'}", "",
             "| case | impl | median ms | GFLOP/s | TFLOP/s | TB/s | of peak |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for c in report["cases"]:
        if "error" in c:
            lines.append(f"| {c['name']} | {c['impl']} | error: {c['error'][:60]} | | | | |")
            continue
        frac = c.get("fraction_of_fp32_peak", c.get("fraction_of_hbm_peak"))
        lines.append(f"| {c['name']} | {c['impl']} | {c['ms']:.4f} | {c.get('gflops', 0):.1f} | "
                     f"{c.get('tflops', 0):.2f} | {c.get('tb_per_s', 0):.3f} | "
                     f"{'' if frac is None else f'{100 * frac:.0f}%'} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller GEMM/ReLU, few short samples (smoke test)")
    p.add_argument("--out", metavar="DIR", default=str(Path(__file__).resolve().parent / "results"),
                   help="folder for gpu-<date>-<device>.{json,md} (default benchmarks/results)")
    p.add_argument("--cases", default="lenet,conv,sgemm,relu", help="comma-separated subset of lenet,conv,sgemm,relu")
    p.add_argument("--repeats", type=int, help="samples per implementation (default 11, quick 3)")
    p.add_argument("--min-ms", type=float, help="milliseconds per sample (default 100, quick 10)")
    p.add_argument("--rtol", type=float, default=1e-4, help="agreement tolerance relative to max |torch|")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    if importlib.util.find_spec("pycnn") is None and str(root / "src") not in sys.path:
        sys.path.insert(0, str(root / "src"))  # the in-place build of tools/dev_build.sh
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
    pc.backends.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = pc.cuda.get_device_name(0)
    peak = peak_for(device)
    repeats = args.repeats or (3 if args.quick else 11)
    timer = Timer(torch, pc, repeats, args.min_ms or (10.0 if args.quick else 100.0))
    wanted = {c.strip() for c in args.cases.split(",") if c.strip()}
    unknown = wanted - {"lenet", "conv", "sgemm", "relu"}
    if unknown:
        print(f"benchmarks.gpu: unknown cases {sorted(unknown)}; choose from lenet,conv,sgemm,relu", file=sys.stderr)
        return 2
    cases: List[Dict[str, Any]] = []
    try:
        if "lenet" in wanted:
            for b in LENET_BATCHES:
                cases += lenet_cases(pc, torch, timer, b, args.rtol)
        if "conv" in wanted:
            cases += conv_cases(pc, torch, timer, args.rtol)
        if "sgemm" in wanted:
            cases += sgemm_case(pc, torch, timer, args.rtol * 10, peak, args.quick)  # K = 8192 sums
        if "relu" in wanted:
            cases += relu_case(pc, torch, timer, peak, args.quick)
    except AssertionError as e:
        print(f"benchmarks.gpu: outputs disagree, nothing timed is reported: {e}", file=sys.stderr)
        return 2
    date = _dt.date.today().isoformat()
    info = pc.build_info()
    meta = {"date": date, "device": device, "peak": peak,
            "peak_note": "published dense FP32 (no tensor cores) and HBM figures for the named device, "
                         "matched on its name; H100 SXM 67 TFLOP/s 3.35 TB/s, H200 67 TFLOP/s 4.8 TB/s",
            "pycnn_version": info["version"], "pycnn_cuda_version": info["cuda_version"],
            "pycnn_allow_tf32": pc.backends.allow_tf32, "torch_version": torch.__version__,
            "torch_cuda_version": torch.version.cuda, "cudnn_version": torch.backends.cudnn.version(),
            "torch_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "torch_cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "python": platform.python_version(),
            "repeats": repeats, "min_ms_per_sample": timer.min_ms, "quick": args.quick,
            "timing": "CUDA events around a loop of calls, both libraries synchronised; median of samples"}
    report = {"meta": meta, "cases": cases}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"gpu-{date}-{re.sub(r'[^A-Za-z0-9]+', '-', device).strip('-').lower()}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    md = markdown(report)
    stem.with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
