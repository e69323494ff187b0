"""Run with `mpiexec -n 2 python failures.py MODE`; each mode must end the whole job quickly, non-zero:
- raise: rank 1 raises while rank 0 waits in a barrier (timeout 600 s): MPI Abort ends both;
- timeout: rank 1 sleeps 60 s while rank 0 waits in a barrier with timeout=2: rank 0 raises;
- mismatch: rank 1 builds a different model; DistributedDataParallel names the first difference."""
import sys
import time

import pycnn as pc
from pycnn import nn


def main(mode):
    pc.distributed.init_process_group(timeout=2 if mode == "timeout" else 600)
    rank = pc.distributed.get_rank()
    if mode == "raise":
        if rank == 1:
            raise ValueError("rank 1 broke on purpose")
        pc.distributed.barrier()
    elif mode == "timeout":
        if rank == 1:
            time.sleep(60)
        pc.distributed.barrier()
    elif mode == "mismatch":
        width = 8 if rank == 0 else 9
        pc.nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2)))
    print(f"rank {rank} finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
