"""The process group: which rank am I, how many are we, and collectives on pycnn Tensors.

CPU tensors go through MPI (mpi4py) zero-copy, through the tensor's own memory (a NumPy view).
CUDA tensors go through NCCL (its unique id exchanged over MPI, the communicator made on first
use), or, with backend="mpi", are staged through host memory. See _mpi.py / _nccl.py.
"""
from __future__ import annotations

import datetime
import os
import sys
import time
import traceback
import warnings
from typing import Any, Optional, Union

import numpy as np

from .. import _core
from ..tensor import Tensor
from . import _nccl
from ._mpi import DistributedTimeoutError, MpiGroup, Request

__all__ = ["init_process_group", "destroy_process_group", "is_initialized", "get_rank", "get_world_size",
           "get_local_rank", "get_local_world_size", "get_device", "barrier", "all_reduce", "broadcast",
           "DistributedTimeoutError", "launched_with_several_processes"]

_BACKENDS = (None, "mpi", "nccl")
_OPS = ("sum", "mean", "max", "min")


class _Group:
    def __init__(self, backend: Optional[str], timeout: float) -> None:
        self.mpi = MpiGroup(timeout)
        self.backend = backend
        self.timeout = timeout
        self.nccl: Optional[_nccl.Communicator] = None
        self.prev_excepthook: Any = None
        self.threads_set = False
        self.staging_warned = False

    def nccl_comm(self) -> Optional[_nccl.Communicator]:
        """The NCCL communicator (made on first use, the same collective call on every rank), or None
        when CUDA tensors are staged through MPI."""
        if self.nccl is None and self.backend != "mpi":
            try:
                self.nccl = _nccl.Communicator(self.mpi.rank, self.mpi.size, get_device_index(),
                                               lambda raw: self.mpi.broadcast_object(raw, 0))
            except _nccl.NcclNotFoundError:
                if self.backend == "nccl":
                    raise
                self.backend = "mpi"
                warnings.warn(f"pycnn.distributed: NCCL not found, CUDA tensors are copied to the host for MPI "
                              f"(slow); {_nccl.INSTALL_HINT}", RuntimeWarning, stacklevel=3)
        return self.nccl


_group: Optional[_Group] = None


def _timeout_seconds(timeout: Any) -> float:
    if isinstance(timeout, datetime.timedelta):
        timeout = timeout.total_seconds()
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"init_process_group: timeout must be a number of seconds > 0 (or a timedelta), "
                         f"got {timeout!r}")
    return float(timeout)


def launched_with_several_processes() -> bool:
    """Whether a launcher (mpiexec/mpirun of MPICH or Open MPI, srun) started this process as one
    of several: what `pycnn train` checks before initialising a process group."""
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS"):
        v = os.environ.get(var, "")
        if v.isdigit() and int(v) > 1:
            return True
    return False


def init_process_group(backend: Optional[str] = None, timeout: Union[float, datetime.timedelta] = 1800) -> None:
    """Joins this process to the job's process group (all processes of `mpiexec -n N ...`).

    backend: None (MPI for CPU tensors; NCCL for CUDA tensors where it is found, else staged
    through MPI with a warning), "mpi" (CUDA tensors staged through host memory) or "nccl" (CUDA
    tensors must go through NCCL; its absence is an error on first use). timeout: seconds (or a
    timedelta) a collective waits for the other ranks before raising DistributedTimeoutError.

    Also: an uncaught exception on any rank prints its traceback and aborts the whole job (MPI
    Abort) instead of leaving the other ranks waiting; and unless OMP_NUM_THREADS is set, each
    rank gets the node's cores divided by the ranks on the node (pc.set_num_threads afterwards
    overrides it)."""
    global _group
    if backend not in _BACKENDS:
        raise ValueError(f"init_process_group: backend must be None, 'mpi' or 'nccl', got {backend!r}")
    seconds = _timeout_seconds(timeout)
    if _group is not None:
        raise RuntimeError("init_process_group: the process group is already initialized "
                           "(call destroy_process_group() first)")
    group = _Group(backend, seconds)
    _group = group
    if group.mpi.size > 1:
        group.prev_excepthook = sys.excepthook
        sys.excepthook = _abort_on_uncaught
    if "OMP_NUM_THREADS" not in os.environ:
        cores = os.cpu_count() or 1
        _core.set_num_threads(max(1, cores // group.mpi.local_size))
        group.threads_set = True
    if backend == "nccl":
        group.nccl_comm()


def _abort_on_uncaught(exc_type: Any, exc: Any, tb: Any) -> None:
    group = _group
    try:
        traceback.print_exception(exc_type, exc, tb)
        if group is not None:
            sys.stderr.write(f"pycnn.distributed: rank {group.mpi.rank} of {group.mpi.size} failed with the "
                             "error above; aborting the whole job (MPI Abort)\n")
        sys.stderr.flush()
        sys.stdout.flush()
        time.sleep(0.5)  # lets the launcher forward the traceback before Abort tears the job down
    finally:
        if group is not None:
            group.mpi.abort(1)


def destroy_process_group() -> None:
    """Leaves the process group (MPI itself stays initialised until the process exits)."""
    global _group
    group = _require("destroy_process_group")
    _group = None
    if group.prev_excepthook is not None and sys.excepthook is _abort_on_uncaught:
        sys.excepthook = group.prev_excepthook
    if group.nccl is not None:
        group.nccl.destroy()
    group.mpi.node_comm.Free()


def _require(who: str) -> _Group:
    if _group is None:
        raise RuntimeError(f"pycnn.distributed.{who}: the process group is not initialized; call "
                           "pc.distributed.init_process_group() first (and start the script with mpiexec -n N)")
    return _group


def is_initialized() -> bool:
    return _group is not None


def get_rank() -> int:
    """This process's rank (0 when no process group is initialized, as a single process is rank 0)."""
    return _group.mpi.rank if _group is not None else 0


def get_world_size() -> int:
    """The number of processes (1 when no process group is initialized)."""
    return _group.mpi.size if _group is not None else 1


def get_local_rank() -> int:
    """This process's rank among the processes on its node (its GPU, where there are GPUs)."""
    return _group.mpi.local_rank if _group is not None else 0


def get_local_world_size() -> int:
    return _group.mpi.local_size if _group is not None else 1


def get_device_index() -> int:
    n = _core.cuda_device_count()
    if n < 1:
        raise RuntimeError(f"pycnn.distributed: no CUDA device ({_core.cuda_status()})")
    return get_local_rank() % n


def get_device() -> str:
    """The device this rank should train on: "cuda:<local rank mod GPUs>" where CUDA is available, else "cpu"."""
    return f"cuda:{get_device_index()}" if _core.cuda_is_available() else "cpu"


class Work:
    """A collective in flight (`async_op=True`): `is_completed()`, `wait()`."""

    def __init__(self, wait: Any, done: Any) -> None:
        self._wait, self._done = wait, done

    def is_completed(self) -> bool:
        return bool(self._done())

    def wait(self) -> None:
        self._wait()


def _cpu_buffer(t: Any, who: str) -> np.ndarray:
    """The tensor's own memory as a writable NumPy array (no copy)."""
    if isinstance(t, np.ndarray):
        buf = t
    else:
        if not t.is_contiguous():
            raise ValueError(f"pycnn.distributed.{who}: the tensor must be contiguous (call .contiguous() and "
                             "work on the result)")
        buf = t.__array__(None, False)
    if not buf.flags.c_contiguous or not buf.flags.writeable:
        raise ValueError(f"pycnn.distributed.{who}: expected a contiguous, writable array")
    return buf


def _check_tensor(t: Any, who: str) -> Any:
    data = getattr(t, "_pycnn_parameter_data", None)  # a Parameter: its tensor
    if data is not None:
        t = data
    if not isinstance(t, (Tensor, np.ndarray)):
        raise TypeError(f"pycnn.distributed.{who}: expected a pycnn Tensor, got {type(t).__name__}")
    return t


def _run(t: Any, who: str, cpu_op: Any, nccl_op: Any, async_op: bool) -> Optional[Work]:
    group = _require(who)
    t = _check_tensor(t, who)
    if isinstance(t, np.ndarray) or not t.is_cuda:
        req: Request = cpu_op(_cpu_buffer(t, who))
        if async_op:
            return Work(req.wait, req.is_completed)
        req.wait()
        return None
    comm = group.nccl_comm()
    if comm is not None:
        nccl_op(comm, t)
        what = f"{who} (NCCL) on rank {group.mpi.rank} of {group.mpi.size}"

        def wait() -> None:
            comm.wait(_deadline(group), what, lambda w: DistributedTimeoutError(
                f"pycnn.distributed: {w} waited more than {group.timeout:g} s for the other ranks"))
        if async_op:
            return Work(wait, comm.done)
        wait()
        return None
    host = t.numpy()  # staged: a copy on the host, reduced over MPI, copied back
    req = cpu_op(host)

    def staged_wait() -> None:
        req.wait()
        t.copy_(_core.from_numpy(host))
    if async_op:
        return Work(staged_wait, req.is_completed)
    staged_wait()
    return None


def _deadline(group: _Group) -> float:
    return time.monotonic() + group.timeout


def all_reduce(tensor: Any, op: str = "sum", async_op: bool = False) -> Optional[Work]:
    """Reduces `tensor` over all ranks, in place: "sum", "mean", "max" or "min". With async_op,
    returns a Work to wait() on; the tensor must not be touched until then."""
    if op not in _OPS:
        raise ValueError(f"pycnn.distributed.all_reduce: op must be one of {_OPS}, got {op!r}")
    group = _require("all_reduce")
    t = _check_tensor(tensor, "all_reduce")
    if op == "mean" and str(getattr(t, "dtype", "")).endswith("int64"):
        raise TypeError("pycnn.distributed.all_reduce: op='mean' needs a floating tensor, got int64 "
                        "(use 'sum' and divide)")
    return _run(t, "all_reduce", lambda buf: group.mpi.all_reduce(buf, op),
                lambda comm, x: comm.all_reduce(x, op), async_op)


def broadcast(tensor: Any, src: int = 0, async_op: bool = False) -> Optional[Work]:
    """Copies rank `src`'s `tensor` into `tensor` on every other rank, in place."""
    group = _require("broadcast")
    if isinstance(src, bool) or not isinstance(src, (int, np.integer)) or not 0 <= src < group.mpi.size:
        raise ValueError(f"pycnn.distributed.broadcast: src must be a rank in [0, {group.mpi.size}), got {src!r}")
    return _run(tensor, "broadcast", lambda buf: group.mpi.broadcast(buf, int(src)),
                lambda comm, x: comm.broadcast(x, int(src)), async_op)


def barrier() -> None:
    """Waits until every rank has arrived (or raises DistributedTimeoutError after the timeout)."""
    _require("barrier").mpi.barrier().wait()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """A small picklable object of rank `src`, on every rank."""
    return _require("broadcast_object").mpi.broadcast_object(obj, src)


def all_gather_object(obj: Any) -> list:
    """[rank 0's obj, rank 1's obj, ...] on every rank (small picklable objects)."""
    return _require("all_gather_object").mpi.all_gather_object(obj)
