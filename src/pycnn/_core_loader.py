"""Loads the compiled core and the BLAS it calls, once, before anything else touches them."""
from __future__ import annotations

import os

# libgomp reads its wait policy once, when it loads with _core. Its default (spin ~0.3 ms at every
# barrier) makes a 2-core machine crawl whenever another process holds a core: a LeNet step went
# from 40 ms to 1.9 s. Passive waiting costs a few microseconds per parallel region instead.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

from . import _core  # noqa: E402

_BLAS_LIB = "libscipy_openblas.so"


def _load_blas() -> str:
    import scipy_openblas32

    path = os.path.join(scipy_openblas32.get_lib_dir(), _BLAS_LIB)
    _core.load_blas(path)
    return path


blas_path = _load_blas()
