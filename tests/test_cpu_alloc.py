"""The CPU caching allocator (csrc/cpu_alloc.*): repeated shapes stop reaching the system, stats
stay consistent across threads, and the cache can be emptied."""
from __future__ import annotations

import threading

import numpy as np

import pycnn as pc
from pycnn import _core, nn, optim


def _step(model, opt, loss_fn, x, y):
    loss = loss_fn(model(x), y)
    opt.zero_grad()
    model.backward(loss_fn.backward())
    opt.step()


def test_a_repeated_training_step_allocates_nothing_new_from_the_system():
    _core.cpu_empty_cache()  # start below the idle cap, whatever earlier tests left cached
    pc.manual_seed(0)
    model = pc.models.lenet5()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = pc.tensor(rng.standard_normal((32, 1, 28, 28), dtype=np.float32))
    y = pc.tensor(rng.integers(0, 10, 32))
    for _ in range(3):
        _step(model, opt, loss_fn, x, y)
    before = _core.cpu_memory_stats()
    for _ in range(20):
        _step(model, opt, loss_fn, x, y)
    after = _core.cpu_memory_stats()
    assert after["system_allocs"] == before["system_allocs"], (before, after)
    assert after["cache_hits"] > before["cache_hits"]
    assert after["allocated"] == before["allocated"]


def test_freed_blocks_are_reused_and_empty_cache_returns_them():
    _core.cpu_empty_cache()
    base = _core.cpu_memory_stats()
    t = pc.zeros(300, 1000)  # 1.2 MB: cached size class
    mid = _core.cpu_memory_stats()
    assert mid["allocated"] - base["allocated"] == 1_200_000
    del t
    freed = _core.cpu_memory_stats()
    assert freed["allocated"] == base["allocated"] and freed["cached"] >= 1_200_000
    u = pc.ones(290, 1000)  # a little smaller: same size class, same block
    assert _core.cpu_memory_stats()["system_allocs"] == freed["system_allocs"]
    np.testing.assert_array_equal(np.asarray(u), 1.0)  # reused memory is written, not stale
    del u
    _core.cpu_empty_cache()
    assert _core.cpu_memory_stats()["cached"] == 0


def test_allocations_from_many_threads_keep_the_books_balanced():
    base = _core.cpu_memory_stats()["allocated"]
    errors = []

    def work(seed):
        try:
            r = np.random.default_rng(seed)
            for _ in range(200):
                n = int(r.integers(1, 200_000))
                a = pc.zeros(n)
                b = pc.ones(n)
                assert float(np.asarray(a).sum()) == 0.0 and float(np.asarray(b).sum()) == n
        except Exception as e:  # reported below: an assertion in a thread would be lost
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _core.cpu_memory_stats()["allocated"] == base
