"""Pass safety of the explicit route (issue 10.1): a backward reads the caches of the forward pass it
differentiates, or refuses with a RuntimeError naming the layer; forwards in eval mode or under
pc.no_grad() never disturb the caches of the last training pass, and no_grad keeps none at all."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn


def _data(seed=0, n=6):
    r = np.random.default_rng(seed)
    x = pc.from_numpy(r.standard_normal((n, 1, 28, 28)).astype(np.float32))
    y = pc.from_numpy(r.integers(0, 10, n).astype(np.int64))
    return x, y


def _grads(m):
    return [np.array(p.grad.numpy(), copy=True) for p in m.parameters()]


def _reference_grads(model_fn, x, y):
    pc.manual_seed(0)
    m, crit = model_fn(), nn.CrossEntropyLoss()
    crit(m(x), y)
    m.backward(crit.backward())
    return _grads(m)


MODELS = [pc.models.lenet5, lambda: pc.models.resnet18(num_classes=10, in_channels=1)]


@pytest.mark.parametrize("model_fn", MODELS, ids=["lenet5", "resnet18"])
@pytest.mark.parametrize("between", ["eval", "no_grad", "eval_no_grad"])
def test_a_forward_between_loss_and_backward_changes_nothing(model_fn, between):
    x, y = _data(0)
    x_val, _ = _data(1)
    want = _reference_grads(model_fn, x, y)
    pc.manual_seed(0)
    m, crit = model_fn(), nn.CrossEntropyLoss()
    logits = m(x)
    crit(logits, y)
    if between == "no_grad":
        with pc.no_grad():
            m(x_val)
    else:
        m.eval()
        if between == "eval":
            m(x_val)
        else:
            with pc.no_grad():
                m(x_val)
        m.train()
    m.zero_grad()
    m.backward(crit.backward())
    for a, b in zip(_grads(m), want):
        np.testing.assert_array_equal(a, b)


def test_two_training_forwards_then_the_first_loss_backward_raises_naming_the_layer():
    x, y = _data(0)
    x2, _ = _data(1)
    m, crit = pc.models.lenet5(), nn.CrossEntropyLoss()
    first = m(x)
    m(x2)  # a second training forward replaces the first pass's caches
    crit(first, y)
    with pytest.raises(RuntimeError, match=r"Linear\(in_features=84.*another forward pass"):
        m.backward(crit.backward())
    assert all(p.grad is None for p in m.parameters())


def test_the_backward_of_an_output_reads_its_own_pass_after_an_eval_pass():
    # an output of the training pass, differentiated after an eval pass: the training caches
    x, _ = _data(0)
    x_val, _ = _data(1)
    g = pc.from_numpy(np.random.default_rng(3).standard_normal((6, 10)).astype(np.float32))
    pc.manual_seed(0)
    ref = pc.models.lenet5()
    ref(x)
    want = ref.backward(g).numpy()
    pc.manual_seed(0)
    m = pc.models.lenet5()
    out = m(x)
    m.eval()
    m(x_val)
    m.train()
    g._pass_id = out._pass_id  # a gradient computed from `out` carries its pass, as a loss's does
    np.testing.assert_array_equal(m.backward(g).numpy(), want)


def test_no_grad_forwards_keep_no_cache():
    x, _ = _data(0)
    m = pc.models.lenet5()
    with pc.no_grad():
        m(x)
    for layer in m.modules():
        assert not layer.__dict__.get("_cache_stack")
        assert layer.__dict__.get("_cache") is None
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward"):
        m.backward(pc.ones(6, 10))


def test_no_grad_inference_holds_no_activation_memory():
    # a held training cache stays exactly the one it was; inference passes add nothing to it
    x, y = _data(0)
    m, crit = pc.models.lenet5(), nn.CrossEntropyLoss()
    crit(m(x), y)
    before = [[id(v) for v in layer.__dict__.get("_cache_stack", [])] for layer in m.modules()]
    with pc.no_grad():
        for _ in range(5):
            m(_data(2)[0])
    after = [[id(v) for v in layer.__dict__.get("_cache_stack", [])] for layer in m.modules()]
    assert before == after
    assert m[0]._cache_stack[-1][-1][0] is x  # the first conv still holds the training input


def test_no_grad_is_thread_local_and_a_decorator():
    import threading

    seen = {}

    @pc.no_grad()
    def infer():
        seen["inside"] = pc.is_grad_enabled()
        t = threading.Thread(target=lambda: seen.setdefault("other_thread", pc.is_grad_enabled()))
        t.start()
        t.join()
        with pc.enable_grad():
            seen["enabled_again"] = pc.is_grad_enabled()
        return pc.is_grad_enabled()

    assert infer() is False
    assert seen == {"inside": False, "other_thread": True, "enabled_again": True}
    assert pc.is_grad_enabled()


def test_eval_mode_gradients_still_work():
    # saliency and eval-mode gradient checks differentiate an eval-mode forward
    x, _ = _data(0, n=2)
    m = pc.models.lenet5().eval()
    m(x)
    dx = m.backward(pc.ones(2, 10))
    assert tuple(dx.shape) == (2, 1, 28, 28)
    assert pc.viz.saliency(m, x, 3).shape == (2, 28, 28)


def test_a_direct_forward_call_then_backward():
    # model.forward(x) (not model(x)) runs each child as its own pass: the backward still pairs them
    x, y = _data(0)
    want = _reference_grads(pc.models.lenet5, x, y)
    pc.manual_seed(0)
    m, crit = pc.models.lenet5(), nn.CrossEntropyLoss()
    crit(m.forward(x), y)
    m.backward(crit.backward())
    for a, b in zip(_grads(m), want):
        np.testing.assert_array_equal(a, b)
