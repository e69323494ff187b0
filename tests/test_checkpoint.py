"""Issue 10.2: checkpoints survive any interruption (kill -9 at random moments), leave no temporary
files, and a damaged or mismatched checkpoint is refused by name before anything is loaded."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import pycnn as pc
from pycnn import _random
from pycnn import io as pio
from pycnn import nn, optim
from pycnn.optim import lr_scheduler
from pycnn.train import Trainer, checkpoint
from pycnn.train.callbacks import ModelCheckpoint

PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(pc.__file__)))


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def _trainer(seed=0, hidden=16):
    pc.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, hidden), nn.ReLU(), nn.Linear(hidden, 2))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)
    return Trainer(model, opt, nn.CrossEntropyLoss(), scheduler=sched)


def _weights(model):
    return {k: np.array(v.numpy()) for k, v in model.state_dict().items()}


def _opt_state(opt):
    return {i: np.array(st["momentum_buffer"]) for i, st in opt.state_dict()["state"].items()}


@pytest.fixture()
def ckpt(tmp_path):
    tr = _trainer()
    x, y = _data()
    path = str(tmp_path / "run.safetensors")
    tr.fit(x, y, batch_size=16, epochs=2, callbacks=[ModelCheckpoint(path)], verbose=0)
    return path


# ----------------------------------------------------------------------------- the pair on disk
def test_a_checkpoint_is_a_weights_file_and_one_named_optimizer_file(ckpt, tmp_path):
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 2 and names[0] == "run.safetensors" and names[1].startswith("run.safetensors.optim-")
    state = json.loads(pio.load_metadata(ckpt)["pycnn_training_state"])
    assert state["optimizer"]["file"] == names[1]
    assert set(pio.load(ckpt)) == set(_trainer().model.state_dict())  # still a plain weights file


def test_stale_files_of_killed_saves_are_removed(ckpt, tmp_path):
    leftovers = [".run.safetensors.k2j3h4.tmp", "run.safetensors.tmp", "run.safetensors.optim-0123456789abcdef",
                 "run.safetensors.optim-new", ".run.safetensors.optim-new.x8y9.tmp"]
    unrelated = ["other.safetensors.tmp", "run.safetensors.optim-notes.txt", "run.safetensors.bak"]
    for n in leftovers + unrelated:
        (tmp_path / n).write_bytes(b"x")
    tr = _trainer()
    x, y = _data()
    tr.fit(x, y, batch_size=16, epochs=3, resume_from=ckpt, verbose=0)  # resuming cleans up
    names = set(os.listdir(tmp_path))
    assert not names & set(leftovers) and set(unrelated) <= names
    for n in leftovers:
        (tmp_path / n).write_bytes(b"x")
    tr.save_checkpoint(ckpt)  # and so does saving
    assert not set(os.listdir(tmp_path)) & set(leftovers)
    for n in leftovers:
        (tmp_path / n).write_bytes(b"x")
    removed = checkpoint.remove_stale_files(ckpt)  # and the public function, which keeps the named file
    assert sorted(os.path.basename(r) for r in removed) == sorted(leftovers)
    assert tr.load_checkpoint(ckpt) == 3


_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import pycnn as pc
    from pycnn import nn, optim
    from pycnn.train import Trainer, checkpoint
    from pycnn.train.callbacks import Callback, ModelCheckpoint

    class Said(Callback):
        def on_epoch_end(self, epoch, logs=None):
            print("saved", epoch, flush=True)

    path, resume, epochs = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
    pc.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 2))  # ~2 MB weights + momentum
    tr = Trainer(model, optim.SGD(model.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 512)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    print("ready", flush=True)
    tr.fit(x, y, batch_size=8, epochs=epochs, callbacks=[ModelCheckpoint(path), Said()], verbose=0,
           resume_from=path if resume else None)
""")


def test_kill_9_at_random_moments_always_leaves_a_resumable_checkpoint(tmp_path):
    """A checkpointing run killed with SIGKILL at random moments (mostly inside saves: one step and
    one save per epoch): the checkpoint left always resumes, at or after the last epoch reported
    saved, and the next run continues from it and leaves no temporary file."""
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    path = str(tmp_path / "ck.safetensors")
    env = dict(os.environ, PYTHONPATH=PKG_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    rnd = random.Random(1234)
    last_resumed = -1
    for i in range(6):
        p = subprocess.Popen([sys.executable, str(script), path, "1" if os.path.exists(path) else "0", "10000"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
            time.sleep(rnd.uniform(0.2, 1.5))
        finally:
            os.kill(p.pid, signal.SIGKILL)
            out, err = p.communicate(timeout=60)
        assert "Traceback" not in err, err
        lines = out.split("\n")[:-1]  # complete lines only: the kill may cut the last one
        saved = [int(line.split()[1]) for line in lines if line.startswith("saved ")]
        if not os.path.exists(path):
            assert not saved
            continue
        model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 2))
        tr = Trainer(model, optim.SGD(model.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss())
        resumed = tr.load_checkpoint(path)  # never raises: the pair on disk is always complete
        assert resumed - 1 >= (saved[-1] if saved else last_resumed), (resumed, saved, last_resumed)
        last_resumed = resumed - 1
    names = os.listdir(tmp_path)
    assert sorted(n for n in names if n.startswith("ck.safetensors")) == sorted(
        ["ck.safetensors", json.loads(pio.load_metadata(path)["pycnn_training_state"])["optimizer"]["file"]]
        + [n for n in names if n.endswith(".tmp") or n.endswith("optim-new")])  # only a killed save's leftovers
    # the next save cleans those up
    x = np.zeros((8, 512), np.float32)
    tr.fit(x, np.zeros(8, np.int64), batch_size=8, epochs=last_resumed + 2, resume_from=path, verbose=0,
           callbacks=[ModelCheckpoint(path)])
    assert len([n for n in os.listdir(tmp_path) if n.startswith("ck.safetensors") or ".tmp" in n]) == 2


def test_processes_checkpointing_into_one_folder_never_remove_each_others_files(tmp_path):
    """Saves and clean-ups hold a lock on the folder: two runs saving the same path at once (e.g.
    every rank of a job) both finish, and the checkpoint left resumes."""
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    path = str(tmp_path / "ck.safetensors")
    env = dict(os.environ, PYTHONPATH=PKG_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, str(script), path, "0", "25"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert out.count("saved") == 25
    model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 2))
    tr = Trainer(model, optim.SGD(model.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss())
    assert tr.load_checkpoint(path) == 25
    assert len([n for n in os.listdir(tmp_path) if n.startswith("ck.") or n.startswith(".ck.")]) == 2


# ----------------------------------------------------------------------------- refused before loading
def _rewrite_state(path, edit):
    meta = pio.load_metadata(path)
    weights = pio.load(path)
    raw = meta["pycnn_training_state"]
    meta["pycnn_training_state"] = edit(raw) if callable(edit) else edit
    pio.save(weights, path, metadata={k: v for k, v in meta.items() if k not in ("format", "pycnn_version")})


def _json_edit(fn):
    def edit(raw):
        state = json.loads(raw)
        fn(state)
        return json.dumps(state)
    return edit


TAMPER = [
    ("not json", "{broken", "not valid JSON"),
    ("a list", "[1, 2]", "'pycnn_training_state'"),
    ("version", _json_edit(lambda s: s.update(version=99)), "'version'"),
    ("epoch", _json_edit(lambda s: s.update(epoch="two")), "'epoch'"),
    ("rng gone", _json_edit(lambda s: s.pop("rng")), "'rng'"),
    ("rng numpy", _json_edit(lambda s: s["rng"].update(numpy={"bit_generator": "nope"})), "'rng.numpy'"),
    ("history short", _json_edit(lambda s: s["history"]["history"]["loss"].pop()), "'history.history.loss'"),
    ("history shape", _json_edit(lambda s: s.update(history=[1, 2])), "'history'"),
    ("groups", _json_edit(lambda s: s["optimizer"]["param_groups"].append(
        dict(s["optimizer"]["param_groups"][0]))), "'optimizer.param_groups'"),
    ("group size", _json_edit(lambda s: s["optimizer"]["param_groups"][0]["params"].pop()),
     "'optimizer.param_groups[0].params'"),
    ("lr nan", _json_edit(lambda s: s["optimizer"]["param_groups"][0].update(lr=float("nan"))),
     "'optimizer.param_groups[0]'"),
    ("sha", _json_edit(lambda s: s["optimizer"].update(sha256="0" * 64)), "'optimizer.sha256'"),
    ("file name", _json_edit(lambda s: s["optimizer"].update(file="../../etc/passwd")), "'optimizer.file'"),
    ("scheduler", _json_edit(lambda s: s.update(scheduler=[1])), "'scheduler'"),
]


@pytest.mark.parametrize("name,edit,field", TAMPER, ids=[t[0] for t in TAMPER])
def test_tampered_training_state_is_refused_by_file_and_field_before_loading(ckpt, name, edit, field):
    _rewrite_state(ckpt, edit)
    tr = _trainer(seed=5)
    x, y = _data()
    tr.fit(x, y, batch_size=16, epochs=1, verbose=0)  # some optimizer state to keep
    before_w, before_o = _weights(tr.model), _opt_state(tr.optimizer)
    rng_before = _random.get_state()
    with pytest.raises(ValueError) as e:
        tr.fit(x, y, batch_size=16, epochs=4, resume_from=ckpt, verbose=0)
    msg = str(e.value)
    assert ckpt in msg and field in msg, msg
    after_w = _weights(tr.model)
    for k in before_w:
        np.testing.assert_array_equal(after_w[k], before_w[k])
    after_o = _opt_state(tr.optimizer)
    for k in before_o:
        np.testing.assert_array_equal(after_o[k], before_o[k])
    assert _random.get_state() == rng_before


def test_a_damaged_or_missing_optimizer_file_is_refused(ckpt, tmp_path):
    side = next(p for p in tmp_path.iterdir() if ".optim-" in p.name)
    data = bytearray(side.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in a momentum buffer: still a valid safetensors file
    side.write_bytes(bytes(data))
    tr = _trainer(seed=5)
    before = _weights(tr.model)
    with pytest.raises(ValueError, match="'optimizer.sha256'"):
        tr.load_checkpoint(ckpt)
    side.unlink()
    with pytest.raises(FileNotFoundError, match="is missing"):
        tr.load_checkpoint(ckpt)
    for k, v in _weights(tr.model).items():
        np.testing.assert_array_equal(v, before[k])


def test_a_checkpoint_of_another_model_or_optimizer_is_refused_before_loading(ckpt):
    bigger = _trainer(hidden=32)
    before = _weights(bigger.model)
    with pytest.raises(ValueError, match="resume_from: .*run.safetensors.*weight '0.weight' has shape"):
        bigger.load_checkpoint(ckpt)
    for k, v in _weights(bigger.model).items():
        np.testing.assert_array_equal(v, before[k])
    tr = _trainer()
    head = tr.model[2]
    tr.optimizer = optim.SGD([{"params": list(tr.model[0].parameters())}, {"params": list(head.parameters())}],
                             lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="'optimizer.param_groups'.*2 parameter groups|has 1 parameter groups"):
        tr.load_checkpoint(ckpt)


def test_resuming_a_finished_run_says_so(ckpt):
    tr = _trainer()
    x, y = _data()
    with pytest.warns(RuntimeWarning, match="already finished epoch 2 of epochs=2.*nothing was trained"):
        h = tr.fit(x, y, batch_size=16, epochs=2, resume_from=ckpt, verbose=0)
    assert h.epoch == [0, 1]


def test_checkpoints_of_the_previous_format_still_resume(tmp_path):
    """Version 1: a fixed `path.optim` file matched by a random token (pycnn before this format)."""
    tr = _trainer()
    x, y = _data()
    tr.fit(x, y, batch_size=16, epochs=2, verbose=0)
    sd = tr.optimizer.state_dict()
    path = str(tmp_path / "old.safetensors")
    state = {"version": 1, "token": "abc123", "epoch": 1, "rng": _random.get_state(), "scheduler":
             tr.scheduler.state_dict(), "history": {"epoch": [0, 1], "history": tr.history.history},
             "optimizer": {"param_groups": sd["param_groups"], "scalars": {}}}
    pio.save({f"state.{i}.momentum_buffer": st["momentum_buffer"] for i, st in sd["state"].items()},
             path + ".optim", metadata={"pycnn_checkpoint_token": "abc123"})
    pio.save(tr.model, path, metadata={"pycnn_training_state": json.dumps(state)})
    fresh = _trainer(seed=9)
    assert fresh.load_checkpoint(path) == 2
    for k, v in _weights(tr.model).items():
        np.testing.assert_array_equal(_weights(fresh.model)[k], v)
    for k, v in _opt_state(tr.optimizer).items():
        np.testing.assert_array_equal(_opt_state(fresh.optimizer)[k], v)
    pio.save({}, path + ".optim", metadata={"pycnn_checkpoint_token": "other"})
    with pytest.raises(ValueError, match="field 'token'"):
        _trainer(seed=9).load_checkpoint(path)
