"""Run with `mpiexec -n N python ddp_steps.py MODEL OUT.npz` (or as one process: N = 1).

Every rank starts from a different seed; DDP must give them rank 0's parameters. The global batch of
64 is split evenly over the ranks; 5 SGD + momentum steps. After construction, all ranks must hold
identical parameters and buffers, bit for bit; after every step identical parameters; when a
training forward reaches the wrapped model (DDP has broadcast rank 0's buffers) identical buffers too,
and after sync_buffers() at the end (checked here; an exception aborts the job). Rank 0 writes the
final state to OUT.npz.
"""
import sys

import numpy as np

import pycnn as pc
from pycnn import nn, optim
from pycnn.nn.parallel import DistributedDataParallel as DDP

GLOBAL_BATCH, STEPS = 64, 5


def build(name):
    if name == "lenet5":
        return pc.models.lenet5(), (1, 28, 28)
    if name == "residual_concat":
        block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
            nn.Residual(block),
            nn.Concat(nn.Conv2d(4, 3, 1), nn.Sequential(nn.Conv2d(4, 2, 3, padding=1), nn.ReLU())),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5 * 4 * 4, 10)), (3, 8, 8)
    if name == "bn_dropout":
        return nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(6 * 4 * 4, 16), nn.BatchNorm1d(16), nn.ReLU(),
            nn.Linear(16, 10)), (3, 8, 8)
    raise ValueError(name)


def check_identical(model, when, params_only=False):
    state = dict(model.named_parameters()) if params_only else model.state_dict()
    mine = [np.asarray(t).tobytes() for t in state.values()]
    for r, other in enumerate(pc.distributed.all_gather_object(mine)):
        if other != mine:
            names = [k for (k, a), b in zip(state.items(), other) if np.asarray(a).tobytes() != b]
            raise AssertionError(f"{when}: rank {pc.distributed.get_rank()} and rank {r} differ in {names}")


def main(name, out, seed_base=100):
    pc.distributed.init_process_group(timeout=60)
    rank, world = pc.distributed.get_rank(), pc.distributed.get_world_size()
    pc.manual_seed(seed_base + rank)  # ranks start different on purpose
    model, shape = build(name)
    ddp = DDP(model)
    check_identical(ddp, "after construction")
    model.register_forward_pre_hook(lambda m, args: check_identical(m, "when the wrapped model's forward starts"))
    opt = optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    crit = nn.CrossEntropyLoss()
    data = np.random.default_rng(7)
    per_rank = GLOBAL_BATCH // world
    for step in range(STEPS):
        x = data.standard_normal((GLOBAL_BATCH,) + shape).astype(np.float32)
        y = data.integers(0, 10, GLOBAL_BATCH)
        xs, ys = x[rank * per_rank:(rank + 1) * per_rank], y[rank * per_rank:(rank + 1) * per_rank]
        loss = crit(ddp(pc.tensor(xs)), pc.tensor(ys))
        opt.zero_grad()
        ddp.backward(crit.backward())
        opt.step()
        check_identical(ddp, f"after step {step + 1} (loss {loss.item():.4f})", params_only=True)
    ddp.sync_buffers()
    check_identical(ddp, "after sync_buffers()")
    if rank == 0:
        np.savez(out, **{k: np.asarray(v) for k, v in ddp.state_dict().items()})
    pc.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
