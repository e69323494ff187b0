"""Tensor's autograd surface: requires_grad, requires_grad_(), grad, grad_fn, is_leaf, backward()."""
from __future__ import annotations

from typing import Any, Optional

from ..tensor import Tensor
from . import engine

__all__ = ["install"]


def _get_requires_grad(self: Tensor) -> bool:
    return bool(self._rg)


def _set_requires_grad(self: Tensor, flag: bool) -> None:
    flag = bool(flag)
    if self._grad_fn is not None:
        if flag:
            return
        raise RuntimeError("requires_grad: you can only change requires_grad flags of leaf tensors; this one was "
                           f"computed by {self._grad_fn.name()} (use .detach() for a tensor off the tape)")
    if flag and self.dtype.numpy.kind != "f":
        raise RuntimeError(f"requires_grad: only floating-point tensors can require gradients, got {self.dtype}")
    self._rg = flag


def requires_grad_(self: Tensor, requires_grad: bool = True) -> Tensor:
    """Makes this leaf tensor record the ops that use it (in place); returns self."""
    _set_requires_grad(self, requires_grad)
    return self


def backward(self: Tensor, gradient: Optional[Any] = None, retain_graph: bool = False,
             inputs: Optional[Any] = None) -> None:
    """Sums d self / d leaf into every leaf's ``.grad`` (an nn.Parameter's own ``.grad`` for a
    parameter). ``gradient``: d loss / d self, default 1 for a one-element tensor. Without
    ``retain_graph`` the graph's saved tensors are released."""
    engine.backward(self, gradient, retain_graph=retain_graph, inputs=inputs)


def install() -> None:
    Tensor.requires_grad = property(_get_requires_grad, _set_requires_grad,
                                    doc="Whether ops on this tensor are recorded for a backward.")
    Tensor.requires_grad_ = requires_grad_
    Tensor.grad_fn = property(lambda self: self._grad_fn, doc="The node that made this tensor (None for a leaf).")
    Tensor.is_leaf = property(lambda self: self._grad_fn is None,
                              doc="True for a tensor not made by a recorded op.")
    Tensor.backward = backward
