"""Trainer: fit / evaluate / predict, History, train/eval modes, reproducibility, host syncs, failures
(NaN loss, KeyboardInterrupt, on_nonfinite="skip"), schedulers in fit, verbosity and the Keras
conveniences (validation_split, drop_last, unscaled-pixel warning, per-group lr).
Callbacks and checkpoints: tests/test_trainer_callbacks.py."""
import math

import numpy as np
import pytest

import pycnn as pc
from pycnn import metrics, nn, optim
from pycnn.data import DataLoader, TensorDataset
from pycnn.optim import lr_scheduler
from pycnn.train import History, Trainer
from pycnn.train.callbacks import Callback

from helpers import blobs, images, make_trainer, mlp, small_cnn, weights


class Probe(nn.Identity):
    """Records the training flag at each forward; optionally raises at the k-th call."""

    def __init__(self, raise_at=None, exc=KeyboardInterrupt):
        super().__init__()
        object.__setattr__(self, "modes", [])
        object.__setattr__(self, "calls", 0)
        object.__setattr__(self, "raise_at", raise_at)
        object.__setattr__(self, "exc", exc)

    def forward(self, x):
        object.__setattr__(self, "calls", self.calls + 1)
        self.modes.append(self.training)
        if self.raise_at is not None and self.calls == self.raise_at:
            raise self.exc()
        return super().forward(x)


# ----------------------------------------------------------------------------- fit basics
def test_fit_separable_problem_reaches_high_accuracy():
    pc.manual_seed(0)
    x, y = blobs(300)
    tr = make_trainer()
    h = tr.fit(x, y, batch_size=32, epochs=15, verbose=0)
    assert isinstance(h, History)
    assert h.history["accuracy"][-1] >= 0.97
    assert h.history["loss"][-1] < h.history["loss"][0]
    res = tr.evaluate(x, y)
    assert set(res) == {"loss", "accuracy"} and res["accuracy"] >= 0.97
    assert isinstance(res["loss"], float) and isinstance(res["accuracy"], float)


def test_fit_small_cnn_on_images_float64_inputs():
    pc.manual_seed(1)
    x, y = images(192)
    xv, yv = images(64, seed=1)
    tr = make_trainer(small_cnn(), lr=0.05)
    h = tr.fit(x, y.astype(np.int32), batch_size=16, epochs=6, validation_data=(xv, yv), verbose=0)
    assert h.history["val_accuracy"][-1] >= 0.95
    out = tr.predict(xv)
    assert out.dtype == pc.float32 and out.shape == (64, 4)


def test_history_keys_and_lengths():
    pc.manual_seed(0)
    x, y = blobs(100)
    xv, yv = blobs(40, seed=1)
    tr = make_trainer()
    h = tr.fit(x, y, batch_size=25, epochs=3, validation_data=(xv, yv), verbose=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == 3 for v in h.history.values())
    assert h.epoch == [0, 1, 2]
    assert h.params["epochs"] == 3 and h.params["steps"] == 4
    assert h.history["lr"] == [0.1, 0.1, 0.1]
    assert tr.history is h
    # the epoch's val metrics equal evaluate() on the same data after that epoch
    res = tr.evaluate(xv, yv)
    assert math.isclose(res["loss"], h.history["val_loss"][-1], rel_tol=1e-5)
    assert res["accuracy"] == h.history["val_accuracy"][-1]


def test_no_accuracy_metric():
    x, y = blobs(64)
    tr = make_trainer(metrics=())
    h = tr.fit(x, y, epochs=1, validation_data=(x, y), verbose=0)
    assert set(h.history) == {"loss", "val_loss", "lr"}
    assert set(tr.evaluate(x, y)) == {"loss"}
    with pytest.raises(ValueError, match="unknown metric"):
        make_trainer(metrics=("f1",))


def test_epoch_loss_is_sample_weighted_mean():
    """The epoch loss averages per-sample losses (a smaller last batch weighs less), as evaluate does."""
    pc.manual_seed(0)
    x, y = blobs(70)
    tr = make_trainer(lr=0.0, momentum=0.0)  # lr 0: weights stay, so every batch sees the same model
    h = tr.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert math.isclose(h.history["loss"][0], tr.evaluate(x, y, batch_size=7)["loss"], rel_tol=1e-5)
    logits = tr.predict(x).numpy().astype(np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    assert math.isclose(h.history["loss"][0], -logp[np.arange(70), y].mean(), rel_tol=1e-5)
    assert h.history["accuracy"][0] == metrics.accuracy(logits, y)


def test_evaluate_and_predict_shapes():
    pc.manual_seed(0)
    x, y = blobs(300)
    tr = make_trainer()
    out = tr.predict(x, batch_size=64)
    assert isinstance(out, pc.Tensor) and out.shape == (300, 3) and out.device == "cpu"
    out2 = tr.predict(pc.from_numpy(x), batch_size=1000)
    np.testing.assert_allclose(out.numpy(), out2.numpy(), rtol=1e-6, atol=1e-6)
    loader = DataLoader(TensorDataset(x, y), batch_size=50)
    np.testing.assert_allclose(tr.predict(loader).numpy(), out.numpy(), rtol=1e-6, atol=1e-6)
    res = tr.evaluate(x, y, batch_size=256)
    assert math.isclose(res["accuracy"], metrics.accuracy(out, y))
    assert math.isclose(tr.evaluate(loader)["loss"], res["loss"], rel_tol=1e-5)


def test_fit_with_dataloader():
    pc.manual_seed(0)
    x, y = blobs(200)
    loader = DataLoader(TensorDataset(x, y), batch_size=20, shuffle=True)
    tr = make_trainer()
    h = tr.fit(loader, epochs=8, validation_data=DataLoader(TensorDataset(x, y), batch_size=64), verbose=0)
    assert h.params["steps"] == 10
    assert h.history["val_accuracy"][-1] >= 0.95
    with pytest.raises(ValueError, match="y must be None"):
        tr.fit(loader, y, verbose=0)


def test_fit_argument_errors():
    x, y = blobs(50)
    tr = make_trainer()
    with pytest.raises(ValueError, match="50 samples but y has 49"):
        tr.fit(x, y[:49], verbose=0)
    with pytest.raises(ValueError, match="y .*required"):
        tr.fit(x, verbose=0)
    with pytest.raises(ValueError, match="batch_size"):
        tr.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="verbose"):
        tr.fit(x, y, verbose=3)
    with pytest.raises(ValueError, match="validation_data"):
        tr.fit(x, y, validation_data=(x, y, y), verbose=0)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        Trainer(object(), optim.SGD(mlp().parameters(), lr=0.1), nn.CrossEntropyLoss())
    with pytest.raises(TypeError, match="loss must be a criterion"):
        Trainer(mlp(), optim.SGD(mlp().parameters(), lr=0.1), lambda a, b: 0)


def test_train_and_eval_modes():
    pc.manual_seed(0)
    probe = Probe()
    model = nn.Sequential(probe, nn.Linear(2, 3))
    x, y = blobs(40)
    tr = make_trainer(model)
    model.eval()
    tr.fit(x, y, batch_size=20, epochs=2, validation_data=(x, y), verbose=0)
    # per epoch: 2 training forwards (train mode), then 2 validation forwards (eval mode)
    assert probe.modes == [True, True, False, False] * 2
    assert model.training is False  # restored
    model.train()
    probe.modes.clear()
    tr.predict(x)
    tr.evaluate(x, y)
    assert probe.modes == [False, False] and model.training is True


def test_same_seed_gives_bit_identical_weights():
    x, y = images(96)
    runs = []
    for _ in range(2):
        pc.manual_seed(123)
        model = small_cnn()
        tr = make_trainer(model, lr=0.05)
        h = tr.fit(x, y, batch_size=16, epochs=2, shuffle=True, verbose=0)
        runs.append((weights(model), h.history["loss"]))
    for k in runs[0][0]:
        np.testing.assert_array_equal(runs[0][0][k], runs[1][0][k])
    assert runs[0][1] == runs[1][1]
    pc.manual_seed(124)
    model = small_cnn()
    make_trainer(model, lr=0.05).fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert not np.array_equal(weights(model)["0.weight"], runs[0][0]["0.weight"])


def test_host_syncs_only_at_logging_points(monkeypatch):
    """25 steps: each step makes a device flag (no host read); the sticky flag is read at steps 10
    and 20 and at the epoch's end, not per step."""
    import pycnn.train.step as step_mod
    import pycnn.train.trainer as trainer_mod

    # the step's flag (device, every step) and the Trainer's host check of a loss (only after a bad step)
    calls = {"isfinite_all": 0, "nonfinite_flag": 0, "check": 0}

    def spy(key, real):
        def f(ts):
            calls[key] += 1
            return real(ts)
        return f

    monkeypatch.setattr(step_mod, "nonfinite_flag", spy("nonfinite_flag", step_mod.nonfinite_flag))
    monkeypatch.setattr(trainer_mod, "nonfinite_flag", spy("isfinite_all", trainer_mod.nonfinite_flag))
    real_check = Trainer._check_finite

    def check(self, *a):
        calls["check"] += 1
        return real_check(self, *a)

    monkeypatch.setattr(Trainer, "_check_finite", check)
    x, y = blobs(100)
    make_trainer().fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert calls == {"isfinite_all": 0, "nonfinite_flag": 25, "check": 3}


def test_parameters_outside_the_optimizer_hold_the_last_steps_gradient():
    """The step clears every gradient of the model, also of parameters the optimizer does not hold
    (listed once per epoch): after a fit their .grad is the last batch's, never a running sum over
    the steps, and they are not changed; a layer added between fits is covered too."""
    pc.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    x, y = blobs(64, classes=2)
    crit = nn.CrossEntropyLoss()

    def last_batch_grad(layer):  # lr=0 below: every step sees the same weights
        model.zero_grad()
        crit(model(pc.from_numpy(x[48:64])), pc.from_numpy(y[48:64]))
        model.backward(crit.backward())
        return layer.weight.grad.numpy().copy()

    tr = Trainer(model, optim.SGD(list(model[0].parameters()), lr=0.0), crit, metrics=())
    w_out = model[2].weight.numpy().copy()
    tr.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_array_equal(model[2].weight.numpy(), w_out)  # not in the optimizer: unchanged
    got = model[2].weight.grad.numpy().copy()
    np.testing.assert_allclose(got, last_batch_grad(model[2]), rtol=1e-5, atol=1e-7)
    model.append(nn.Linear(2, 2))  # a new layer between fits, outside the optimizer
    tr.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    got = model[3].weight.grad.numpy().copy()
    np.testing.assert_allclose(got, last_batch_grad(model[3]), rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- failures
def test_nan_loss_raises_floating_point_error():
    x, y = blobs(64)
    x[2 * 8 + 3, 0] = np.nan  # sample in the third batch of 8 (no shuffling)
    tr = make_trainer(nn.Sequential(nn.Linear(2, 3)))
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch 3\b"):
        tr.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    # detection at a logging point in the middle of an epoch (batch 13 of 20, 2nd epoch)
    x, y = blobs(160)
    tr = make_trainer(nn.Sequential(nn.Linear(2, 3)), lr=0.01)

    class PoisonAt(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                x[12 * 8] = np.inf

    with pytest.raises(FloatingPointError, match=r"epoch 2, batch 13\b"):
        tr.fit(x, y, batch_size=8, epochs=3, shuffle=False, callbacks=[PoisonAt()], verbose=0)


def test_keyboard_interrupt_returns_history():
    pc.manual_seed(0)
    x, y = blobs(40)
    probe = Probe(raise_at=7)  # 4 steps per epoch: the 7th forward is in the 2nd epoch
    model = nn.Sequential(probe, nn.Linear(2, 3))
    tr = make_trainer(model)
    model.eval()
    h = tr.fit(x, y, batch_size=10, epochs=5, verbose=1)
    assert h.interrupted and len(h) == 1 and h.epoch == [0]
    assert model.training is False
    # the model is still usable
    assert tr.predict(x).shape == (40, 3)
    h2 = tr.fit(x, y, batch_size=10, epochs=1, verbose=0)
    assert not h2.interrupted and len(h2) == 1


def test_keyboard_interrupt_message(capsys):
    x, y = blobs(40)
    model = nn.Sequential(Probe(raise_at=2), nn.Linear(2, 3))
    make_trainer(model).fit(x, y, batch_size=10, epochs=2, verbose=0)
    err = capsys.readouterr().err
    assert "interrupted" in err.lower() and "epoch 1/2" in err


def test_on_nonfinite_skip_drops_bad_batches_and_keeps_training():
    import numpy as np
    import pycnn as pc
    from pycnn import nn, optim

    pc.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    x[8:16] = np.nan  # the second batch of 8 is poisoned
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    trainer = pc.Trainer(model, optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), on_nonfinite="skip")
    hist = trainer.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert hist.history["skipped_batches"] == [1.0, 1.0]
    assert all(np.isfinite(np.asarray(p.data)).all() for p in model.parameters())
    assert np.isfinite(hist.history["loss"]).all()
    with pytest.raises(ValueError, match="on_nonfinite"):
        pc.Trainer(model, optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), on_nonfinite="ignore")


# ----------------------------------------------------------------------------- schedulers in fit
def test_scheduler_stepped_once_per_epoch():
    x, y = blobs(60)
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    tr = Trainer(model, opt, nn.CrossEntropyLoss(), scheduler=sched)
    h = tr.fit(x, y, batch_size=10, epochs=5, verbose=0)
    assert h.history["lr"] == [0.1, 0.1, 0.05, 0.05, 0.025]
    assert sched.last_epoch == 5


def test_reduce_on_plateau_gets_val_loss():
    x, y = blobs(60)
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    seen = []
    orig = sched.step
    sched.step = lambda m, *a: (seen.append(m), orig(m, *a))
    tr = Trainer(model, opt, nn.CrossEntropyLoss(), scheduler=sched)
    h = tr.fit(x, y, epochs=3, validation_data=(x, (y + 1) % 3), verbose=0)
    assert seen == h.history["val_loss"]
    h = tr.fit(x, y, epochs=2, verbose=0)
    assert seen[-2:] == h.history["loss"]


# ----------------------------------------------------------------------------- verbosity
def test_verbose_levels(capsys):
    x, y = blobs(50)
    make_trainer().fit(x, y, epochs=2, verbose=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    make_trainer().fit(x, y, epochs=2, validation_data=(x, y), verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2") and "val_accuracy" in lines[1]
    assert "samples/s" in lines[0]
    make_trainer().fit(x, y, epochs=1, verbose=1)
    err = capsys.readouterr().err
    assert "Epoch 1/1" in err and "loss=" in err and "accuracy=" in err and "samples/s" in err


# ----------------------------------------------------------------------------- Keras conveniences (issue 12.4)
def test_validation_split_holds_out_the_last_fraction_before_shuffling():
    x, y = blobs(100)
    runs = []
    for kw in (dict(validation_split=0.2), dict(validation_data=(x[80:], y[80:]))):
        pc.manual_seed(0)
        model = mlp()
        xs, ys = (x, y) if "validation_split" in kw else (x[:80], y[:80])
        h = make_trainer(model).fit(xs, ys, batch_size=16, epochs=2, shuffle=True, verbose=0, **kw)
        runs.append((h, weights(model)))
    assert runs[0][0].history == runs[1][0].history and "val_loss" in runs[0][0].history
    assert runs[0][0].params["steps"] == 5  # 80 training samples in batches of 16
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k])
    tr = make_trainer()
    for bad in (0.0 - 0.5, 1.0, "0.2", True):
        with pytest.raises(ValueError, match="validation_split must be a number strictly between 0 and 1"):
            tr.fit(x, y, validation_split=bad, verbose=0)
    with pytest.raises(ValueError, match="not both"):
        tr.fit(x, y, validation_split=0.2, validation_data=(x, y), verbose=0)
    with pytest.raises(ValueError, match="validation_split needs x and y arrays"):
        tr.fit(DataLoader(TensorDataset(x, y), batch_size=8), validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match="leaves 3 for validation and 0 for training"):
        tr.fit(x[:3], y[:3], validation_split=0.9, verbose=0)


def test_drop_last_and_the_batchnorm_single_sample_hint():
    x, y = blobs(33)
    model = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    tr = make_trainer(model)
    with pytest.raises(ValueError, match="more than 1 value per channel.*batch 3 of epoch 1 holds a single sample"
                                         ".*drop_last=True"):
        tr.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    h = tr.fit(x, y, batch_size=16, epochs=2, drop_last=True, verbose=0)
    assert h.params["steps"] == 2 and len(h) == 2
    with pytest.raises(ValueError, match="pass drop_last=True to the DataLoader"):
        tr.fit(DataLoader(TensorDataset(x, y), batch_size=16), drop_last=True, verbose=0)


def test_uint8_images_warn_that_pixels_look_unscaled():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 1, 8, 8)).astype(np.uint8)
    y = rng.integers(0, 4, 16)
    tr = make_trainer(small_cnn(), lr=0.001)
    with pytest.warns(UserWarning, match=r"uint8 with values up to \d+: the pixels look unscaled.*/ 255"):
        tr.fit(x, y, batch_size=8, epochs=1, verbose=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr.fit(x.astype(np.float32) / 255, y, batch_size=8, epochs=1, verbose=0)
        tr.fit((x > 127).astype(np.uint8), y, batch_size=8, epochs=1, verbose=0)  # a 0/1 mask is scaled


def test_progress_shows_every_param_group_lr_when_they_differ(capsys):
    x, y = blobs(40)
    model = mlp()
    opt = optim.SGD([{"params": model[0].parameters(), "lr": 0.01}, {"params": model[2].parameters()}], lr=0.1)
    tr = Trainer(model, opt, nn.CrossEntropyLoss())
    h = tr.fit(x, y, batch_size=10, epochs=1, verbose=2)
    assert "lr: 0.01 - lr_1: 0.1" in capsys.readouterr().out
    assert h.history["lr"] == [0.01] and h.history["lr_1"] == [0.1]
    h = make_trainer().fit(x, y, batch_size=10, epochs=1, verbose=2)
    assert "lr_1" not in capsys.readouterr().out and "lr_1" not in h.history
