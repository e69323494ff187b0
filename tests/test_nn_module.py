"""pycnn.nn.Module bookkeeping (parameters, buffers, state dicts, train/eval, freezing, .to / dtype,
deepcopy, hooks, Parameter), Sequential, and backward passes: need_input_grad=False, a module or
weights used twice in one pass, caches."""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn

from helpers import T64 as T, N, close, rng


# ----------------------------------------------------------------------------------------------
# Module bookkeeping
# ----------------------------------------------------------------------------------------------
def lenet():
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Dropout(0.5), nn.Linear(2 * 3 * 3, 4))


def test_parameters_buffers_modules():
    m = lenet()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "6.weight", "6.bias"]
    assert len(list(m.parameters())) == 6
    assert all(isinstance(p, nn.Parameter) for p in m.parameters())
    assert [n for n, _ in m.named_buffers()] == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert len(list(m.children())) == 7
    assert [n for n, _ in m.named_modules()] == [""] + [str(i) for i in range(7)]
    assert m.get_submodule("6") is m[6]
    assert m[0].weight.shape == (2, 1, 3, 3) and m[0].weight.dtype == pc.float32
    assert list(m.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                    "1.running_var", "1.num_batches_tracked", "6.weight", "6.bias"]


def test_setattr_registers_in_order_and_custom_module():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.scale = nn.Parameter(pc.ones(1))
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(8, 2))
            self.register_buffer("steps", pc.zeros(1))
            self.note = "plain attribute"

        def forward(self, x):
            return self.head(self.conv(x))

        def backward(self, g):
            return self.conv.backward(self.head.backward(g))

    net = Net()
    # PyTorch's order: a module's own parameters (and buffers) first, then its children's
    assert [n for n, _ in net.named_parameters()] == ["scale", "conv.weight", "conv.bias", "head.1.weight",
                                                      "head.1.bias"]
    assert list(net.state_dict()) == ["scale", "steps", "conv.weight", "conv.bias", "head.1.weight", "head.1.bias"]
    assert "note" not in net.state_dict()
    y = net(pc.randn(3, 1, 4, 4))
    assert y.shape == (3, 2)
    assert net.backward(pc.ones(3, 2)).shape == (3, 1, 4, 4)
    assert net.conv.weight.grad is not None
    assert "(conv): Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1))" in repr(net)
    net.conv = nn.Conv2d(1, 2, 1)  # replaced in place, same order
    assert [n for n, _ in net.named_children()] == ["conv", "head"]
    with pytest.raises(TypeError):
        net.scale = pc.ones(1)  # a parameter slot needs a Parameter
    del net.head
    assert [n for n, _ in net.named_children()] == ["conv"]


def test_state_dict_round_trip():
    pc.manual_seed(0)
    a = lenet()
    a(pc.randn(4, 1, 8, 8))  # moves running stats
    sd = a.state_dict()
    assert sd["0.weight"] is a[0].weight.data  # the module's own tensors, as PyTorch
    assert sd["1.num_batches_tracked"].dtype == pc.int64
    b = lenet()
    res = b.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == []
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(N(v), N(sd[k]))
    # copies, not shared
    a[0].weight.data.fill_(5.0)
    assert N(b[0].weight).max() < 5.0
    # NumPy arrays (and float64) are accepted and converted to the parameter's dtype
    c = lenet()
    c.load_state_dict({k: np.asarray(N(v), dtype=np.float64 if k.endswith("weight") else N(v).dtype)
                       for k, v in b.state_dict().items()})
    assert c[0].weight.dtype == pc.float32
    np.testing.assert_array_equal(N(c[6].weight), N(b[6].weight))
    assert int(c[1].num_batches_tracked.item()) == 1


def test_load_state_dict_errors():
    m = lenet()
    sd = {k: N(v).copy() for k, v in m.state_dict().items()}
    before = N(m[0].weight).copy()
    bad = dict(sd)
    del bad["6.bias"]
    bad["extra.weight"] = np.zeros(3)
    bad["0.weight"] = before + 1
    with pytest.raises(RuntimeError) as e:
        m.load_state_dict(bad)
    assert '"6.bias"' in str(e.value) and '"extra.weight"' in str(e.value)
    assert "Missing" in str(e.value) and "Unexpected" in str(e.value)
    np.testing.assert_array_equal(N(m[0].weight), before)  # nothing loaded
    res = m.load_state_dict(bad, strict=False)
    assert res.missing_keys == ["6.bias"] and res.unexpected_keys == ["extra.weight"]
    np.testing.assert_array_equal(N(m[0].weight), before + 1)
    wrong = dict(sd)
    wrong["6.weight"] = np.zeros((4, 5), dtype=np.float32)
    with pytest.raises(RuntimeError, match=r"6\.weight.*\(4, 5\).*\(4, 18\)"):
        m.load_state_dict(wrong, strict=False)
    with pytest.raises(TypeError):
        m.load_state_dict([1, 2])


def test_zero_grad_accumulation_and_freeze():
    pc.manual_seed(4)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3)).double()
    x = T(rng(16).standard_normal((2, 1, 4, 4)))
    g = T(np.ones((2, 3)))
    m(x)
    m.backward(g)
    g1 = N(m[2].weight.grad).copy()
    m(x)
    m.backward(g)
    close(m[2].weight.grad, 2 * g1)  # accumulates
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    assert m[0].freeze() is m[0]
    assert not m[0].weight.requires_grad and m[2].weight.requires_grad
    m(x)
    dx = m.backward(g)
    assert dx.shape == (2, 1, 4, 4)  # the input gradient still flows
    assert m[0].weight.grad is None and m[0].bias.grad is None
    assert m[2].weight.grad is not None
    m.freeze()
    m.zero_grad()
    m(x)
    m.backward(g)
    assert all(p.grad is None for p in m.parameters())
    assert m.unfreeze() is m and all(p.requires_grad for p in m.parameters())


def test_train_eval_switching():
    m = lenet()
    assert m.training and all(c.training for c in m.modules())
    assert m.eval() is m
    assert not any(c.training for c in m.modules())
    m.train()
    assert all(c.training for c in m.modules())
    m[5].eval()
    assert not m[5].training and m.training
    d = nn.Dropout(0.5)
    x = pc.ones(50, 40)
    pc.manual_seed(0)
    y = N(d(x))
    assert set(np.unique(y)) == {0.0, 2.0}
    close(d.backward(pc.ones(50, 40)), y)
    d.eval()
    assert d(x) is x
    assert d.backward(x) is x


def test_to_and_dtype():
    m = lenet()
    params = list(m.parameters())
    assert m.to(pc.float64) is m
    assert list(m.parameters()) == params  # same Parameter objects (optimizers keep working)
    assert all(p.dtype == pc.float64 for p in params)
    assert m[1].running_mean.dtype == pc.float64 and m[1].num_batches_tracked.dtype == pc.int64
    assert m.to("cpu") is m and m.device == "cpu"
    m.float()
    assert all(p.dtype == pc.float32 for p in params)
    assert nn.Linear(2, 3, dtype=pc.float64).weight.dtype == pc.float64
    assert nn.Conv2d(1, 1, 1).to(np.float64).weight.dtype == pc.float64
    with pytest.raises(TypeError):
        m.to(np.int32)


@pytest.mark.skipif(not pc.cuda.is_available(), reason="needs CUDA")
def test_to_cuda_round_trip():
    m = lenet().double()
    x = rng(17).standard_normal((2, 1, 8, 8))
    m.eval()
    want = N(m(T(x)))
    m.to("cuda")
    assert all(p.device.startswith("cuda") for p in m.parameters())
    y = m(T(x).cuda())
    close(y.cpu(), want, rtol=1e-9, atol=1e-12)
    assert m.backward(pc.ones(2, 4, dtype=pc.float64, device="cuda")).device.startswith("cuda")
    m.to("cpu")
    assert m[0].weight.grad.device == "cpu"


def test_deepcopy_and_hooks():
    m = lenet()
    c = copy.deepcopy(m)
    assert c[0].weight is not m[0].weight
    np.testing.assert_array_equal(N(c[0].weight), N(m[0].weight))
    c[0].weight.data.fill_(1.0)
    assert N(m[0].weight).max() < 1.0
    shapes = []
    h = m[3].register_forward_hook(lambda mod, inp, out: shapes.append(out.shape))
    m(pc.randn(2, 1, 8, 8))
    h.remove()
    m(pc.randn(2, 1, 8, 8))
    assert shapes == [(2, 2, 3, 3)]


def test_parameter_behaviour():
    p = nn.Parameter(np.arange(6.0).reshape(2, 3))
    assert p.shape == (2, 3) and p.dtype == pc.float64 and p.requires_grad and p.grad is None
    np.testing.assert_array_equal(np.asarray(p), np.arange(6.0).reshape(2, 3))
    assert "Parameter containing" in repr(p)
    assert pc.functional.relu(p).shape == (2, 3)  # functional ops take Parameters
    with pytest.raises(TypeError):
        p.data = "x"


# ----------------------------------------------------------------------------------------------
# Sequential
# ----------------------------------------------------------------------------------------------
def test_sequential_indexing_slicing_setitem():
    m = lenet()
    assert len(m) == 7
    assert m[-1] is m[6] and isinstance(m[0], nn.Conv2d)
    head = m[:4]
    assert isinstance(head, nn.Sequential) and len(head) == 4 and head[0] is m[0]  # shares layers
    tail = m[4:]
    assert [n for n, _ in tail.named_parameters()] == ["6.weight", "6.bias"]  # keeps PyTorch's names
    m.eval()
    x = pc.randn(2, 1, 8, 8)
    close(tail(head(x)), N(m(x)), rtol=1e-6)
    m[-1] = nn.Linear(18, 3)
    assert m(x).shape == (2, 3)
    assert [n for n, _ in m.named_parameters()][-1] == "6.bias"
    assert list(iter(m))[-1] is m[6]
    with pytest.raises(IndexError):
        m[7]
    with pytest.raises(TypeError):
        m[0] = "not a module"
    with pytest.raises(TypeError):
        m["a":"b"] if False else m[1.0]
    assert m.append(nn.Softmax()) is m and len(m) == 8
    del m[1]
    assert len(m) == 7 and [n for n, _ in m.named_children()] == [str(i) for i in range(7)]
    named = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 3), act=nn.ReLU()))
    assert named.conv is named[0] and [n for n, _ in named.named_parameters()] == ["conv.weight", "conv.bias"]
    with pytest.raises(TypeError, match="Sequential"):
        nn.Sequential(nn.ReLU(), "relu")


def test_sequential_backward_runs_in_reverse():
    order = []

    class Tag(nn.Identity):
        def __init__(self, name):
            super().__init__()
            self.tag = name

        def backward(self, g):
            order.append(self.tag)
            return g

    s = nn.Sequential(Tag("a"), Tag("b"), Tag("c"))
    s(pc.ones(1))
    s.backward(pc.ones(1))
    assert order == ["c", "b", "a"]


# ----------------------------------------------------------------------------------------------
# backward passes: need_input_grad, a module or weights used twice, caches
# ----------------------------------------------------------------------------------------------
def test_backward_without_input_grad_gives_the_same_parameter_gradients():
    # model.backward(g, need_input_grad=False) is what a training step wants: the first layer's
    # d/dx is skipped, every parameter gradient is the same as with the full backward.
    pc.manual_seed(3)
    net = pc.models.lenet5()
    x = pc.tensor(np.random.default_rng(0).standard_normal((4, 1, 28, 28), dtype=np.float32))
    g = pc.tensor(np.random.default_rng(1).standard_normal((4, 10), dtype=np.float32))
    net(x)
    dx = net.backward(g)
    assert dx is not None and tuple(dx.shape) == (4, 1, 28, 28)
    full = [np.asarray(p.grad).copy() for p in net.parameters()]
    net.zero_grad()
    net(x)
    assert net.backward(g, need_input_grad=False) is None
    for a, p in zip(full, net.parameters()):
        np.testing.assert_array_equal(a, np.asarray(p.grad))
    lin = nn.Linear(5, 3)
    lin(pc.ones(2, 5))
    assert lin.backward(pc.ones(2, 3), need_input_grad=False) is None and lin.weight.grad is not None


def test_need_input_grad_false_is_safe_with_a_user_layer_first():
    class MyLayer(nn.Module):  # a user layer whose backward knows nothing of need_input_grad
        def forward(self, x):
            return pc.functional.relu(x)

        def backward(self, g):
            return g

    net = nn.Sequential(MyLayer(), nn.Linear(3, 2))
    net(pc.ones(1, 3))
    assert net.backward(pc.ones(1, 2), need_input_grad=False) is None
    assert net[1].weight.grad is not None


class _TwoUses(nn.Module):
    """conv -> act -> conv2 -> act: one activation instance used twice (PyTorch code often does)."""

    def __init__(self, act, conv2=None, act2=None):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.conv2 = conv2 if conv2 is not None else nn.Conv2d(3, 3, 3, padding=1)
        self.act = act
        self.act2 = act2 if act2 is not None else act

    def forward(self, x):
        return self.act2(self.conv2(self.act(self.conv1(x))))

    def backward(self, g):
        return self.conv1.backward(self.act.backward(self.conv2.backward(self.act2.backward(g))))


def test_a_module_used_twice_in_a_pass_gets_both_gradients():
    x = pc.from_numpy(np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(np.float64))
    g = pc.from_numpy(np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float64))
    pc.manual_seed(0)
    shared = _TwoUses(nn.Tanh()).to(pc.float64)
    pc.manual_seed(0)
    separate = _TwoUses(nn.Tanh(), act2=nn.Tanh()).to(pc.float64)
    for m in (shared, separate):
        m(x)
    dx_shared, dx_sep = shared.backward(g), separate.backward(g)
    np.testing.assert_array_equal(np.asarray(dx_shared), np.asarray(dx_sep))
    for a, b in zip(shared.parameters(), separate.parameters()):
        np.testing.assert_array_equal(np.asarray(a.grad), np.asarray(b.grad))
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward\\(\\)"):
        shared.act.backward(g)  # both uses are consumed


def test_weights_shared_between_two_uses_accumulate_both_gradients():
    # y = conv(relu(conv(relu(conv_in(x))))): the shared conv's gradient is the sum of what two
    # separate copies of it would get
    class Net(nn.Module):
        def __init__(self, conv_a, conv_b):
            super().__init__()
            self.conv_in, self.a, self.b, self.relu = nn.Conv2d(2, 3, 3, padding=1), conv_a, conv_b, nn.ReLU()

        def forward(self, x):
            return self.b(self.relu(self.a(self.relu(self.conv_in(x)))))

        def backward(self, g):
            g = self.relu.backward(self.b.backward(g))
            return self.conv_in.backward(self.relu.backward(self.a.backward(g)))

    x = pc.from_numpy(np.random.default_rng(2).standard_normal((2, 2, 5, 5)))
    g = pc.from_numpy(np.random.default_rng(3).standard_normal((2, 3, 5, 5)))
    pc.manual_seed(4)
    conv = nn.Conv2d(3, 3, 3, padding=1)
    shared = Net(conv, conv).to(pc.float64)
    copies = copy.deepcopy(shared)  # deepcopy keeps the sharing: make two separate convs instead
    copies.b = copy.deepcopy(copies.a)
    for m in (shared, copies):
        m(x)
        m.backward(g)
    np.testing.assert_array_equal(np.asarray(shared.a.weight.grad),
                                  np.asarray(copies.a.weight.grad) + np.asarray(copies.b.weight.grad))
    np.testing.assert_array_equal(np.asarray(shared.a.bias.grad),
                                  np.asarray(copies.a.bias.grad) + np.asarray(copies.b.bias.grad))
    np.testing.assert_array_equal(np.asarray(shared.conv_in.weight.grad), np.asarray(copies.conv_in.weight.grad))


def test_inference_passes_do_not_pile_up_caches():
    net = pc.models.lenet5()
    net.eval()
    x = pc.zeros(2, 1, 28, 28)
    for _ in range(50):
        net(x)
    assert all(len(m.__dict__.get("_cache_stack", [])) <= 1 for m in net.modules())


def test_a_refused_backward_keeps_each_uses_cache():
    # the second use's backward gets a wrong-shape gradient and raises; retried with the right one,
    # it must still see its own input, and the first use's backward its own
    x = pc.from_numpy(np.random.default_rng(5).standard_normal((2, 2, 6, 6)))
    g = pc.from_numpy(np.random.default_rng(6).standard_normal((2, 3, 6, 6)))
    pc.manual_seed(0)
    shared = _TwoUses(nn.Tanh()).to(pc.float64)
    pc.manual_seed(0)
    separate = _TwoUses(nn.Tanh(), act2=nn.Tanh()).to(pc.float64)
    shared(x)
    separate(x)
    with pytest.raises(ValueError):
        shared.act.backward(pc.zeros(1, 1, dtype=pc.float64))
    np.testing.assert_array_equal(np.asarray(shared.backward(g)), np.asarray(separate.backward(g)))
