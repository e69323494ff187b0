"""Python threads: the core's ops release the GIL and are safe to run from several threads.

- Two threads training two small models at once (manual loop, SGD) end with weights bit-identical
  to training the same models one after the other.
- While one thread runs a long op (conv2d forward/backward, max_pool2d, linear), another Python
  thread keeps running: the op does not hold the GIL.
- pc.set_num_threads(n) applies to ops called from any Python thread.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import pycnn as pc
from pycnn import functional as F
from pycnn import nn, optim


def _in_thread(fn, *args):
    out, err = [], []

    def run():
        try:
            out.append(fn(*args))
        except BaseException as e:  # pragma: no cover - reported below
            err.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if err:
        raise err[0]
    return out[0]


@pytest.fixture
def worker_thread_count():
    """Sets the calling (main) thread's OpenMP/BLAS thread count to the one a fresh thread uses, and
    restores it afterwards: training in the main thread and in worker threads then run the same
    kernels with the same partitioning (results of reductions depend on the thread count)."""
    before = pc.get_num_threads()
    fresh = _in_thread(pc.get_num_threads)
    pc.set_num_threads(fresh)
    yield fresh
    pc.set_num_threads(before)


# ---------------------------------------------------------------------------- training in threads
def make_model(seed):
    pc.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=(1, 0)), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Dropout(0.0), nn.Linear(8 * 2 * 1, 3),
    )


def make_data(seed, n=96):
    r = np.random.default_rng(seed)
    return r.standard_normal((n, 1, 8, 8)).astype(np.float32), r.integers(0, 3, n).astype(np.int64)


def train(model, x, y, steps=25, batch=32, start=None):
    """A manual loop: forward, loss, zero_grad, backward, SGD step. Returns the state_dict as NumPy."""
    crit = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    if start is not None:
        start.wait()
    for i in range(steps):
        j = (i * batch) % len(x)
        xb, yb = x[j:j + batch], y[j:j + batch]
        logits = model(xb)
        crit(logits, yb)
        opt.zero_grad()
        model.backward(crit.backward())
        opt.step()
    return {k: np.array(v.numpy(), copy=True) for k, v in model.state_dict().items()}


def assert_same_bits(a, b, what):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, (what, k)
        assert np.array_equal(a[k], b[k]), f"{what}: {k} differs (max |diff| {np.abs(a[k] - b[k]).max()})"


@pytest.mark.parametrize("rounds", [3])
def test_concurrent_training_is_bit_identical_to_sequential(rounds, worker_thread_count):
    data = [make_data(10), make_data(11)]
    # one after the other, in this thread
    expected = [train(make_model(1), *data[0]), train(make_model(2), *data[1])]
    assert not all(np.array_equal(expected[0][k], expected[1][k]) for k in expected[0])
    for _ in range(rounds):
        models = [make_model(1), make_model(2)]  # built here: manual_seed is global state
        results, errors = [None, None], []
        start = threading.Barrier(2)

        def work(i):
            try:
                results[i] = train(models[i], *data[i], start=start)
            except BaseException as e:  # pragma: no cover
                errors.append(e)
                start.abort()

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors
        for i in range(2):
            assert_same_bits(results[i], expected[i], f"model {i} trained concurrently")


def test_same_model_trained_in_a_thread_matches_main_thread(worker_thread_count):
    x, y = make_data(3)
    assert_same_bits(_in_thread(train, make_model(5), x, y), train(make_model(5), x, y), "worker vs main thread")


# ------------------------------------------------------------------------------- GIL released
def _big_case(op, scale):
    r = np.random.default_rng(0)
    if op in ("conv2d", "conv2d_backward"):
        x = r.standard_normal((4 * scale, 16, 32, 32)).astype(np.float32)
        w = r.standard_normal((32, 16, 3, 3)).astype(np.float32)
        if op == "conv2d":
            return lambda: F.conv2d(x, w, padding=1)
        dy = r.standard_normal((4 * scale, 32, 32, 32)).astype(np.float32)
        return lambda: F.conv2d_backward(dy, x, w, padding=1)
    if op == "max_pool2d":
        x = r.standard_normal((8 * scale, 32, 64, 64)).astype(np.float32)
        return lambda: F.max_pool2d(x, 5, stride=1, padding=2)
    if op == "linear":
        x = r.standard_normal((64 * scale, 1024)).astype(np.float32)
        w = r.standard_normal((1024, 1024)).astype(np.float32)
        return lambda: F.linear(x, w)
    raise AssertionError(op)


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return t0, time.perf_counter()


@pytest.mark.parametrize("op", ["conv2d", "conv2d_backward", "max_pool2d", "linear"])
def test_op_releases_the_gil(op):
    """A Python thread keeps counting (and stamping the time every 256 counts) while the main thread
    runs one long op. Were the GIL held for the whole call, the counter thread could not run a
    single bytecode between the first switch interval (5 ms) and the return, so there would be no
    stamp inside the middle half of the call; released, it stamps there at whatever CPU share it
    gets (the test does not depend on how loaded the machine is)."""
    before = pc.get_num_threads()
    pc.set_num_threads(1)  # the op on one core, the counter on another
    stamps, stop = [], threading.Event()

    def count():
        n = 0
        while not stop.is_set():
            n += 1
            if n % 256 == 0:
                stamps.append(time.perf_counter())

    t = threading.Thread(target=count, daemon=True)
    t.start()
    try:
        scale, fn = 1, _big_case(op, 1)
        fn()  # warm-up (workspace, BLAS threads)
        while True:  # grow the input until one call takes >= 0.2 s (cap: 256x)
            t0, t1 = _timed(fn)
            if t1 - t0 >= 0.2 or scale >= 256:
                break
            scale *= 2
            fn = _big_case(op, scale)
    finally:
        stop.set()
        t.join()
        pc.set_num_threads(before)
    dt = t1 - t0
    assert dt >= 0.05, f"{op} too fast to tell ({dt:.3f} s)"
    lo, hi = t0 + 0.25 * dt, t0 + 0.75 * dt
    inside = sum(lo <= s_ < hi for s_ in stamps)
    assert inside >= 3, (f"{op}: the counting thread made no progress during the middle half of a "
                         f"{dt:.3f} s call ({inside} stamps): the op holds the GIL")


# -------------------------------------------------------------------------- set_num_threads
def test_set_num_threads_applies_to_every_thread():
    before = pc.get_num_threads()
    fresh = _in_thread(pc.get_num_threads)
    want = 1 if fresh != 1 else 2
    try:
        pc.set_num_threads(want)
        assert _in_thread(pc.get_num_threads) == want
    finally:
        pc.set_num_threads(before)


def _import_pycnn_in_child(env_changes):
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    env.update(env_changes)
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(pc.__file__)))  # the pycnn under test
    env["PYTHONPATH"] = os.pathsep.join([pkg_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    code = ("import json, os, pycnn; i = pycnn.build_info(); "
            "print(json.dumps({'core': i['blas_core'], 'preferred': pycnn._core.blas_preferred_core(), "
            "'env': {k: v for k, v in os.environ.items() if k.startswith('OPENBLAS_')}}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    return json.loads(out.stdout.strip().splitlines()[-1]), env


def test_blas_kernel_choice_follows_the_user_and_does_not_leak_into_the_environment():
    # A user's OPENBLAS_CORETYPE wins; pycnn's own choice (AVX-512 kernels where the CPU has them,
    # one OpenBLAS thread) is made for its library only and leaves os.environ as it found it.
    import os

    before = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    seen, env = _import_pycnn_in_child({"OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "Haswell")})
    assert seen["core"].lower() == env["OPENBLAS_CORETYPE"].lower()
    assert seen["env"] == {k: v for k, v in env.items() if k.startswith("OPENBLAS_")}  # nothing added
    assert {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")} == before
    if "OPENBLAS_CORETYPE" not in os.environ and seen["preferred"]:
        assert pc.build_info()["blas_core"] == seen["preferred"]


# ------------------------------------------------------------ pycnn owns its threads (issue 15)
# Other libraries in the process set thread pools too: threadpoolctl reaches pycnn's private
# OpenBLAS and the OpenMP thread count of the calling thread, and PyTorch, imported first, loads the
# libgomp that pycnn then shares (before pycnn could ask it for passive waiting). None of that may
# slow pycnn's ops down. The properties are checked directly (OpenBLAS's thread count, pycnn's
# thread count, CPU burnt by idle threads), and the speed with interleaved medians.
def _conv_step():
    r = np.random.default_rng(0)
    x = r.standard_normal((16, 32, 32, 32)).astype(np.float32)
    w = r.standard_normal((32, 32, 3, 3)).astype(np.float32)
    dy = r.standard_normal((16, 32, 32, 32)).astype(np.float32)
    xt, wt, dyt = pc.from_numpy(x), pc.from_numpy(w), pc.from_numpy(dy)
    return lambda: (F.conv2d(xt, wt, padding=1), F.conv2d_backward(dyt, xt, wt, padding=1))


def _median_time(fn, reps=5):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


def _pycnn_blas_threads(threadpoolctl):
    """OpenBLAS's own thread count in pycnn's private copy, as threadpoolctl reads it."""
    import os

    mine = os.path.realpath(pc.build_info()["blas_path"])
    found = [i["num_threads"] for i in threadpoolctl.threadpool_info() if os.path.realpath(i["filepath"]) == mine]
    assert found, "threadpoolctl does not see pycnn's OpenBLAS"
    return found[0]


@pytest.mark.parametrize("n", [1, 2, 4])
def test_threadpool_limits_does_not_reach_pycnn_ops(n):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    step = _conv_step()
    step()
    threads = pc.get_num_threads()
    with threadpoolctl.threadpool_limits(n):  # every BLAS (pycnn's OpenBLAS too) and OpenMP to n
        step()
        assert _pycnn_blas_threads(threadpoolctl) == 1, "pycnn's OpenBLAS would thread inside its OpenMP threads"
        assert pc.get_num_threads() == threads
        omp = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "openmp"]
        assert all(i["num_threads"] == n for i in omp), f"pycnn's op changed the caller's OpenMP setting: {omp}"
    assert _pycnn_blas_threads(threadpoolctl) == 1
    # Speed: medians of interleaved samples, the best of 3 tries against machine noise.
    ratios = []
    for _ in range(3):
        base, limited = [], []
        for _ in range(5):
            base.append(_median_time(step, 1))
            with threadpoolctl.threadpool_limits(n):
                limited.append(_median_time(step, 1))
        ratios.append(sorted(limited)[2] / sorted(base)[2])
        if ratios[-1] <= 1.1:
            break
    assert min(ratios) <= 1.1, f"conv fwd+bwd under threadpool_limits({n}) ran {ratios} x the time without"


def test_pycnn_ops_leave_the_callers_openmp_setting_alone():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    step = _conv_step()
    threads = pc.get_num_threads()
    other = threads + 1
    with threadpoolctl.threadpool_limits(other, user_api="openmp"):
        step()
        omp = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "openmp"]
        assert omp and all(i["num_threads"] == other for i in omp)
    assert pc.get_num_threads() == threads


def test_torch_set_num_threads_and_pycnn_leave_each_other_alone():
    torch = pytest.importorskip("torch")
    step = _conv_step()
    threads, torch_threads = pc.get_num_threads(), torch.get_num_threads()
    other = threads + 1
    try:
        torch.set_num_threads(other)
        step()
        assert pc.get_num_threads() == threads
        assert torch.get_num_threads() == other
    finally:
        torch.set_num_threads(torch_threads)


def _run_child(code, first=""):
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    for var in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):  # pycnn chooses the wait policy itself
        env.pop(var, None)
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(pc.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    out = subprocess.run([sys.executable, "-c", first + code], env=env, capture_output=True, text=True,
                         timeout=600, cwd=os.path.dirname(os.path.abspath(__file__)))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


# Conv fwd+bwd with NumPy (and PyTorch, when imported) work between the calls, as in a training
# script: prints the first quartile of the step times (other processes on the machine only add
# time); then, with nothing between the calls, the CPU that idle
# threads burn in the 50 ms after an op (the main thread sleeps; libgomp's default policy spins).
_IMPORT_ORDER_CHILD = """
import json, time
import numpy as np
import pycnn as pc
from pycnn import functional as F
torch = sys.modules.get("torch")
pc.set_num_threads(2)
r = np.random.default_rng(0)
x = pc.from_numpy(r.standard_normal((16, 32, 32, 32)).astype(np.float32))
w = pc.from_numpy(r.standard_normal((32, 32, 3, 3)).astype(np.float32))
dy = pc.from_numpy(r.standard_normal((16, 32, 32, 32)).astype(np.float32))
a = r.standard_normal((256, 256)).astype(np.float32)
t = torch.randn(8, 16, 32, 32) if torch else None
tw = torch.randn(16, 16, 3, 3) if torch else None
def between():
    b = a
    for _ in range(4):
        b = np.tanh(b @ a)
    if torch:
        torch.nn.functional.conv2d(t, tw, padding=1)
def step():
    F.conv2d(x, w, padding=1); F.conv2d_backward(dy, x, w, padding=1)
steps, burns = [], []
for i in range(16):
    between()
    t0 = time.perf_counter(); step(); steps.append(time.perf_counter() - t0)
time.sleep(0.5)  # NumPy's OpenBLAS threads spin a while after its calls: let them sleep first
for i in range(9):
    step()
    c0 = time.process_time(); time.sleep(0.05); burns.append(time.process_time() - c0)
print(json.dumps({"step": sorted(steps[1:])[3], "idle_burn": sorted(burns)[4]}))
"""


def test_torch_imported_first_leaves_pycnn_threads_quiet_when_idle():
    pytest.importorskip("torch")
    first = _run_child(_IMPORT_ORDER_CHILD, first="import sys, torch\n")
    # Measured: 7.5 ms of spinning per op before the fix, 0.05 ms after (and with pycnn first).
    assert first["idle_burn"] < 1e-3, f"idle threads burnt {first['idle_burn'] * 1e3:.2f} ms of CPU after an op"


def test_torch_imported_first_and_used_between_calls_costs_pycnn_nothing():
    pytest.importorskip("torch")
    # Processes of both import orders alternate; the fastest of 3 each is compared, as the load
    # of a shared machine only adds time (3-9x on this 2-core machine during a build). 3 tries: with
    # 2, about one run in eight failed by noise alone (1.12-1.22x, on this session's and the previous
    # session's builds alike, 2026-12-07); the bug this guards against made the step 3-4x slower.
    ratios = []
    for _ in range(3):
        pycnn_first, torch_first = [], []
        for _ in range(3):
            pycnn_first.append(_run_child("import sys, pycnn, torch\n" + _IMPORT_ORDER_CHILD)["step"])
            torch_first.append(_run_child("import sys, torch\n" + _IMPORT_ORDER_CHILD)["step"])
        ratios.append(min(torch_first) / min(pycnn_first))
        if ratios[-1] <= 1.1:
            break
    assert min(ratios) <= 1.1, f"with torch imported first a pycnn step took {ratios} x the time"


# ---------------------------------------------------------------------------- where the threads run
# A heavy conv on 2 threads; prints the calling thread's CPU mask before and after, every thread's
# mask, and the output (compared against one thread).
_PLACEMENT_CHILD = """
import json, os
import numpy as np
import pycnn as pc
from pycnn import functional as F
r = np.random.default_rng(0)
x = pc.from_numpy(r.standard_normal((16, 32, 32, 32)).astype(np.float32))
w = pc.from_numpy(r.standard_normal((32, 32, 3, 3)).astype(np.float32))
dy = pc.from_numpy(r.standard_normal((16, 32, 32, 32)).astype(np.float32))
def run(n):
    pc.set_num_threads(n)
    y = F.conv2d(x, w, padding=1)
    return [y.numpy().tolist()] + [g.numpy().ravel()[:4096].tolist() for g in F.conv2d_backward(dy, x, w, padding=1)]
before = sorted(os.sched_getaffinity(0))
two = run(2)
after = sorted(os.sched_getaffinity(0))
masks = [sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")]
print(json.dumps({"before": before, "after": after, "masks": masks, "same": two == run(1)}))
"""


def _linux_with_cpus(n):
    import os
    import sys

    if not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < n:
        pytest.skip(f"needs Linux and {n} CPUs")


def test_workers_leave_the_callers_cpu_and_the_caller_gets_its_mask_back():
    _linux_with_cpus(2)
    out = _run_child(_PLACEMENT_CHILD)
    before = set(out["before"])
    assert out["after"] == out["before"], "a heavy conv left the calling thread pinned"
    # The worker: the caller's CPUs but one (the caller's own when the team started).
    off = [m for m in out["masks"] if set(m) < before and len(m) == len(before) - 1]
    assert off, f"no thread kept off one CPU of the caller's {sorted(before)}: masks {out['masks']}"
    assert out["same"], "2 threads gave other results than 1"


def test_placement_stays_inside_a_callers_single_cpu():
    _linux_with_cpus(1)
    out = _run_child(_PLACEMENT_CHILD, first="import os\nos.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n")
    only = out["before"]
    assert len(only) == 1 and out["after"] == only
    assert all(m == only for m in out["masks"]), f"a thread left the caller's CPU {only}: {out['masks']}"
    assert out["same"]
