"""The fit benchmark's cases (benchmarks/fit.py is their command line): one epoch of
Fashion-MNIST-sized training, LeNet-5 at batch 64, SGD lr 0.01 momentum 0.9, three ways:

- ``fit``: pycnn's ``Trainer.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=True)`` (its
  default metrics: accuracy);
- ``bare``: the pycnn loop a user would write for the same work: an index permutation, then per
  batch a slice of x and y, ``model(x)``, the loss, ``zero_grad``, ``backward``, ``step``;
- ``torch``: the plain PyTorch loop: ``torch.randperm``, indexing, the model, ``F.cross_entropy``,
  ``zero_grad``, ``backward``, ``step``.

fit / bare - 1 is what the Trainer adds; fit / torch compares with PyTorch. The data is synthetic
(uniform pixels, random labels, fixed seed): the time of an epoch does not depend on the values.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Tuple

from .cases import SGD_LR, SGD_MOMENTUM, load_torch_params, torch_lenet5
from .harness import Impl, agree, busy, cpu_line

SAMPLES, IMAGE, CLASSES, BATCH = 60_000, (1, 28, 28), 10, 64  # Fashion-MNIST's training set
TARGETS = {"fit/bare": 1.05, "fit/torch": 0.6}  # issue 15: fit adds <= 5%, an epoch <= 0.6x PyTorch's
IMPL_NAMES = {"fit": "pycnn Trainer.fit", "bare": "pycnn step loop", "torch": "PyTorch loop"}


def synthetic_data(samples: int = SAMPLES, seed: int = 0):
    """x (samples, 1, 28, 28) float32 in [0, 1), y (samples,) int64 in [0, 10)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.random((samples,) + IMAGE, dtype=np.float32), rng.integers(0, CLASSES, samples).astype(np.int64)


def build(pc: Any, torch: Any, x: Any, y: Any, batch: int = BATCH, rtol: float = 1e-4) -> Tuple[Dict[str, Impl], Dict[str, float]]:
    """{"fit", "bare"[, "torch"]}: one epoch each, all from the same initial weights; and the
    agreement of one step of the bare loop and the PyTorch loop on the same batch (losses and
    weights), checked before anything is timed."""
    import numpy as np

    from pycnn import Trainer, models, nn, optim

    n = x.shape[0]
    pc.manual_seed(0)
    fit_model = models.lenet5(num_classes=CLASSES)
    params0 = [np.array(p.numpy(), dtype=np.float32, copy=True) for p in fit_model.parameters()]
    trainer = Trainer(fit_model, optim.SGD(fit_model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM),
                      nn.CrossEntropyLoss())

    def fit_epoch() -> float:
        return trainer.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=True).history["loss"][-1]

    model = models.lenet5(num_classes=CLASSES)
    for p, a in zip(model.parameters(), params0):
        p.copy_(a)
    opt = optim.SGD(model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)
    crit = nn.CrossEntropyLoss()
    rng = np.random.default_rng(1)

    def bare_step(idx: Any) -> Any:
        loss = crit(model(pc.from_numpy(x[idx])), pc.from_numpy(y[idx]))
        opt.zero_grad()
        model.backward(crit.backward(), need_input_grad=False)  # as the Trainer: no d/dx of the images
        opt.step()
        return loss

    def bare_epoch() -> float:
        perm = rng.permutation(n)
        for i in range(0, n, batch):
            loss = bare_step(perm[i:i + batch])
        return float(loss.item())

    impls = {"fit": Impl(fit_epoch), "bare": Impl(bare_epoch)}
    errs: Dict[str, float] = {}
    if torch is not None:
        tF = torch.nn.functional
        tm = torch_lenet5(torch, params0)
        topt = torch.optim.SGD(tm.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        gen = torch.Generator().manual_seed(1)

        def torch_step(idx: Any) -> Any:
            loss = tF.cross_entropy(tm(tx[idx]), ty[idx])
            topt.zero_grad(set_to_none=True)
            loss.backward()
            topt.step()
            return loss

        def torch_epoch() -> float:
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, batch):
                loss = torch_step(perm[i:i + batch])
            return float(loss.item())

        impls["torch"] = Impl(torch_epoch)
        first = np.arange(min(batch, n))  # one step on the same batch from the same weights
        errs["loss"] = agree("fit", "loss", bare_step(first), torch_step(torch.from_numpy(first)), rtol,
                             "pycnn's step loop and PyTorch's")
        for j, (p, tp) in enumerate(zip(model.parameters(), tm.parameters())):
            errs[f"param{j}"] = agree("fit", f"param{j} after a step", p, tp, rtol, "pycnn's step loop and PyTorch's")
        for p, a in zip(model.parameters(), params0):  # the timed loops all start from params0, and from
            p.copy_(a)                                   # fresh optimizers (the steps read these names)
        load_torch_params(torch, tm, params0)
        opt = optim.SGD(model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)
        topt = torch.optim.SGD(tm.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)
    return impls, errs


def ratios(ms: Dict[str, float]) -> Dict[str, float]:
    out = {"fit/bare": ms["fit"] / ms["bare"]}
    if "torch" in ms:
        out["fit/torch"] = ms["fit"] / ms["torch"]
        out["bare/torch"] = ms["bare"] / ms["torch"]
    return out


def per_round_ratios(detail: Dict[str, Dict[str, Any]]) -> Dict[str, list]:
    """The ratios of each interleaved round (a round's epochs ran back to back)."""
    s = {k: v["samples_ms"] for k, v in detail.items()}
    out = {"fit/bare": [f / b for f, b in zip(s["fit"], s["bare"])]}
    if "torch" in s:
        out["fit/torch"] = [f / t for f, t in zip(s["fit"], s["torch"])]
    return out


def finite_ratios(r: Dict[str, float]) -> bool:
    return all(math.isfinite(v) and v > 0 for v in r.values())


def markdown(report: Dict[str, Any]) -> str:
    m, st = report["meta"], report["settings"]
    ms, r = report["ms_per_epoch"], report["ratios"]
    lines = [f"# pycnn Trainer.fit vs a step loop vs PyTorch, {m['date'][:10]}", "",
             f"- CPU: {cpu_line(m['cpu'])}",
             f"- Threads: {m['threads']} (pycnn, NumPy's BLAS, PyTorch); precision {m['precision']}",
             f"- pycnn {m['versions']['pycnn']}, NumPy {m['versions']['numpy']}, PyTorch "
             f"{m['versions'].get('torch') or 'not available'}",
             f"- Data: {st['samples']:,} synthetic images 1x28x28 float32, {CLASSES} classes (seed {st['seed']}); "
             f"LeNet-5 (pc.models.lenet5, the same layers in torch.nn with its weights), batch {st['batch']}, "
             f"SGD lr {st['lr']} momentum {st['momentum']}, shuffled every epoch",
             f"- Timing: median of {st['rounds']} interleaved epochs each after a warm-up epoch, "
             f"{st['cooldown_s']} s idle before each",
             f"- Load average (1 min) at start / end: {(report.get('loadavg_start') or ['?'])[0]} / "
             f"{(m.get('loadavg') or ['?'])[0]} on {m['cpu'].get('usable_cpus')} cores"
             + (" -- the machine was busy: treat the timings with suspicion"
                if busy(report.get("loadavg_start"), m.get("loadavg"), m["threads"]) else " (idle machine)"),
             (f"- Agreement checked before timing: one step of the pycnn loop and the PyTorch loop on the same batch "
              f"(worst relative error {max(report['check_max_rel_err'].values()):.2e})" if report["check_max_rel_err"]
              else "- No PyTorch: no agreement check"), "",
             "| loop | s per epoch | samples/s |", "| --- | ---: | ---: |"]
    for k, v in ms.items():
        lines.append(f"| {IMPL_NAMES[k]} | {v / 1e3:.2f} | {st['samples'] / (v / 1e3):,.0f} |")
    lines += ["", "| ratio | median epochs | target | met |", "| --- | ---: | ---: | --- |"]
    for k, v in r.items():
        t = TARGETS.get(k)
        lines.append(f"| {k} | {v:.3f} | {'-' if t is None else f'<= {t:g}'} | "
                     f"{'-' if t is None else ('yes' if v <= t else 'no')} |")
    lines += ["", f"Trainer.fit adds {100 * (r['fit/bare'] - 1):+.1f}% over the step loop."]
    return "\n".join(lines) + "\n"
