"""Trainer callbacks: hook order, stop_training, EarlyStopping (restoring the best weights, modes,
its message), ModelCheckpoint (save_best_only) and resuming a run from a checkpoint."""
import math
import os

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn, optim
from pycnn.optim import lr_scheduler
from pycnn.train import Trainer
from pycnn.train.callbacks import Callback, EarlyStopping, ModelCheckpoint

from helpers import blobs, images, make_trainer, mlp, small_cnn, weights


# ----------------------------------------------------------------------------- callbacks
def test_callback_hooks_order():
    events = []

    class Rec(Callback):
        def on_train_begin(self, logs=None):
            events.append("train_begin")
            assert self.model is model and self.trainer is tr

        def on_epoch_begin(self, epoch, logs=None):
            events.append(f"begin{epoch}")

        def on_epoch_end(self, epoch, logs=None):
            events.append(f"end{epoch}")
            assert {"loss", "accuracy", "lr"} <= set(logs)

        def on_train_end(self, logs=None):
            events.append("train_end")

    x, y = blobs(30)
    model = mlp()
    tr = make_trainer(model)
    tr.fit(x, y, epochs=2, callbacks=[Rec()], verbose=0)
    assert events == ["train_begin", "begin0", "end0", "begin1", "end1", "train_end"]


def test_stop_training_from_callback():
    class StopAfter2(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.trainer.stop_training = True

    x, y = blobs(30)
    h = make_trainer().fit(x, y, epochs=10, callbacks=[StopAfter2()], verbose=0)
    assert len(h) == 2 and h.stopped_early


def test_early_stopping_stops_and_restores_best_weights():
    pc.manual_seed(0)
    x, y = blobs(200)
    y_wrong = (y + 1) % 3  # the better the model fits y, the worse its loss on y_wrong
    snaps = {}

    class Snap(Callback):
        def on_epoch_end(self, epoch, logs=None):
            snaps[epoch] = (weights(self.model), logs["val_loss"])

    model = mlp()
    tr = make_trainer(model, lr=0.05)
    es = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    h = tr.fit(x, y, batch_size=20, epochs=30, validation_data=(x, y_wrong), callbacks=[Snap(), es], verbose=0)
    assert len(h) < 30 and h.stopped_early
    assert es.stopped_epoch == h.epoch[-1]
    best = int(np.argmin(h.history["val_loss"]))
    assert es.best_epoch == best and es.best == h.history["val_loss"][best]
    assert h.epoch[-1] - best == 2  # patience 2: two epochs without improvement
    final = weights(model)
    for k, v in snaps[best][0].items():
        np.testing.assert_array_equal(final[k], v)


def test_early_stopping_without_restore_keeps_last_weights():
    pc.manual_seed(0)
    x, y = blobs(200)
    model = mlp()
    last = {}

    class Snap(Callback):
        def on_epoch_end(self, epoch, logs=None):
            last["w"] = weights(self.model)

    h = make_trainer(model, lr=0.05).fit(x, y, batch_size=20, epochs=30, validation_data=(x, (y + 1) % 3),
                                         callbacks=[Snap(), EarlyStopping(patience=0)], verbose=0)
    assert len(h) < 30
    for k, v in last["w"].items():
        np.testing.assert_array_equal(weights(model)[k], v)


def test_early_stopping_modes_and_missing_metric():
    assert EarlyStopping(monitor="val_accuracy").mode == "max"
    assert EarlyStopping(monitor="loss").mode == "min"
    with pytest.raises(ValueError):
        EarlyStopping(mode="up")
    with pytest.raises(ValueError):
        EarlyStopping(patience=-1)
    x, y = blobs(30)
    with pytest.warns(RuntimeWarning, match="val_loss"):
        h = make_trainer().fit(x, y, epochs=2, callbacks=[EarlyStopping()], verbose=0)
    assert len(h) == 2
    # accuracy-based: max mode never stops while accuracy keeps at its best (min_delta large -> stops)
    h = make_trainer().fit(x, y, epochs=10, callbacks=[EarlyStopping("accuracy", patience=1, min_delta=2.0)],
                           verbose=0)
    assert len(h) == 2


def test_model_checkpoint(tmp_path):
    pc.manual_seed(0)
    x, y = blobs(100)
    model = mlp()
    path = tmp_path / "ckpt-{epoch:02d}.safetensors"
    ck = ModelCheckpoint(str(path), save_best_only=False)
    make_trainer(model).fit(x, y, epochs=3, validation_data=(x, y), callbacks=[ck], verbose=0)
    files = sorted(f for f in os.listdir(tmp_path) if ".optim-" not in f)
    assert files == ["ckpt-01.safetensors", "ckpt-02.safetensors", "ckpt-03.safetensors"]
    assert len(os.listdir(tmp_path)) == 6  # each with its optimizer file
    ModelCheckpoint(str(tmp_path / "w.safetensors"), save_training_state=False)
    loaded = pc.io.load(str(tmp_path / "ckpt-03.safetensors"))
    for k, v in weights(model).items():
        np.testing.assert_array_equal(np.asarray(loaded[k].numpy()), v)


def test_model_checkpoint_save_best_only(tmp_path):
    pc.manual_seed(0)
    x, y = blobs(100)
    saved = []

    class Ck(ModelCheckpoint):
        def _save(self, path, epoch=None):
            super()._save(path, epoch)
            saved.append(epoch)

    model = mlp()
    path = str(tmp_path / "best.safetensors")
    vals = []

    class Rec(Callback):
        def on_epoch_end(self, epoch, logs=None):
            vals.append(logs["val_loss"])

    make_trainer(model, lr=0.05).fit(x, y, batch_size=10, epochs=6, validation_data=(x, (y + 1) % 3),
                                     callbacks=[Rec(), Ck(path, monitor="val_loss", save_best_only=True)], verbose=0)
    improved = [i for i, v in enumerate(vals) if v < min(vals[:i], default=math.inf)]
    assert saved == improved
    left = sorted(os.listdir(tmp_path))  # one pair: no older optimizer file, no temporary file left
    assert len(left) == 2 and left[0] == "best.safetensors" and left[1].startswith("best.safetensors.optim-")


def _resumable_run(tmp_path, epochs, resume=None, ckpt=None):
    x, y = images(96)
    pc.manual_seed(7)
    model = small_cnn()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = lr_scheduler.MultiStepLR(opt, milestones=[1, 3], gamma=0.5)
    tr = Trainer(model, opt, nn.CrossEntropyLoss(), scheduler=sched)
    cbs = [ModelCheckpoint(ckpt, save_best_only=False)] if ckpt else []
    h = tr.fit(x, y, batch_size=16, epochs=epochs, validation_data=(x[:32], y[:32]), callbacks=cbs,
               resume_from=resume, verbose=0)
    return model, h, sched


def test_resume_from_checkpoint_is_bit_identical(tmp_path):
    full, h_full, s_full = _resumable_run(tmp_path, 4)
    ckpt = str(tmp_path / "run.safetensors")
    _resumable_run(tmp_path, 2, ckpt=ckpt)  # "interrupted" after 2 epochs
    pc.manual_seed(999)  # resuming restores the random state, whatever it is now
    resumed, h_res, s_res = _resumable_run(tmp_path, 4, resume=ckpt)
    for k, v in weights(full).items():
        np.testing.assert_array_equal(weights(resumed)[k], v, err_msg=k)
    assert h_res.epoch == [0, 1, 2, 3]
    assert h_res.history == h_full.history
    assert s_res.get_last_lr() == s_full.get_last_lr()
    # the checkpoint is also a plain weights file
    sd = pc.io.load(ckpt)
    assert set(sd) == set(full.state_dict())


def test_resume_from_weights_only_file(tmp_path):
    x, y = blobs(40)
    model = mlp()
    path = str(tmp_path / "w.safetensors")
    pc.io.save(model, path)
    with pytest.raises(ValueError, match="weights only"):
        make_trainer(model).fit(x, y, epochs=1, resume_from=path, verbose=0)


def test_early_stopping_says_when_and_why(capsys):
    x, y = blobs(60)
    tr = make_trainer()
    es = EarlyStopping("loss", patience=2, min_delta=100.0)  # nothing improves by 100
    h = tr.fit(x, y, batch_size=10, epochs=20, callbacks=[es], verbose=2)
    out = capsys.readouterr().out
    assert h.stopped_early and len(h) == 3
    assert "Stopped early after epoch 3/20: loss did not improve by more than min_delta=100 for 2 epoch(s), " \
           "patience=2 (best" in out
    assert h.stop_reason in out
    es = EarlyStopping("loss", patience=1, baseline=-1.0, verbose=1)
    h = tr.fit(x, y, batch_size=10, epochs=20, callbacks=[es], verbose=0)
    out = capsys.readouterr().out
    assert out.count("early stopping") == 1 and "Epoch 2: early stopping: loss did not beat the baseline -1.0" in out
