"""pycnn.functional: argument normalisation, errors, and every op against the NumPy reference."""
from __future__ import annotations


import numpy as np
import pytest

import pycnn as pc
from pycnn import functional as F
from pycnn import testing

from helpers import T64 as T, rng

import reference as ref


def N(t):
    return np.asarray(t.numpy())


def close(actual, expected, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(N(actual) if isinstance(actual, pc.Tensor) else actual, expected, rtol=rtol, atol=atol)


def away_from_zero(a, margin=0.05):
    a = np.array(a, dtype=np.float64)
    small = np.abs(a) < margin
    a[small] = np.where(a[small] >= 0, margin, -margin) * 2
    return a


# ----------------------------------------------------------------------------------------------
# argument normalisation
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, (2, 3), (4, 1)])
@pytest.mark.parametrize("d", [1, 2, (1, 3)])
def test_same_padding_keeps_size(k, d):
    x = rng(1).standard_normal((2, 3, 9, 8))
    kk = (k, k) if isinstance(k, int) else k
    w = rng(2).standard_normal((4, 3) + kk)
    y = F.conv2d(T(x), T(w), None, padding="same", dilation=d)
    assert y.shape == (2, 4, 9, 8)
    pads = F.same_padding(k, d)
    close(y, ref.conv2d(x, w, None, 1, pads, d))


def test_same_padding_puts_the_odd_pixel_bottom_right():
    assert F.same_padding(4) == (1, 2, 1, 2)
    assert F.same_padding(3) == (1, 1, 1, 1)
    assert F.same_padding((2, 5), (3, 1)) == (1, 2, 2, 2)
    assert F.same_padding(1) == (0, 0, 0, 0)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_same_padding_matches_torch_for_even_kernels():
    torch = pytest.importorskip("torch")
    x = rng(3).standard_normal((1, 2, 7, 6))
    w = rng(4).standard_normal((3, 2, 4, 2))
    want = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding="same", dilation=(1, 2)).numpy()
    close(F.conv2d(T(x), T(w), padding="same", dilation=(1, 2)), want)


@pytest.mark.parametrize("padding, pads", [(0, (0, 0, 0, 0)), (2, (2, 2, 2, 2)), ((1, 2), (1, 1, 2, 2)),
                                           ([0, 1, 2, 0], (0, 1, 2, 0)), ("valid", (0, 0, 0, 0)),
                                           ("VALID", (0, 0, 0, 0)), (np.int64(1), (1, 1, 1, 1))])
def test_padding_forms(padding, pads):
    x = rng(5).standard_normal((1, 2, 6, 7))
    w = rng(6).standard_normal((2, 2, 3, 3))
    close(F.conv2d(T(x), T(w), padding=padding), ref.conv2d(x, w, None, 1, pads, 1))


def test_numpy_inputs_are_converted():
    x = rng(7).standard_normal((2, 3, 5, 5))
    w = rng(8).standard_normal((4, 3, 3, 3))
    b = rng(9).standard_normal(4)
    y = F.conv2d(x, w, b, stride=2, padding=1)
    assert isinstance(y, pc.Tensor) and y.dtype == pc.float64
    close(y, ref.conv2d(x, w, b, 2, 1, 1))
    close(F.relu(np.array([-1.0, 2.0])), [0.0, 2.0])


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(stride=0), ValueError, ["conv2d", "stride"]),
    (dict(stride=-1), ValueError, ["conv2d", "stride"]),
    (dict(stride=1.5), TypeError, ["conv2d", "stride"]),
    (dict(stride="2"), TypeError, ["conv2d", "stride"]),
    (dict(stride=True), TypeError, ["conv2d", "stride"]),
    (dict(stride=(1, 2, 3)), TypeError, ["conv2d", "stride"]),
    (dict(padding=-1), ValueError, ["conv2d", "padding"]),
    (dict(padding=(1, 2, 3)), TypeError, ["conv2d", "padding"]),
    (dict(padding="full"), ValueError, ["conv2d", "padding"]),
    (dict(padding="same", stride=2), ValueError, ["conv2d", "same"]),
    (dict(padding=1.0), TypeError, ["conv2d", "padding"]),
    (dict(dilation=0), ValueError, ["conv2d", "dilation"]),
    (dict(groups=0), ValueError, ["conv2d", "groups"]),
    (dict(groups=1.0), TypeError, ["conv2d", "groups"]),
])
def test_conv2d_bad_arguments(kwargs, exc, words):
    x, w = T(np.zeros((1, 2, 5, 5))), T(np.zeros((2, 2, 3, 3)))
    with pytest.raises(exc) as e:
        F.conv2d(x, w, **kwargs)
    for word in words:
        assert word in str(e.value)


def test_bad_tensor_kinds_name_the_function():
    with pytest.raises(TypeError, match="conv2d: input"):
        F.conv2d([[1.0]], T(np.zeros((1, 1, 1, 1))))
    with pytest.raises(TypeError, match="linear: weight"):
        F.linear(T(np.zeros((2, 3))), "w")
    with pytest.raises(TypeError, match="relu"):
        F.relu(3.0)
    with pytest.raises(TypeError, match="cross_entropy"):
        F.cross_entropy(T(np.zeros((2, 3))), np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="conv2d"):
        F.conv2d(T(np.zeros((1, 3, 5, 5))), T(np.zeros((2, 2, 3, 3))))  # channel mismatch (core check)


@pytest.mark.parametrize("fn", [F.max_pool2d, F.avg_pool2d])
def test_pool_bad_arguments(fn):
    x = T(np.zeros((1, 1, 6, 6)))
    name = fn.__name__
    with pytest.raises(ValueError, match=name):
        fn(x, 0)
    with pytest.raises(ValueError, match=name):
        fn(x, 2, stride=0)
    with pytest.raises(TypeError, match=name):
        fn(x, 2.0)
    with pytest.raises(ValueError, match=name):
        fn(x, 2, padding=-1)
    with pytest.raises(ValueError, match=name):
        fn(x, 2, padding=2)  # more than half the kernel (PyTorch's rule)


def test_misc_bad_arguments():
    x = T(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="dropout"):
        F.dropout(x, 1.5)
    with pytest.raises(TypeError, match="leaky_relu"):
        F.leaky_relu(x, "a")
    with pytest.raises(ValueError, match="softplus"):
        F.softplus(x, beta=0)
    with pytest.raises(ValueError, match="softmax"):
        F.softmax(x, dim=0)
    with pytest.raises(ValueError, match="softmax"):
        F.softmax(x, dim=2)
    with pytest.raises(ValueError, match="adaptive_avg_pool2d"):
        F.adaptive_avg_pool2d(T(np.zeros((1, 1, 4, 4))), 0)
    with pytest.raises(TypeError, match="adaptive_avg_pool2d"):
        F.adaptive_avg_pool2d(T(np.zeros((1, 1, 4, 4))), "2")
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(x, x, reduction="none")


# ----------------------------------------------------------------------------------------------
# convolution
# ----------------------------------------------------------------------------------------------
CONV_CASES = [
    dict(C=3, O=4, k=(3, 3), stride=1, padding=0, dilation=1, groups=1),
    dict(C=4, O=6, k=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2),
    dict(C=4, O=4, k=(3, 3), stride=1, padding=(0, 2, 1, 1), dilation=1, groups=4),  # depthwise, asymmetric
    dict(C=2, O=3, k=(1, 1), stride=1, padding=0, dilation=1, groups=1),  # pointwise
    dict(C=3, O=2, k=(2, 2), stride=3, padding=2, dilation=2, groups=1),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_forward_backward_against_reference(case):
    r = rng(10)
    x = r.standard_normal((2, case["C"], 9, 8))
    w = r.standard_normal((case["O"], case["C"] // case["groups"]) + case["k"])
    b = r.standard_normal(case["O"])
    args = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"])
    y = F.conv2d(T(x), T(w), T(b), **args)
    pads = ref._pad4(case["padding"])
    want = ref.conv2d(x, w, b, case["stride"], pads, case["dilation"], case["groups"])
    close(y, want)
    dy = r.standard_normal(want.shape)
    dx, dw, db = F.conv2d_backward(T(dy), T(x), T(w), **args)
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, case["stride"], pads, case["dilation"], case["groups"])
    close(dx, rdx)
    close(dw, rdw)
    close(db, rdb)
    none_dx, dw2, none_db = F.conv2d_backward(T(dy), T(x), T(w), **args, need_dx=False, need_db=False)
    assert none_dx is None and none_db is None
    close(dw2, rdw)


def test_conv2d_float32():
    r = rng(11)
    x = r.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = r.standard_normal((5, 3, 3, 3)).astype(np.float32)
    y = F.conv2d(x, w, padding=1)
    assert y.dtype == pc.float32
    close(y, ref.conv2d(x, w, None, 1, 1, 1), rtol=1e-4, atol=1e-4)


def test_conv2d_gradcheck_function_pair():
    r = rng(12)
    x, w = r.standard_normal((1, 2, 5, 5)), r.standard_normal((2, 1, 3, 3))

    def fwd(x, w):
        return F.conv2d(x, w, stride=2, padding=1, groups=2)

    def bwd(g, x, w):
        dx, dw, _ = F.conv2d_backward(g, x, w, stride=2, padding=1, groups=2)
        return dx, dw

    assert testing.gradcheck((fwd, bwd), (x, w))


def test_gradcheck_detects_a_wrong_backward():
    r = rng(13)
    x = r.standard_normal((3, 4))
    with pytest.raises(AssertionError, match="input 0"):
        testing.gradcheck((F.tanh, lambda g, x: F.sigmoid_backward(g, x)), (x,))
    assert testing.gradcheck((F.tanh, lambda g, x: F.tanh_backward(g, x)), (x,))
    assert not testing.gradcheck((F.tanh, lambda g, x: F.relu_backward(g, x)), (x,), raise_exception=False)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3), dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 0)),
                                    dict(kernel_size=2, stride=3, padding=1, dilation=2)])
def test_im2col(kwargs):
    x = rng(14).standard_normal((2, 3, 7, 6))
    cols = F.im2col(T(x), **kwargs)
    close(cols, ref.im2col(x, **kwargs))


def test_im2col_matches_torch_unfold():
    torch = pytest.importorskip("torch")
    x = rng(15).standard_normal((2, 2, 6, 5))
    want = torch.nn.functional.unfold(torch.tensor(x), (3, 2), dilation=(1, 2), padding=1, stride=(2, 1)).numpy()
    close(F.im2col(x, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2)), want)


# ----------------------------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k, s, p", [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1))])
def test_max_pool2d(k, s, p):
    r = rng(16)
    x = r.permutation(2 * 3 * 7 * 8).reshape(2, 3, 7, 8).astype(np.float64)  # no ties
    y, idx = F.max_pool2d(T(x), k, s, p, return_indices=True)
    ry, ridx = ref.max_pool2d(x, k, s, p)
    close(y, ry)
    np.testing.assert_array_equal(N(idx), ridx)
    assert idx.dtype == pc.int64
    y_only = F.max_pool2d(T(x), k, s, p)
    assert isinstance(y_only, pc.Tensor)
    dy = r.standard_normal(ry.shape)
    close(F.max_pool2d_backward(T(dy), idx, x.shape), ref.max_pool2d_backward(dy, ridx, x.shape))


@pytest.mark.parametrize("k, s, p", [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1))])
def test_avg_pool2d(k, s, p):
    r = rng(17)
    x = r.standard_normal((2, 3, 7, 8))
    close(F.avg_pool2d(T(x), k, s, p), ref.avg_pool2d(x, k, s, p))
    dy = r.standard_normal(ref.avg_pool2d(x, k, s, p).shape)
    close(F.avg_pool2d_backward(T(dy), x.shape, k, s, p), ref.avg_pool2d_backward(dy, x.shape, k, s, p))


@pytest.mark.parametrize("out", [1, 3, (2, 5), (None, 2)])
def test_adaptive_avg_pool2d(out):
    r = rng(18)
    x = r.standard_normal((2, 3, 7, 6))
    y = F.adaptive_avg_pool2d(T(x), out)
    close(y, ref.adaptive_avg_pool2d(x, out))
    dy = r.standard_normal(tuple(y.shape))
    close(F.adaptive_avg_pool2d_backward(T(dy), x.shape), ref.adaptive_avg_pool2d_backward(dy, x.shape))


# ----------------------------------------------------------------------------------------------
# linear, activations
# ----------------------------------------------------------------------------------------------
def test_linear():
    r = rng(19)
    x, w, b = r.standard_normal((5, 4)), r.standard_normal((3, 4)), r.standard_normal(3)
    close(F.linear(T(x), T(w), T(b)), ref.linear(x, w, b))
    close(F.linear(T(x), T(w)), ref.linear(x, w))
    dy = r.standard_normal((5, 3))
    for got, want in zip(F.linear_backward(T(dy), T(x), T(w)), ref.linear_backward(dy, x, w)):
        close(got, want)
    dx, dw, db = F.linear_backward(T(dy), T(x), T(w), need_dx=False, need_db=False)
    assert dx is None and db is None and dw is not None


ACTS = [
    (F.relu, F.relu_backward, ref.relu, ref.relu_backward, {}),
    (F.leaky_relu, F.leaky_relu_backward, ref.leaky_relu, ref.leaky_relu_backward, dict(negative_slope=0.2)),
    (F.elu, F.elu_backward, ref.elu, ref.elu_backward, dict(alpha=0.7)),
    (F.sigmoid, F.sigmoid_backward, ref.sigmoid, ref.sigmoid_backward, {}),
    (F.tanh, F.tanh_backward, ref.tanh, ref.tanh_backward, {}),
    (F.softplus, F.softplus_backward, ref.softplus, ref.softplus_backward, dict(beta=2.0)),
]


@pytest.mark.parametrize("fwd, bwd, rfwd, rbwd, kw", ACTS, ids=[a[0].__name__ for a in ACTS])
def test_activations(fwd, bwd, rfwd, rbwd, kw):
    r = rng(20)
    x = away_from_zero(r.standard_normal((3, 4, 5)) * 3)
    x[0, 0, :2] = [30.0, -30.0]
    dy = r.standard_normal(x.shape)
    close(fwd(T(x), **kw), rfwd(x, **kw), rtol=1e-12)
    close(bwd(T(dy), T(x), **kw), rbwd(dy, x, **kw), rtol=1e-12)
    assert testing.gradcheck((lambda a: fwd(a, **kw), lambda g, a: bwd(g, a, **kw)), (x[1:],))


@pytest.mark.parametrize("wshape", [(1,), (4,)])
def test_prelu(wshape):
    r = rng(21)
    x = away_from_zero(r.standard_normal((2, 4, 3, 3)))
    w = r.uniform(0.1, 0.5, wshape)
    close(F.prelu(T(x), T(w)), ref.prelu(x, w))
    dy = r.standard_normal(x.shape)
    dx, dw = F.prelu_backward(T(dy), T(x), T(w))
    rdx, rdw = ref.prelu_backward(dy, x, w)
    close(dx, rdx)
    close(dw, rdw)
    assert testing.gradcheck((F.prelu, lambda g, a, b: F.prelu_backward(g, a, b)), (x, w))


# ----------------------------------------------------------------------------------------------
# softmax and losses
# ----------------------------------------------------------------------------------------------
def test_softmax_and_log_softmax():
    r = rng(22)
    x = r.standard_normal((4, 6)) * 5
    x[0, 0] = 1e4  # stability
    close(F.softmax(T(x)), ref.softmax(x))
    close(F.softmax(T(x), dim=-1), ref.softmax(x))
    close(F.log_softmax(T(x)), ref.log_softmax(x), atol=1e-9)
    y = F.softmax(T(x))
    dy = r.standard_normal(x.shape)
    close(F.softmax_backward(T(dy), y), ref.softmax_backward(dy, x))
    x3 = r.standard_normal((2, 3, 5))
    close(F.softmax(T(x3), dim=-1), ref.softmax(x3, dim=-1))
    close(F.softmax(T(x3[0, 0]), dim=0), ref.softmax(x3[0, 0], dim=0))


def test_cross_entropy():
    r = rng(23)
    logits = r.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2], dtype=np.int32)  # any int dtype is converted
    loss = F.cross_entropy(T(logits), labels)
    assert loss.shape == () and loss.dtype == pc.float64
    assert loss.item() == pytest.approx(ref.cross_entropy(logits, labels), rel=1e-12)
    close(F.cross_entropy_backward(T(logits), labels), ref.cross_entropy_backward(logits, labels))
    close(F.cross_entropy_backward(T(logits), labels, grad=2.5), ref.cross_entropy_backward(logits, labels, 2.5))
    s = F.cross_entropy(T(logits), labels.tolist(), reduction="sum")
    assert s.item() == pytest.approx(5 * ref.cross_entropy(logits, labels), rel=1e-12)
    close(F.cross_entropy_backward(T(logits), labels, reduction="sum"),
          5 * ref.cross_entropy_backward(logits, labels))
    with pytest.raises(ValueError, match="cross_entropy"):
        F.cross_entropy(T(logits), np.array([0, 1, 2, 3, 4]))  # label 4 out of range
    with pytest.raises(ValueError, match="cross_entropy"):
        F.cross_entropy(T(logits), np.array([0, 1]))


def test_cross_entropy_forward_returns_what_its_backward_reads():
    r = rng(25)
    logits = r.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2], dtype=np.int32)
    for reduction, n in (("mean", 1.0), ("sum", 5.0)):
        loss, probs, lab, scale = F.cross_entropy_forward(T(logits), labels, reduction)
        assert loss.item() == pytest.approx(n * ref.cross_entropy(logits, labels), rel=1e-12)
        assert scale == n and lab.dtype == pc.int64 and N(lab).tolist() == labels.tolist()
        close(probs, ref.softmax(logits, dim=1))
        close(pc._core.cross_entropy_backward(probs, lab, 2.5 * scale),
              F.cross_entropy_backward(T(logits), labels, grad=2.5, reduction=reduction))
    with pytest.raises(ValueError, match="cross_entropy"):
        F.cross_entropy_forward(T(logits), labels, reduction="max")


def test_mse_loss():
    r = rng(24)
    x, t = r.standard_normal((3, 4)), r.standard_normal((3, 4))
    assert F.mse_loss(T(x), t).item() == pytest.approx(ref.mse_loss(x, t), rel=1e-12)
    close(F.mse_loss_backward(T(x), t), ref.mse_loss_backward(x, t))
    close(F.mse_loss_backward(T(x), T(t), grad=3.0), ref.mse_loss_backward(x, t, 3.0))
    assert F.mse_loss(T(x), t, reduction="sum").item() == pytest.approx(12 * ref.mse_loss(x, t), rel=1e-12)
    # a NumPy float32 target follows the input's dtype
    assert F.mse_loss(T(x), t.astype(np.float32)).dtype == pc.float64


# ----------------------------------------------------------------------------------------------
# dropout, batch norm
# ----------------------------------------------------------------------------------------------
def test_dropout():
    x = np.ones((200, 100))
    pc.manual_seed(3)
    y, mask = F.dropout(T(x), 0.3, return_mask=True)
    m = N(mask)
    assert set(np.unique(m)) <= {0.0, 1 / 0.7}
    assert abs((m == 0).mean() - 0.3) < 0.02
    close(y, x * m)
    dy = rng(25).standard_normal(x.shape)
    close(F.dropout_backward(T(dy), mask), dy * m)
    pc.manual_seed(3)
    close(F.dropout(T(x), 0.3), N(y))  # repeats after reseeding
    assert F.dropout(T(x), 0.3, training=False).numpy().sum() == x.sum()
    close(F.dropout(T(x), 0.0), x)
    assert N(F.dropout(T(x), 1.0)).sum() == 0


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 3, 4, 4)])
def test_batch_norm(shape):
    r = rng(26)
    x = r.standard_normal(shape) * 2 + 1
    C = shape[1]
    g, b = r.uniform(0.5, 1.5, C), r.standard_normal(C)
    rm, rv = T(np.zeros(C)), T(np.ones(C))
    y, mean, invstd = F.batch_norm_train(T(x), T(g), T(b), rm, rv, 0.1, 1e-5)
    ry, rmean, rvar = ref.batch_norm_train(x, g, b, 1e-5)
    close(y, ry, rtol=1e-9, atol=1e-10)
    close(mean, rmean)
    close(invstd, 1 / np.sqrt(rvar + 1e-5), rtol=1e-9)
    n = x.size // C
    want_m, want_v = ref.update_running_stats(np.zeros(C), np.ones(C), rmean, rvar, n, 0.1)
    close(rm, want_m)
    close(rv, want_v, rtol=1e-9)
    dy = r.standard_normal(shape)
    dx, dg, db = F.batch_norm_backward(T(dy), T(x), T(g), mean, invstd)
    rdx, rdg, rdb = ref.batch_norm_backward(dy, x, g, 1e-5)
    close(dx, rdx, rtol=1e-8, atol=1e-10)
    close(dg, rdg, rtol=1e-9, atol=1e-10)
    close(db, rdb)
    ye = F.batch_norm(T(x), rm, rv, T(g), T(b), training=False)
    close(ye, ref.batch_norm_eval(x, N(rm), N(rv), g, b), rtol=1e-9, atol=1e-10)
    yt = F.batch_norm(T(x), None, None, training=True)  # no running stats, no affine
    close(yt, ref.batch_norm_train(x, None, None)[0], rtol=1e-9, atol=1e-10)


def test_add_concat_split():
    r = rng(27)
    a, b = r.standard_normal((2, 3, 4)), r.standard_normal((2, 5, 4))
    close(F.add(T(a), T(a)), 2 * a)
    c = F.concat([T(a), T(b)], dim=1)
    close(c, np.concatenate([a, b], axis=1))
    p, q = F.split(c, [3, 5], dim=1)
    close(p, a)
    close(q, b)
