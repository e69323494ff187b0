"""Habits of a PyTorch / Keras user that pycnn must honour (found by probing against torch 2.x)."""
import numpy as np
import pytest

import pycnn as pc
from pycnn import nn
from pycnn.summary import ModelSummary


def test_no_grad_decorates_without_parentheses_as_torch():
    @pc.no_grad
    def infer(x):
        return x * 2

    x = pc.tensor([1.0, 2.0], requires_grad=True)
    y = infer(x)
    assert not y.requires_grad and y.tolist() == [2.0, 4.0]
    assert infer.__name__ == "infer"

    @pc.enable_grad
    def train_part(x):
        return x * 3

    with pc.no_grad():
        assert train_part(x).requires_grad
    assert pc.is_grad_enabled()


def test_model_summary_prints_its_table_and_returns_it(capsys):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    result = model.summary((1, 8, 8))
    printed = capsys.readouterr().out
    assert isinstance(result, ModelSummary)
    assert printed.strip() == str(result).strip() and "Linear" in printed
    quiet = model.summary((1, 8, 8), verbose=False)
    assert capsys.readouterr().out == "" and quiet.total_params == result.total_params


def test_iterating_rows_keeps_the_graph():
    # `for row in x` was built on the untraced index op: rows lost requires_grad, so a loss over
    # them silently dropped their gradient (torch's rows are unbind views in the graph).
    x = pc.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=pc.float64, requires_grad=True)
    rows = list(x)
    assert all(r.requires_grad for r in rows)
    loss = sum((i + 1) * (r ** 2).sum() for i, r in enumerate(rows)) + x.sum()
    loss.backward()
    expected = np.array([[1.0, 1.0], [2.0, 2.0]]) * 2 * x.detach().numpy() + 1
    np.testing.assert_allclose(x.grad.numpy(), expected)
    assert [r.tolist() for r in pc.tensor([[1, 2], [3, 4]])] == [[1, 2], [3, 4]]


_DIVIDENDS = np.array([5.5, -5.5, 1.0, -1.0, -0.0, 7.0, 3.0, 1e30])
_DIVISORS = np.array([-2.0, 2.0, 0.1, 0.3, 1.0, -7.0, 0.0, 7.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_floor_divide_and_remainder_follow_python_and_torch(dtype):
    torch = pytest.importorskip("torch")
    a, b = _DIVIDENDS.astype(dtype), _DIVISORS.astype(dtype)
    for ours, theirs in [(pc.tensor(a) // pc.tensor(b), torch.tensor(a) // torch.tensor(b)),
                         (pc.tensor(a) % pc.tensor(b), torch.tensor(a) % torch.tensor(b)),
                         (pc.tensor(a) // -0.7, torch.tensor(a) // -0.7),
                         (2.5 % pc.tensor(a[:4]), 2.5 % torch.tensor(a[:4]))]:
        assert ours.dtype == getattr(pc, np.dtype(dtype).name)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())  # signed zeros, inf and nan included


def test_integer_floor_divide_and_remainder_stay_int64_and_refuse_zero():
    a, b = np.array([5, -5, 7, -7, 0, -2**63]), np.array([2, 2, -3, -3, 4, -1])
    q, r = pc.tensor(a) // pc.tensor(b), pc.tensor(a) % pc.tensor(b)
    assert q.dtype == r.dtype == pc.int64
    assert q.tolist()[:5] == [int(x) // int(y) for x, y in zip(a[:5], b[:5])]
    assert r.tolist() == [int(x) % int(y) for x, y in zip(a, b)]
    assert (pc.tensor([7, -7]) // 2.0).tolist() == [3.0, -4.0] and (pc.tensor([7, -7]) // 2.0).dtype == pc.float32
    t = pc.tensor([9, -9])
    t //= 4
    t %= 2
    assert t.tolist() == [0, 1]
    for bad in [lambda: pc.tensor([1, 2]) // 0, lambda: pc.tensor([1, 2]) % pc.tensor([1, 0]),
                lambda: 3 % pc.tensor([0, 1])]:
        with pytest.raises(RuntimeError, match="integer division by zero") as info:  # torch: RuntimeError
            bad()
        assert isinstance(info.value, ZeroDivisionError)
    with pytest.raises(TypeError, match="remainder"):
        pc.tensor([True]) % pc.tensor([True])


def test_remainder_gradient_matches_torch_and_floor_divide_refuses_backward():
    torch = pytest.importorskip("torch")
    a, b = np.array([[5.5, -5.5, 1.3]]), np.array([[-2.0], [2.0]])
    xa, xb = pc.tensor(a, requires_grad=True), pc.tensor(b, requires_grad=True)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ((xa % xb) * pc.tensor([1.0, 2.0, 3.0], dtype=pc.float64)).sum().backward()
    ((ta % tb) * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).sum().backward()
    np.testing.assert_allclose(xa.grad.numpy(), ta.grad.numpy())
    np.testing.assert_allclose(xb.grad.numpy(), tb.grad.numpy())
    xs = pc.tensor([1.5, 2.5], dtype=pc.float64, requires_grad=True)
    (7.0 % xs).sum().backward()
    np.testing.assert_allclose(xs.grad.numpy(), -np.floor(7.0 / np.array([1.5, 2.5])))
    q = xs // 2
    assert q.requires_grad
    with pytest.raises(RuntimeError, match="floor_divide"):
        q.sum().backward()


def test_arange_and_like_constructors_as_torch():
    torch = pytest.importorskip("torch")
    for args in [(5,), (2, 9, 3), (5, 0, -2), (0, 1, 0.25), (-1.5, 2.0), (3, 3)]:
        ours, theirs = pc.arange(*args), torch.arange(*args)
        assert str(ours.dtype).split(".")[-1] == str(theirs.dtype).split(".")[-1], args
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert pc.arange(4, dtype=pc.float64).tolist() == [0.0, 1.0, 2.0, 3.0]
    for bad in [(0, 3, 0), (3, 0), (0, 3, -1)]:
        with pytest.raises(ValueError, match="step"):  # torch: RuntimeError
            pc.arange(*bad)
    x = pc.tensor([[1, 2, 3]])
    z, o, f = pc.zeros_like(x), pc.ones_like(x, dtype=pc.float64), pc.full_like(x, 7)
    assert (z.dtype, z.shape, z.tolist()) == (pc.int64, (1, 3), [[0, 0, 0]])
    assert (o.dtype, o.tolist()) == (pc.float64, [[1.0, 1.0, 1.0]])
    assert (f.dtype, f.tolist()) == (pc.int64, [[7, 7, 7]])


def test_reduction_dims_as_torch_empty_tuple_reduces_all_and_duplicates_are_refused():
    torch = pytest.importorskip("torch")
    a = np.arange(6.0).reshape(2, 3)
    for method in ("sum", "mean"):
        x, t = pc.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
        ours, theirs = getattr(x, method)(dim=()), getattr(t, method)(dim=())
        assert ours.shape == tuple(theirs.shape) == ()
        (ours * 3).backward()
        (theirs * 3).backward()
        np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy())
        with pytest.raises(ValueError, match="appears multiple times"):  # torch: RuntimeError
            getattr(x, method)(dim=(0, -2))  # a mean's gradient would have counted dim 0 twice
    np.testing.assert_array_equal(pc.tensor(a).sum((1, 0), keepdim=True).numpy(), [[15.0]])


def test_repr_shows_grad_fn_and_requires_grad_as_torch():
    x = pc.tensor([1.0, 2.0], requires_grad=True)
    assert repr(x).endswith(", requires_grad=True)")
    y = (x * 2).sum()
    assert repr(y).endswith(", grad_fn=<sumBackward>)") and "6." in repr(y)
    with pc.no_grad():
        assert "grad" not in repr(x * 2)
    assert "grad" not in repr(x.detach()) and "grad" not in repr(pc.tensor([1.0]))
    assert f"{y}" == "6.0" and f"{y:.2f}" == "6.00"  # a 0-d tensor formats as its item, as torch


def test_module_list_and_dict_register_their_layers_and_train_by_autograd():
    torch = pytest.importorskip("torch")

    class Tower(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])
            self.blocks.append(nn.Linear(4, 3))
            self.heads = nn.ModuleDict({"a": nn.Linear(3, 2)})
            self.heads["b"] = nn.Linear(3, 1)

        def forward(self, x):
            for block in self.blocks[:-1]:
                x = block(x).clamp(min=0)
            x = self.blocks[-1](x)
            return self.heads["a"](x).sum(1) + self.heads["b"](x).sum(1)

    ours = Tower().double()
    names = [n for n, _ in ours.named_parameters()]
    assert names[:2] == ["blocks.0.weight", "blocks.0.bias"] and "heads.b.bias" in names and len(names) == 10
    assert len(ours.blocks) == 3 and list(ours.heads) == ["a", "b"] and "a" in ours.heads

    theirs = torch.nn.ModuleDict({"blocks": torch.nn.ModuleList([torch.nn.Linear(4, 4), torch.nn.Linear(4, 4),
                                                                   torch.nn.Linear(4, 3)]),
                                  "heads": torch.nn.ModuleDict({"a": torch.nn.Linear(3, 2),
                                                                "b": torch.nn.Linear(3, 1)})}).double()
    for (name, p), (tname, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert name == tname
        with torch.no_grad():
            tp.copy_(torch.from_numpy(p.numpy().copy()))
    x = np.random.default_rng(0).standard_normal((5, 4))
    ours(pc.tensor(x)).sum().backward()
    t = torch.tensor(x)
    for block in list(theirs["blocks"])[:-1]:
        t = block(t).clamp(min=0)
    t = theirs["blocks"][-1](t)
    (theirs["heads"]["a"](t).sum(1) + theirs["heads"]["b"](t).sum(1)).sum().backward()
    for p, tp in zip(ours.parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match="ModuleList"):
        nn.ModuleList([lambda x: x])


def test_nn_functional_is_importable_as_in_torch():
    import pycnn.nn.functional as F

    assert F is pc.functional and pc.nn.functional is pc.functional
    x = pc.tensor([[-1.0, 2.0]], requires_grad=True)
    F.relu(x).sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0]]


def test_to_takes_torch_keyword_and_tensor_forms():
    x = pc.tensor([1.0, 2.0], requires_grad=True)
    y = x.to(dtype=pc.float64)  # was a pybind "incompatible function arguments" TypeError
    assert y.dtype == pc.float64 and y.requires_grad
    (y * y).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0] and x.grad.dtype == pc.float32
    assert x.to("cpu", pc.float64).dtype == pc.float64
    assert x.to(pc.tensor([1])).dtype == pc.int64  # another tensor's dtype (and device)
    assert x.to(device="cpu", dtype=pc.float32).dtype == pc.float32
    d = x.detach()
    assert d.to(pc.float32)._same_storage(d) and not d.to(pc.float32, copy=True)._same_storage(d)


def test_an_empty_index_list_selects_nothing_as_torch():
    torch = pytest.importorskip("torch")
    a = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    assert pc.tensor(a)[[]].shape == tuple(torch.tensor(a)[[]].shape) == (0, 3)
    assert pc.tensor(a)[:, []].shape == tuple(torch.tensor(a)[:, []].shape) == (2, 0)
    with pytest.raises(IndexError, match="int64 or bool"):
        pc.tensor(a)[[0.5]]


def test_tensor_of_a_list_of_float64_scalars_stays_float64_as_torch():
    torch = pytest.importorskip("torch")
    cases = [[np.float64(1.5), 2.0], [[np.float64(1.0)], [2.0]], [np.float32(1.0), 2.0], [1.0, 2.0],
             [np.int64(3), 4]]
    for data in cases:
        assert str(pc.tensor(data).dtype).split(".")[-1] == str(torch.tensor(data).dtype).split(".")[-1], data
    assert pc.tensor([pc.tensor(1.0, dtype=pc.float64), pc.tensor(2.0, dtype=pc.float64)]).dtype == pc.float64
    assert pc.tensor([np.float64(1.5)], dtype=pc.float32).dtype == pc.float32


def test_retain_grad_fills_a_non_leaf_grad_as_torch():
    torch = pytest.importorskip("torch")
    a = np.array([[1.0, -2.0], [0.5, 3.0]])
    x, tx = pc.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    results = []
    for lib, leaf in ((pc, x), (torch, tx)):
        h = leaf * 3
        h.retain_grad()
        out = (h.clamp(min=0) ** 2).sum()
        out.retain_grad()
        out.backward(retain_graph=True)
        out.backward()  # retained gradients accumulate, as a leaf's do
        plain = leaf * 2  # not retained: its grad stays None (torch also warns on reading it)
        results.append((h.grad.numpy(), out.grad.item(), plain.grad if lib is pc else None))
    np.testing.assert_allclose(results[0][0], results[1][0])
    assert results[0][1] == results[1][1] == 2.0 and results[0][2] is None
    with pytest.raises(RuntimeError, match="requires_grad=False"):
        pc.tensor([1.0]).retain_grad()
