"""The tape: Node (one recorded op), AccumulateGrad (a leaf), and Function (a user-defined op).

Every tensor an op makes while recording carries ``_grad_fn`` (the Node that made it) and
``_out_index`` (which of the node's outputs it is); a leaf that requires grad has ``_rg`` set and
no node. A Node holds one edge per input, ``(node, output_index)`` or None where that input needs
no gradient, and its ``backward(*grads)`` returns one gradient per input (None where there is
none). Nodes are numbered in creation order: the engine runs them newest first.
"""
from __future__ import annotations

import itertools
import weakref
from typing import Any, Optional, Sequence, Tuple

from .. import _core
from ..tensor import Tensor
from . import grad_mode

__all__ = ["Node", "AccumulateGrad", "Function", "FunctionCtx"]

_seq = itertools.count()

# Tensor's autograd attributes, read on every op: class-level defaults, per-instance values set by
# the tape (the C++ class has py::dynamic_attr, so an instance attribute costs one small dict).
Tensor._rg = False
Tensor._grad_fn = None
Tensor._out_index = 0
Tensor._explicit_only = False
Tensor.grad = None
Tensor._pass_id = None  # the forward pass of nn.Module that made it (see nn/module.py)
Tensor._param = None  # on the leaf standing for an nn.Parameter: a weak reference to it


class Node:
    """One recorded op. Subclasses implement ``backward(*grad_outputs) -> tuple of input grads``."""

    __slots__ = ("edges", "seq", "saved_tensors", "needs_input_grad", "__dict__", "__weakref__")
    fills_leaves = False  # True for a node that sums into leaves itself (a module's parameters)
    released = False      # True once a backward without retain_graph has freed what it saved

    def __init__(self) -> None:
        self.edges: Tuple[Optional[Tuple[Any, int]], ...] = ()
        self.seq = next(_seq)
        self.saved_tensors: Tuple[Any, ...] = ()
        self.needs_input_grad: Tuple[bool, ...] = ()

    def save_for_backward(self, *tensors: Any) -> None:
        self.saved_tensors = tensors

    def backward(self, *grad_outputs: Any) -> Tuple[Any, ...]:
        raise NotImplementedError(f"{type(self).__name__} has no backward")

    def release(self) -> None:
        """Drops what the backward needed (after a backward without retain_graph)."""
        self.saved_tensors = ()
        self.released = True

    def name(self) -> str:
        return type(self).__name__

    @property
    def next_functions(self) -> Tuple[Any, ...]:
        return tuple(e if e is not None else (None, 0) for e in self.edges)

    def __repr__(self) -> str:
        return f"<{self.name()} object>"


class AccumulateGrad(Node):
    """A leaf: its gradient is summed into ``.grad`` of the tensor, or of the nn.Parameter the
    tensor stands for (``tensor._param``)."""

    __slots__ = ("target",)

    def __init__(self, target: Any) -> None:
        super().__init__()
        self.target = weakref.ref(target)

    def accumulate(self, g: Tensor) -> None:
        t = self.target()
        if t is None:
            return
        owner = t._param
        if owner is not None:
            t = owner()
            if t is None or not t.requires_grad:
                return
        if g.dtype != t.dtype:
            g = g.to(t.dtype)
        if tuple(g.shape) != tuple(t.shape):
            raise RuntimeError(f"autograd: the gradient of a leaf of shape {tuple(t.shape)} has shape "
                               f"{tuple(g.shape)}")
        if t.grad is None:
            t.grad = g.clone()  # its own contiguous copy: g may be a view of a gradient used elsewhere
        else:
            _core.add_(t.grad, g)

    def name(self) -> str:
        return "AccumulateGrad"


def _leaf_node(t: Tensor) -> AccumulateGrad:
    node = t.__dict__.get("_acc")
    if node is None:
        node = t.__dict__["_acc"] = AccumulateGrad(t)
    return node


def edge_of(t: Any) -> Optional[Tuple[Any, int]]:
    """The edge to `t`'s gradient: its node, or its leaf accumulator; None when it needs none."""
    if not isinstance(t, Tensor) or not t._rg:
        return None
    fn = t._grad_fn
    if fn is not None:
        return fn, t._out_index
    return _leaf_node(t), 0


def mark_outputs(node: Node, outputs: Sequence[Any]) -> None:
    """Connects the tensors an op made to its node (non-floating ones stay off the tape)."""
    for i, o in enumerate(outputs):
        if isinstance(o, Tensor) and o.dtype.numpy.kind == "f":
            o._rg = True
            o._grad_fn = node
            if i:
                o._out_index = i


class FunctionCtx(Node):
    """The node of one ``Function.apply`` call; it is the ``ctx`` that forward and backward get."""

    __slots__ = ()
    _fn: Any = None

    def backward(self, *grad_outputs: Any) -> Tuple[Any, ...]:
        grads = self._fn.backward(self, *grad_outputs)
        return grads if isinstance(grads, tuple) else (grads,)

    def name(self) -> str:
        return f"{self._fn.__name__}Backward"


class Function:
    """A differentiable op, as ``torch.autograd.Function``::

        class Square(pc.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            def backward(ctx, grad):
                (x,) = ctx.saved_tensors
                return 2 * x * grad

        y = Square.apply(x)

    forward runs with recording off; backward returns one gradient per forward argument (None for
    those without one). ``ctx.needs_input_grad`` says which arguments need one."""

    _ctx_types: dict = {}

    @staticmethod
    def forward(ctx: FunctionCtx, *args: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: FunctionCtx, *grad_outputs: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any) -> Any:
        args = tuple(_as_traced(a) for a in args)
        edges = tuple(edge_of(a) for a in args)
        record = grad_mode.is_grad_enabled() and any(e is not None for e in edges)
        ctx = _new_ctx(cls)
        ctx.edges = edges
        ctx.needs_input_grad = tuple(e is not None for e in edges)
        with grad_mode.no_grad():
            out = cls.forward(ctx, *args)
        if record:
            many = isinstance(out, (tuple, list))
            outs = [_fresh(o, args) for o in (out if many else (out,))]
            mark_outputs(ctx, outs)
            out = type(out)(outs) if many else outs[0]
        return out


def alias(t: Tensor) -> Tensor:
    """A new tensor object over t's storage (Tensor.detach before the tape wrapped anything)."""
    return _detach(t)


_detach = getattr(Tensor, "detach", None) or (lambda t: t.reshape(list(t.shape)))


def _fresh(out: Any, args: tuple) -> Any:
    """An op's output that is one of its inputs (an identity) as a new tensor object, so that
    giving it a node does not rewrite the input's."""
    if isinstance(out, Tensor) and any(out is a for a in args):
        return alias(out)
    return out


def _new_ctx(cls: type) -> FunctionCtx:
    t = Function._ctx_types.get(cls)
    if t is None:
        t = Function._ctx_types[cls] = type(f"{cls.__name__}Backward", (FunctionCtx,), {"_fn": cls, "__slots__": ()})
    return t()


def _as_traced(a: Any) -> Any:
    """An nn.Parameter as the tensor that stands for it on the tape (other values unchanged)."""
    if isinstance(a, Tensor):  # first: a failed attribute lookup on a Tensor costs microseconds
        return a
    traced = getattr(type(a), "_traced", None)
    return traced(a) if traced is not None else a
