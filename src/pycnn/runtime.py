"""Threads, build information and the `pc.cuda` / `pc.backends` namespaces."""
from __future__ import annotations

import types

from . import __version__, _core, _core_loader


def set_num_threads(n: int) -> None:
    """CPU threads of pycnn's ops (OpenMP loops and the GEMMs they split), for every Python thread.

    Only this call changes them: `OMP_NUM_THREADS` gives the default at import, and what other
    libraries set in the same process (`threadpoolctl.threadpool_limits`, `torch.set_num_threads`)
    does not reach pycnn's ops, nor do pycnn's ops change theirs. pycnn's OpenBLAS stays at one
    thread of its own (docs/reliability.md, "Fork and threads")."""
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """The CPU threads pycnn's ops use (see `set_num_threads`)."""
    return int(_core.get_num_threads())


def build_info() -> dict:
    return {
        "version": __version__,
        "cuda": bool(_core.cuda_compiled()),
        "cuda_version": _core.cuda_version() or None,
        "cuda_available": bool(_core.cuda_is_available()),
        "cuda_unavailable_reason": cuda.unavailable_reason(),
        "cublas": _core.cublas_path() or None,
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


class CUDAGraph:
    """A whole-step CUDA graph, like `torch.cuda.CUDAGraph`: record the kernels of a step once,
    then `replay()` them with one launch.

        g = pc.cuda.CUDAGraph()
        g.capture_begin(); ...ops on static tensors...; g.capture_end()
        for batch in data: static_x.copy_(batch); g.replay()

    Run the step once eagerly before capturing (warm-up: it creates the cuBLAS handle, momentum
    buffers and the scratch arena). While capturing, allocations come from a pool private to this
    graph that stays reserved until `reset()`; tensors made before capture and used by the graph
    (inputs, weights, optimizer buffers) must stay alive and be updated in place. Host copies and
    waits (`.item()`, `.numpy()`, moving CPU data to the device) raise inside a capture. Dropout
    draws a new mask at each replay. Scalars (such as the learning rate) are fixed at capture:
    `reset()` and capture again when they change.
    """

    def __init__(self, device=None) -> None:
        self._g = _core.CUDAGraph(_device_index(device))

    def capture_begin(self) -> None:
        self._g.capture_begin()

    def capture_end(self) -> None:
        self._g.capture_end()

    def replay(self) -> None:
        self._g.replay()

    def reset(self) -> None:
        """Drops the captured graph and releases its memory pool (aborts a running capture)."""
        self._g.reset()

    @property
    def captured(self) -> bool:
        return bool(self._g.captured)

    @property
    def capturing(self) -> bool:
        return bool(self._g.capturing)

    def pool_bytes(self) -> int:
        """Device memory reserved by this graph's private pool."""
        return int(self._g.pool_bytes())

    def __repr__(self) -> str:
        state = "capturing" if self.capturing else ("captured" if self.captured else "empty")
        return f"CUDAGraph(device='cuda:{self._g.device}', {state})"


class graph:
    """`with pc.cuda.graph(g): ...` captures the block into `g` (capture_begin / capture_end).
    An exception inside the block ends the capture, discards it and re-raises."""

    def __init__(self, cuda_graph: CUDAGraph) -> None:
        if not isinstance(cuda_graph, CUDAGraph):
            raise TypeError(f"pc.cuda.graph: expected a pc.cuda.CUDAGraph, got {type(cuda_graph).__name__}")
        self.cuda_graph = cuda_graph

    def __enter__(self) -> CUDAGraph:
        self.cuda_graph.capture_begin()
        return self.cuda_graph

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.cuda_graph.reset()
            return False
        self.cuda_graph.capture_end()
        return False


class _Cuda(types.ModuleType):
    """`pc.cuda`: device queries and the caching allocator's statistics."""

    def is_available(self) -> bool:
        """True when this build has the CUDA backend, an NVIDIA driver new enough for its CUDA
        runtime, at least one GPU, and cuBLAS could be loaded (checked once, on the first call)."""
        return bool(_core.cuda_is_available())

    def unavailable_reason(self) -> "str | None":
        """Why `is_available()` is False, in one line ("no NVIDIA driver ...", "driver too old for
        the CUDA 13 runtime ...", "no GPU ...", "cuBLAS not found: pip install 'pycnn[cuda]' ...",
        "this build of pycnn was compiled without CUDA"); None when CUDA is available."""
        return None if self.is_available() else str(_core.cuda_status())

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

    def host_sync_count(self) -> int:
        """Debug counter: how many times the host has waited for a CUDA device (device->host copies
        such as `.item()`, `synchronize()`, `isfinite`, cache releases), all devices together."""
        return int(_core.cuda_host_sync_count())

    CUDAGraph = CUDAGraph
    graph = graph


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
