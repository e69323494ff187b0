"""Data parallelism over processes (`pc.distributed`, PyTorch's names): MPI (mpi4py) for CPU
tensors, NCCL for CUDA tensors. Start the same script on N processes with the cluster's launcher
(`mpiexec -n N python train.py`), then:

    pc.distributed.init_process_group()
    model = pc.nn.parallel.DistributedDataParallel(model)   # or let pc.Trainer do it

mpi4py is imported on first use, not here: `import pycnn` never needs MPI.
"""
from . import _mpi, _nccl
from ._mpi import INSTALL_HINT as MPI_INSTALL_HINT
from ._mpi import DistributedTimeoutError
from .process_group import (Work, all_gather_object, all_reduce, barrier, broadcast, broadcast_object,
                            destroy_process_group, get_device, get_local_rank, get_local_world_size, get_rank,
                            get_world_size, init_process_group, is_initialized, launched_with_several_processes)


def status() -> dict:
    """{"mpi": ..., "nccl": ...}: one line each on whether the backend is usable (what `pycnn info` prints)."""
    try:
        nccl = f"NCCL {_nccl.version()} ({_nccl.load()[0]})"
    except (_nccl.NcclNotFoundError, RuntimeError, AttributeError) as e:
        nccl = f"not found ({_nccl.INSTALL_HINT})" if isinstance(e, _nccl.NcclNotFoundError) else f"unusable ({e})"
    return {"mpi": _mpi.status(), "nccl": nccl}


__all__ = ["init_process_group", "destroy_process_group", "is_initialized", "get_rank", "get_world_size",
           "get_local_rank", "get_local_world_size", "get_device", "barrier", "all_reduce", "broadcast",
           "broadcast_object", "all_gather_object", "Work", "DistributedTimeoutError", "MPI_INSTALL_HINT",
           "launched_with_several_processes", "status"]
