"""pc.distributed, nn.parallel.DistributedDataParallel, data.DistributedSampler and the Trainer under
several processes. The multi-process cases start `mpiexec -n 2 python tests/mpi_scripts/<script>.py`
(mpi4py + mpich from the `test` extra); they skip when mpi4py or mpiexec is missing."""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn, optim
from pycnn.data import DataLoader, DistributedSampler, TensorDataset

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "mpi_scripts")
PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(pc.__file__)))  # installed or src/
sys.path.insert(0, SCRIPTS)
import ddp_steps  # noqa: E402


def _mpiexec():
    pytest.importorskip("mpi4py", reason="needs mpi4py (pip install mpi4py mpich)")
    exe = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    exe = exe if os.path.exists(exe) else shutil.which("mpiexec")
    if exe is None:
        pytest.skip("needs mpiexec (pip install mpich)")
    return exe


def mpirun(n, *args, timeout=120, module=False):
    """Runs `mpiexec -n N python <script or -m module> args` with pycnn importable; returns (proc, seconds)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("OMP_NUM_THREADS", None)
    target = ["-m", *args] if module else [os.path.join(SCRIPTS, args[0]), *args[1:]]
    t0 = time.perf_counter()
    proc = subprocess.run([_mpiexec(), "-n", str(n), sys.executable, *target], cwd=HERE, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - t0


def _ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


# ---------------------------------------------------------------------------------------------------
# DistributedSampler and DataLoader(sampler=...), in process
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,replicas", [(10, 3), (12, 4), (7, 2), (2, 5)])
def test_sampler_shards_are_disjoint_and_cover_the_dataset(n, replicas):
    shards = [DistributedSampler(range(n), replicas, r, seed=3).indices() for r in range(replicas)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == -(-n // replicas)
    everything = np.concatenate(shards)
    assert set(everything.tolist()) == set(range(n))
    assert len(everything) - len(set(everything.tolist())) == len(everything) - n  # only the padding repeats


def test_sampler_drop_last_cuts_instead_of_padding():
    shards = [DistributedSampler(range(10), 3, r, shuffle=False, drop_last=True).indices() for r in range(3)]
    assert [s.tolist() for s in shards] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]


def test_sampler_set_epoch_reshuffles_and_a_rerun_repeats():
    s = DistributedSampler(range(100), 2, 1, seed=5)
    first = s.indices()
    s.set_epoch(1)
    second = s.indices()
    assert not np.array_equal(first, second)
    again = DistributedSampler(range(100), 2, 1, seed=5)
    again.set_epoch(1)
    np.testing.assert_array_equal(again.indices(), second)
    s.set_epoch(0)
    np.testing.assert_array_equal(s.indices(), first)
    assert not np.array_equal(DistributedSampler(range(100), 2, 1, seed=6).indices(), first)


def test_sampler_matches_pytorch_order_without_shuffle():
    torch_data = pytest.importorskip("torch.utils.data")
    for n, k, drop in [(10, 3, False), (10, 3, True), (2, 5, False), (9, 4, False)]:
        for r in range(k):
            ours = list(DistributedSampler(range(n), k, r, shuffle=False, drop_last=drop))
            theirs = list(torch_data.DistributedSampler(range(n), k, r, shuffle=False, drop_last=drop))
            assert ours == theirs, (n, k, r, drop)


def test_sampler_errors():
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got 2"):
        DistributedSampler(range(4), 2, 2)
    with pytest.raises(ValueError, match="num_replicas must be an int >= 1"):
        DistributedSampler(range(4), 0, 0)
    with pytest.raises(TypeError, match="must define __len__"):
        DistributedSampler(object(), 2, 0)
    if not pc.distributed.is_initialized():
        with pytest.raises(RuntimeError, match="init_process_group"):
            DistributedSampler(range(4))


def test_dataloader_takes_a_sampler():
    ds = TensorDataset(np.arange(10, dtype=np.float32), np.arange(10))
    sampler = DistributedSampler(ds, 2, 1, shuffle=False)
    loader = DataLoader(ds, batch_size=2, sampler=sampler)
    assert len(loader) == 3
    assert [b[1].tolist() for b in loader] == [[1, 3], [5, 7], [9]]
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, shuffle=True, sampler=sampler)
    with pytest.raises(TypeError, match="sampler must be an iterable"):
        DataLoader(ds, sampler=3)


# ---------------------------------------------------------------------------------------------------
# the process group in this process (MPI singleton: world size 1), and what needs no MPI at all
# ---------------------------------------------------------------------------------------------------
def test_without_mpi4py_the_error_says_what_to_install(monkeypatch):
    from pycnn.distributed import _mpi

    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r'pip install "pycnn\[mpi\]".*pip install mpi4py mpich'):
        _mpi.import_mpi()
    assert "not installed" in _mpi.status()


def test_nccl_not_found_says_what_to_install(monkeypatch):
    from pycnn.distributed import _nccl

    monkeypatch.setattr(_nccl, "_lib", None)
    monkeypatch.setattr(_nccl, "_candidates", lambda: iter(["/nonexistent/libnccl.so.2", "libm.so.6"]))
    with pytest.raises(_nccl.NcclNotFoundError,
                       match=r"pip install nvidia-nccl-cu13.*libm.so.6 \(no ncclCommInitRank\)"):
        _nccl.load()
    assert pc.distributed.status()["nccl"].startswith("not found (pip install nvidia-nccl-cu13")


def test_collectives_need_a_process_group():
    if pc.distributed.is_initialized():
        pytest.skip("a process group is open in this process")
    assert pc.distributed.get_rank() == 0 and pc.distributed.get_world_size() == 1
    with pytest.raises(RuntimeError, match="init_process_group"):
        pc.distributed.all_reduce(pc.zeros(2))
    with pytest.raises(RuntimeError, match="init_process_group"):
        nn.parallel.DistributedDataParallel(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="backend must be None, 'mpi' or 'nccl'"):
        pc.distributed.init_process_group(backend="gloo")
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0"):
        pc.distributed.init_process_group(timeout=0)


@pytest.fixture
def group():
    pytest.importorskip("mpi4py", reason="needs mpi4py (pip install mpi4py mpich)")
    threads = pc.get_num_threads()
    pc.distributed.init_process_group(timeout=30)
    yield
    pc.distributed.destroy_process_group()
    pc.set_num_threads(threads)


def test_single_process_group_collectives(group):
    assert pc.distributed.is_initialized() and pc.distributed.get_world_size() == 1
    t = pc.tensor([1.0, -2.0, 3.0])
    for op in ("sum", "mean", "max", "min"):
        pc.distributed.all_reduce(t, op)
    np.testing.assert_array_equal(t.numpy(), [1.0, -2.0, 3.0])
    pc.distributed.broadcast(t, 0)
    pc.distributed.barrier()
    with pytest.raises(ValueError, match="op must be one of"):
        pc.distributed.all_reduce(t, "prod")
    with pytest.raises(ValueError, match=r"src must be a rank in \[0, 1\)"):
        pc.distributed.broadcast(t, 1)
    with pytest.raises(TypeError, match="op='mean' needs a floating tensor"):
        pc.distributed.all_reduce(pc.tensor([1, 2]), "mean")
    with pytest.raises(TypeError, match="expected a pycnn Tensor"):
        pc.distributed.all_reduce([1.0])
    with pytest.raises(RuntimeError, match="already initialized"):
        pc.distributed.init_process_group()


def test_ddp_forwards_state_and_skips_frozen_parameters(group):
    pc.manual_seed(0)
    model = pc.models.lenet5()
    model[0].freeze()
    ddp = nn.parallel.DistributedDataParallel(model)
    assert list(ddp.state_dict()) == list(model.state_dict())  # no "module." prefix
    assert [id(p) for p in ddp.parameters()] == [id(p) for p in model.parameters()]
    ddp.eval()
    assert not model.training and not model[3].training
    ddp.train()
    x = pc.randn(4, 1, 28, 28)
    crit = nn.CrossEntropyLoss()
    crit(ddp(x), pc.tensor([0, 1, 2, 3]))
    ddp.backward(crit.backward())
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert model[0].weight.grad is None
    assert ddp.comm_bytes == 4 * sum(p.numel() for p in trainable)
    ddp.load_state_dict(model.state_dict())


def test_ddp_gradients_equal_the_plain_model_s(group):
    pc.manual_seed(1)
    model = pc.models.lenet5()
    twin = pc.models.lenet5()
    twin.load_state_dict(model.state_dict())
    ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.05)  # several buckets
    x, y = pc.randn(8, 1, 28, 28), pc.tensor(np.arange(8) % 10)
    crit = nn.CrossEntropyLoss()
    crit(twin(x), y)
    twin.backward(crit.backward())
    crit(ddp(x), y)
    assert ddp.backward(crit.backward(), need_input_grad=False) is None
    assert len(ddp._buckets) > 2
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy(), err_msg=name)


def test_ddp_starts_buckets_while_a_sequential_is_still_in_backward(group, monkeypatch):
    from pycnn.nn import parallel

    events = []
    real = parallel._dist.all_reduce
    monkeypatch.setattr(parallel._dist, "all_reduce", lambda t, op, async_op: events.append("reduce") or
                        real(t, op, async_op=async_op))
    model = pc.models.lenet5()
    for i, layer in enumerate(model):
        original = layer.backward
        layer.backward = (lambda orig, i: lambda *a, **k: events.append(i) or orig(*a, **k))(original, i)
    ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.01)
    crit = nn.CrossEntropyLoss()
    crit(ddp(pc.randn(2, 1, 28, 28)), pc.tensor([1, 2]))
    events.clear()
    ddp.backward(crit.backward())
    assert events.index("reduce") < events.index(0), events  # the last layer's bucket left before conv1's backward
    assert events[-1] == "reduce" and events.count("reduce") == len(ddp._buckets)


# ---------------------------------------------------------------------------------------------------
# two processes
# ---------------------------------------------------------------------------------------------------
def _single_process_reference(name):
    pc.manual_seed(100)  # rank 0's seed: DDP gives every rank rank 0's parameters
    model, shape = ddp_steps.build(name)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    crit = nn.CrossEntropyLoss()
    data = np.random.default_rng(7)
    for _ in range(ddp_steps.STEPS):
        x = data.standard_normal((ddp_steps.GLOBAL_BATCH,) + shape).astype(np.float32)
        y = data.integers(0, 10, ddp_steps.GLOBAL_BATCH)
        crit(model(pc.tensor(x)), pc.tensor(y))
        opt.zero_grad()
        model.backward(crit.backward())
        opt.step()
    return {k: np.asarray(v) for k, v in model.state_dict().items()}


def ddp_steps_initial(name):
    pc.manual_seed(100)
    model, _ = ddp_steps.build(name)
    return {k: np.asarray(v) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["lenet5", "residual_concat"])
def test_two_ranks_of_32_train_like_one_process_of_64(name, tmp_path):
    out = str(tmp_path / "ranks.npz")
    proc, _ = mpirun(2, "ddp_steps.py", name, out)  # also checks: ranks identical bit for bit throughout
    _ok(proc)
    got = np.load(out)
    for k, want in _single_process_reference(name).items():
        np.testing.assert_allclose(got[k], want, rtol=1e-5, atol=1e-6, err_msg=k)
        assert not np.array_equal(got[k], ddp_steps_initial(name)[k]), f"{k} did not train"


def test_batchnorm_and_dropout_train_under_ddp_and_ranks_agree(tmp_path):
    out = str(tmp_path / "bn.npz")
    proc, _ = mpirun(2, "ddp_steps.py", "bn_dropout", out)
    _ok(proc)
    got = np.load(out)
    start = ddp_steps_initial("bn_dropout")
    assert not np.array_equal(got["1.running_mean"], start["1.running_mean"])
    assert not np.array_equal(got["0.weight"], start["0.weight"])


def test_ddp_averages_through_autograd_for_explicit_and_forward_only_models():
    proc, _ = mpirun(2, "ddp_autograd.py")  # ddp.backward(g) and loss.backward(), two kinds of model
    _ok(proc)
    assert proc.stdout.count("gradients averaged on every route") == 2


def test_a_rerun_repeats_bit_for_bit(tmp_path):
    runs = []
    for i in range(2):
        out = str(tmp_path / f"run{i}.npz")
        _ok(mpirun(2, "ddp_steps.py", "bn_dropout", out)[0])
        runs.append(np.load(out))
    for k in runs[0].files:
        assert runs[0][k].tobytes() == runs[1][k].tobytes(), k


def test_trainer_under_two_ranks(tmp_path):
    proc, _ = mpirun(2, "trainer_fit.py", str(tmp_path), timeout=300)
    _ok(proc)
    ranks = [json.load(open(tmp_path / f"rank-{r}.json")) for r in range(2)]
    assert ranks[0]["world_size"] == 2 and ranks[0]["threads"] == max(1, (os.cpu_count() or 1) // 2)
    assert ranks[0]["history"] == ranks[1]["history"]  # identical History on every rank
    assert ranks[0]["evaluate"] == ranks[1]["evaluate"]
    assert ranks[0]["evaluate"]["accuracy"] >= 0.97, ranks[0]["evaluate"]
    assert ranks[0]["predict_accuracy"] == pytest.approx(ranks[0]["evaluate"]["accuracy"])
    assert ranks[0]["history"]["val_accuracy"][-1] == pytest.approx(ranks[0]["evaluate"]["accuracy"])
    ckpt = sorted(f for f in os.listdir(tmp_path) if not f.startswith("rank-"))  # one checkpoint, by rank 0:
    assert len(ckpt) == 2 and ckpt[0] == "ckpt.safetensors" and ckpt[1].startswith("ckpt.safetensors.optim"), ckpt
    model = pc.models.lenet5()
    model.load_state_dict(pc.load(str(tmp_path / "ckpt.safetensors")))  # plain names, no wrapper prefix


def test_a_rank_that_raises_ends_the_job_within_seconds():
    proc, seconds = mpirun(2, "failures.py", "raise", timeout=60)
    assert proc.returncode != 0
    assert "ValueError: rank 1 broke on purpose" in proc.stderr
    assert "aborting the whole job" in proc.stderr
    assert seconds < 15, seconds


def test_a_collective_past_the_timeout_raises():
    proc, seconds = mpirun(2, "failures.py", "timeout", timeout=60)
    assert proc.returncode != 0
    assert "DistributedTimeoutError" in proc.stderr and "barrier on rank 0 of 2 waited more than 2 s" in proc.stderr
    assert seconds < 30, seconds  # rank 1 would sleep 60 s: the abort ended it


def test_ddp_names_the_first_parameter_that_differs_between_ranks():
    proc, _ = mpirun(2, "failures.py", "mismatch", timeout=60)
    assert proc.returncode != 0
    assert "first mismatch: rank 1: parameter '0.weight' (9, 4)" in proc.stderr
    assert "rank 0 has parameter '0.weight' (8, 4)" in proc.stderr


def test_pycnn_train_under_mpiexec():
    proc, _ = mpirun(2, "pycnn", "train", "--epochs", "1", "--limit", "600", "--quiet", module=True, timeout=120)
    _ok(proc)
    assert proc.stdout.count("test accuracy:") == 1, proc.stdout  # printed by rank 0 only
    assert "2 processes" in proc.stdout


def test_info_says_whether_mpi_and_nccl_are_usable():
    info = pc.distributed.status()
    assert set(info) == {"mpi", "nccl"}
    from pycnn import cli
    import io
    import contextlib

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        cli.main(["info"])
    assert "mpi " in buf.getvalue() and "nccl " in buf.getvalue()


# ---------------------------------------------------------------------------------------------------
# NCCL: a real run where a GPU and NCCL are present (one rank on one GPU is a real NCCL run)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.cuda
def test_nccl_single_rank_collectives_and_ddp_step():
    if not pc.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("mpi4py")
    from pycnn.distributed import _nccl

    try:
        _nccl.load()
    except _nccl.NcclNotFoundError as e:
        pytest.skip(str(e))
    threads = pc.get_num_threads()
    pc.distributed.init_process_group(backend="nccl", timeout=60)
    try:
        t = pc.tensor([1.0, 2.0, 3.0], device="cuda:0")
        pc.distributed.all_reduce(t, "sum")
        pc.distributed.all_reduce(t, "mean")
        pc.distributed.broadcast(t, 0)
        np.testing.assert_array_equal(t.numpy(), [1.0, 2.0, 3.0])
        pc.manual_seed(0)
        model = pc.models.lenet5().to("cuda:0")
        twin = pc.models.lenet5().to("cuda:0")
        twin.load_state_dict(model.state_dict())
        ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.05)
        x, y = pc.randn(8, 1, 28, 28, device="cuda:0"), pc.tensor(np.arange(8), device="cuda:0")
        crit = nn.CrossEntropyLoss()
        crit(twin(x), y)
        twin.backward(crit.backward())
        crit(ddp(x), y)
        ddp.backward(crit.backward())
        for a, b in zip(model.parameters(), twin.parameters()):
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6, atol=1e-7)
    finally:
        pc.distributed.destroy_process_group()
        pc.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------
# the scaling model of benchmarks/distributed.py
# ---------------------------------------------------------------------------------------------------
def test_scaling_model_largest_p_matches_a_search():
    sys.path.insert(0, os.path.dirname(HERE))
    from benchmarks import distributed as bench

    grad = 4 * 11_689_512  # ResNet-18's gradient in float32
    assert bench.ring_allreduce_s(2, grad, 100) == pytest.approx(grad / 12.5e9)
    for compute in (0.002, 0.02, 0.05, 0.2, 2.0):
        for gbit in (25, 100):
            for overlap in (False, True):
                def eff(p):
                    t = bench.ring_allreduce_s(p, grad, gbit)
                    return compute / max(compute, t) if overlap else compute / (compute + t)
                ok = [p for p in range(1, 5000) if eff(p) >= 0.8 - 1e-12]
                got = bench.largest_p(compute, grad, gbit, overlap)
                if got is None:
                    assert len(ok) == 4999 and eff(10**9) >= 0.8 - 1e-9
                else:
                    assert got == max(ok), (compute, gbit, overlap)
