"""MPI through mpi4py: the transport for CPU tensors, for NCCL's unique id, and for small objects.

Every collective is non-blocking (Iallreduce, Ibcast, Ibarrier, ...) and waited for by polling
against a deadline, so that a rank which never arrives (dead, stuck, or gone another way) makes the
others raise `DistributedTimeoutError` instead of hanging until the job's wall-clock limit.
"""
from __future__ import annotations

import os
import pickle
import time
from typing import Any, Callable, List

import numpy as np

INSTALL_HINT = 'pip install "pycnn[mpi]"  (or: pip install mpi4py mpich, which also gives mpiexec)'


class DistributedTimeoutError(RuntimeError):
    """A collective waited longer than the process group's timeout for the other ranks."""


def import_mpi() -> Any:
    """mpi4py's MPI module (initialises MPI on first import); ImportError saying what to install."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"pycnn.distributed needs mpi4py and an MPI library: {INSTALL_HINT} ({e})") from None
    return MPI


def status() -> str:
    """One line for `pycnn info`: the MPI library and mpi4py version, or what to install."""
    try:
        import mpi4py
        MPI = import_mpi()
    except ImportError:
        return f"not installed ({INSTALL_HINT})"
    lib = MPI.Get_library_version().strip().splitlines()[0].strip()
    return f"{' '.join(lib.split())} (mpi4py {mpi4py.__version__})"


_MPI_OPS = {"sum": "SUM", "mean": "SUM", "max": "MAX", "min": "MIN"}


class Request:
    """One non-blocking MPI collective: `is_completed()`, `wait()` (with the group's deadline), then
    `finish()` (e.g. the division of a mean) runs once it is complete."""

    def __init__(self, req: Any, timeout: float, what: str, finish: Callable[[], None] = lambda: None) -> None:
        self._req, self._deadline, self._what, self._finish = req, time.monotonic() + timeout, what, finish
        self._timeout = timeout
        self._done = False

    def is_completed(self) -> bool:
        if not self._done and self._req.Test():
            self._done = True
            self._finish()
        return self._done

    def wait(self) -> None:
        spin_until, delay = time.monotonic() + _SPIN_SECONDS, 1e-5
        while not self.is_completed():
            now = time.monotonic()
            if now < spin_until:  # MPI progresses only inside Test: poll at once at first, yielding
                os.sched_yield()  # the core to a peer rank or a thread that shares it
                continue
            if now > self._deadline:
                _abandoned.append(self)  # MPI may still write into the buffer: keep it alive
                raise DistributedTimeoutError(
                    f"pycnn.distributed: {self._what} waited more than {self._timeout:g} s for the other ranks "
                    "(a rank died, hangs, or took another code path); raise timeout= in init_process_group "
                    "if they are only slow")
            time.sleep(delay)  # then politely: a rank that waits this long waits for a slow peer
            delay = min(2 * delay, 1e-3)


_SPIN_SECONDS = 0.05
_abandoned: List[Request] = []


class MpiGroup:
    """COMM_WORLD seen by pycnn: rank, size, rank and size within the node, timed collectives."""

    def __init__(self, timeout: float) -> None:
        MPI = import_mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.node_comm = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = self.node_comm.Get_rank()
        self.local_size = self.node_comm.Get_size()
        self.timeout = float(timeout)

    def _request(self, req: Any, what: str, finish: Callable[[], None] = lambda: None) -> Request:
        return Request(req, self.timeout, f"{what} on rank {self.rank} of {self.size}", finish)

    def all_reduce(self, buf: np.ndarray, op: str) -> Request:
        """In place on a contiguous NumPy array; "mean" divides the sum by the world size."""
        req = self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=getattr(self.MPI, _MPI_OPS[op]))
        finish = (lambda: np.divide(buf, self.size, out=buf)) if op == "mean" else (lambda: None)
        return self._request(req, f"all_reduce({op}) of {buf.size} elements", finish)

    def broadcast(self, buf: np.ndarray, src: int) -> Request:
        return self._request(self.comm.Ibcast(buf, root=src), f"broadcast from rank {src} of {buf.size} elements")

    def barrier(self) -> Request:
        return self._request(self.comm.Ibarrier(), "barrier")

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """`obj` of rank `src` (pickled; for small metadata such as names and shapes) on every rank."""
        data = pickle.dumps(obj) if self.rank == src else b""
        n = np.array([len(data)], dtype=np.int64)
        self.broadcast(n, src).wait()
        buf = np.frombuffer(data, dtype=np.uint8).copy() if self.rank == src else np.empty(int(n[0]), np.uint8)
        self.broadcast(buf, src).wait()
        return obj if self.rank == src else pickle.loads(buf.tobytes())

    def all_gather_object(self, obj: Any) -> list:
        """[obj of rank 0, obj of rank 1, ...] on every rank."""
        data = np.frombuffer(pickle.dumps(obj), dtype=np.uint8)
        sizes = np.zeros(self.size, dtype=np.int64)
        sizes[self.rank] = data.size
        self.all_reduce(sizes, "sum").wait()
        out = np.empty(int(sizes.sum()), dtype=np.uint8)
        req = self.comm.Iallgatherv(data, [out, sizes.tolist()])
        self._request(req, "all_gather_object").wait()
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        return [pickle.loads(out[offsets[i]:offsets[i + 1]].tobytes()) for i in range(self.size)]

    def abort(self, code: int = 1) -> None:
        self.comm.Abort(code)
