"""NCCL for CUDA tensors, loaded on demand with ctypes (nothing to compile, nothing loaded at import).

Where the library comes from, in order: $PYCNN_NCCL_LIBRARY, the `nvidia-nccl-cu13` wheel
(``nvidia/*/lib/libnccl.so*``), then the dynamic loader's own search (LD_LIBRARY_PATH, ldconfig).
Streams and the current device go through the CUDA driver (``libcuda.so.1``, present wherever a GPU
is), so no particular CUDA runtime library has to be installed beside pycnn's.

Ordering: pycnn's kernels run on one stream per device that Python does not see. A collective
first waits for that stream on the host (``pc.cuda.synchronize``), then runs on this module's own
side stream; later pycnn kernels (the backward of earlier layers) overlap with it. ``Work.wait``
polls the side stream against the deadline, so a rank that never joins makes the others raise
instead of hanging, and a communicator that timed out is aborted (``ncclCommAbort``).
"""
from __future__ import annotations

import ctypes
import glob
import os
import time
from typing import Any, Iterator, Optional, Tuple

INSTALL_HINT = ("pip install nvidia-nccl-cu13 (or make the system's libnccl.so.2 findable: LD_LIBRARY_PATH, "
                "or PYCNN_NCCL_LIBRARY=/path/to/libnccl.so.2)")

_NCCL_UNIQUE_ID_BYTES = 128
_SUCCESS, _IN_PROGRESS = 0, 7  # ncclSuccess, ncclInProgress
_CUDA_SUCCESS, _CUDA_NOT_READY = 0, 600
# ncclDataType_t and ncclRedOp_t (nccl.h)
_NCCL_DTYPE = {"float32": 7, "float64": 8, "int64": 4}
_NCCL_OP = {"sum": 0, "max": 2, "min": 3, "mean": 4}  # mean = ncclAvg (NCCL >= 2.10)


class NcclNotFoundError(RuntimeError):
    pass


class _UniqueId(ctypes.Structure):
    _fields_ = [("internal", ctypes.c_char * _NCCL_UNIQUE_ID_BYTES)]


def _candidates() -> Iterator[str]:
    env = os.environ.get("PYCNN_NCCL_LIBRARY")
    if env:
        yield env
    try:
        import nvidia  # namespace package of NVIDIA's wheels

        for root in nvidia.__path__:
            yield from sorted(glob.glob(os.path.join(root, "*", "lib", "libnccl.so*")))
    except ImportError:
        pass
    yield "libnccl.so.2"
    yield "libnccl.so"


_lib: Optional[Tuple[str, Any]] = None


def load() -> Tuple[str, Any]:
    """(path, ctypes library) of NCCL, loaded once; NcclNotFoundError saying what to install."""
    global _lib
    if _lib is not None:
        return _lib
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
            continue
        if not hasattr(lib, "ncclCommInitRank"):
            tried.append(f"{path} (no ncclCommInitRank)")
            continue
        _declare(lib)
        _lib = (path, lib)
        return _lib
    raise NcclNotFoundError("pycnn.distributed: NCCL (for CUDA tensors) was not found; " + INSTALL_HINT
                            + ". Tried: " + "; ".join(tried))


def _declare(lib: Any) -> None:
    vp, i, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    lib.ncclGetVersion.argtypes = [ctypes.POINTER(i)]
    lib.ncclGetUniqueId.argtypes = [ctypes.POINTER(_UniqueId)]
    lib.ncclCommInitRank.argtypes = [ctypes.POINTER(vp), i, _UniqueId, i]
    lib.ncclAllReduce.argtypes = [vp, vp, sz, i, i, vp, vp]
    lib.ncclBroadcast.argtypes = [vp, vp, sz, i, i, vp, vp]
    lib.ncclCommGetAsyncError.argtypes = [vp, ctypes.POINTER(i)]
    lib.ncclCommAbort.argtypes = [vp]
    lib.ncclCommDestroy.argtypes = [vp]
    lib.ncclGetErrorString.argtypes = [i]
    lib.ncclGetErrorString.restype = ctypes.c_char_p


def version() -> str:
    """"2.x.y" of the NCCL that load() finds (loads it)."""
    _, lib = load()
    v = ctypes.c_int()
    _check(lib, lib.ncclGetVersion(ctypes.byref(v)), "ncclGetVersion")
    code = v.value  # 2.9+: major*10000 + minor*100 + patch
    return f"{code // 10000}.{code // 100 % 100}.{code % 100}"


def _check(lib: Any, result: int, what: str) -> None:
    if result not in (_SUCCESS, _IN_PROGRESS):
        raise RuntimeError(f"pycnn.distributed: {what} failed: {lib.ncclGetErrorString(result).decode()} "
                           f"(ncclResult {result})")


class _Driver:
    """The few CUDA driver calls NCCL's caller needs: make a device current, one stream, poll it."""

    def __init__(self) -> None:
        try:
            self.lib = ctypes.CDLL("libcuda.so.1")
        except OSError as e:
            raise RuntimeError(f"pycnn.distributed: NCCL needs the NVIDIA driver (libcuda.so.1): {e}") from None
        self._check(self.lib.cuInit(0), "cuInit")

    def _check(self, r: int, what: str) -> None:
        if r != _CUDA_SUCCESS:
            raise RuntimeError(f"pycnn.distributed: CUDA driver call {what} failed (CUresult {r})")

    def set_device(self, index: int) -> None:
        dev, ctx = ctypes.c_int(), ctypes.c_void_p()
        self._check(self.lib.cuDeviceGet(ctypes.byref(dev), ctypes.c_int(index)), "cuDeviceGet")
        self._check(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
        self._check(self.lib.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")

    def stream_create(self) -> ctypes.c_void_p:
        s = ctypes.c_void_p()
        self._check(self.lib.cuStreamCreate(ctypes.byref(s), ctypes.c_uint(1)), "cuStreamCreate")  # non-blocking
        return s

    def stream_done(self, s: ctypes.c_void_p) -> bool:
        r = self.lib.cuStreamQuery(s)
        if r == _CUDA_NOT_READY:
            return False
        self._check(r, "cuStreamQuery")
        return True

    def stream_destroy(self, s: ctypes.c_void_p) -> None:
        self.lib.cuStreamDestroy_v2(s)


class Communicator:
    """One NCCL communicator over all ranks, on CUDA device `device_index` of this node.

    `exchange_id(bytes_or_None) -> bytes` carries rank 0's unique id to every rank (over MPI)."""

    def __init__(self, rank: int, world_size: int, device_index: int, exchange_id: Any) -> None:
        self.path, self.lib = load()
        self.driver = _Driver()
        self.device_index = device_index
        uid = _UniqueId()
        if rank == 0:
            _check(self.lib, self.lib.ncclGetUniqueId(ctypes.byref(uid)), "ncclGetUniqueId")
        raw = exchange_id(bytes(uid.internal) if rank == 0 else None)
        ctypes.memmove(ctypes.byref(uid), raw, _NCCL_UNIQUE_ID_BYTES)
        self.driver.set_device(device_index)
        self.comm = ctypes.c_void_p()
        _check(self.lib, self.lib.ncclCommInitRank(ctypes.byref(self.comm), world_size, uid, rank),
               "ncclCommInitRank")
        self.stream = self.driver.stream_create()
        self.aborted = False

    def _prepare(self, t: Any) -> Tuple[int, int]:
        import pycnn as pc

        dt = str(t.dtype).rsplit(".", 1)[-1]
        if dt not in _NCCL_DTYPE:
            raise TypeError(f"pycnn.distributed: NCCL collectives take float32, float64 or int64 tensors, got {dt}")
        if str(t.device) != f"cuda:{self.device_index}":
            raise ValueError(f"pycnn.distributed: this rank's NCCL communicator is on cuda:{self.device_index} (its "
                             f"rank on the node), got a tensor on {t.device}; move the model there "
                             "(pc.distributed.get_device())")
        pc.cuda.synchronize(self.device_index)  # the gradient kernels on pycnn's stream are done
        return _NCCL_DTYPE[dt], int(t.numel())

    def all_reduce(self, t: Any, op: str) -> None:
        dtype, n = self._prepare(t)
        ptr = ctypes.c_void_p(t._data_ptr())
        _check(self.lib, self.lib.ncclAllReduce(ptr, ptr, n, dtype, _NCCL_OP[op], self.comm, self.stream),
               "ncclAllReduce")

    def broadcast(self, t: Any, src: int) -> None:
        dtype, n = self._prepare(t)
        ptr = ctypes.c_void_p(t._data_ptr())
        _check(self.lib, self.lib.ncclBroadcast(ptr, ptr, n, dtype, src, self.comm, self.stream), "ncclBroadcast")

    def done(self) -> bool:
        """Whether everything issued so far has finished (raises NCCL's asynchronous errors)."""
        if self.driver.stream_done(self.stream):
            return True
        err = ctypes.c_int()
        _check(self.lib, self.lib.ncclCommGetAsyncError(self.comm, ctypes.byref(err)), "ncclCommGetAsyncError")
        _check(self.lib, err.value, "an NCCL collective")
        return False

    def wait(self, deadline: float, what: str, on_timeout: Any) -> None:
        spin_until, delay = time.monotonic() + 0.05, 1e-5
        while not self.done():
            now = time.monotonic()
            if now < spin_until:
                os.sched_yield()
                continue
            if now > deadline:
                self.abort()
                raise on_timeout(what)
            time.sleep(delay)
            delay = min(2 * delay, 1e-3)

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            self.lib.ncclCommAbort(self.comm)

    def destroy(self) -> None:
        if not self.aborted:
            self.lib.ncclCommDestroy(self.comm)
            self.aborted = True
        self.driver.stream_destroy(self.stream)
