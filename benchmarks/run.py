"""CPU benchmark: pycnn vs NumPy (benchmarks/numpy_peer.py) vs PyTorch CPU, in one process.

    python -m benchmarks [--threads N] [--quick] [--json PATH] [--cases a,b] [--no-torch] [--memory]
    python benchmarks/run.py ...

Every case is first checked for equal results (pycnn vs NumPy vs PyTorch, float32, rtol 1e-4
relative to the largest magnitude); the run aborts before timing anything if they differ.
Timing: after warm-up, interleaved rounds (pycnn, numpy, torch, pycnn, ...), each sample a loop
of enough calls to last >= --min-time seconds; the median sample is reported.

Results go to benchmarks/results/cpu-<date>-<host>.{json,md} (or to --json PATH and PATH.md).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import importlib.util
import json
import os
import platform
import re
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
IMPLS = ("pycnn", "numpy", "torch")


def _ensure_paths() -> None:
    """Lets `python benchmarks/run.py` find the checkout's pycnn and the benchmarks package."""
    if importlib.util.find_spec("benchmarks") is None and str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if importlib.util.find_spec("pycnn") is None and str(ROOT / "src") not in sys.path:
        sys.path.insert(0, str(ROOT / "src"))  # the in-place build of tools/dev_build.sh


def set_thread_env(n: int) -> None:
    """Thread counts for every runtime that reads the environment at load time (OpenMP of pycnn
    and torch, NumPy's and pycnn's OpenBLAS, torch's MKL). Must run before NumPy is imported to
    take effect on NumPy's BLAS; afterwards threadpoolctl (when installed) is used as well."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


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
        "loadavg": _loadavg(),
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


def _loadavg() -> Optional[List[float]]:
    """1, 5 and 15 minute load averages: a busy machine makes every timing here meaningless."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _git() -> Optional[Dict[str, Any]]:
    """The checkout's commit and whether it had uncommitted changes (None outside a git checkout)."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
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


# ----------------------------------------------------------------------------------------------
# agreement checks
# ----------------------------------------------------------------------------------------------
class Mismatch(AssertionError):
    pass


def _np(a: Any):
    import numpy as np

    if hasattr(a, "detach"):  # torch
        return a.detach().numpy()
    return np.asarray(a)


def rel_err(a: Any, b: Any) -> float:
    """max |a - b| / max |b| (0 when both are 0)."""
    import numpy as np

    a, b = _np(a).astype(np.float64), _np(b).astype(np.float64)
    if a.shape != b.shape:
        raise Mismatch(f"shape {a.shape} vs {b.shape}")
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    return diff / scale if scale > 0 else diff


def compare(case: str, what: str, results: Dict[str, Any], rtol: float) -> Dict[str, float]:
    """Every implementation's `what` against pycnn's; raises Mismatch above rtol."""
    ref = results["pycnn"]
    errs = {}
    for impl, val in results.items():
        if impl == "pycnn":
            continue
        e = rel_err(val, ref)
        errs[f"{impl}:{what}"] = e
        if not e <= rtol:  # also catches NaN
            raise Mismatch(f"{case}: {impl} differs from pycnn in {what}: max rel err {e:.3g} > {rtol:g}")
    return errs


# ----------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------
class Impl:
    """fn(): one call of the timed work; reset(): optional, run (untimed) before every sample."""

    def __init__(self, fn: Callable[[], Any], reset: Optional[Callable[[], None]] = None):
        self.fn, self.reset = fn, reset


class Case:
    def __init__(self, name: str, desc: str, build: Callable[[Dict[str, Any]], Tuple[Dict[str, Impl], Dict[str, float]]],
                 flops: Optional[float] = None):
        self.name, self.desc, self.build, self.flops = name, desc, build, flops


CONVS = [
    # name, (N, C, H, W), (O, kh, kw), stride, pad
    ("lenet_conv1", (64, 1, 28, 28), (6, 5, 5), 1, 2),
    ("lenet_conv2", (64, 6, 14, 14), (16, 5, 5), 1, 0),
    ("vgg_3x3_64", (32, 64, 32, 32), (64, 3, 3), 1, 1),
    ("resnet_3x3_128", (32, 128, 16, 16), (128, 3, 3), 1, 1),
    ("strided_3x3_64to128_s2", (32, 64, 32, 32), (128, 3, 3), 2, 1),
]
POOLS = [("maxpool_lenet", (64, 6, 28, 28)), ("maxpool_vgg", (32, 64, 32, 32))]
LENET_BATCHES = (1, 64, 256)
LENET_MACS_PER_SAMPLE = 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10
SGD_LR, SGD_MOMENTUM = 0.01, 0.9


def conv_macs(xs, ws, stride, pad) -> int:
    n, c, h, w = xs
    o, kh, kw = ws
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (w + 2 * pad - kw) // stride + 1
    return n * o * oh * ow * c * kh * kw


def _conv_case(name, xs, ws, stride, pad, backward: bool) -> Case:
    macs = conv_macs(xs, ws, stride, pad)
    desc = (f"conv2d {xs[1]}->{ws[0]} {ws[1]}x{ws[2]} s{stride} p{pad}, x {xs}"
            + (" fwd+bwd (dx, dw, db)" if backward else " fwd"))

    def build(env):
        import numpy as np

        from benchmarks import numpy_peer as npp

        pc, F, torch = env["pc"], env["F"], env.get("torch")
        rng = np.random.default_rng(0)
        x = rng.standard_normal(xs, dtype=np.float32)
        w = (rng.standard_normal((ws[0], xs[1], ws[1], ws[2]), dtype=np.float32) / np.sqrt(xs[1] * ws[1] * ws[2])).astype(np.float32)
        b = rng.standard_normal(ws[0], dtype=np.float32) * np.float32(0.1)
        y_np, _ = npp.conv2d_forward(x, w, b, stride, pad)
        dy = rng.standard_normal(y_np.shape, dtype=np.float32)
        px, pw, pb, pdy = (pc.from_numpy(a) for a in (x, w, b, dy))
        st, pd = (stride, stride), (pad, pad, pad, pad)

        def pc_fwd():
            return F.conv2d(px, pw, pb, st, pd)

        def pc_fwdbwd():
            y = F.conv2d(px, pw, pb, st, pd)
            return (y,) + tuple(F.conv2d_backward(pdy, px, pw, st, pd))

        def np_fwd():
            return npp.conv2d_forward(x, w, b, stride, pad)[0]

        def np_fwdbwd():
            y, cache = npp.conv2d_forward(x, w, b, stride, pad)
            return (y,) + npp.conv2d_backward(dy, cache)

        impls = {"pycnn": Impl(pc_fwdbwd if backward else pc_fwd), "numpy": Impl(np_fwdbwd if backward else np_fwd)}
        if torch is not None:
            tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
            tx_g, tw_g, tb_g = (t.clone().requires_grad_(True) for t in (tx, tw, tb))
            tF = torch.nn.functional

            def t_fwd():
                with torch.no_grad():
                    return tF.conv2d(tx, tw, tb, stride, pad)

            def t_fwdbwd():
                y = tF.conv2d(tx_g, tw_g, tb_g, stride, pad)
                return (y,) + torch.autograd.grad(y, (tx_g, tw_g, tb_g), tdy)

            impls["torch"] = Impl(t_fwdbwd if backward else t_fwd)

        outs = {k: v.fn() for k, v in impls.items()}
        errs = {}
        names = ("y", "dx", "dw", "db") if backward else ("y",)
        for i, nm in enumerate(names):
            errs.update(compare(name, nm, {k: (o[i] if backward else o) for k, o in outs.items()}, env["rtol"]))
        return impls, errs

    return Case(f"{name}.{'fwd+bwd' if backward else 'fwd'}", desc, build, 2.0 * macs * (3 if backward else 1))


def _pool_case(name, xs) -> Case:
    desc = f"max_pool2d 2x2 s2 fwd+bwd, x {xs}"

    def build(env):
        import numpy as np

        from benchmarks import numpy_peer as npp

        pc, F, torch = env["pc"], env["F"], env.get("torch")
        rng = np.random.default_rng(1)
        x = rng.standard_normal(xs, dtype=np.float32)
        dy = rng.standard_normal((xs[0], xs[1], xs[2] // 2, xs[3] // 2), dtype=np.float32)
        px, pdy = pc.from_numpy(x), pc.from_numpy(dy)

        def pc_fn():
            y, idx = F.max_pool2d(px, 2, 2, 0, return_indices=True)
            return y, F.max_pool2d_backward(pdy, idx, xs)

        def np_fn():
            y, cache = npp.max_pool2x2_forward(x)
            return y, npp.max_pool2x2_backward(dy, cache)

        impls = {"pycnn": Impl(pc_fn), "numpy": Impl(np_fn)}
        if torch is not None:
            tx = torch.from_numpy(x).clone().requires_grad_(True)
            tdy = torch.from_numpy(dy)

            def t_fn():
                y = torch.nn.functional.max_pool2d(tx, 2, 2)
                return y, torch.autograd.grad(y, (tx,), tdy)[0]

            impls["torch"] = Impl(t_fn)
        outs = {k: v.fn() for k, v in impls.items()}
        errs = {}
        for i, nm in enumerate(("y", "dx")):
            errs.update(compare(name, nm, {k: o[i] for k, o in outs.items()}, env["rtol"]))
        return impls, errs

    return Case(f"{name}.fwd+bwd", desc, build, None)


# --- LeNet-5 ----------------------------------------------------------------------------------
def pycnn_lenet5(pc: Any):
    """pc.models.lenet5() when it exists, else the same layout built from pc.nn."""
    try:
        from pycnn import models

        return models.lenet5(num_classes=10), "pc.models.lenet5"
    except (ImportError, AttributeError):
        from pycnn import nn

        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
        ), "local pc.nn.Sequential (pc.models.lenet5 missing)"


class _CoreSGD:
    """Fallback when pc.optim is missing: the same fused _core.sgd_step that pc.optim.SGD calls."""

    def __init__(self, params, lr, momentum):
        import pycnn as pc

        self.params = [p for p in params]
        self.lr, self.momentum = lr, momentum
        self.bufs = [pc.zeros(*p.shape) for p in self.params]
        self.first = True

    def step(self):
        from pycnn import _core

        ps = [p for p in self.params if p.grad is not None]
        _core.sgd_step([p.data for p in ps], [p.grad for p in ps], [b for p, b in zip(self.params, self.bufs)
                                                                      if p.grad is not None],
                       self.lr, self.momentum, 0.0, 0.0, False, self.first)
        self.first = False


def pycnn_sgd(pc: Any, params, lr=SGD_LR, momentum=SGD_MOMENTUM):
    try:
        from pycnn import optim

        return optim.SGD(params, lr=lr, momentum=momentum), "pc.optim.SGD"
    except (ImportError, AttributeError):
        return _CoreSGD(params, lr, momentum), "_core.sgd_step (pc.optim missing)"


def torch_lenet5(torch: Any, params):
    tnn = torch.nn
    m = tnn.Sequential(
        tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
        tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10),
    )
    load_torch_params(torch, m, params)
    return m


def load_torch_params(torch: Any, m: Any, params) -> None:
    with torch.no_grad():
        for p, a in zip(m.parameters(), params):
            p.copy_(torch.from_numpy(a))


def _lenet_case(batch: int) -> Case:
    desc = f"LeNet-5 training step (forward, loss, backward, SGD momentum {SGD_MOMENTUM}), batch {batch}"

    def build(env):
        import numpy as np

        from benchmarks import numpy_peer as npp

        pc, torch = env["pc"], env.get("torch")
        from pycnn import nn

        pc.manual_seed(0)
        model, env["lenet_source"] = pycnn_lenet5(pc)
        params0 = [np.array(p.numpy(), dtype=np.float32, copy=True) for p in model.parameters()]
        shapes = [tuple(p.shape) for p in params0]
        if shapes != [tuple(s) for s in npp.LeNet5.SHAPES]:
            raise Mismatch(f"pycnn LeNet-5 parameters {shapes} are not the expected layout {npp.LeNet5.SHAPES}")
        rng = np.random.default_rng(2)
        x = rng.random((batch, 1, 28, 28), dtype=np.float32)
        y = rng.integers(0, 10, size=batch).astype(np.int64)
        px, py = pc.from_numpy(x), pc.from_numpy(y)
        crit = nn.CrossEntropyLoss()
        state: Dict[str, Any] = {}

        def pc_reset():
            for p, a in zip(model.parameters(), params0):
                p.copy_(a)
            model.zero_grad()
            state["opt"], env["sgd_source"] = pycnn_sgd(pc, model.parameters())

        def pc_step():
            logits = model(px)
            loss = crit(logits, py)
            model.zero_grad()
            model.backward(crit.backward(), need_input_grad=False)  # as PyTorch and the NumPy peer: no dx of the image
            state["opt"].step()
            return logits, loss

        np_state: Dict[str, Any] = {}

        def np_reset():
            np_state["m"] = npp.LeNet5(params0)
            np_state["opt"] = npp.SGD(np_state["m"].params, lr=SGD_LR, momentum=SGD_MOMENTUM)

        def np_step():
            m = np_state["m"]
            logits = m.forward(x)
            loss, dlogits = npp.softmax_cross_entropy(logits, y)
            m.backward(dlogits)
            np_state["opt"].step(m.grads)
            return logits, loss

        impls = {"pycnn": Impl(pc_step, pc_reset), "numpy": Impl(np_step, np_reset)}
        if torch is not None:
            tm = torch_lenet5(torch, params0)
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)
            t_state: Dict[str, Any] = {}

            def t_reset():
                load_torch_params(torch, tm, params0)
                tm.zero_grad(set_to_none=True)
                t_state["opt"] = torch.optim.SGD(tm.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)

            def t_step():
                opt = t_state["opt"]
                opt.zero_grad(set_to_none=True)
                logits = tm(tx)
                loss = torch.nn.functional.cross_entropy(logits, ty)
                loss.backward()
                opt.step()
                return logits, loss

            impls["torch"] = Impl(t_step, t_reset)

        # agreement: logits and loss of step 1, gradients, and the parameters after two steps
        outs: Dict[str, Dict[str, Any]] = {}
        for k, im in impls.items():
            im.reset()
            logits, loss = im.fn()
            o = {"logits": _np(logits).copy(), "loss": np.float32(_np(loss))}
            if k == "pycnn":
                o["grads"] = [np.array(p.grad.numpy(), copy=True) for p in model.parameters()]
            elif k == "numpy":
                o["grads"] = [g.copy() for g in np_state["m"].grads]
            else:
                o["grads"] = [p.grad.detach().numpy().copy() for p in tm.parameters()]
            im.fn()
            if k == "pycnn":
                o["params"] = [np.array(p.numpy(), copy=True) for p in model.parameters()]
            elif k == "numpy":
                o["params"] = [p.copy() for p in np_state["m"].params]
            else:
                o["params"] = [p.detach().numpy().copy() for p in tm.parameters()]
            outs[k] = o
        errs = {}
        errs.update(compare(f"lenet5_step.b{batch}", "logits", {k: o["logits"] for k, o in outs.items()}, env["rtol"]))
        errs.update(compare(f"lenet5_step.b{batch}", "loss", {k: o["loss"] for k, o in outs.items()}, env["rtol"]))
        for i, nm in enumerate(npp.LeNet5.NAMES):
            errs.update(compare(f"lenet5_step.b{batch}", f"grad_{nm}", {k: o["grads"][i] for k, o in outs.items()},
                                env["rtol"]))
            errs.update(compare(f"lenet5_step.b{batch}", f"param_{nm}", {k: o["params"][i] for k, o in outs.items()},
                                env["rtol"]))
        return impls, errs

    return Case(f"lenet5_step.b{batch}", desc, build, 2.0 * 3 * LENET_MACS_PER_SAMPLE * batch)


def all_cases() -> List[Case]:
    cases: List[Case] = []
    for spec in CONVS:
        cases.append(_conv_case(*spec, backward=False))
        cases.append(_conv_case(*spec, backward=True))
    for name, xs in POOLS:
        cases.append(_pool_case(name, xs))
    for b in LENET_BATCHES:
        cases.append(_lenet_case(b))
    return cases


def select_cases(cases: List[Case], spec: Optional[str]) -> List[Case]:
    if not spec:
        return cases
    toks = [t.strip() for t in spec.split(",") if t.strip()]
    chosen = [c for c in cases if any(t in c.name for t in toks)]
    if not chosen:
        raise SystemExit(f"--cases {spec!r} matches none of: {', '.join(c.name for c in cases)}")
    return chosen


# ----------------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------------
def measure(impls: Dict[str, Impl], repeats: int, warmup: int, min_time: float,
            budget: float = float("inf"), cooldown: float = 0.0) -> Dict[str, Dict[str, Any]]:
    """Median seconds per call of each implementation. `budget` (seconds) caps the rounds of a
    slow case (never below 3), so that a loaded or slow machine still finishes.

    `cooldown` seconds of sleep before every sample: the thread pools of the implementation that
    ran before (OpenBLAS workers spin ~0.1 s after a call, OpenMP workers spin too) would
    otherwise still occupy the cores while the next implementation starts, which penalises
    whichever implementation follows another thread pool in the rotation."""
    order = [k for k in IMPLS if k in impls]
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
            for k in order:  # interleaved: pycnn, numpy, torch, pycnn, ...
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


def blas_peak(env: Dict[str, Any], repeats: int) -> Dict[str, Any]:
    """SGEMM GFLOP/s at 1024^3: pycnn's GEMM door through linear_forward (x @ w.T), and, for
    reference, NumPy's and PyTorch's own BLAS."""
    import numpy as np

    pc, torch = env["pc"], env.get("torch")
    from pycnn import _core

    n = 1024
    rng = np.random.default_rng(3)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    pa, pb = pc.from_numpy(a), pc.from_numpy(b)
    impls = {"pycnn": Impl(lambda: _core.linear_forward(pa, pb, None)), "numpy": Impl(lambda: a @ b.T)}
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        impls["torch"] = Impl(lambda: ta @ tb.T)
    res = measure(impls, repeats=repeats, warmup=2, min_time=0.05, cooldown=env.get("cooldown", 0.0))
    flops = 2.0 * n ** 3
    return {"size": f"{n}x{n} @ ({n}x{n})^T", "how": "pycnn: _core.linear_forward (blas::gemm door)",
            "gflops": {k: flops / (v["ms"] * 1e-3) / 1e9 for k, v in res.items()},
            "ms": {k: v["ms"] for k, v in res.items()},
            # the hardware's float32 multiply-add peak on the same threads (csrc/fma_peak.cpp)
            "fma_peak_gflops": _core.fma_peak_gflops()}


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
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
        f"- CPU: {cpu.get('model')} (family {cpu.get('family')}, model {cpu.get('model_number')}), "
        f"{cpu.get('usable_cpus')} usable cores, AVX2 {'yes' if cpu.get('avx2') else 'no'}, "
        f"AVX-512 usable: {'yes' if cpu.get('avx512_usable') else 'no'}"
        + (", virtualised" if cpu.get("hypervisor") else ""),
        f"- Threads: {m['threads']} (pycnn, NumPy's BLAS, PyTorch); precision {m['precision']}",
        f"- pycnn {m['versions']['pycnn']} (BLAS: {m['pycnn_build_info'].get('blas')}, core "
        f"**{m['pycnn_blas_core']}**, OpenMP {m['pycnn_build_info'].get('openmp')}), NumPy {m['versions']['numpy']} "
        f"({(m.get('numpy_blas') or {}).get('name')} {(m.get('numpy_blas') or {}).get('version')}), PyTorch {tv}"
        + (f" (oneDNN {'on' if m['torch']['mkldnn'] else 'off'}, CPU capability {m['torch']['cpu_capability']})"
           if m.get("torch") else ""),
        f"- LeNet-5 model: {report.get('lenet_source', '-')}; optimizer: {report.get('sgd_source', '-')}",
        f"- Timing: median of {report['settings']['repeats']} interleaved samples after warm-up, each sample "
        f">= {report['settings']['min_time_s'] * 1e3:.0f} ms of back-to-back calls after "
        f"{report['settings']['cooldown_s'] * 1e3:.0f} ms idle"
        + (" (--quick)" if report["settings"]["quick"] else ""),
        f"- Load average (1 min) at start / end: {(report.get('loadavg_start') or ['?'])[0]} / "
        f"{(m.get('loadavg') or ['?'])[0]} on {cpu.get('usable_cpus')} cores"
        + ((" -- other work was running: the benchmark ran at real-time priority (below), expect run-to-run "
            "noise of ~10-20%" if _realtime(m) else " -- the machine was busy: treat the timings with suspicion")
           if _busy(report) else " (idle machine)"),
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


def _busy(report: Dict[str, Any]) -> bool:
    """Others were running: load above ~1 before we started, or above our own threads at the end."""
    start = (report.get("loadavg_start") or [0])[0]
    end = (report["meta"].get("loadavg") or [0])[0]
    return start > 1.0 or end > report["meta"]["threads"] + 1.0


def print_table(report: Dict[str, Any]) -> None:
    text = markdown(report)
    start = text.index("| case |")
    print(text[start:])


# ----------------------------------------------------------------------------------------------
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads for pycnn, NumPy's BLAS and PyTorch (default 2)")
    p.add_argument("--quick", action="store_true", help="few repeats and short samples (for tests)")
    p.add_argument("--json", metavar="PATH", help="write the JSON report here (and the markdown to PATH.md) "
                                                  "instead of benchmarks/results/")
    p.add_argument("--cases", help="comma-separated substrings of case names, e.g. lenet_conv1,lenet5_step")
    p.add_argument("--repeats", type=int, help="samples per implementation (default 9, quick 3)")
    p.add_argument("--min-time", type=float, help="seconds per sample (default 0.05, quick 0.005)")
    p.add_argument("--case-budget", type=float, help="seconds of timed rounds per case at most (default 15, "
                                                     "quick 2); at least 3 rounds are always run")
    p.add_argument("--cooldown", type=float, help="seconds of idle before every sample, so that the previous "
                                                  "implementation's spinning thread pools are asleep (default 0.15, "
                                                  "quick 0.02)")
    p.add_argument("--rtol", type=float, default=1e-4, help="agreement tolerance (relative to max |pycnn|)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--no-blas-peak", action="store_true", help="skip the 1024^3 SGEMM reference")
    p.add_argument("--memory", action="store_true", help="afterwards run benchmarks.memory too")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.list:
        for c in all_cases():
            print(c.name)
        return 0
    if args.threads < 1:
        raise SystemExit("--threads must be >= 1")
    numpy_was_loaded = "numpy" in sys.modules
    set_thread_env(args.threads)
    _ensure_paths()
    import numpy as np  # noqa: F401  (after the environment is set)

    if numpy_was_loaded:
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads)
        except ImportError:
            pass
    import pycnn as pc
    from pycnn import functional as F

    pc.set_num_threads(args.threads)
    torch = None
    if not args.no_torch:
        try:
            import torch  # type: ignore[no-redef]

            torch.set_num_threads(args.threads)
        except ImportError:
            torch = None
            print("PyTorch is not importable: the torch column is left empty", file=sys.stderr)

    repeats = args.repeats or (3 if args.quick else 9)
    min_time = args.min_time if args.min_time is not None else (0.005 if args.quick else 0.05)
    warmup = 1 if args.quick else 3
    cooldown = args.cooldown if args.cooldown is not None else (0.02 if args.quick else 0.15)
    budget = args.case_budget if args.case_budget is not None else (2.0 if args.quick else 15.0)
    env: Dict[str, Any] = {"pc": pc, "F": F, "torch": torch, "rtol": args.rtol, "cooldown": cooldown}
    cases = select_cases(all_cases(), args.cases)
    t_start = time.perf_counter()
    load_start = _loadavg()

    # 1. agreement, for every case, before anything is timed
    built = []
    check_errs: Dict[str, Dict[str, float]] = {}
    for c in cases:
        try:
            impls, errs = c.build(env)
        except Mismatch as e:
            print(f"ABORT: results differ, nothing was timed: {e}", file=sys.stderr)
            return 2
        built.append((c, impls))
        check_errs[c.name] = errs
    worst = max([e for d in check_errs.values() for e in d.values()] or [0.0])
    print(f"agreement: {len(cases)} cases, pycnn/numpy/torch within rtol {args.rtol:g} "
          f"(worst {worst:.2e})", file=sys.stderr)

    # 2. timing
    peak = None if args.no_blas_peak else blas_peak(env, repeats=3 if args.quick else 7)
    peak_pc = peak["gflops"]["pycnn"] if peak else None
    rows = []
    for c, impls in built:
        res = measure(impls, repeats, warmup, min_time, budget, cooldown)
        ms = {k: v["ms"] for k, v in res.items()}
        row: Dict[str, Any] = {"name": c.name, "desc": c.desc, "ms": ms, "detail": res, "flops": c.flops,
                               "check_max_rel_err": check_errs[c.name]}
        row["pycnn/numpy"] = ms["pycnn"] / ms["numpy"] if "numpy" in ms else None
        row["pycnn/torch"] = ms["pycnn"] / ms["torch"] if "torch" in ms else None
        if c.flops:
            row["pycnn_gflops"] = c.flops / (ms["pycnn"] * 1e-3) / 1e9
            row["gflops"] = {k: c.flops / (v * 1e-3) / 1e9 for k, v in ms.items()}
            if peak_pc and not c.name.startswith("lenet5_step"):
                row["pct_blas_peak"] = 100.0 * row["pycnn_gflops"] / peak_pc
                row["pct_fma_peak"] = 100.0 * row["pycnn_gflops"] / peak["fma_peak_gflops"]
        rows.append(row)
        print(f"  {c.name:32s} " + "  ".join(f"{k} {v:9.3f} ms" for k, v in ms.items()), file=sys.stderr)

    report = {
        "meta": machine_info(args.threads, torch),
        "settings": {"repeats": repeats, "warmup": warmup, "min_time_s": min_time, "case_budget_s": budget, "cooldown_s": cooldown, "quick": bool(args.quick),
                     "rtol": args.rtol, "cases": args.cases, "sgd": {"lr": SGD_LR, "momentum": SGD_MOMENTUM}},
        "lenet_source": env.get("lenet_source"),
        "sgd_source": env.get("sgd_source"),
        "worst_check_error": worst,
        "loadavg_start": load_start,
        "blas_peak": peak,
        "cases": rows,
        "wall_s": round(time.perf_counter() - t_start, 2),
    }
    md = markdown(report)
    if args.json:
        jpath = Path(args.json)
        mpath = jpath.with_suffix(".md") if jpath.suffix == ".json" else Path(str(jpath) + ".md")
    else:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stem = f"cpu-{_dt.date.today().isoformat()}-{host_tag()}-t{args.threads}"
        jpath, mpath = RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"
    jpath.parent.mkdir(parents=True, exist_ok=True)
    jpath.write_text(json.dumps(report, indent=1, default=float) + "\n")
    mpath.write_text(md)
    print_table(report)
    print(f"wrote {jpath} and {mpath} ({report['wall_s']:.0f} s)", file=sys.stderr)

    if args.memory:
        from benchmarks import memory

        return memory.main(["--threads", str(args.threads)] + (["--quick"] if args.quick else []))
    return 0


if __name__ == "__main__":
    _ensure_paths()
    sys.exit(main())
