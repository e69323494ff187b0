"""optim.SGD and optim.lr_scheduler: PyTorch parity, parameter groups, frozen parameters, state."""
import math

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn, optim
from pycnn.optim import lr_scheduler


def _params(rng, shapes, dtype=np.float64):
    return [nn.Parameter(pc.from_numpy(rng.standard_normal(s).astype(dtype))) for s in shapes]


SHAPES = [(3, 4), (5,), (2, 3, 2, 2)]


def _grads(rng, steps, shapes=SHAPES):
    return [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]


def _set_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad = None if g is None else pc.from_numpy(np.array(g, dtype=np.float64))


# ----------------------------------------------------------------------------- SGD vs torch
CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.01, momentum=0.5, weight_decay=1e-2),
    dict(lr=0.02, momentum=0.8, weight_decay=5e-3, nesterov=True),
    dict(lr=0.02, weight_decay=1e-1),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_sgd_matches_torch(cfg):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    params = _params(rng, SHAPES)
    tparams = [torch.tensor(p.numpy().copy(), requires_grad=True) for p in params]
    opt = optim.SGD(params, **cfg)
    topt = torch.optim.SGD(tparams, **cfg)
    for grads in _grads(rng, 6):
        _set_grads(params, grads)
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    if cfg.get("momentum", 0):
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(opt.state[p]["momentum_buffer"].numpy(),
                                       topt.state[tp]["momentum_buffer"].numpy(), rtol=1e-12, atol=1e-14)
    else:
        assert len(opt.state) == 0


def test_sgd_param_groups_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    params = _params(rng, SHAPES)
    tparams = [torch.tensor(p.numpy().copy(), requires_grad=True) for p in params]
    groups = lambda ps: [{"params": ps[:2], "lr": 0.01, "nesterov": True},
                         {"params": ps[2:], "weight_decay": 0.1, "momentum": 0.5, "dampening": 0.1}]
    opt = optim.SGD(groups(params), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(groups(tparams), lr=0.1, momentum=0.9)
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[1]["lr"] == 0.1
    assert opt.param_groups[1]["momentum"] == 0.5 and opt.param_groups[0]["momentum"] == 0.9
    for grads in _grads(rng, 5):
        _set_grads(params, grads)
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_sgd_params_joining_late_take_a_first_step():
    """A parameter without a gradient for the first steps starts its momentum buffer later (as torch)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    params = _params(rng, SHAPES)
    tparams = [torch.tensor(p.numpy().copy(), requires_grad=True) for p in params]
    opt = optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=0.01)
    topt = torch.optim.SGD(tparams, lr=0.05, momentum=0.9, weight_decay=0.01)
    for step, grads in enumerate(_grads(rng, 6)):
        if step < 3:
            grads[1] = None  # no gradient yet
        _set_grads(params, grads)
        for tp, g in zip(tparams, grads):
            tp.grad = None if g is None else torch.tensor(g)
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_sgd_float32_close_to_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    params = _params(rng, SHAPES, dtype=np.float32)
    tparams = [torch.tensor(p.numpy().copy(), requires_grad=True) for p in params]
    opt = optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    topt = torch.optim.SGD(tparams, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    for grads in _grads(rng, 4):
        for p, tp, g in zip(params, tparams, grads):
            p.grad = pc.from_numpy(g.astype(np.float32))
            tp.grad = torch.tensor(g.astype(np.float32))
        opt.step()
        topt.step()
    for p, tp in zip(params, tparams):
        assert p.dtype == pc.float32
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- frozen / grad-less
def test_frozen_and_gradless_params_untouched():
    rng = np.random.default_rng(4)
    params = _params(rng, SHAPES)
    before = [p.numpy().copy() for p in params]
    params[0].requires_grad = False
    opt = optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1)
    _set_grads(params, [rng.standard_normal(s) for s in SHAPES])
    params[1].grad = None
    opt.step()
    np.testing.assert_array_equal(params[0].numpy(), before[0])  # frozen: even weight decay skipped
    np.testing.assert_array_equal(params[1].numpy(), before[1])  # no grad
    assert not np.array_equal(params[2].numpy(), before[2])
    assert params[0] not in opt.state and params[1] not in opt.state
    assert params[2] in opt.state


def test_zero_grad():
    rng = np.random.default_rng(5)
    params = _params(rng, SHAPES)
    opt = optim.SGD(params, lr=0.1)
    _set_grads(params, [rng.standard_normal(s) for s in SHAPES])
    opt.zero_grad(set_to_none=False)
    assert all(np.all(p.grad.numpy() == 0) for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_sgd_trains_a_linear_layer():
    pc.manual_seed(0)
    layer = nn.Linear(3, 1, dtype=pc.float64)
    crit = nn.MSELoss()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3
    dt = np.float64
    opt = optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    for _ in range(200):
        out = layer(pc.from_numpy(x.astype(dt)))
        loss = crit(out, y.astype(dt))
        opt.zero_grad()
        layer.backward(crit.backward())
        opt.step()
    assert loss.item() < 1e-4


# ----------------------------------------------------------------------------- validation
def test_sgd_validation_messages():
    p = [nn.Parameter(pc.zeros(2))]
    with pytest.raises(ValueError, match="Invalid learning rate: -0.1"):
        optim.SGD(p, lr=-0.1)
    with pytest.raises(ValueError, match="Invalid momentum value: -0.5"):
        optim.SGD(p, lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match="Invalid weight_decay value: -1"):
        optim.SGD(p, lr=0.1, weight_decay=-1)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero dampening"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero dampening"):
        optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="iterable of Parameters or dicts"):
        optim.SGD(p[0], lr=0.1)
    with pytest.raises(TypeError, match="can only optimize Parameters"):
        optim.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": p}, {"params": p}], lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.SGD([{"params": p, "lr": -1.0}], lr=0.1)
    with pytest.raises(ValueError, match="didn't specify a value of required optimization parameter lr"):
        optim.SGD([{"params": p}])
    with pytest.raises(TypeError):
        optim.SGD(p, lr="fast")


def test_sgd_nesterov_group_validation():
    p = [nn.Parameter(pc.zeros(2))]
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([{"params": p, "nesterov": True}], lr=0.1)


# ----------------------------------------------------------------------------- state_dict
def test_state_dict_round_trip():
    rng = np.random.default_rng(6)
    params = _params(rng, SHAPES)
    opt = optim.SGD([{"params": params[:1], "lr": 0.01}, {"params": params[1:]}], lr=0.1, momentum=0.9)
    for grads in _grads(rng, 2):
        _set_grads(params, grads)
        opt.step()
    sd = opt.state_dict()
    assert sd["param_groups"][0]["params"] == [0] and sd["param_groups"][1]["params"] == [1, 2]
    assert sd["param_groups"][0]["lr"] == 0.01 and sd["param_groups"][1]["momentum"] == 0.9
    assert set(sd["state"]) == {0, 1, 2}
    assert isinstance(sd["state"][0]["momentum_buffer"], np.ndarray)
    # buffers are copies, not views
    snapshot = sd["state"][2]["momentum_buffer"].copy()

    # a second optimizer on copies of the parameters continues identically
    params2 = [nn.Parameter(pc.from_numpy(p.numpy().copy())) for p in params]
    opt2 = optim.SGD([{"params": params2[:1]}, {"params": params2[1:]}], lr=0.5)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 0.01 and opt2.param_groups[1]["lr"] == 0.1
    assert opt2.param_groups[0]["params"][0] is params2[0]
    grads = _grads(rng, 3)
    for g in grads:
        _set_grads(params, g)
        _set_grads(params2, g)
        opt.step()
        opt2.step()
    for p, q in zip(params, params2):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    np.testing.assert_array_equal(sd["state"][2]["momentum_buffer"], snapshot)


def test_load_state_dict_mismatch():
    p = [nn.Parameter(pc.zeros(2)), nn.Parameter(pc.zeros(3))]
    opt = optim.SGD(p, lr=0.1)
    other = optim.SGD([{"params": p[:1]}, {"params": p[1:]}], lr=0.1)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        opt.load_state_dict(other.state_dict())
    small = optim.SGD(p[:1], lr=0.1)
    with pytest.raises(ValueError, match="doesn't match the size"):
        opt.load_state_dict(small.state_dict())


def test_state_dict_matches_torch_layout():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    params = _params(rng, SHAPES)
    tparams = [torch.tensor(p.numpy().copy(), requires_grad=True) for p in params]
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(tparams, lr=0.1, momentum=0.9)
    grads = _grads(rng, 1)[0]
    _set_grads(params, grads)
    for tp, g in zip(tparams, grads):
        tp.grad = torch.tensor(g)
    opt.step()
    topt.step()
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sd["param_groups"][0]["params"] == tsd["param_groups"][0]["params"]
    for k in ("lr", "momentum", "dampening", "weight_decay", "nesterov"):
        assert sd["param_groups"][0][k] == tsd["param_groups"][0][k]
    for i in tsd["state"]:
        np.testing.assert_allclose(sd["state"][i]["momentum_buffer"], tsd["state"][i]["momentum_buffer"].numpy())


# ----------------------------------------------------------------------------- schedulers vs torch
def _lr_sequences(make, make_torch, epochs=30, groups=((0.1,), (0.02,)), metrics=None):
    torch = pytest.importorskip("torch")
    ours = optim.SGD([{"params": [nn.Parameter(pc.zeros(1))], "lr": g[0]} for g in groups], lr=1.0, momentum=0.9)
    theirs = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": g[0]} for g in groups],
                             lr=1.0, momentum=0.9)
    s, ts = make(ours), make_torch(theirs, torch)
    seq, tseq = [], []
    for e in range(epochs):
        seq.append(list(s.get_last_lr()))
        tseq.append(list(ts.get_last_lr()))
        assert [g["lr"] for g in ours.param_groups] == seq[-1]
        theirs.step()
        if metrics is None:
            s.step()
            ts.step()
        else:
            s.step(metrics[e])
            ts.step(metrics[e])
    return np.array(seq), np.array(tseq), s


@pytest.mark.parametrize("name,kw", [
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("StepLR", dict(step_size=3)),
    ("MultiStepLR", dict(milestones=[5, 12, 12, 20], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=10)),
    ("CosineAnnealingLR", dict(T_max=30, eta_min=1e-3)),
    ("CosineAnnealingLR", dict(T_max=8, eta_min=0.01)),
])
def test_scheduler_matches_torch(name, kw):
    ours, theirs, _ = _lr_sequences(lambda o: getattr(lr_scheduler, name)(o, **kw),
                                    lambda o, torch: getattr(torch.optim.lr_scheduler, name)(o, **kw))
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("kw", [
    dict(),
    dict(patience=2, factor=0.5),
    dict(patience=1, factor=0.5, cooldown=2, min_lr=0.004),
    dict(mode="max", patience=0, threshold=0.05, threshold_mode="abs"),
    dict(patience=1, min_lr=[0.01, 0.001], threshold=0.01),
])
def test_reduce_on_plateau_matches_torch(kw):
    rng = np.random.default_rng(8)
    metrics = list(np.concatenate([np.linspace(1.0, 0.5, 8), 0.5 + 0.01 * rng.random(22)]))
    ours, theirs, _ = _lr_sequences(lambda o: lr_scheduler.ReduceLROnPlateau(o, **kw),
                                    lambda o, torch: torch.optim.lr_scheduler.ReduceLROnPlateau(o, **kw),
                                    metrics=metrics)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert ours[-1][0] < ours[0][0] or kw.get("mode") == "max"


def test_scheduler_base_lrs_and_closed_form():
    p = [nn.Parameter(pc.zeros(1))]
    opt = optim.SGD([{"params": p, "lr": 0.2}], lr=1.0)
    s = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    assert s.base_lrs == [0.2] and s.get_last_lr() == [0.2]
    for _ in range(5):
        s.step()
    assert s.last_epoch == 5
    assert math.isclose(s.get_last_lr()[0], 0.2 * 0.25)
    s.step(9)  # closed form from base_lrs
    assert math.isclose(opt.param_groups[0]["lr"], 0.2 * 0.5 ** 4)


def test_scheduler_state_dict_round_trip():
    def make():
        p = [nn.Parameter(pc.zeros(1))]
        return optim.SGD(p, lr=0.1)

    for make_s in (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=10),
                   lambda o: lr_scheduler.MultiStepLR(o, milestones=[2, 4]),
                   lambda o: lr_scheduler.ReduceLROnPlateau(o, patience=0)):
        o1 = make()
        s1 = make_s(o1)
        for e in range(3):
            s1.step(1.0) if isinstance(s1, lr_scheduler.ReduceLROnPlateau) else s1.step()
        o2 = make()
        s2 = make_s(o2)
        o2.load_state_dict(o1.state_dict())
        s2.load_state_dict(s1.state_dict())
        assert "optimizer" not in s1.state_dict()
        for e in range(4):
            for s in (s1, s2):
                s.step(1.0) if isinstance(s, lr_scheduler.ReduceLROnPlateau) else s.step()
            assert s1.get_last_lr() == s2.get_last_lr()
            assert o1.param_groups[0]["lr"] == o2.param_groups[0]["lr"]


def test_scheduler_validation():
    opt = optim.SGD([nn.Parameter(pc.zeros(1))], lr=0.1)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        lr_scheduler.StepLR(object(), step_size=1)
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        lr_scheduler.ReduceLROnPlateau(opt, factor=1.5)
    with pytest.raises(ValueError, match="unknown"):
        lr_scheduler.ReduceLROnPlateau(opt, mode="up")
    with pytest.raises(ValueError, match="step_size"):
        lr_scheduler.StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        lr_scheduler.CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match="expected 1 min_lrs"):
        lr_scheduler.ReduceLROnPlateau(opt, min_lr=[0.1, 0.2])


# ----------------------------------------------------------------------------- found_inf (issue 10.2)
def test_sgd_refuses_non_finite_hyper_parameters():
    p = [nn.Parameter(pc.zeros(2))]
    for name in ("lr", "momentum", "dampening", "weight_decay"):
        for bad in (math.nan, math.inf, -math.inf):
            kw = dict(lr=0.1)
            kw[name] = bad
            with pytest.raises(ValueError, match=f"SGD: {name} must be a finite number"):
                optim.SGD(p, **kw)
    with pytest.raises(ValueError, match="SGD: lr must be a finite number"):
        optim.SGD([{"params": p, "lr": math.nan}], lr=0.1)
    opt = optim.SGD(p, lr=0.1)
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = math.nan
    with pytest.raises(ValueError, match="SGD: lr must be a finite number"):
        opt.load_state_dict(sd)


def _flag(bad):
    return pc.from_numpy(np.array(1.0 if bad else 0.0, dtype=np.float32))


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_sgd_found_inf_skips_whole_steps_exactly(cfg):
    """Steps flagged bad (the first one included) change nothing: the run equals torch's run over the
    good steps only, buffers included."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    params = _params(rng, SHAPES)
    tparams = [torch.tensor(p.numpy().copy(), requires_grad=True) for p in params]
    opt = optim.SGD(params, **cfg)
    topt = torch.optim.SGD(tparams, **cfg)
    bad_steps = {0, 3, 4}
    for step, grads in enumerate(_grads(rng, 7)):
        before = [p.numpy().copy() for p in params]
        bufs = {id(p): np.array(opt.state[p]["momentum_buffer"].numpy()) for p in params if p in opt.state}
        _set_grads(params, [g * np.nan if step in bad_steps else g for g in grads])
        opt.step(found_inf=_flag(step in bad_steps))
        if step in bad_steps:
            for p, b in zip(params, before):
                np.testing.assert_array_equal(p.numpy(), b)
            for p in params:
                if id(p) in bufs:
                    np.testing.assert_array_equal(opt.state[p]["momentum_buffer"].numpy(), bufs[id(p)])
                else:  # absent, or (without dampening, on the device path) a zero buffer: the same next step
                    buf = opt.state[p].get("momentum_buffer")
                    assert buf is None or (cfg.get("dampening", 0) == 0 and not np.any(buf.numpy()))
            continue
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g)
        topt.step()
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    if cfg.get("momentum", 0):
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(opt.state[p]["momentum_buffer"].numpy(),
                                       topt.state[tp]["momentum_buffer"].numpy(), rtol=1e-12, atol=1e-14)


def test_sgd_found_inf_argument_checks():
    p = [nn.Parameter(pc.zeros(2))]
    p[0].grad = pc.ones(2)
    opt = optim.SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="found_inf must be a pycnn Tensor"):
        opt.step(found_inf=1.0)
    with pytest.raises(ValueError, match="one-element float32"):
        opt.step(found_inf=pc.zeros(2))
    with pytest.raises(ValueError, match="one-element float32"):
        opt.step(found_inf=pc.from_numpy(np.zeros((), np.float64)))
    np.testing.assert_array_equal(p[0].numpy(), np.zeros(2))
    with pytest.raises(TypeError):
        opt.step(None, _flag(False))  # keyword only, as the contract says
    opt.step(found_inf=_flag(False))
    np.testing.assert_allclose(p[0].numpy(), np.full(2, -0.1, np.float32))
