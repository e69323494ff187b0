"""Tensor's PyTorch surface (issue 12.1): arithmetic, comparisons, indexing, views, reductions,
conversions; against NumPy float64 references, and PyTorch where it is installed."""
import operator

import numpy as np
import pytest

import pycnn as pc

rng = np.random.default_rng(0)


def t64(a):
    return pc.tensor(np.asarray(a, np.float64))


def close(t, ref, tol=1e-12):
    assert isinstance(t, pc.Tensor)
    np.testing.assert_allclose(t.numpy(), ref, rtol=tol, atol=tol)


# ------------------------------------------------------------------------------- arithmetic
BINARY = [operator.add, operator.sub, operator.mul, operator.truediv, operator.pow]


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("sa,sb", [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3)), ((5, 1), ())])
def test_binary_broadcasts_as_numpy(op, sa, sb):
    a, b = rng.uniform(0.5, 2, sa), rng.uniform(0.5, 2, sb)
    close(op(t64(a), t64(b)), op(a, b))


@pytest.mark.parametrize("op", BINARY)
def test_python_scalars_on_both_sides(op):
    a = rng.uniform(0.5, 2, (2, 3))
    close(op(t64(a), 1.5), op(a, 1.5))
    close(op(1.5, t64(a)), op(1.5, a))
    close(op(t64(a), 2), op(a, 2))


def test_numpy_operands_give_tensors_as_in_torch():
    x = pc.ones(3)
    for r in (np.float32(2) * x, np.float64(2) * x, x * np.float64(2), np.ones(3, np.float32) + x, x - np.ones(3)):
        assert isinstance(r, pc.Tensor)
    assert (np.float64(2) * x).dtype == pc.float32 and (np.ones(3) + x).dtype == pc.float64
    assert (np.arange(3) < x).tolist() == [True, False, False]


def test_unary_minus_abs_and_matmul_operator():
    a = rng.standard_normal((3, 4))
    close(-t64(a), -a)
    close(abs(t64(a)), np.abs(a))
    close(t64(a) @ t64(a.T), a @ a.T)


@pytest.mark.parametrize("a,b,expected", [
    (pc.float32, 1.5, pc.float32), (pc.float32, 2, pc.float32), (pc.int64, 2, pc.int64),
    (pc.int64, 2.5, pc.float32), (pc.bool, 1, pc.int64), (pc.float64, 1.5, pc.float64),
])
def test_scalar_promotion_as_torch(a, b, expected):
    assert (pc.ones(2, dtype=a) + b).dtype == expected


def test_tensor_promotion_and_true_division():
    f32, f64, i64 = pc.ones(2), pc.ones(2, dtype=pc.float64), pc.tensor([3, 4])
    assert (f32 + f64).dtype == pc.float64
    assert (f32 + i64).dtype == pc.float32
    assert (i64 + i64).dtype == pc.int64
    q = i64 / pc.tensor([2, 2])
    assert q.dtype == pc.float32 and q.tolist() == [1.5, 2.0]
    assert (f32 + pc.tensor(2.0, dtype=pc.float64)).dtype == pc.float32  # a 0-d tensor does not widen
    assert (i64 + pc.tensor(2.5)).dtype == pc.float32  # but raises the category


def test_in_place_forms_keep_the_object_and_write_views():
    x = t64(np.arange(6.0).reshape(2, 3))
    before = x
    x += 1
    x *= 2
    x -= t64([1.0, 1.0, 1.0])
    x /= 2
    assert x is before
    close(x, ((np.arange(6.0).reshape(2, 3) + 1) * 2 - 1) / 2)
    x.add_(1, alpha=2).mul_(t64([[1.0], [2.0]])).sub_(1).div_(4)
    ref = (((np.arange(6.0).reshape(2, 3) + 1) * 2 - 1) / 2 + 2) * np.array([[1.0], [2.0]])
    close(x, (ref - 1) / 4)
    col = x[:, 1]
    col += 100  # a view: writes x
    assert x[0, 1].item() == pytest.approx((ref[0, 1] - 1) / 4 + 100)


def test_in_place_refuses_what_cannot_be_stored():
    i = pc.tensor([1, 2])
    with pytest.raises(TypeError, match="float32.*int64"):
        i += 1.5
    with pytest.raises(TypeError):
        i /= 2
    with pytest.raises(ValueError, match=r"add_: other of shape \(3,\) cannot be broadcast to the shape \(2,\)"):
        i.add_(pc.tensor([1, 2, 3]))
    e = pc.ones(1).expand(3)
    with pytest.raises(ValueError, match="expanded"):
        e += 1


def test_in_place_with_an_overlapping_operand_reads_the_old_values():
    a = np.arange(9.0).reshape(3, 3)
    x = t64(a)
    x += x.T
    close(x, a + a.T)


def test_broadcast_error_names_the_op_and_both_shapes():
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast"):
        pc.ones(2, 3) + pc.ones(4)
    with pytest.raises(ValueError, match=r"lt: shapes \(2,\) and \(3,\)"):
        pc.ones(2) < pc.ones(3)
    with pytest.raises(TypeError, match="bitwise"):
        pc.ones(2) & pc.ones(2)
    with pytest.raises(TypeError, match="sub: subtraction with a bool operand"):
        pc.tensor([True]) - pc.tensor([1.0])
    with pytest.raises(ValueError, match="negative power"):
        pc.tensor([2]) ** -1
    assert (pc.tensor([2]) ** -1.0).tolist() == [0.5]
    assert pc.ones(2).__add__("a") is NotImplemented
    with pytest.raises(TypeError):
        pc.ones(2) + "a"


# ------------------------------------------------------------------------------ comparisons
@pytest.mark.parametrize("op", [operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge])
def test_comparisons_return_bool_tensors(op):
    a, b = rng.integers(0, 3, (4, 5)).astype(np.float64), rng.integers(0, 3, (5,)).astype(np.float64)
    r = op(t64(a), t64(b))
    assert r.dtype == pc.bool and r.numpy().dtype == np.bool_
    np.testing.assert_array_equal(r.numpy(), op(a, b))
    np.testing.assert_array_equal(op(t64(a), 1).numpy(), op(a, 1))


def test_eq_is_elementwise_and_hash_stays_identity():
    p = pc.tensor([3, 1, 3])
    assert (p == 3).tolist() == [True, False, True]
    assert not (p == None)  # noqa: E711  (not a number: identity, as torch)
    q = p.clone()
    d = {p: "p", q: "q"}
    assert d[p] == "p" and d[q] == "q" and len({p, q, p}) == 2
    assert hash(p) != hash(q)


def test_bool_masks_combine_and_invert():
    x = t64([1.0, 2.0, 3.0, 4.0])
    m = (x > 1) & (x < 4)
    assert m.tolist() == [False, True, True, False]
    assert (~m).tolist() == [True, False, False, True]
    assert ((x < 2) | (x > 3)).tolist() == [True, False, False, True]
    assert m.sum().item() == 2 and m.any().item() and not m.all().item()


# --------------------------------------------------------------------------------- indexing
def test_basic_indexing_gives_views_as_numpy():
    a = np.arange(24.0).reshape(2, 3, 4)
    x = t64(a)
    for idx in [0, -1, (1, 2), (slice(None), 1), (Ellipsis, 1), (Ellipsis, None), (None, 0),
                (slice(None), slice(1, 3)), (0, slice(None, None, 2)), (slice(None), -1, slice(1, None)),
                (slice(5, 9),)]:
        v = x[idx]
        np.testing.assert_array_equal(v.numpy(), a[idx])
        assert v._same_storage(x)
    x[0, 1, 2] = -5.0
    a[0, 1, 2] = -5.0
    np.testing.assert_array_equal(x.numpy(), a)


def test_index_tensors_lists_and_masks():
    a = np.arange(20.0).reshape(5, 4)
    x = t64(a)
    np.testing.assert_array_equal(x[pc.tensor([4, 0, -1])].numpy(), a[[4, 0, -1]])
    np.testing.assert_array_equal(x[[1, 1]].numpy(), a[[1, 1]])
    np.testing.assert_array_equal(x[:, pc.tensor([[0, 3], [1, 2]])].numpy(), a[:, np.array([[0, 3], [1, 2]])])
    np.testing.assert_array_equal(x[x > 7].numpy(), a[a > 7])
    np.testing.assert_array_equal(x[a[:, 0] > 5].numpy(), a[a[:, 0] > 5])
    np.testing.assert_array_equal(x[1:, pc.tensor([True, False, True, False])].numpy(), a[1:, [0, 2]])


def test_setitem_with_scalars_tensors_and_masks():
    a = np.zeros((4, 3))
    x = t64(a)
    x[0] = 1
    x[1] = t64([1.0, 2.0, 3.0])
    x[:, 2] = pc.tensor([7, 8, 9, 10])  # int64 source, cast to float64
    x[pc.tensor([3, 3])] = t64([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])  # repeated index: the last value wins
    x[x > 7] = -1
    a[0] = 1
    a[1] = [1, 2, 3]
    a[:, 2] = [7, 8, 9, 10]
    a[3] = 2
    a[a > 7] = -1
    np.testing.assert_array_equal(x.numpy(), a)
    x[1:3, ::2] = 0.5  # a strided view written where it lies
    a[1:3, ::2] = 0.5
    np.testing.assert_array_equal(x.numpy(), a)


def test_indexing_errors():
    x = pc.zeros(3, 4)
    with pytest.raises(IndexError, match="out of bounds for dimension 0 with size 3"):
        x[3]
    with pytest.raises(IndexError, match="out of bounds"):
        x[pc.tensor([0, 4])]
    with pytest.raises(IndexError, match="too many indices"):
        x[0, 0, 0]
    with pytest.raises(IndexError, match="mask"):
        x[pc.tensor([True, False])]
    with pytest.raises(IndexError, match="int64 or bool"):
        x[pc.tensor([0.0])]
    with pytest.raises(ValueError, match=r"copy: source of shape \(2,\)"):
        x[0] = pc.ones(2)


def test_iteration_and_len():
    rows = list(pc.tensor([[1, 2], [3, 4]]))
    assert [r.tolist() for r in rows] == [[1, 2], [3, 4]]
    assert 3 in pc.tensor([[1, 2], [3, 4]]) and 5 not in pc.tensor([1, 2])


# ----------------------------------------------------------------------------- shapes/views
def test_views_share_storage_and_match_numpy():
    a = np.arange(24.0).reshape(2, 3, 4)
    x = t64(a)
    cases = [(x.view(6, 4), a.reshape(6, 4)), (x.reshape(-1), a.reshape(-1)), (x.flatten(1), a.reshape(2, 12)),
             (x.flatten(0, 1), a.reshape(6, 4)), (x.permute(2, 0, 1), a.transpose(2, 0, 1)),
             (x.transpose(0, 2), a.swapaxes(0, 2)), (x.T, a.T), (x.mT, a.swapaxes(-1, -2)),
             (x[0].t(), a[0].T), (x.unsqueeze(1), a[:, None]), (x.unsqueeze(-1), a[..., None]),
             (x[:, :1].squeeze(), a[:, 0]), (x[:, :1].squeeze(1), a[:, 0]),
             (x[:1].expand(4, 3, 4), np.broadcast_to(a[:1], (4, 3, 4)))]
    for v, ref in cases:
        np.testing.assert_array_equal(v.numpy(), ref)
        assert v._same_storage(x)
    p = x.permute(2, 0, 1)
    assert not p.is_contiguous()
    c = p.contiguous()
    assert c.is_contiguous() and not c._same_storage(x)
    np.testing.assert_array_equal(c.numpy(), a.transpose(2, 0, 1))
    with pytest.raises(ValueError, match="reshape"):
        p.view(-1)
    np.testing.assert_array_equal(p.reshape(-1).numpy(), a.transpose(2, 0, 1).reshape(-1))
    with pytest.raises(ValueError, match="permutation"):
        x.permute(0, 0, 1)
    with pytest.raises(ValueError, match="expand"):
        x.expand(2, 5, 4)
    with pytest.raises(IndexError, match="transpose: dim 3 is out of range"):
        x.transpose(0, 3)
    with pytest.raises(IndexError, match=r"unsqueeze: dim 4 .*\[-4, 3\]"):
        x.unsqueeze(4)


def test_many_dims_permuted_and_copied():
    a = rng.standard_normal((2,) * 10)
    order = tuple(reversed(range(10)))
    np.testing.assert_array_equal(t64(a).permute(*order).contiguous().numpy(), a.transpose(order))
    close(t64(a).permute(*order) + t64(a), a.transpose(order) + a)


def test_clone_detach_and_sizes():
    x = t64(np.arange(6.0).reshape(2, 3))
    d, c = x.detach(), x.clone()
    assert d is not x and d._same_storage(x) and not c._same_storage(x)
    d[0, 0] = 9
    assert x[0, 0].item() == 9 and c[0, 0].item() == 0
    assert x.numel() == 6 and x.dim() == 2 and x.size() == (2, 3) and x.size(-1) == 3 and x.stride() == (3, 1)


# ------------------------------------------------------------------------------- reductions
@pytest.mark.parametrize("dim", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_sum_and_mean_match_numpy(dim, keepdim):
    a = rng.standard_normal((3, 4, 5))
    x = t64(a)
    npdim = dim if not isinstance(dim, list) else tuple(dim)
    close(x.sum(dim, keepdim=keepdim), a.sum(axis=npdim, keepdims=keepdim))
    close(x.mean(dim, keepdim=keepdim), a.mean(axis=npdim, keepdims=keepdim))
    s32 = pc.tensor(a.astype(np.float32)).sum(dim, keepdim=keepdim)
    np.testing.assert_allclose(s32.numpy(), a.astype(np.float32).astype(np.float64).sum(axis=npdim, keepdims=keepdim),
                               rtol=1e-6, atol=1e-6)


def test_max_min_arg_reductions():
    a = rng.standard_normal((4, 6))
    a[1, 2] = a[1, 4] = a[1].max() + 1  # a tie: the first index wins
    x = t64(a)
    m = x.max(1)
    assert type(m).__name__ == "max" and m.values is m[0] and m.indices is m[1]
    close(m.values, a.max(1))
    np.testing.assert_array_equal(m.indices.numpy(), a.argmax(1))
    mn = x.min(dim=0, keepdim=True)
    close(mn.values, a.min(0, keepdims=True))
    np.testing.assert_array_equal(mn.indices.numpy(), a.argmin(0)[None])
    assert x.max().shape == () and x.max().item() == a.max() and x.min().item() == a.min()
    assert x.argmax().item() == a.argmax() and x.argmin().item() == a.argmin()
    np.testing.assert_array_equal(x.argmax(1).numpy(), a.argmax(1))
    np.testing.assert_array_equal(x.argmin(0, keepdim=True).numpy(), a.argmin(0)[None])
    close(x.max(t64(np.zeros(6))), np.maximum(a, 0))


def test_reductions_propagate_nan_and_refuse_empty_dims():
    x = t64([1.0, np.nan, 3.0])
    assert np.isnan(x.max().item()) and x.argmax().item() == 1 and x.argmin().item() == 1
    assert np.isnan(x.sum().item())
    with pytest.raises(ValueError, match="max: cannot reduce over dim 1 of size 0"):
        pc.zeros(2, 0).max(1)
    with pytest.raises(TypeError, match="mean: expected a float32 or float64 tensor, got int64"):
        pc.tensor([1, 2]).mean()
    assert pc.tensor([1, 2]).sum().dtype == pc.int64 and pc.tensor([True, True]).sum().item() == 2


def test_reductions_repeat_bit_for_bit_whatever_the_threads():
    x = pc.tensor(rng.standard_normal((64, 3000)).astype(np.float32))
    before = pc.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 1, 2):
            pc.set_num_threads(threads)
            runs.append(b"".join(f().numpy().tobytes() for f in (lambda: x.sum(1), lambda: x.mean(0), lambda: x.sum(),
                                                                 lambda: x.T.sum(1), lambda: x.argmax(0))))
    finally:
        pc.set_num_threads(before)
    assert len(set(runs)) == 1


# --------------------------------------------------------------------------- math functions
def test_math_functions_and_clamp():
    a = rng.uniform(0.1, 3, (3, 4))
    x = t64(a)
    close(x.exp(), np.exp(a))
    close(x.log(), np.log(a))
    close(x.sqrt(), np.sqrt(a))
    close((-x).abs(), a)
    close(x.clamp(0.5, 2.0), np.clip(a, 0.5, 2.0))
    close(x.clamp(min=1.0), np.maximum(a, 1.0))
    close(x.clamp(max=t64(np.full(4, 1.5))), np.minimum(a, 1.5))
    y = x.clone()
    y.clamp_(max=1.0).exp_()
    close(y, np.exp(np.minimum(a, 1.0)))
    assert pc.tensor([1, 4]).sqrt().dtype == pc.float32 and pc.tensor([1, 4]).sqrt().tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="at least one"):
        x.clamp()


def test_cat_and_stack():
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((4, 3))
    close(pc.cat([t64(a), t64(b)]), np.concatenate([a, b]))
    close(pc.cat([t64(a), t64(a)], dim=-1), np.concatenate([a, a], -1))
    close(pc.stack([t64(a), t64(a)], 1), np.stack([a, a], 1))
    assert pc.cat([pc.ones(1), pc.ones(1, dtype=pc.float64)]).dtype == pc.float64
    assert pc.cat([pc.tensor([True]), pc.tensor([False])]).tolist() == [True, False]
    with pytest.raises(ValueError, match=r"stack: .* \(2, 3\) at entry 0 and \(4, 3\) at entry 1"):
        pc.stack([t64(a), t64(b)])


def test_matmul_shapes_as_numpy():
    for sa, sb in [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)), ((5, 2, 3), (3, 4)),
                   ((5, 2, 3), (5, 3, 4)), ((1, 2, 3), (5, 3, 4)), ((2, 1, 2, 3), (4, 3, 2))]:
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        close(t64(a) @ t64(b), a @ b, 1e-10)
    w = rng.standard_normal((4, 3))
    close(t64(a[0, 0]) @ t64(w).T, a[0, 0] @ w.T, 1e-10)  # a transposed view, no copy
    with pytest.raises(ValueError, match="cannot be multiplied"):
        pc.ones(2, 3) @ pc.ones(2, 3)
    with pytest.raises(TypeError, match="matmul: expected a float32 or float64"):
        pc.tensor([[1]]) @ pc.tensor([[1]])


# ------------------------------------------------------------------------------ conversions
def test_one_element_conversions():
    loss = pc.tensor(0.123456)
    assert float(loss) == pytest.approx(0.123456) and f"{loss:.4f}" == "0.1235"
    assert int(pc.tensor([7])) == 7 and bool(pc.tensor([1])) and not bool(pc.tensor(0.0))
    assert [10, 20, 30][pc.tensor(1)] == 20 and isinstance(pc.tensor(3).item(), int)
    assert isinstance(pc.tensor(True).item(), bool) and pc.tensor([[1.5]]).item() == 1.5
    for f in (float, int, bool, lambda t: t.item()):
        with pytest.raises((ValueError, RuntimeError), match="(2 elements|more than one value)"):
            f(pc.ones(2))
    with pytest.raises(TypeError, match="integer tensors"):
        [1, 2][pc.tensor(1.0)]
    with pytest.raises(TypeError, match="format"):
        f"{pc.ones(2):.2f}"
    assert f"{pc.ones(2)}" == repr(pc.ones(2))
    assert f"{pc.tensor(0.5)}" == "0.5" and f"{pc.tensor([0.5])}" == repr(pc.tensor([0.5]))
    assert f"{pc.tensor([0.5]):.2f}" == "0.50"


def test_tensor_constructor_dtypes_as_torch():
    assert pc.tensor(np.zeros(2)).dtype == pc.float64
    assert pc.tensor(np.zeros(2, np.float32)).dtype == pc.float32
    assert pc.tensor([0.5]).dtype == pc.float32 and pc.tensor(0.5).dtype == pc.float32
    assert pc.tensor([1, 2]).dtype == pc.int64 and pc.tensor([True]).dtype == pc.bool
    assert pc.tensor(pc.ones(2, dtype=pc.float64)).dtype == pc.float64
    assert pc.tensor(np.zeros(2), dtype=pc.float32).dtype == pc.float32
    b = pc.tensor(np.array([True, False]))
    assert b.dtype == pc.bool and b.numpy().dtype == np.bool_ and b.tolist() == [True, False]


# ---------------------------------------------------------------------------- PyTorch parity
def test_parity_with_torch():
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((4,)).astype(np.float32)
    x, y = pc.tensor(a), pc.tensor(b)
    tx, ty = torch.from_numpy(a), torch.from_numpy(b)
    checks = [
        (x + y * 2 - 1, tx + ty * 2 - 1), (x / (y.abs() + 1), tx / (ty.abs() + 1)), (x ** 2, tx ** 2),
        (x @ x.T, tx @ tx.T), (x.sum(1), tx.sum(1)), (x.mean(0, keepdim=True), tx.mean(0, keepdim=True)),
        (x.max(1).values, tx.max(1).values), (x.max(1).indices, tx.max(1).indices), (x.argmin(0), tx.argmin(0)),
        (x[:, 1:3], tx[:, 1:3]), (x[x > 0], tx[tx > 0]), (x.clamp(-0.5, 0.5), tx.clamp(-0.5, 0.5)),
        (x.exp(), tx.exp()), (x.unsqueeze(0).flatten(1), tx.unsqueeze(0).flatten(1)),
        (x.permute(1, 0).contiguous(), tx.permute(1, 0).contiguous()), (pc.stack([x, x], 2), torch.stack([tx, tx], 2)),
        (x > y, tx > ty), (pc.tensor([3, 4]) / 2, torch.tensor([3, 4]) / 2), (1 - x, 1 - tx),
    ]
    for mine, ref in checks:
        r = ref.numpy()
        assert mine.numpy().dtype == r.dtype and mine.shape == tuple(r.shape)
        np.testing.assert_allclose(mine.numpy(), r, rtol=1e-5, atol=1e-6)
    for data in ([1.5], np.zeros(2), [1, 2], [True], np.zeros(2, np.float32)):
        assert pc.tensor(data).numpy().dtype == torch.tensor(data).numpy().dtype


# -------------------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.skipif(not pc.cuda.is_available(), reason="no CUDA device available")
def test_cuda_matches_cpu():
    dev = "cuda"
    a = rng.standard_normal((5, 6)).astype(np.float32)
    x, g = pc.tensor(a), pc.tensor(a, device=dev)
    for f in [lambda t: t * 2 + 1, lambda t: t @ t.T, lambda t: t.sum(1), lambda t: t.mean(), lambda t: t.max(0).values,
              lambda t: t.argmax(1), lambda t: t[t > 0], lambda t: t[:, 1:4].T.contiguous(), lambda t: t > 0.5,
              lambda t: t.clamp(-1, 1).exp(), lambda t: pc.cat([t, t], 1), lambda t: t[pc.tensor([4, 0]).to(dev)]]:
        np.testing.assert_allclose(f(g).cpu().numpy(), f(x).numpy(), rtol=1e-5, atol=1e-6)
    g[g < 0] = 0
    g[:, 0] += 1
    x[x < 0] = 0
    x[:, 0] += 1
    np.testing.assert_array_equal(g.cpu().numpy(), x.numpy())
    with pytest.raises(RuntimeError, match="cpu.*cuda|cuda.*cpu"):
        x + g
    assert float(g.sum()) == pytest.approx(float(x.sum()), rel=1e-6)
