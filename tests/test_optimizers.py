"""optim.Adam, optim.AdamW and optim.RMSprop (issue 12.3): PyTorch parity for every option, a NumPy
float64 reference of each rule, parameter groups, frozen and gradient-less parameters, state_dict
and Trainer checkpoints that continue bit for bit, the found_inf skip, hyper-parameter checks, the
message for an optimizer name that does not exist, CUDA against CPU (marked `cuda`; without a GPU,
PYCNN_TEST_CUDA_AS=cpu runs them with "cpu" standing in) and LeNet-5 trained with Adam."""
from __future__ import annotations

import math

import numpy as np
import pytest

import pycnn as pc
from pycnn import _core, nn, optim
from pycnn.train import Trainer
from pycnn.train.callbacks import ModelCheckpoint

from helpers import DEV, needs_cuda as needs_dev, needs_real_cuda


SHAPES = [(3, 4), (5,), (2, 3, 2, 2)]

# (pycnn class name, torch class name, constructor arguments)
CONFIGS = [
    ("Adam", "Adam", dict()),
    ("Adam", "Adam", dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6)),
    ("Adam", "Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", "Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", "Adam", dict(lr=0.01, maximize=True, weight_decay=0.05, amsgrad=True)),
    ("Adam", "Adam", dict(lr=0.01, betas=(0.0, 0.0))),
    ("Adam", "Adam", dict(lr=0.02, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", "AdamW", dict()),
    ("AdamW", "AdamW", dict(lr=0.01, weight_decay=0.2, amsgrad=True)),
    ("AdamW", "AdamW", dict(lr=0.01, maximize=True)),
    ("RMSprop", "RMSprop", dict()),
    ("RMSprop", "RMSprop", dict(lr=0.001, alpha=0.9, eps=1e-6)),
    ("RMSprop", "RMSprop", dict(lr=0.001, weight_decay=0.1)),
    ("RMSprop", "RMSprop", dict(lr=0.001, momentum=0.9)),
    ("RMSprop", "RMSprop", dict(lr=0.001, centered=True)),
    ("RMSprop", "RMSprop", dict(lr=0.001, momentum=0.5, centered=True, weight_decay=0.01, maximize=True)),
    ("RMSprop", "RMSprop", dict(lr=0.001, alpha=0.3, centered=True)),  # lerp's other branch (1 - alpha >= 0.5)
]
IDS = [f"{name}-" + ",".join(f"{k}={v}" for k, v in cfg.items()) for name, _, cfg in CONFIGS]
STATE_KEYS = {"Adam": ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), "AdamW": ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
              "RMSprop": ("square_avg", "grad_avg", "momentum_buffer")}


def _params(rng, dtype=np.float64, shapes=SHAPES, device="cpu"):
    return [nn.Parameter(pc.from_numpy(rng.standard_normal(s).astype(dtype)).to(device)) for s in shapes]


def _grads(rng, steps, shapes=SHAPES):
    return [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]


def _set_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad = None if g is None else pc.from_numpy(np.asarray(g, dtype=p.numpy().dtype)).to(p.data.device)


def _torch_twin(torch, name, params, cfg):
    tparams = [torch.tensor(p.numpy().copy(), requires_grad=True) for p in params]
    return tparams, getattr(torch.optim, name)(tparams, **cfg)


def _set_torch_grads(torch, tparams, grads):
    for tp, g in zip(tparams, grads):
        tp.grad = None if g is None else torch.tensor(np.asarray(g, dtype=tp.detach().numpy().dtype))


def _state(opt, p):
    return {k: (float(v.numpy()) if k == "step" else np.array(v.numpy())) for k, v in opt.state[p].items()}


def _tol(dtype):
    return dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-6)


# ----------------------------------------------------------------------------- parity with torch.optim
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,tname,cfg", CONFIGS, ids=IDS)
def test_matches_torch_every_option(name, tname, cfg, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    params = _params(rng, dtype)
    tparams, topt = _torch_twin(torch, tname, params, cfg)
    opt = getattr(optim, name)(params, **cfg)
    for grads in _grads(rng, 6):
        _set_grads(params, grads)
        _set_torch_grads(torch, tparams, grads)
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams):
            assert p.numpy().dtype == dtype
            np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), **_tol(dtype))
    for p, tp in zip(params, tparams):
        ours, theirs = _state(opt, p), topt.state[tp]
        assert set(ours) == set(theirs), (set(ours), set(theirs))
        assert ours["step"] == float(theirs["step"]) == 6.0
        for k in STATE_KEYS[name]:
            if k in ours:
                np.testing.assert_allclose(ours[k], theirs[k].numpy(), **_tol(dtype), err_msg=k)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RMSprop"])
def test_defaults_are_pytorchs(name):
    torch = pytest.importorskip("torch")
    opt = getattr(optim, name)(_params(np.random.default_rng(0)))
    topt = getattr(torch.optim, name)([torch.zeros(1, requires_grad=True)])
    for k, v in opt.defaults.items():
        assert topt.defaults[k] == v, k
    want = {"Adam": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, maximize=False),
            "AdamW": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False),
            "RMSprop": dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                            maximize=False)}[name]
    for k, v in want.items():
        assert opt.param_groups[0][k] == v, k


def test_param_groups_with_their_own_hyper_parameters_match_torch():
    torch = pytest.importorskip("torch")
    for name, g0, g1 in [("Adam", dict(lr=0.02), dict(lr=0.001, betas=(0.5, 0.9), amsgrad=True)),
                         ("AdamW", dict(lr=0.02), dict(lr=0.005, weight_decay=0.3)),
                         ("RMSprop", dict(lr=0.01), dict(lr=0.001, momentum=0.9, centered=True))]:
        rng = np.random.default_rng(2)
        params = _params(rng)
        tparams = [torch.tensor(p.numpy().copy(), requires_grad=True) for p in params]
        opt = getattr(optim, name)([dict(params=params[:1], **g0), dict(params=params[1:], **g1)], eps=1e-6)
        topt = getattr(torch.optim, name)([dict(params=tparams[:1], **g0), dict(params=tparams[1:], **g1)], eps=1e-6)
        assert [g["lr"] for g in opt.param_groups] == [g0["lr"], g1["lr"]]
        for grads in _grads(rng, 5):
            _set_grads(params, grads)
            _set_torch_grads(torch, tparams, grads)
            opt.step()
            topt.step()
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RMSprop"])
def test_frozen_and_gradless_params_are_skipped_and_keep_their_own_step_count(name):
    """A parameter without a gradient (None) or frozen is untouched, state included; when it takes
    part again its bias corrections use its own step count, as in torch."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    params = _params(rng)
    tparams, topt = _torch_twin(torch, name, params, dict(lr=0.01))
    opt = getattr(optim, name)(params, lr=0.01)
    frozen = params[2]
    for step, grads in enumerate(_grads(rng, 6)):
        grads = list(grads)
        if step < 3:
            grads[1] = None  # params[1] joins late
        frozen.requires_grad = step >= 4  # params[2] frozen for steps 0..3, with a gradient set
        tgrads = [None if (i == 2 and step < 4) else g for i, g in enumerate(grads)]
        before = [p.numpy().copy() for p in params]
        _set_grads(params, grads)
        _set_torch_grads(torch, tparams, tgrads)
        opt.step()
        topt.step()
        if step < 3:
            np.testing.assert_array_equal(params[1].numpy(), before[1])
            assert params[1] not in opt.state
        if step < 4:
            np.testing.assert_array_equal(frozen.numpy(), before[2])
            assert frozen not in opt.state
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert [_state(opt, p)["step"] for p in params] == [6.0, 3.0, 2.0]


# ----------------------------------------------------------------------------- NumPy float64 reference
def _numpy_reference(name, cfg, p, grads):
    """The update rules as written in the docstrings, in float64 NumPy."""
    lr = cfg.get("lr", {"RMSprop": 1e-2}.get(name, 1e-3))
    wd = cfg.get("weight_decay", 1e-2 if name == "AdamW" else 0.0)
    eps = cfg.get("eps", 1e-8)
    p = p.copy()
    a, b, c = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = -g if cfg.get("maximize") else g
        if name == "RMSprop":
            alpha, mom = cfg.get("alpha", 0.99), cfg.get("momentum", 0.0)
            g = g + wd * p
            a = alpha * a + (1 - alpha) * g * g
            if cfg.get("centered"):
                b = alpha * b + (1 - alpha) * g
                avg = np.sqrt(a - b * b) + eps
            else:
                avg = np.sqrt(a) + eps
            if mom > 0:
                c = mom * c + g / avg
                p = p - lr * c
            else:
                p = p - lr * g / avg
            continue
        b1, b2 = cfg.get("betas", (0.9, 0.999))
        if name == "AdamW" or cfg.get("decoupled_weight_decay"):
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        a = b1 * a + (1 - b1) * g
        b = b2 * b + (1 - b2) * g * g
        c = np.maximum(c, b) if cfg.get("amsgrad") else b
        p = p - lr / (1 - b1 ** t) * a / (np.sqrt(c) / np.sqrt(1 - b2 ** t) + eps)
    return p


@pytest.mark.parametrize("name,tname,cfg", CONFIGS, ids=IDS)
def test_float64_matches_a_numpy_reference_of_the_rule(name, tname, cfg):
    rng = np.random.default_rng(4)
    params = _params(rng, shapes=[(7, 3)])
    start = params[0].numpy().copy()
    grads = [g[0] for g in _grads(rng, 8, shapes=[(7, 3)])]
    opt = getattr(optim, name)(params, **cfg)
    for g in grads:
        _set_grads(params, [g])
        opt.step()
    np.testing.assert_allclose(params[0].numpy(), _numpy_reference(name, cfg, start, grads), rtol=1e-11,
                               atol=1e-13)


# ----------------------------------------------------------------------------- state_dict and checkpoints
@pytest.mark.parametrize("name,cfg", [("Adam", dict(lr=0.01, amsgrad=True)), ("AdamW", dict(lr=0.01)),
                                      ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True))])
def test_state_dict_round_trip_continues_bit_identically(name, cfg):
    rng = np.random.default_rng(5)
    params = _params(rng, np.float32)
    opt = getattr(optim, name)(params, **cfg)
    grads = _grads(rng, 6)
    for g in grads[:3]:
        _set_grads(params, g)
        opt.step()
    sd = opt.state_dict()
    assert sd["state"][0]["step"] == 3.0 and isinstance(sd["state"][0]["step"], float)
    assert sorted(sd["state"]) == [0, 1, 2] and sd["param_groups"][0]["params"] == [0, 1, 2]
    clones = [nn.Parameter(pc.from_numpy(p.numpy().copy())) for p in params]
    opt2 = getattr(optim, name)(clones, lr=0.5)  # hyper-parameters come from the state dict
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == cfg["lr"]
    for g in grads[3:]:
        for ps, o in ((params, opt), (clones, opt2)):
            _set_grads(ps, g)
            o.step()
    for p, q in zip(params, clones):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
        for k, v in _state(opt, p).items():
            np.testing.assert_array_equal(_state(opt2, q)[k], v, err_msg=k)
    assert _state(opt2, clones[0])["step"] == 6.0


def test_load_state_dict_refuses_a_bad_step_and_bad_hyper_parameters():
    params = _params(np.random.default_rng(0))
    opt = optim.Adam(params)
    _set_grads(params, [np.ones(s) for s in SHAPES])
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["step"] = np.zeros(2)
    with pytest.raises(ValueError, match="'step' must hold one number"):
        optim.Adam(params).load_state_dict(sd)
    sd = opt.state_dict()
    sd["param_groups"][0]["betas"] = (0.9, 1.0)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        optim.Adam(params).load_state_dict(sd)


def _images(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = 0.1 * rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, 0, 4 * r:4 * r + 4, 4 * q:4 * q + 4] += 1.0
    return x, y


def _checkpointed_run(name, epochs, resume=None, ckpt=None):
    x, y = _images()
    pc.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 4))
    opt = {"Adam": lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True),
           "AdamW": lambda ps: optim.AdamW(ps, lr=0.01),
           "RMSprop": lambda ps: optim.RMSprop(ps, lr=0.001, momentum=0.9, centered=True)}[name](model.parameters())
    tr = Trainer(model, opt, nn.CrossEntropyLoss())
    cbs = [ModelCheckpoint(ckpt, save_best_only=False)] if ckpt else []
    tr.fit(x, y, batch_size=16, epochs=epochs, callbacks=cbs, resume_from=resume, verbose=0)
    return model, opt


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RMSprop"])
def test_trainer_checkpoint_resume_is_bit_identical(tmp_path, name):
    full, full_opt = _checkpointed_run(name, 3)
    ckpt = str(tmp_path / "run.safetensors")
    _checkpointed_run(name, 1, ckpt=ckpt)  # "interrupted" after 1 epoch
    resumed, res_opt = _checkpointed_run(name, 3, resume=ckpt)
    for (k, v), (_, w) in zip(full.state_dict().items(), resumed.state_dict().items()):
        np.testing.assert_array_equal(w.numpy(), v.numpy(), err_msg=k)
    for p, q in zip(full.parameters(), resumed.parameters()):
        a, b = _state(full_opt, p), _state(res_opt, q)
        assert a["step"] == b["step"] == 18.0  # 6 batches per epoch
        for k in a:
            np.testing.assert_array_equal(b[k], a[k], err_msg=k)


# ----------------------------------------------------------------------------- found_inf
def _flag(bad, device="cpu"):
    return pc.from_numpy(np.array(1.0 if bad else 0.0, dtype=np.float32)).to(device)


@pytest.mark.parametrize("name,tname,cfg", [c for c in CONFIGS if c[2].get("amsgrad") or c[2].get("centered")
                                            or c[0] == "AdamW"], ids=lambda c: str(c))
def test_found_inf_skips_whole_steps_exactly(name, tname, cfg):
    """Flagged steps (the first one included) change nothing, step counters included: the run equals
    torch's run over the good steps only."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    params = _params(rng)
    tparams, topt = _torch_twin(torch, tname, params, cfg)
    opt = getattr(optim, name)(params, **cfg)
    bad_steps = {0, 2, 3}
    for step, grads in enumerate(_grads(rng, 6)):
        before = [(p.numpy().copy(), _state(opt, p)) for p in params]
        _set_grads(params, [g * np.nan if step in bad_steps else g for g in grads])
        opt.step(found_inf=_flag(step in bad_steps))
        if step in bad_steps:
            for p, (data, st) in zip(params, before):
                np.testing.assert_array_equal(p.numpy(), data)
                after = _state(opt, p)
                assert after["step"] == st.get("step", 0.0)
                for k, v in after.items():  # buffers created by a skipped first step stay zero
                    np.testing.assert_array_equal(v, st.get(k, np.zeros_like(v)), err_msg=k)
            continue
        _set_torch_grads(torch, tparams, grads)
        topt.step()
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert _state(opt, params[0])["step"] == 3.0


@pytest.mark.parametrize("name", ["Adam", "RMSprop"])
def test_found_inf_argument_checks(name):
    p = [nn.Parameter(pc.zeros(2))]
    p[0].grad = pc.ones(2)
    opt = getattr(optim, name)(p, lr=0.1)
    with pytest.raises(TypeError, match="found_inf must be a pycnn Tensor"):
        opt.step(found_inf=1.0)
    with pytest.raises(ValueError, match="one-element float32"):
        opt.step(found_inf=pc.zeros(2))
    with pytest.raises(ValueError, match="one-element float32"):
        opt.step(found_inf=pc.from_numpy(np.zeros((), np.float64)))
    with pytest.raises(TypeError):
        opt.step(None, _flag(False))  # keyword only, as the contract says
    np.testing.assert_array_equal(p[0].numpy(), np.zeros(2))
    assert _state(opt, p[0])["step"] == 0.0
    opt.step(found_inf=_core.nonfinite_flag([p[0].grad]))
    assert _state(opt, p[0])["step"] == 1.0 and np.all(p[0].numpy() < 0)


def test_step_returns_the_closures_loss():
    p = [nn.Parameter(pc.ones(2))]
    opt = optim.Adam(p)

    def closure():
        p[0].grad = pc.ones(2)
        return 3.5

    assert opt.step(closure) == 3.5
    assert _state(opt, p[0])["step"] == 1.0


# ----------------------------------------------------------------------------- hyper-parameter checks
@pytest.mark.parametrize("name,kw,err,match", [
    ("Adam", dict(lr=-0.1), ValueError, "Adam: Invalid learning rate: -0.1"),
    ("Adam", dict(lr=math.nan), ValueError, "Adam: Invalid learning rate: nan"),
    ("Adam", dict(lr=math.inf), ValueError, r"lr must be a finite number >= 0"),
    ("Adam", dict(lr="0.1"), TypeError, "Adam: lr must be a number, got str"),
    ("Adam", dict(betas=(1.0, 0.999)), ValueError, r"Invalid beta parameter at index 0: 1.0 \(betas\[0\] must "
                                                   r"be a number in \[0, 1\)\)"),
    ("Adam", dict(betas=(0.9, -0.1)), ValueError, "Invalid beta parameter at index 1: -0.1"),
    ("Adam", dict(betas=(0.9, math.nan)), ValueError, "Invalid beta parameter at index 1: nan"),
    ("Adam", dict(betas=0.9), TypeError, "betas must be a pair of numbers"),
    ("Adam", dict(betas=(0.9, 0.99, 0.9)), TypeError, "betas must be a pair of numbers"),
    ("Adam", dict(eps=-1e-8), ValueError, "Adam: Invalid epsilon value: -1e-08"),
    ("Adam", dict(weight_decay=-1), ValueError, "Adam: Invalid weight_decay value: -1"),
    ("Adam", dict(amsgrad="yes"), TypeError, "Adam: amsgrad must be True or False"),
    ("AdamW", dict(weight_decay=math.nan), ValueError, "AdamW: Invalid weight_decay value: nan"),
    ("AdamW", dict(lr=-1), ValueError, "AdamW: Invalid learning rate"),
    ("RMSprop", dict(lr=-1), ValueError, "RMSprop: Invalid learning rate: -1"),
    ("RMSprop", dict(alpha=-0.5), ValueError, "RMSprop: Invalid alpha value: -0.5"),
    ("RMSprop", dict(eps=math.nan), ValueError, "RMSprop: Invalid epsilon value: nan"),
    ("RMSprop", dict(momentum=-0.9), ValueError, "RMSprop: Invalid momentum value: -0.9"),
    ("RMSprop", dict(weight_decay=-0.1), ValueError, "RMSprop: Invalid weight_decay value"),
    ("RMSprop", dict(centered=1), TypeError, "RMSprop: centered must be True or False"),
])
def test_bad_hyper_parameters_are_refused_at_construction(name, kw, err, match):
    with pytest.raises(err, match=match):
        getattr(optim, name)(_params(np.random.default_rng(0)), **kw)


def test_bad_hyper_parameters_of_a_param_group_are_refused():
    params = _params(np.random.default_rng(0))
    with pytest.raises(ValueError, match="Adam: Invalid learning rate: -1"):
        optim.Adam([{"params": params[:1]}, {"params": params[1:], "lr": -1}])
    opt = optim.RMSprop(params[:1])
    with pytest.raises(ValueError, match="RMSprop: Invalid alpha value"):
        opt.add_param_group({"params": params[1:], "alpha": math.nan})
    assert len(opt.param_groups) == 1


def test_the_kernels_check_their_tensors():
    p = pc.zeros(3)
    z = pc.zeros(3)
    step = pc.zeros([], dtype=pc.float64)
    with pytest.raises(ValueError, match=r"adam: expected grads\[0\] of shape \(3,\)"):
        _core.adam_step([p], [pc.zeros(4)], [z], [z], [], [step], 0.1, 0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match=r"adam: expected max_exp_avg_sqs to hold one tensor per parameter \(1\), "
                                         r"got 0"):
        _core.adam_step([p], [z], [z], [z], [], [step], 0.1, 0.9, 0.999, 1e-8, amsgrad=True)
    with pytest.raises(ValueError, match=r"one-element float64 step counter, got dtype float32"):
        _core.adam_step([p], [z], [z], [z], [], [pc.zeros(1)], 0.1, 0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match=r"rmsprop: expected momentum_buffers to hold one tensor per parameter "
                                         r"\(1\), got 0"):
        _core.rmsprop_step([p], [z], [z], [], [], [step], 0.1, 0.99, 1e-8, momentum=0.9)
    with pytest.raises(ValueError, match="rmsprop: Invalid alpha value"):
        _core.rmsprop_step([p], [z], [z], [], [], [step], 0.1, -0.99, 1e-8)
    with pytest.raises(TypeError, match="adam: params.0. is int64; parameters must be float32 or float64"):
        ip = pc.from_numpy(np.zeros(3, np.int64))
        _core.adam_step([ip], [ip], [ip], [ip], [], [step], 0.1, 0.9, 0.999, 1e-8)
    assert float(step.numpy()) == 0.0 and not np.any(p.numpy())


# ----------------------------------------------------------------------------- names
def test_an_optimizer_name_that_does_not_exist_lists_the_available_ones():
    with pytest.raises(AttributeError, match=r"no optimizer or attribute 'Adamax'.*Available optimizers: SGD, "
                                             r"Adam, AdamW, RMSprop"):
        optim.Adamax
    with pytest.raises(AttributeError, match="Did you mean 'AdamW'"):
        getattr(pc.optim, "adamw")
    with pytest.raises(AttributeError, match="Did you mean 'RMSprop'"):
        getattr(pc.optim, "RMSProp")
    assert hasattr(optim, "Adam") and not hasattr(optim, "__wrapped__")
    assert {"Adam", "AdamW", "RMSprop", "SGD"} <= set(optim.__all__)


# ----------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@needs_dev
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,tname,cfg", CONFIGS, ids=IDS)
def test_cuda_matches_cpu(name, tname, cfg, dtype):
    rng = np.random.default_rng(7)
    cpu = _params(rng, dtype)
    dev = [nn.Parameter(p.data.to(DEV)) for p in cpu]
    opt_c, opt_d = getattr(optim, name)(cpu, **cfg), getattr(optim, name)(dev, **cfg)
    for step, grads in enumerate(_grads(rng, 5)):
        _set_grads(cpu, grads)
        _set_grads(dev, grads)
        opt_c.step()
        opt_d.step(found_inf=_flag(False, DEV))
    for p, q in zip(cpu, dev):
        assert q.data.device.startswith(DEV) and opt_d.state[q]["step"].device.startswith(DEV)
        np.testing.assert_allclose(q.numpy(), p.numpy(), rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-6 if dtype == np.float32 else 1e-14)
        a, b = _state(opt_c, p), _state(opt_d, q)
        assert a["step"] == b["step"] == 5.0 and set(a) == set(b)


@pytest.mark.cuda
@needs_dev
@pytest.mark.parametrize("name", ["Adam", "RMSprop"])
def test_cuda_found_inf_skips_on_the_device(name):
    rng = np.random.default_rng(8)
    dev = _params(rng, np.float32, device=DEV)
    opt = getattr(optim, name)(dev, lr=0.01)
    _set_grads(dev, _grads(rng, 1)[0])
    opt.step()
    before = [(p.numpy().copy(), _state(opt, p)) for p in dev]
    _set_grads(dev, [g * np.inf for g in _grads(rng, 1)[0]])
    opt.step(found_inf=_core.nonfinite_flag([p.grad for p in dev]))
    for p, (data, st) in zip(dev, before):
        np.testing.assert_array_equal(p.numpy(), data)
        for k, v in _state(opt, p).items():
            np.testing.assert_array_equal(v, st[k], err_msg=k)


@needs_real_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("name,cfg", [("Adam", dict(lr=0.01, amsgrad=True)), ("AdamW", dict(lr=0.01)),
                                      ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True))])
def test_cuda_graph_replays_take_the_bias_corrections_of_their_own_step(name, cfg):
    """One eager step (creates the state), one captured step, four replays: equal to five eager
    steps, because each replay reads the step count on the device; no host sync in the replays."""
    rng = np.random.default_rng(9)
    grads = _grads(rng, 1)[0]
    ref = _params(np.random.default_rng(10))
    dev = [nn.Parameter(p.data.to("cuda")) for p in ref]
    opt_r, opt_d = getattr(optim, name)(ref, **cfg), getattr(optim, name)(dev, **cfg)
    _set_grads(ref, grads)
    _set_grads(dev, grads)
    for _ in range(5):
        opt_r.step()
    opt_d.step()
    g = pc.cuda.CUDAGraph()
    with pc.cuda.graph(g):
        opt_d.step(found_inf=_core.nonfinite_flag([p.grad for p in dev]))
    syncs = _core.cuda_host_sync_count()
    for _ in range(4):
        g.replay()
    assert _core.cuda_host_sync_count() == syncs
    for p, q in zip(ref, dev):
        np.testing.assert_allclose(q.numpy(), p.numpy(), rtol=1e-12, atol=1e-14)
        assert _state(opt_d, q)["step"] == 5.0


def _graph_trainer_run(cuda_graph, betas_late=None):
    x, y = _images(100)
    pc.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 4))
    opt = optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
    t = Trainer(model, opt, nn.CrossEntropyLoss(), device="cuda", cuda_graph=cuda_graph)
    t.fit(x, y, batch_size=32, epochs=1, verbose=0)
    if betas_late:
        opt.param_groups[0]["betas"] = betas_late  # baked into the graph: must trigger a new capture
    t.fit(x, y, batch_size=32, epochs=1, verbose=0)
    return t, [p.data.numpy().copy() for p in model.parameters()]


@needs_real_cuda
@pytest.mark.cuda
def test_trainer_cuda_graph_with_adam_matches_eager():
    """Trainer(cuda_graph=True) with Adam: replays advance the device-side step counts, so the run
    equals the eager one; a changed beta is noticed (captured again) like a changed lr."""
    for betas in (None, (0.5, 0.9)):
        _, w_eager = _graph_trainer_run(False, betas)
        t_graph, w_graph = _graph_trainer_run(True, betas)
        for u, v in zip(w_graph, w_eager):
            np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
        assert t_graph._graph_step.replays > 0
        assert _state(t_graph.optimizer, next(iter(t_graph.model.parameters())))["step"] == 8.0


# ----------------------------------------------------------------------------- training
def test_lenet5_trains_on_the_mnist_sample_with_adam():
    """Adam at its default lr: >= 0.95 test accuracy on the MNIST sample in 5 epochs (about 2 s; single
    thread, as the CLI-defaults test: OpenMP's barriers slow a busy 2-core machine down)."""
    from pycnn.data.datasets import load_mnist_sample
    from pycnn.models import lenet5

    x_train, y_train, x_test, y_test = load_mnist_sample()
    pc.manual_seed(0)
    model = lenet5()
    trainer = Trainer(model, optim.Adam(model.parameters()), nn.CrossEntropyLoss())
    threads = pc.get_num_threads()
    pc.set_num_threads(1)
    try:
        trainer.fit(x_train, y_train, batch_size=32, epochs=5, verbose=0)
        acc = trainer.evaluate(x_test, y_test)["accuracy"]
    finally:
        pc.set_num_threads(threads)
    assert acc >= 0.95, acc
