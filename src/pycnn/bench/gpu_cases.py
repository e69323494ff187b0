"""The GPU benchmark's cases (benchmarks/gpu.py is their command line): pycnn against PyTorch on the
same GPU, strict FP32 on both sides, every case's outputs compared (harness.agree) before it is
timed with CUDA events.

- a LeNet-5 training step at batch 64 and 256: pycnn eager, pycnn CUDA graph, PyTorch eager,
  PyTorch CUDA graph;
- conv2d forward+backward of the CPU suite's 3x3 layers (cases.CONVS, the same inputs);
- SGEMM through pycnn's GEMM (a large Linear forward) against the GPU's FP32 peak;
- ReLU forward on a 256 MiB tensor against the GPU's HBM bandwidth.
"""
from __future__ import annotations

import re
import statistics
from typing import Any, Callable, Dict, List, Optional

from .cases import CONVS, LENET_MACS_PER_SAMPLE, SGD_LR, SGD_MOMENTUM, conv_inputs, conv_macs, torch_lenet5
from .harness import agree

# Published dense FP32 (non-tensor-core) peaks and HBM bandwidths; matched on the device name.
PEAKS = [  # (name pattern, label, FP32 TFLOP/s, HBM TB/s)
    (r"H200", "H200 (SXM)", 67.0, 4.8),
    (r"H100.*PCIe", "H100 PCIe", 51.0, 2.0),
    (r"H100", "H100 SXM", 67.0, 3.35),
    (r"A100", "A100 SXM 80GB", 19.5, 2.0),
]
PEAK_NOTE = ("published dense FP32 (no tensor cores) and HBM figures for the named device, matched on its name; "
             "H100 SXM 67 TFLOP/s 3.35 TB/s, H200 67 TFLOP/s 4.8 TB/s")
GPU_CONVS = [c for c in CONVS if c[2][1:] == (3, 3)]  # the VGG, ResNet and strided 3x3 layers
LENET_BATCHES = (64, 256)
SGEMM = (8192, 8192, 8192)  # Linear: x (M, K) @ w (N, K)^T
RELU_BYTES = 256 << 20
CASE_GROUPS = ("lenet", "conv", "sgemm", "relu")


def peak_for(name: str) -> Optional[Dict[str, Any]]:
    for pat, label, tflops, tbs in PEAKS:
        if re.search(pat, name):
            return {"assumed_device": label, "fp32_tflops": tflops, "hbm_tb_per_s": tbs}
    return None


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
    opt = optim.SGD(model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)
    crit = nn.CrossEntropyLoss()
    sx, sy = pc.tensor(x, device="cuda"), pc.tensor(y, device="cuda")

    def pc_step() -> Any:
        loss = crit(model(sx), sy)
        opt.zero_grad()
        model.zero_grad()
        model.backward(crit.backward(), need_input_grad=False)  # as PyTorch: no d/dx of the images
        opt.step()
        return loss

    tm = torch_lenet5(torch, params0).cuda()
    topt = torch.optim.SGD(tm.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)
    tcrit = torch.nn.CrossEntropyLoss()
    tx, ty = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()

    def t_step() -> Any:
        topt.zero_grad(set_to_none=True)
        loss = tcrit(tm(tx), ty)
        loss.backward()
        topt.step()
        return loss

    # agreement: two steps from the same weights
    name = f"lenet5_step.b{batch}"
    errs: Dict[str, float] = {}
    for i in range(2):
        errs[f"loss{i}"] = agree(name, f"loss{i}", pc_step(), t_step(), rtol)
    for j, (p, tp) in enumerate(zip(model.parameters(), tm.parameters())):
        errs[f"param{j}"] = agree(name, f"param{j}", p.data, tp, rtol)

    flops = 2.0 * 3 * LENET_MACS_PER_SAMPLE * batch
    out = [{"name": name, "impl": "pycnn eager", **timer(pc_step)}]
    g = pc.cuda.CUDAGraph()
    with pc.cuda.graph(g):  # the eager steps above were the warm-up
        pc_step()
    out.append({"name": name, "impl": "pycnn cuda graph", **timer(g.replay)})
    out.append({"name": name, "impl": "torch eager", **timer(t_step)})
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
        out.append({"name": name, "impl": "torch cuda graph", **timer(tg.replay)})
    except Exception as e:  # capturing torch's optimizer is version-dependent: report, do not fail
        out.append({"name": name, "impl": "torch cuda graph", "error": str(e)})
    for o in out:
        o["check_max_rel_err"] = errs
        if "ms" in o:
            o["gflops"] = flops / (o["ms"] * 1e-3) / 1e9
    return out


def conv_cases(pc: Any, torch: Any, timer: Timer, rtol: float) -> List[Dict[str, Any]]:
    from pycnn import functional as F

    out = []
    for name, xs, ws, stride, pad in GPU_CONVS:
        x, w, b, dy = conv_inputs(xs, ws, stride, pad)
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

        errs = {what: agree(name, what, a, t, rtol) for what, a, t in zip(("y", "dx", "dw", "db"), pc_fb(), t_fb())}
        flops = 2.0 * 3 * conv_macs(xs, ws, stride, pad)
        for impl, fn in (("pycnn", pc_fb), ("torch", t_fb)):
            r = timer(fn)
            out.append({"name": f"{name}.fwd+bwd", "impl": impl, **r, "check_max_rel_err": errs,
                        "gflops": flops / (r["ms"] * 1e-3) / 1e9})
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
    errs = {"y": agree("sgemm", "y", _core.linear_forward(px, pw, None), tx @ tw.T, rtol)}
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
    errs = {"y": agree("relu", "y", _core.activation_forward(px, _core.Act.relu, 0.0), torch.relu(tx), 0.0)}
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


def run_cases(pc: Any, torch: Any, timer: Timer, groups: List[str], rtol: float, peak: Optional[Dict[str, Any]],
              quick: bool) -> List[Dict[str, Any]]:
    """The cases of the chosen groups (CASE_GROUPS), in that order; raises harness.Mismatch when
    pycnn and torch disagree."""
    cases: List[Dict[str, Any]] = []
    if "lenet" in groups:
        for b in LENET_BATCHES:
            cases += lenet_cases(pc, torch, timer, b, rtol)
    if "conv" in groups:
        cases += conv_cases(pc, torch, timer, rtol)
    if "sgemm" in groups:
        cases += sgemm_case(pc, torch, timer, rtol * 10, peak, quick)  # K = 8192 sums
    if "relu" in groups:
        cases += relu_case(pc, torch, timer, peak, quick)
    return cases


# ------------------------------------------------------------------------------------ report
def device_slug(device: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower()


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
