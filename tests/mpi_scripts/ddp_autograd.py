"""Run with `mpiexec -n 2 python ddp_autograd.py`: DistributedDataParallel's averaging whichever way
the gradients come, for an explicit model (every module has a backward: DDP is one node on the tape)
and for a forward-only model (traced by autograd: DDP's node runs its tape, then averages), through
`ddp.backward(g)` and through `loss.backward()`. Each rank takes half of a batch of 8; the gradients
must equal one process's on the whole batch (to float32 rounding), else the job fails."""
import numpy as np

import pycnn as pc
import pycnn.functional as F
from pycnn import nn
from pycnn.nn.parallel import DistributedDataParallel as DDP


class ForwardOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        y = F.relu(self.conv(x))
        return self.fc(y.reshape(y.shape[0], -1))


def explicit():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


def main():
    pc.distributed.init_process_group(timeout=60)
    rank, world = pc.distributed.get_rank(), pc.distributed.get_world_size()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    share = slice(rank * 8 // world, (rank + 1) * 8 // world)
    for make in (explicit, ForwardOnly):
        for route in ("ddp.backward", "loss.backward"):
            pc.manual_seed(3)
            reference, model = make(), make()
            model.load_state_dict(reference.state_dict())
            ddp = DDP(model)
            assert ddp._on_tape() == (make is ForwardOnly)
            crit = nn.CrossEntropyLoss()
            loss = crit(ddp(pc.tensor(x[share])), pc.tensor(y[share]))
            if route == "ddp.backward":
                ddp.backward(crit.backward())
            else:
                loss.backward()
            whole = nn.CrossEntropyLoss()
            whole(reference(pc.tensor(x)), pc.tensor(y))
            reference.backward(whole.backward())
            for (name, a), b in zip(model.named_parameters(), reference.parameters()):
                np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-5, atol=1e-7,
                                           err_msg=f"{make.__name__}, {route}, {name}")
    print(f"rank {rank}: gradients averaged on every route", flush=True)


if __name__ == "__main__":
    main()
