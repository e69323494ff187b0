"""pc.callbacks.CSVLogger and TensorBoard: the files they write, read back with their own readers."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn, optim
from pycnn.train import Trainer


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0.5)
    return x, y


def _trainer(lr=0.1, scheduler=None):
    pc.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    sched = scheduler(opt) if scheduler else None
    return Trainer(model, opt, nn.CrossEntropyLoss(), scheduler=sched)


def _read_csv(path, sep=","):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter=sep))


def test_csv_logger_columns_and_values_are_the_history(tmp_path):
    x, y = _data()
    path = tmp_path / "log.csv"
    hist = _trainer().fit(x, y, epochs=3, batch_size=16, validation_data=_data(32, 1), verbose=0,
                          callbacks=[pc.callbacks.CSVLogger(path)])
    rows = _read_csv(path)
    with open(path) as f:
        header = f.readline().strip().split(",")
    assert header == ["epoch"] + sorted(hist.history)  # Keras's columns
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(header)
    assert [int(r["epoch"]) for r in rows] == hist.epoch == [0, 1, 2]
    for key, values in hist.history.items():
        assert [float(r[key]) for r in rows] == values, key  # exact: floats are written with repr


def test_csv_logger_append_and_separator(tmp_path):
    x, y = _data()
    path = tmp_path / "sub" / "log.tsv"
    tr = _trainer()
    tr.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[pc.callbacks.CSVLogger(path, separator="\t")])
    tr.fit(x, y, epochs=4, initial_epoch=2, batch_size=32, verbose=0,
           callbacks=[pc.callbacks.CSVLogger(path, separator="\t", append=True)])
    rows = _read_csv(path, "\t")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]  # one header, four rows
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    # without append the file starts over
    tr.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[pc.callbacks.CSVLogger(path, separator="\t")])
    assert [int(r["epoch"]) for r in _read_csv(path, "\t")] == [0]
    with pytest.raises(ValueError, match="separator"):
        pc.callbacks.CSVLogger(path, separator=", ")


def test_csv_logger_refuses_to_append_to_a_foreign_file(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    x, y = _data()
    with pytest.raises(ValueError, match="not a CSVLogger header"):
        _trainer().fit(x, y, epochs=1, verbose=0, callbacks=[pc.callbacks.CSVLogger(path, append=True)])


# ------------------------------------------------------------------------------------------------
# TensorBoard
# ------------------------------------------------------------------------------------------------
def _events(run_dir):
    """tag -> [(step, value)] for scalars, and the histogram tags, read with TensorBoard's reader."""
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea_mod.EventAccumulator(str(run_dir), size_guidance={ea_mod.SCALARS: 0, ea_mod.HISTOGRAMS: 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]}
    hists = {t: [(e.step, e.histogram_value.num) for e in acc.Histograms(t)] for t in tags["histograms"]}
    return scalars, hists


def test_tensorboard_epoch_scalars_learning_rate_and_validation_run(tmp_path):
    pytest.importorskip("tensorboardX")
    x, y = _data()
    tb = pc.callbacks.TensorBoard(tmp_path / "runs")
    tr = _trainer(scheduler=lambda opt: optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5))
    hist = tr.fit(x, y, epochs=3, batch_size=16, validation_data=_data(32, 1), verbose=0, callbacks=[tb])
    train, train_h = _events(tmp_path / "runs" / "train")
    val, _ = _events(tmp_path / "runs" / "validation")
    assert not train_h and "batch_loss" not in train  # update_freq="epoch", histogram_freq=0
    np.testing.assert_allclose([v for _, v in train["epoch_loss"]], hist.history["loss"], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in train["epoch_accuracy"]], hist.history["accuracy"], rtol=1e-6)
    assert [s for s, _ in train["epoch_loss"]] == [0, 1, 2]
    np.testing.assert_allclose([v for _, v in train["epoch_learning_rate"]], [0.1, 0.05, 0.025], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in val["epoch_loss"]], hist.history["val_loss"], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in val["epoch_accuracy"]], hist.history["val_accuracy"], rtol=1e-6)


def test_tensorboard_batch_scalars_and_histograms(tmp_path):
    pytest.importorskip("tensorboardX")
    x, y = _data(64)
    tb = pc.callbacks.TensorBoard(tmp_path, update_freq=3, histogram_freq=2)
    tr = _trainer()
    tr.fit(x, y, epochs=4, batch_size=8, validation_data=_data(16, 1), verbose=0, callbacks=[tb])  # 8 batches/epoch
    train, hists = _events(tmp_path / "train")
    steps = [s for s, _ in train["batch_loss"]]
    assert steps == list(range(3, 33, 3))  # every 3rd of the 32 training batches; validation batches not counted
    assert all(math.isfinite(v) and v > 0 for _, v in train["batch_loss"])
    assert [s for s, _ in train["batch_learning_rate"]] == steps
    names = [n for n, _ in tr.model.named_parameters()]
    assert sorted(hists) == sorted(names)
    for name, p in tr.model.named_parameters():
        assert [s for s, _ in hists[name]] == [1, 3]  # epochs 2 and 4 (0-based 1 and 3)
        assert hists[name][-1][1] == p.numel()
    assert tr.loss._forward_hooks == {}  # the batch hook is removed when training ends


def test_tensorboard_refuses_bad_arguments(tmp_path):
    pytest.importorskip("tensorboardX")
    for bad in ("step", 0, -2, 1.5, True):
        with pytest.raises(ValueError, match="update_freq"):
            pc.callbacks.TensorBoard(tmp_path, update_freq=bad)
    with pytest.raises(ValueError, match="histogram_freq"):
        pc.callbacks.TensorBoard(tmp_path, histogram_freq=-1)
