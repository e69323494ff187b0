"""The CPU suite's cases: pycnn, the NumPy peer (numpy_peer.py) and PyTorch on the same inputs,
each with the agreement check (harness.compare) it passes before anything is timed; and the pieces
the other benchmarks build on (the conv shapes and inputs, LeNet-5 in torch, the SGD settings)."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from .harness import Impl, Mismatch, as_numpy, compare


class Case:
    """build(env) -> ({impl name: Impl}, {check: error}): inputs made and outputs compared."""

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


def conv_out_shape(xs, ws, stride, pad) -> Tuple[int, int, int, int]:
    n, c, h, w = xs
    o, kh, kw = ws
    return n, o, (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1


def conv_macs(xs, ws, stride, pad) -> int:
    n, o, oh, ow = conv_out_shape(xs, ws, stride, pad)
    return n * o * oh * ow * xs[1] * ws[1] * ws[2]


def conv_inputs(xs, ws, stride, pad):
    """x, w (scaled by 1/sqrt(fan-in)), b and dy of a conv case, float32, seed 0 (CPU and GPU)."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs, dtype=np.float32)
    w = (rng.standard_normal((ws[0], xs[1], ws[1], ws[2]), dtype=np.float32) / np.sqrt(xs[1] * ws[1] * ws[2])).astype(np.float32)
    b = rng.standard_normal(ws[0], dtype=np.float32) * np.float32(0.1)
    dy = rng.standard_normal(conv_out_shape(xs, ws, stride, pad), dtype=np.float32)
    return x, w, b, dy


def _conv_case(name, xs, ws, stride, pad, backward: bool) -> Case:
    macs = conv_macs(xs, ws, stride, pad)
    desc = (f"conv2d {xs[1]}->{ws[0]} {ws[1]}x{ws[2]} s{stride} p{pad}, x {xs}"
            + (" fwd+bwd (dx, dw, db)" if backward else " fwd"))

    def build(env):
        from . import numpy_peer as npp

        pc, F, torch = env["pc"], env["F"], env.get("torch")
        x, w, b, dy = conv_inputs(xs, ws, stride, pad)
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

        from . import numpy_peer as npp

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
def torch_lenet5(torch: Any, params=None):
    """pc.models.lenet5's layers in torch.nn; `params` (NumPy arrays in pycnn's parameter order)
    copied in when given, else torch's own initialisation."""
    tnn = torch.nn
    m = tnn.Sequential(
        tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
        tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10),
    )
    if params is not None:
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

        from . import numpy_peer as npp

        pc, torch = env["pc"], env.get("torch")
        from pycnn import models, nn, optim

        pc.manual_seed(0)
        model = models.lenet5(num_classes=10)
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
            state["opt"] = optim.SGD(model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)

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
            o = {"logits": as_numpy(logits).copy(), "loss": np.float32(as_numpy(loss))}
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
