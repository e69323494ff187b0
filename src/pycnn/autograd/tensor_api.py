"""Tensor's autograd surface: requires_grad, requires_grad_(), grad, grad_fn, is_leaf, backward()."""
from __future__ import annotations

import builtins
import functools
import sys
from typing import Any, Callable, Optional

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


def retain_grad(self: Tensor) -> None:
    """Makes backward also fill this non-leaf tensor's ``.grad`` (a leaf's is filled anyway), as torch."""
    if not self._rg:
        raise RuntimeError("retain_grad: can't retain the gradient of a tensor that has requires_grad=False")
    node = self._grad_fn
    if node is None:
        return
    retained = node.__dict__.setdefault("retained", [])
    if not builtins.any(t is self for _, t in retained):
        retained.append((self._out_index, self))


_CREATION = ("tensor", "as_tensor", "zeros", "ones", "full", "empty", "randn", "rand")


def _with_requires_grad(fn: Callable) -> Callable:
    """A creation function taking ``requires_grad=False`` as torch's do (``pc.randn(3,
    requires_grad=True)``)."""

    @functools.wraps(fn)
    def make(*args: Any, requires_grad: bool = False, **kwargs: Any) -> Tensor:
        t = fn(*args, **kwargs)
        if requires_grad:
            _set_requires_grad(t, True)
        return t

    make._pycnn_requires_grad = True  # type: ignore[attr-defined]
    return make


def install_creation() -> None:
    """Gives pc.tensor/zeros/ones/full/empty/randn/rand (and pycnn.tensor's) ``requires_grad``."""
    pkg, module = sys.modules.get("pycnn"), sys.modules["pycnn.tensor"]
    for name in _CREATION:
        fn = getattr(module, name, None)
        if fn is None or getattr(fn, "_pycnn_requires_grad", False):
            continue
        wrapped = _with_requires_grad(fn)
        setattr(module, name, wrapped)
        if pkg is not None and getattr(pkg, name, None) is fn:
            setattr(pkg, name, wrapped)


def _with_grad_info(plain_repr: Callable) -> Callable:
    """repr ends with grad_fn=<...> for a recorded tensor and requires_grad=True for such a leaf, as torch."""

    def __repr__(self: Tensor) -> str:
        text = plain_repr(self)
        if self._grad_fn is not None:
            return f"{text[:-1]}, grad_fn=<{self._grad_fn.name()}>)"
        return f"{text[:-1]}, requires_grad=True)" if self._rg and text.endswith(")") else text

    __repr__._pycnn_grad_info = True  # type: ignore[attr-defined]
    return __repr__


def install() -> None:
    if not getattr(Tensor.__repr__, "_pycnn_grad_info", False):
        Tensor.__repr__ = _with_grad_info(Tensor.__repr__)
    Tensor.requires_grad = property(_get_requires_grad, _set_requires_grad,
                                    doc="Whether ops on this tensor are recorded for a backward.")
    Tensor.requires_grad_ = requires_grad_
    Tensor.grad_fn = property(lambda self: self._grad_fn, doc="The node that made this tensor (None for a leaf).")
    Tensor.is_leaf = property(lambda self: self._grad_fn is None,
                              doc="True for a tensor not made by a recorded op.")
    Tensor.backward = backward
    Tensor.retain_grad = retain_grad
