"""Backward rules of Tensor's differentiable methods, wrapped onto the class by name.

The methods themselves are _tensor_methods' and _tensor_views' (no autograd logic); ``install()``
replaces each one named in RULES with a wrapper that calls it and, when grad mode is on, no module
with its own backward is running forward (``capture`` of grad_mode's thread state) and an operand requires grad,
records an _OpNode whose backward is the rule. An nn.Parameter operand stands for its leaf tensor.
In-place methods refuse an operand that requires grad while recording (the tape would go stale).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import numpy as np

from .. import _core
from ..tensor import Tensor
from .function import Node, _as_traced, edge_of, mark_outputs
from .grad_mode import per_thread

__all__ = ["install", "RULES", "INPLACE"]


class _OpNode(Node):
    """One call of a Tensor method: the rule gets (node, grad) and the call's x, args, kwargs, out."""

    __slots__ = ("rule", "op", "x", "args", "kwargs", "out")

    def backward(self, *grads: Any) -> Tuple[Any, ...]:
        g = grads[0] if grads else None
        if g is None:
            return (None,) * len(self.edges)
        r = self.rule(self, g)
        return r if isinstance(r, tuple) else (r,)

    def release(self) -> None:
        self.x = self.args = self.kwargs = self.out = None
        self.released = True

    def name(self) -> str:
        return f"{self.op}Backward"


# ------------------------------------------------------------------------------------ helpers
def _cast(g: Tensor, like: Tensor) -> Tensor:
    if g.dtype != like.dtype:
        g = g.to(like.dtype)
    if g.device != like.device:
        g = g.to(like.device)
    return g


def unbroadcast(g: Tensor, like: Tensor) -> Tensor:
    """g summed down to like's shape (the backward of broadcasting), in like's dtype."""
    shape = tuple(like.shape)
    if tuple(g.shape) != shape:
        lead = g.ndim - len(shape)
        if lead:
            g = g.sum(dim=tuple(range(lead)))
        dims = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
        if dims:
            g = g.sum(dim=dims, keepdim=True)
        g = g.reshape(*shape)
    return _cast(g, like)


def _other(n: _OpNode) -> Any:
    return n.args[0] if n.args else n.kwargs.get("other", n.kwargs.get("exponent"))


def _pair(n: _OpNode, ga: Any, gb: Any) -> Tuple[Any, ...]:
    """Gradients for (self, other): other only when it is a tensor on the tape."""
    b = _other(n)
    if not isinstance(b, Tensor):
        return (unbroadcast(ga, n.x) if ga is not None else None,)
    return (unbroadcast(ga, n.x) if ga is not None else None, unbroadcast(gb, b) if gb is not None else None)


def _float(t: Tensor, like: Tensor) -> Tensor:
    return t.to(like.dtype)


# -------------------------------------------------------------------------------------- rules
def _add(n, g):
    alpha = n.kwargs.get("alpha", 1)
    return _pair(n, g, g * alpha if alpha != 1 else g)


def _sub(n, g):
    alpha = n.kwargs.get("alpha", 1)
    return _pair(n, g, -g if alpha == 1 else g * (-alpha))


def _rsub(n, g):  # other - self
    return _pair(n, -g, g)


def _mul(n, g):
    b = _other(n)
    return _pair(n, g * b, g * n.x if isinstance(b, Tensor) else None)


def _div(n, g):
    b = _other(n)
    ga = g / b
    return _pair(n, ga, -(ga * n.out) if isinstance(b, Tensor) else None)


def _rdiv(n, g):  # other / self
    return _pair(n, -(g * n.out) / n.x, g / n.x)


def _remainder(n, g):  # self - floor(self / other) * other
    b = _other(n)
    return _pair(n, g, -g * n.x.floor_divide(b) if isinstance(b, Tensor) else None)


def _rremainder(n, g):  # other % self
    return _pair(n, -g * (_other(n) // n.x), g)


def _floor_divide(n, g):
    raise RuntimeError("floor_divide: the derivative is not implemented (it is zero almost everywhere and "
                       "undefined at the steps, as in torch); detach() the operand or use / instead")


def _pow(n, g):
    e = _other(n)
    ga = g * e * (n.x ** (e - 1))
    gb = g * n.out * n.x.log() if isinstance(e, Tensor) else None
    return _pair(n, ga, gb)


def _rpow(n, g):  # other ** self
    b = _other(n)
    base = b if isinstance(b, Tensor) else float(b)
    ga = g * n.out * (base.log() if isinstance(base, Tensor) else float(np.log(base)))
    gb = g * n.x * (base ** (n.x - 1)) if isinstance(b, Tensor) else None
    return _pair(n, ga, gb)


def _matmul_grads(a: Tensor, b: Tensor, g: Tensor, need_a: bool, need_b: bool):
    a2 = a.unsqueeze(0) if a.ndim == 1 else a
    b2 = b.unsqueeze(-1) if b.ndim == 1 else b
    g2 = g
    if a.ndim == 1:
        g2 = g2.unsqueeze(-2)
    if b.ndim == 1:
        g2 = g2.unsqueeze(-1)
    ga = unbroadcast(g2 @ b2.mT, a2).reshape(*a.shape) if need_a else None
    gb = unbroadcast(a2.mT @ g2, b2).reshape(*b.shape) if need_b else None
    return ga, gb


def _matmul(n, g):
    b = _other(n)
    need = n.needs_input_grad
    ga, gb = _matmul_grads(n.x, b, g, need[0], len(need) > 1 and need[1])
    return (_cast(ga, n.x) if ga is not None else None, _cast(gb, b) if gb is not None else None)


def _rmatmul(n, g):  # other @ self
    b = _other(n)
    need = n.needs_input_grad
    gb, ga = _matmul_grads(b, n.x, g, len(need) > 1 and need[1], need[0])
    return (_cast(ga, n.x) if ga is not None else None, _cast(gb, b) if gb is not None else None)


def _extremum(n, g, is_max):
    b = _other(n)
    a = n.x
    wins = (a > b) if is_max else (a < b)
    tie = _float(a == b, g) * 0.5
    ga = g * (_float(wins, g) + tie)
    gb = g * (_float(~wins, g) - tie) if isinstance(b, Tensor) else None
    return _pair(n, ga, gb)


def _sign(x: Tensor, like: Tensor) -> Tensor:
    return _float(x > 0, like) - _float(x < 0, like)


def _clamp(n, g):
    lo = n.args[0] if n.args else n.kwargs.get("min")
    hi = n.args[1] if len(n.args) > 1 else n.kwargs.get("max")
    keep = None
    if lo is not None:
        keep = n.x >= lo
    if hi is not None:
        k = n.x <= hi
        keep = k if keep is None else keep & k
    return (g if keep is None else g * _float(keep, g),)


def _reduced_dim(n) -> Any:
    """A sum/mean's dim argument; None for every dim (also dim=(), as torch reduces all then)."""
    dim = n.args[0] if n.args else n.kwargs.get("dim")
    return None if isinstance(dim, (tuple, list)) and not dim else dim


def _expand_back(n, g, count: int = 1):
    """The gradient of a sum/mean over dims: g put back into every reduced position."""
    x = n.x
    dim = _reduced_dim(n)
    keepdim = n.args[1] if len(n.args) > 1 else n.kwargs.get("keepdim", False)
    if dim is None:
        g = g.reshape(*([1] * x.ndim)) if x.ndim else g
    elif not keepdim:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        for d in sorted(d % max(x.ndim, 1) for d in dims):
            g = g.unsqueeze(d)
    g = g.expand(*x.shape).contiguous() if x.ndim else g
    return _cast(g / count if count != 1 else g, x)


def _sum(n, g):
    return (_expand_back(n, g),)


def _mean(n, g):
    x = n.x
    dim = _reduced_dim(n)
    if dim is None:
        count = x.numel()
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        count = int(np.prod([x.shape[d] for d in dims])) if x.ndim else 1
    return (_expand_back(n, g, count),)


def _max_or_min(n, g):
    x, out = n.x, n.out
    if isinstance(out, tuple):  # (values, indices) along dim
        dim = n.args[0] if n.args else n.kwargs.get("dim")
        keepdim = n.args[1] if len(n.args) > 1 else n.kwargs.get("keepdim", False)
        d = dim % max(x.ndim, 1)
        idx = out[1] if keepdim or x.ndim == 0 else out[1].unsqueeze(d)
        gk = g if keepdim or x.ndim == 0 else g.unsqueeze(d)
        shape = [1] * max(x.ndim, 1)
        shape[d] = x.shape[d] if x.ndim else 1
        iota = _core.from_numpy(np.arange(shape[d], dtype=np.int64).reshape(shape))
        if x.device != "cpu":
            iota = iota.to(x.device)
        return (_cast(gk * _float(iota == idx, gk), x).reshape(*x.shape),)
    if isinstance(_other(n), Tensor):  # max(other): the elementwise maximum
        return _extremum(n, g, n.op == "max")
    hits = _float(x == out, g)  # a full reduction: ties share the gradient, as torch's amax
    return (_cast(hits * (g / hits.sum()), x),)


def _reshape_back(n, g):
    return (g.reshape(*n.x.shape),)


def _permute(n, g):
    dims = n.args[0] if len(n.args) == 1 and isinstance(n.args[0], (tuple, list)) else n.args
    if not dims:
        dims = n.kwargs.get("dims")
    nd = n.x.ndim
    inv = [0] * nd
    for i, d in enumerate(dims):
        inv[d % nd] = i
    return (g.permute(*inv),)


def _transpose(n, g):
    d0 = n.args[0] if n.args else n.kwargs["dim0"]
    d1 = n.args[1] if len(n.args) > 1 else n.kwargs["dim1"]
    return (g.transpose(d0, d1),)


def _T(n, g):
    return (g.permute(*reversed(range(g.ndim))) if g.ndim > 2 else g.t() if g.ndim == 2 else g,)


def _mT(n, g):
    return (g.mT,)


def _getitem(n, g):
    x, index = n.x, n.args[0]
    dx = _core.zeros(list(x.shape), g.dtype, g.device)
    if _is_basic(index):
        dx[index] = g
        return (dx,)
    # advanced indexing may pick an element twice: sum on the host (np.add.at), as index_put(accumulate)
    idx = _host_index(index)
    acc = np.zeros(tuple(x.shape), dtype=g.dtype.numpy)
    np.add.at(acc, idx, np.asarray(g.numpy()))
    out = _core.from_numpy(acc)
    return (out.to(x.device) if x.device != "cpu" else out,)


def _is_basic(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis for i in items)


def _host_index(index: Any) -> Any:
    items = index if isinstance(index, tuple) else (index,)
    out = tuple(np.asarray(i.numpy()) if isinstance(i, Tensor) else i for i in items)
    return out if isinstance(index, tuple) else out[0]


def _same(n, g):
    return (_cast(g, n.x),)


RULES: Dict[str, Callable] = {
    "add": _add, "__add__": _add, "__radd__": _add, "sub": _sub, "subtract": _sub, "__sub__": _sub,
    "__rsub__": _rsub, "mul": _mul, "multiply": _mul, "__mul__": _mul, "__rmul__": _mul,
    "div": _div, "divide": _div, "true_divide": _div, "__truediv__": _div, "__rtruediv__": _rdiv,
    "pow": _pow, "__pow__": _pow, "__rpow__": _rpow, "matmul": _matmul, "__matmul__": _matmul,
    "__rmatmul__": _rmatmul, "remainder": _remainder, "__mod__": _remainder, "__rmod__": _rremainder,
    "floor_divide": _floor_divide, "__floordiv__": _floor_divide, "__rfloordiv__": _floor_divide,
    "maximum": lambda n, g: _extremum(n, g, True), "minimum": lambda n, g: _extremum(n, g, False),
    "neg": lambda n, g: (-g,), "negative": lambda n, g: (-g,), "__neg__": lambda n, g: (-g,),
    "abs": lambda n, g: (g * _sign(n.x, g),), "__abs__": lambda n, g: (g * _sign(n.x, g),),
    "exp": lambda n, g: (g * n.out,), "log": lambda n, g: (g / n.x,),
    "sqrt": lambda n, g: (g / (n.out * 2.0),), "clamp": _clamp, "clip": _clamp,
    "sum": _sum, "mean": _mean, "max": _max_or_min, "min": _max_or_min,
    "reshape": _reshape_back, "view": _reshape_back, "view_as": _reshape_back, "reshape_as": _reshape_back,
    "flatten": _reshape_back, "squeeze": _reshape_back, "unsqueeze": _reshape_back,
    "permute": _permute, "transpose": _transpose, "t": lambda n, g: (g.t(),),
    "expand": lambda n, g: (unbroadcast(g, n.x),), "expand_as": lambda n, g: (unbroadcast(g, n.x),),
    "broadcast_to": lambda n, g: (unbroadcast(g, n.x),),
    "T": _T, "mT": _mT, "__getitem__": _getitem,
    "clone": _same, "contiguous": _same, "to": _same, "float": _same, "double": _same, "cpu": _same,
    "cuda": _same, "type_as": _same,
}
PROPERTIES = ("T", "mT")
INPLACE = ("add_", "sub_", "mul_", "div_", "pow_", "neg_", "abs_", "exp_", "log_", "sqrt_", "clamp_", "clip_",
           "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ipow__",
           "floor_divide_", "remainder_", "__ifloordiv__", "__imod__", "zero_", "fill_", "copy_",
           "__setitem__")


# ------------------------------------------------------------------------------------ install
def _needs(x: Any, args: tuple) -> bool:
    if isinstance(x, Tensor) and x._rg:
        return True
    return any(isinstance(a, Tensor) and a._rg for a in args)


def _wrap(name: str, orig: Callable, rule: Callable) -> Callable:
    def method(self: Tensor, *args: Any, **kwargs: Any) -> Any:
        s = per_thread.state
        if s.capture is not None or not s.enabled:
            return orig(self, *args, **kwargs)
        args = tuple(_as_traced(a) for a in args)
        if not _needs(self, args):
            return orig(self, *args, **kwargs)
        s.enabled = False
        try:
            out = orig(self, *args, **kwargs)
        finally:
            s.enabled = True
        if out is NotImplemented or out is self:
            return out
        node = _OpNode()
        node.rule, node.op, node.x, node.args, node.kwargs, node.out = rule, name.strip("_"), self, args, kwargs, out
        node.edges = (edge_of(self),) + tuple(edge_of(a) for a in args if isinstance(a, Tensor))
        node.needs_input_grad = tuple(e is not None for e in node.edges)
        mark_outputs(node, (out[0],) if isinstance(out, tuple) else (out,))
        return out

    method.__name__ = name
    method.__doc__ = getattr(orig, "__doc__", None)
    method._pycnn_traced = True  # type: ignore[attr-defined]
    return method


def _refusing(name: str, orig: Callable) -> Callable:
    def method(self: Tensor, *args: Any, **kwargs: Any) -> Any:
        s = per_thread.state
        if s.enabled and s.capture is None and _needs(self, args):
            raise RuntimeError(f"{name}: an in-place operation on a tensor that requires grad (or with an operand "
                               "that does) would make the recorded graph wrong; use the out-of-place form "
                               "(a = a + b), or run it under pc.no_grad()")
        return orig(self, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = getattr(orig, "__doc__", None)
    method._pycnn_traced = True  # type: ignore[attr-defined]
    return method


def install() -> list:
    """Wraps every method named in RULES and INPLACE that Tensor has; returns the names missing."""
    missing = []
    for name, rule in RULES.items():
        attr = Tensor.__dict__.get(name)
        if attr is None:
            missing.append(name)
            continue
        if name in PROPERTIES:
            if isinstance(attr, property) and not getattr(attr.fget, "_pycnn_traced", False):
                setattr(Tensor, name, property(_wrap(name, attr.fget, rule)))
            continue
        if not getattr(attr, "_pycnn_traced", False):
            setattr(Tensor, name, _wrap(name, attr, rule))
    for name in INPLACE:
        attr = Tensor.__dict__.get(name)
        if attr is None:
            missing.append(name)
        elif not getattr(attr, "_pycnn_traced", False):
            setattr(Tensor, name, _refusing(name, attr))
    return missing
