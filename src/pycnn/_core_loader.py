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
    # OpenBLAS reads its settings once, when it initialises, and scipy-openblas32 loads it as soon as
    # the package is imported, so they go into the environment before that import, and out again
    # afterwards (they are for this library only, not for NumPy's BLAS or child processes):
    # - its AVX-512 kernels on CPUs it does not recognise (csrc/blas.cpp);
    # - one thread: OpenMP runs the GEMMs (csrc/blas.cpp), so OpenBLAS's own pool would be idle
    #   threads that spin after start-up.
    wanted = {"OPENBLAS_CORETYPE": _core.blas_preferred_core(), "OPENBLAS_NUM_THREADS": "1"}
    added = [k for k, v in wanted.items() if v and k not in os.environ]
    for k in added:
        os.environ[k] = wanted[k]
    try:
        import scipy_openblas32

        path = os.path.join(scipy_openblas32.get_lib_dir(), _BLAS_LIB)
        _core.load_blas(path)
    finally:
        for k in added:
            del os.environ[k]
    return path


blas_path = _load_blas()
