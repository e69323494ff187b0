"""Loads the compiled core and the BLAS it calls, once, before anything else touches them."""
from __future__ import annotations

import os

from . import _core

_BLAS_LIB = "libscipy_openblas.so"


def _load_blas() -> str:
    import scipy_openblas32

    path = os.path.join(scipy_openblas32.get_lib_dir(), _BLAS_LIB)
    _core.load_blas(path)
    return path


blas_path = _load_blas()
