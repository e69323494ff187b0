"""Training checkpoints: `save_checkpoint(trainer, path)` and `load_checkpoint(trainer, path)`, the
one implementation behind `Trainer.save_checkpoint`, `ModelCheckpoint` and `fit(resume_from=...)`.

A checkpoint is two files that form one atomic unit:

- `<path>.optim-<sha>`: the optimizer's buffers (safetensors), named by the first 16 hex digits of
  its own SHA-256, written first;
- `<path>`: a plain weights file (`pc.load`, `pc.io.load_into`) whose metadata holds the training
  state (epoch, history, random state, optimizer hyper-parameters and scalars, scheduler) and the
  name and SHA-256 of its optimizer file, written last (atomically, by `os.replace`).

A kill at any moment therefore leaves `<path>` naming a complete optimizer file: the new pair once
`<path>` was replaced, the older pair before (its optimizer file is removed only after that). Files
a killed save left behind (temporary files, optimizer files no checkpoint names) are removed by
the next save and resume of the same path. Saves and clean-ups hold a lock on the folder
(`flock`, released by the kernel even on kill -9), so that processes checkpointing into one folder
never remove each other's files in progress.

Loading checks everything first (JSON, fields, checksums, shapes against the model and optimizer,
random state) and raises ValueError naming the file and the field; only then does anything get
copied into the model, optimizer, scheduler or random generators.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

import numpy as np

from .. import _random
from .._args import is_int
from .. import io as pio
from ..optim.optimizer import validate_group
from .history import record_epoch

__all__ = ["save_checkpoint", "save_weights", "load_checkpoint", "remove_stale_files", "folder_lock"]

_STATE_KEY = "pycnn_training_state"
_VERSION = 2
_SIDE_RE = r"\.optim-[0-9a-f]{16}"


# ------------------------------------------------------------------------------------------------
# JSON of the training state
# ------------------------------------------------------------------------------------------------
def _jsonable(o: Any) -> Any:
    """Marks the values JSON would silently change (a Counter's int keys become strings)."""
    if isinstance(o, Counter):
        return {"__counter__": [[_jsonable(k), v] for k, v in o.items()]}
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    return o


def _json_default(o: Any) -> Any:
    """JSON for the few non-JSON values in scheduler / optimizer / random state."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"save_checkpoint: cannot store a {type(o).__name__} in the training state")


def _json_hook(d: Dict[str, Any]) -> Any:
    if set(d) == {"__counter__"} and isinstance(d["__counter__"], list):
        return Counter({k: v for k, v in d["__counter__"]})
    return d


# ------------------------------------------------------------------------------------------------
# saving
# ------------------------------------------------------------------------------------------------
def save_checkpoint(trainer: Any, path: Any, epoch: Optional[int] = None) -> None:
    """Write `trainer`'s model, optimizer, scheduler, history and random state as a checkpoint at
    `path` (see the module docstring); `epoch`: the last completed epoch (default: the last one in
    `trainer.history`)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with folder_lock(path):
        _save(trainer, path, epoch)


def save_weights(model: Any, path: Any) -> None:
    """A weights-only file at `path` (`ModelCheckpoint(save_training_state=False)`): `pc.save`,
    atomic, under the folder lock, and what interrupted saves of `path` left behind removed."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with folder_lock(path):
        pio.save(model, path)
        _remove_stale(path, None)


def _save(trainer: Any, path: str, epoch: Optional[int]) -> None:
    history = trainer.history
    if epoch is None:
        epoch = history.epoch[-1] if history is not None and history.epoch else -1
    state: Dict[str, Any] = {"version": _VERSION, "epoch": int(epoch), "rng": _random.get_state(),
                             "optimizer": None, "scheduler": None, "history": None}
    if history is not None:
        state["history"] = {"epoch": list(history.epoch), "history": history.history}
    side = None
    sd_fn = getattr(trainer.optimizer, "state_dict", None)
    if callable(sd_fn):
        sd = sd_fn()
        tensors: Dict[str, np.ndarray] = {}
        scalars: Dict[str, Any] = {}
        for idx, entries in sd["state"].items():
            for name, v in entries.items():
                if isinstance(v, np.ndarray):
                    tensors[f"state.{int(idx)}.{name}"] = pio.to_numpy_array(name, v)
                else:
                    scalars[f"{int(idx)}.{name}"] = v
        # named by its content: written under a new name, it never touches the pair on disk
        tmp_side = path + ".optim-new"
        digest = pio.write_file(tmp_side, tensors, {"format": "pycnn-optimizer"}, "save_checkpoint")
        side = path + ".optim-" + digest[:16]
        os.replace(tmp_side, side)
        state["optimizer"] = {"param_groups": sd["param_groups"], "scalars": scalars,
                              "file": os.path.basename(side), "sha256": digest}
    sch = trainer.scheduler
    if sch is not None and callable(getattr(sch, "state_dict", None)):
        state["scheduler"] = sch.state_dict()
    meta = {_STATE_KEY: json.dumps(_jsonable(state), default=_json_default, sort_keys=True)}
    pio.save(trainer.model, path, metadata=meta)  # atomic: from here on the new pair is the checkpoint
    _remove_stale(path, side)


@contextmanager
def folder_lock(path: str) -> Iterator[None]:
    """An exclusive lock on the folder of `path` while checkpoint files are written or cleaned."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY) if fcntl is not None else None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def remove_stale_files(path: Any) -> List[str]:
    """Remove what interrupted saves of the checkpoint `path` left in its folder: temporary files,
    and optimizer files other than the one `path` names. Returns the removed paths."""
    path = os.fspath(path)
    with folder_lock(path):
        keep = None
        try:
            opt = json.loads(pio.load_metadata(path).get(_STATE_KEY, "{}")).get("optimizer") or {}
            keep = opt.get("file") if isinstance(opt, dict) else None
        except (OSError, ValueError, AttributeError):
            pass  # no checkpoint (yet), or not one: every optimizer file of this name is stale
        return _remove_stale(path, keep)


def _remove_stale(path: str, keep: Optional[str]) -> List[str]:
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    keep_name = os.path.basename(keep) if keep else None
    patterns = [re.escape(base) + _SIDE_RE, re.escape(base) + r"\.optim-new",  # optimizer files
                re.escape(base) + r"\.tmp",  # ModelCheckpoint's temporary file before this module
                re.escape(pio.tmp_prefix(base)) + r".+\.tmp"]  # pio's temporary files (.optim-new's too)
    stale = re.compile("|".join(f"(?:{p})" for p in patterns) + r"\Z")
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if name != keep_name and stale.match(name):
            try:
                os.unlink(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
            except OSError:
                pass
    return removed


# ------------------------------------------------------------------------------------------------
# loading: check everything, then apply
# ------------------------------------------------------------------------------------------------
class _Bad:
    """Builds the ValueError of a bad checkpoint: the file and the field, then what is wrong."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, field: str, msg: str) -> ValueError:
        return ValueError(f"resume_from: {self.path!r}: field {field!r} of the training state {msg}; the "
                          "checkpoint is damaged or was edited, or belongs to another model or optimizer "
                          "(nothing was loaded)")


def _read_state(path: str, bad: _Bad) -> Dict[str, Any]:
    raw = pio.load_metadata(path).get(_STATE_KEY)
    if raw is None:
        raise ValueError(f"resume_from: {path!r} holds weights only, no training state; load it with "
                         "pc.io.load_into(model, path), or write checkpoints with ModelCheckpoint / "
                         "Trainer.save_checkpoint")
    try:
        state = json.loads(raw, object_hook=_json_hook)
    except ValueError as e:
        raise ValueError(f"resume_from: {path!r}: the metadata field {_STATE_KEY!r} is not valid JSON ({e}); "
                         "the checkpoint is damaged (nothing was loaded)") from None
    if not isinstance(state, dict):
        raise bad(_STATE_KEY, f"is a JSON {type(state).__name__}, expected an object")
    if state.get("version") not in (1, _VERSION):
        raise bad("version", f"is {state.get('version')!r}; this pycnn reads versions 1 and {_VERSION}")
    if not is_int(state.get("epoch")) or state["epoch"] < -1:
        raise bad("epoch", f"is {state.get('epoch')!r}, expected an int >= -1")
    return state


def _check_rng(rng: Any, bad: _Bad) -> None:
    if not isinstance(rng, dict) or not is_int(rng.get("seed")) or not is_int(rng.get("core")) \
            or rng["core"] < 0 or not isinstance(rng.get("numpy"), dict):
        raise bad("rng", "is not a random state {'seed': int, 'core': int >= 0, 'numpy': {...}}")
    try:  # a throwaway bit generator of the same kind checks the NumPy part
        type(_random.generator().bit_generator)().state = rng["numpy"]
    except (TypeError, ValueError, KeyError) as e:
        raise bad("rng.numpy", f"is not a valid NumPy generator state ({e})") from None


def _check_history(saved: Any, bad: _Bad) -> None:
    if saved is None:
        return
    if not isinstance(saved, dict) or not isinstance(saved.get("epoch"), list) \
            or not isinstance(saved.get("history"), dict):
        raise bad("history", "is not {'epoch': [...], 'history': {name: [...]}}")
    n = len(saved["epoch"])
    if not all(is_int(e) for e in saved["epoch"]):
        raise bad("history.epoch", "holds a value that is not an int")
    for k, v in saved["history"].items():
        if not isinstance(v, list) or len(v) != n or not all(isinstance(x, (int, float)) for x in v):
            raise bad(f"history.history.{k}", f"is not a list of {n} numbers (one per saved epoch)")


def _optimizer_state(trainer: Any, path: str, state: Dict[str, Any], bad: _Bad) -> Optional[Dict[str, Any]]:
    """The optimizer's state_dict from the checkpoint, checked against the trainer's optimizer."""
    opt_state = state.get("optimizer")
    opt = trainer.optimizer
    if opt_state is None or not callable(getattr(opt, "load_state_dict", None)):
        return None
    if not isinstance(opt_state, dict) or not isinstance(opt_state.get("param_groups"), list) \
            or not isinstance(opt_state.get("scalars", {}), dict):
        raise bad("optimizer", "is not {'param_groups': [...], 'scalars': {...}, ...}")
    side = _optimizer_file(path, state, opt_state, bad)
    groups = opt_state["param_groups"]
    mine = getattr(opt, "param_groups", None)
    index: Dict[int, Any] = {}
    if mine is not None:
        if len(groups) != len(mine):
            raise bad("optimizer.param_groups", f"has {len(groups)} parameter groups but the optimizer has "
                                                f"{len(mine)}")
        for i, (g, s) in enumerate(zip(mine, groups)):
            if not isinstance(s, dict) or not isinstance(s.get("params"), list) \
                    or not all(is_int(j) for j in s["params"]):
                raise bad(f"optimizer.param_groups[{i}]", "is not a dict with a 'params' list of ints")
            if len(s["params"]) != len(g["params"]):
                raise bad(f"optimizer.param_groups[{i}].params", f"has {len(s['params'])} parameters but the "
                                                                 f"optimizer's group has {len(g['params'])}")
            index.update(zip(s["params"], g["params"]))
            try:
                validate_group(opt, {**s, "params": g["params"]})
            except (TypeError, ValueError) as e:
                raise bad(f"optimizer.param_groups[{i}]", f"is refused by {type(opt).__name__}: {e}") from None
    sd: Dict[str, Any] = {"state": {}, "param_groups": groups}
    for key, t in (pio.load(side).items() if side else ()):
        m = re.fullmatch(r"state\.(\d+)\.(.+)", key)
        if m is None:
            raise bad("optimizer.file", f"holds a tensor {key!r}, expected names 'state.<index>.<name>'")
        idx, name = int(m.group(1)), m.group(2)
        arr = t.numpy()
        p = index.get(idx)
        if mine is not None and p is None:
            raise bad("optimizer.file", f"holds state {key!r} for parameter {idx}, which no group lists")
        if p is not None and tuple(arr.shape) != tuple(p.data.shape):
            raise bad("optimizer.file", f"holds {key!r} of shape {tuple(arr.shape)} but parameter {idx} has "
                                        f"shape {tuple(p.data.shape)}")
        sd["state"].setdefault(idx, {})[name] = arr
    for key, v in opt_state.get("scalars", {}).items():
        m = re.fullmatch(r"(\d+)\.(.+)", key)
        if m is None:
            raise bad(f"optimizer.scalars.{key}", "has a name that is not '<index>.<name>'")
        sd["state"].setdefault(int(m.group(1)), {})[m.group(2)] = v
    return sd


def _optimizer_file(path: str, state: Dict[str, Any], opt_state: Dict[str, Any], bad: _Bad) -> Optional[str]:
    folder = os.path.dirname(os.path.abspath(path))
    if state["version"] == 1:  # the fixed-name pair of pycnn <= 0.x, matched by a random token
        side = path + ".optim"
        if not os.path.exists(side):
            raise FileNotFoundError(f"resume_from: the optimizer state {side!r} next to {path!r} is missing")
        if pio.load_metadata(side).get("pycnn_checkpoint_token") != state.get("token"):
            raise bad("token", f"does not match {side!r} (an interrupted save?); use an older checkpoint")
        return side
    name, digest = opt_state.get("file"), opt_state.get("sha256")
    if not isinstance(name, str) or not re.fullmatch(re.escape(os.path.basename(path)) + _SIDE_RE, name) \
            or not isinstance(digest, str):
        raise bad("optimizer.file", f"is {name!r}, expected '{os.path.basename(path)}.optim-<16 hex digits>' "
                                    "with its sha256")
    side = os.path.join(folder, name)
    if not os.path.exists(side):
        raise FileNotFoundError(f"resume_from: the optimizer state {side!r} that {path!r} names is missing "
                                "(copy both files of a checkpoint)")
    h = hashlib.sha256()
    with open(side, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != digest:
        raise bad("optimizer.sha256", f"does not match the contents of {side!r}")
    return side


def _check_weights(trainer: Any, path: str, weights: Dict[str, Any]) -> None:
    own = trainer.model.state_dict()
    missing, unexpected = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    if missing or unexpected:
        raise ValueError(f"resume_from: {path!r} does not hold this model's weights (missing: {missing[:5]}, "
                         f"unexpected: {unexpected[:5]}); nothing was loaded")
    for k, v in own.items():
        if tuple(weights[k].shape) != tuple(v.shape):
            raise ValueError(f"resume_from: {path!r}: weight {k!r} has shape {tuple(weights[k].shape)} but the "
                             f"model's has shape {tuple(v.shape)}; nothing was loaded")


def load_checkpoint(trainer: Any, path: Any, history: Any = None) -> int:
    """Restore what `save_checkpoint` wrote into `trainer` (model, optimizer, scheduler, random
    state; `history`, when given, receives the saved epochs); returns the epoch to continue from
    (0-based). Everything is checked before anything is changed."""
    path = os.fspath(path)
    with folder_lock(path):  # no save into this folder while the files are read
        return _load(trainer, path, history)


def _load(trainer: Any, path: str, history: Any) -> int:
    bad = _Bad(path)
    state = _read_state(path, bad)
    _check_rng(state.get("rng"), bad)
    _check_history(state.get("history"), bad)
    weights = pio.load(path)
    _check_weights(trainer, path, weights)
    opt_sd = _optimizer_state(trainer, path, state, bad)
    sch_state = state.get("scheduler")
    if sch_state is not None and not isinstance(sch_state, dict):
        raise bad("scheduler", f"is a {type(sch_state).__name__}, expected a dict")

    # everything checked: apply
    trainer.model.load_state_dict(weights)
    if opt_sd is not None:
        trainer.optimizer.load_state_dict(opt_sd)
    if sch_state is not None and trainer.scheduler is not None:
        trainer.scheduler.load_state_dict(sch_state)
    _random.set_state(state["rng"])
    saved = state.get("history")
    if history is not None and saved:
        for i, e in enumerate(saved["epoch"]):
            record_epoch(history, e, {k: v[i] for k, v in saved["history"].items()})
    if state["version"] == _VERSION:
        _remove_stale(path, keep=os.path.join(os.path.dirname(os.path.abspath(path)),
                                                   state["optimizer"]["file"]) if state.get("optimizer") else None)
    return int(state["epoch"]) + 1

