"""Threads, build information and the `pc.cuda` / `pc.backends` namespaces."""
from __future__ import annotations

import types

from . import _core, _core_loader


def set_num_threads(n: int) -> None:
    """CPU threads for both the OpenMP loops and BLAS."""
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    return int(_core.get_num_threads())


def build_info() -> dict:
    from . import __version__

    return {
        "version": __version__,
        "cuda": bool(_core.cuda_compiled()),
        "cuda_version": _core.cuda_version() or None,
        "cuda_available": bool(_core.cuda_is_available()),
        "blas": "OpenBLAS (scipy-openblas32)",
        "blas_core": _core.blas_core_name(),
        "blas_config": _core.blas_config(),
        "blas_path": _core_loader.blas_path,
        "openmp": bool(_core.openmp),
        "num_threads": get_num_threads(),
    }


def _device_index(device) -> int:
    if device is None:
        return 0
    if isinstance(device, int):
        return device
    s = _core.parse_device(str(device))
    if not s.startswith("cuda"):
        raise ValueError(f"expected a CUDA device, got {device!r}")
    return int(s.split(":")[1])


class _Cuda(types.ModuleType):
    """`pc.cuda`: device queries and the caching allocator's statistics."""

    def is_available(self) -> bool:
        return bool(_core.cuda_is_available())

    def device_count(self) -> int:
        return int(_core.cuda_device_count())

    def get_device_name(self, i: int = 0) -> str:
        return _core.cuda_device_name(_device_index(i))

    def synchronize(self, device=None) -> None:
        if self.is_available():
            _core.cuda_synchronize(_device_index(device))

    def memory_stats(self, device=None) -> dict:
        return dict(_core.cuda_memory_stats(_device_index(device)))

    def memory_allocated(self, device=None) -> int:
        return int(self.memory_stats(device)["allocated_bytes"])

    def max_memory_allocated(self, device=None) -> int:
        return int(self.memory_stats(device)["max_allocated_bytes"])

    def reset_peak_memory_stats(self, device=None) -> None:
        _core.cuda_reset_peak_memory_stats(_device_index(device))

    def empty_cache(self, device=None) -> None:
        if self.is_available():
            _core.cuda_empty_cache(_device_index(device))


class _Backends:
    """`pc.backends.allow_tf32`: False (strict FP32) unless set."""

    @property
    def allow_tf32(self) -> bool:
        return bool(_core.get_allow_tf32())

    @allow_tf32.setter
    def allow_tf32(self, value: bool) -> None:
        _core.set_allow_tf32(bool(value))


cuda = _Cuda("pycnn.cuda")
backends = _Backends()
