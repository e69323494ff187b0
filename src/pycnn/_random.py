"""The one source of randomness on the Python side.

`pc.manual_seed(seed)` reseeds this NumPy generator (shuffling, augmentation, initialisation)
and the C++ counter-based generator (dropout masks), so a run repeats bit for bit.
"""
from __future__ import annotations

import numpy as np

from . import _core

_seed: int = 0
_generator = np.random.default_rng(_seed)


def manual_seed(seed: int) -> None:
    global _seed, _generator
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"manual_seed: seed must be >= 0, got {seed}")
    _seed = seed
    _generator = np.random.default_rng(seed)
    _core.manual_seed(seed)


def generator() -> np.random.Generator:
    """The NumPy generator every Python-side random choice must draw from."""
    return _generator


def get_state() -> dict:
    return {"numpy": _generator.bit_generator.state, "core": int(_core.get_rng_offset()), "seed": _seed}


def set_state(state: dict) -> None:
    global _seed
    _seed = int(state["seed"])
    _generator.bit_generator.state = state["numpy"]
    _core.manual_seed(_seed)
    _core.set_rng_offset(int(state["core"]))
