"""fork safety: a process forked after pycnn ran multi-threaded (OpenMP) ops runs pycnn in the child.

GCC's libgomp is not fork-safe: before the fix, the child's first parallel op waited forever for the
parent's worker threads. Every case runs in a fresh interpreter (subprocess with a timeout), and
every fork waits for its child with a deadline, so a hang fails the test instead of the suite.

- os.fork(): conv2d forward/backward, max/avg pooling, elementwise ops and linear in the child give
  the parent's results bit for bit, on the parent's thread count; again in a grandchild.
- multiprocessing with the "fork" start method: a Pool maps pycnn work over its workers.
- OpenBLAS stays sane in the child when threadpoolctl had raised pycnn's OpenBLAS in the parent.
- PyTorch imported first (the child then shares torch's libgomp); a fork from a second Python thread.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import pycnn as pc

# Seconds a forked child may take for a few small ops (a fraction of a second when it works).
CHILD_DEADLINE = 60

PRELUDE = textwrap.dedent(f"""
    import json, os, signal, sys, time
    import numpy as np
    import pycnn as pc
    from pycnn import functional as F

    pc.set_num_threads(2)  # a real thread pool even on a one-core machine

    def work(seed=0):
        # Sizes above every op's parallel threshold: each op runs OpenMP loops on 2 threads.
        r = np.random.default_rng(seed)
        x = r.standard_normal((8, 16, 32, 32)).astype(np.float32)
        w = r.standard_normal((16, 16, 3, 3)).astype(np.float32)
        y = F.conv2d(x, w, padding=1)
        dx, dw, db = F.conv2d_backward(y, x, w, padding=1)
        big = r.standard_normal((8, 16, 64, 64)).astype(np.float32)
        xl = r.standard_normal((256, 512)).astype(np.float32)
        wl = r.standard_normal((384, 512)).astype(np.float32)
        out = {{"conv": y, "conv_dx": dx, "conv_dw": dw, "max_pool": F.max_pool2d(big, 3, 2, 1),
               "avg_pool": F.avg_pool2d(big, 2), "relu": F.relu(big), "sigmoid": F.sigmoid(big),
               "tanh": F.tanh(big), "linear": F.linear(xl, wl)}}
        return {{k: np.array(v.numpy() if hasattr(v, "numpy") else v, copy=True) for k, v in out.items()}}

    def fork_and_check(fn, deadline={CHILD_DEADLINE}):
        # Runs fn() in a forked child; 'ok', 'failed: ...' (fn raised or returned False) or 'hung'.
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                msg = "ok" if fn() else "failed: returned False"
            except BaseException as e:
                msg = "failed: " + repr(e)
            os.write(w, msg.encode()[:4000])
            os._exit(0)
        os.close(w)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                with os.fdopen(r) as f:
                    return f.read() or f"failed: child exit status {{status}}"
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        return "hung"

    def same_as(expected, seed=0):
        got = work(seed)
        bad = [k for k in expected if not np.array_equal(got[k], expected[k])]
        if bad:
            raise AssertionError(f"differs from the parent: {{bad}}")
        return True

    def report(**kw):
        print("RESULT " + json.dumps(kw), flush=True)
""")


def run_script(body: str, timeout: float = 4 * CHILD_DEADLINE, first: str = "") -> dict:
    """Runs first + PRELUDE + body in a fresh interpreter that imports the pycnn under test."""
    env = dict(os.environ)
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(pc.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    code = first + PRELUDE + textwrap.dedent(body)
    try:
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              timeout=timeout, cwd=os.path.dirname(os.path.abspath(__file__)))
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the script hung for {timeout} s (stdout: {e.stdout!r})")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(lines[-1][len("RESULT "):])


def test_os_fork_child_runs_conv_pooling_and_elementwise_ops():
    res = run_script("""
        expected = work()           # the parent's thread pool now exists
        # The child: the parent's results on the parent's thread count, from a fresh pool (it
        # began with one thread, and its loops started more).
        child = fork_and_check(lambda: same_as(expected) and pc.get_num_threads() == 2
                               and len(os.listdir("/proc/self/task")) >= 2)
        after = same_as(expected)   # the parent still works (its pool restarts)
        grandchild = fork_and_check(lambda: fork_and_check(lambda: same_as(expected)) == "ok")
        report(child=child, parent_after=after, grandchild=grandchild)
    """)
    assert res == {"child": "ok", "parent_after": True, "grandchild": "ok"}


def test_fork_pool_maps_pycnn_work():
    res = run_script("""
        import multiprocessing as mp

        def job(seed):
            got = work(seed)
            return {k: float(np.float64(v).sum()) for k, v in got.items()}

        seeds = [0, 1, 2, 3]
        expected = [job(s) for s in seeds]  # in the parent first: its thread pool exists
        pool = mp.get_context("fork").Pool(2)
        try:
            got = pool.map_async(job, seeds).get(timeout=%d)
            status = "ok" if got == expected else "differs"
        except mp.TimeoutError:
            status = "hung"
        finally:
            pool.terminate()
            pool.join()
        report(pool=status)
    """ % CHILD_DEADLINE)
    assert res == {"pool": "ok"}


def test_child_openblas_is_sane_after_threadpoolctl_raised_it():
    pytest.importorskip("threadpoolctl")
    res = run_script("""
        from threadpoolctl import threadpool_limits
        expected = work()
        with threadpool_limits(2, user_api="blas"):  # pycnn's OpenBLAS and NumPy's get 2 threads
            np.ones((512, 512), np.float32) @ np.ones((512, 512), np.float32)
            inside = same_as(expected)
            child = fork_and_check(lambda: same_as(expected) and pc._core.blas_num_threads() == 1)
        report(inside=inside, child=child)
    """)
    assert res == {"inside": True, "child": "ok"}


def test_fork_from_a_second_thread_that_ran_ops():
    # OpenMP keeps one pool per thread that starts parallel loops: here both threads have one.
    res = run_script("""
        import threading
        expected = work()
        out = []

        def second():
            same_as(expected)
            out.append(fork_and_check(lambda: same_as(expected)))

        t = threading.Thread(target=second)
        t.start(); t.join()
        report(child=out[0])
    """)
    assert res == {"child": "ok"}


def test_fork_with_torch_imported_first():
    # pycnn's loops then run on PyTorch's copy of libgomp, which torch's own loops share.
    pytest.importorskip("torch")
    res = run_script("""
        t = torch.nn.functional.conv2d(torch.randn(8, 16, 32, 32), torch.randn(16, 16, 3, 3))
        expected = work()
        child = fork_and_check(lambda: same_as(expected) and torch.relu(t).shape == t.shape)
        report(child=child)
    """, first="import torch\n")
    assert res == {"child": "ok"}
