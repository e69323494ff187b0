"""Loads the compiled core and the BLAS it calls, once, before anything else touches them."""
from __future__ import annotations

import os


def _mapped_files() -> set:
    """Real paths of the shared libraries loaded so far (empty where /proc is missing)."""
    try:
        with open("/proc/self/maps") as f:
            fields = [line.split(None, 5) for line in f]
    except OSError:
        return set()
    return {os.path.realpath(x[5].rstrip("\n")) for x in fields if len(x) == 6 and x[5].startswith("/")}


# libgomp reads its wait policy once, when it loads with _core. Its default (spin ~0.3 ms at every
# barrier) makes a 2-core machine crawl whenever another process holds a core: a LeNet step went
# from 40 ms to 1.9 s. Passive waiting costs a few microseconds per parallel region instead.
_user_wait_policy = "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ
if not _user_wait_policy:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
_loaded_before_core = _mapped_files()

from . import _core  # noqa: E402

# When another library (PyTorch) loaded the same libgomp first, the policy above came too late;
# the core then makes its idle threads sleep at once by other means (csrc/parallel.cpp).
if not _user_wait_policy and _core.openmp_library():
    if os.path.realpath(_core.openmp_library()) in _loaded_before_core:
        _core.quiet_idle_threads()
del _loaded_before_core

_BLAS_LIB = "libscipy_openblas.so"


def _load_blas() -> str:
    # OpenBLAS reads its kernel choice once, when it initialises, and scipy-openblas32 loads it as
    # soon as the package is imported, so the choice (its AVX-512 kernels on CPUs it does not
    # recognise, csrc/blas.cpp) goes into the environment before that import, and out again
    # afterwards: it is for this library only, not for NumPy's BLAS or child processes.
    # (Not OPENBLAS_NUM_THREADS=1: initialised that way, OpenBLAS ran the GEMMs that OpenMP threads
    # call side by side slower on a VGG layer, in every one of three interleaved A/B runs on
    # 2026-12-02. Its own pool is set to one thread after loading instead.)
    wanted = {"OPENBLAS_CORETYPE": _core.blas_preferred_core()}
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


def _cublas_paths() -> list:
    """Where a CUDA build looks for cuBLAS, in order, when it first finds a GPU (nothing is loaded
    here: importing pycnn needs no cuBLAS): the nvidia-cublas wheel of `pip install 'pycnn[cuda]'`,
    then the dynamic loader's own search (LD_LIBRARY_PATH, ldconfig), then a CUDA toolkit."""
    soname = _core.cublas_soname()
    if not soname:
        return []
    paths = []
    try:
        import nvidia  # namespace package of NVIDIA's wheels

        for root in nvidia.__path__:
            paths += [os.path.join(root, sub, "lib", soname) for sub in ("cu13", "cublas")]
    except ImportError:
        pass
    paths.append(soname)
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            paths.append(os.path.join(os.environ[var], "lib64", soname))
    paths.append(os.path.join("/usr/local/cuda/lib64", soname))
    return [p for p in paths if os.sep not in p or os.path.exists(p)]


blas_path = _load_blas()
_core.set_cublas_paths(_cublas_paths())
