"""Dropout (inverted: kept values are scaled by 1/(1-p) in training, identity in eval)."""
from __future__ import annotations

from typing import Any

from .. import _args, functional as F
from ..tensor import Tensor
from .module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        self.p = _args.probability(p, "Dropout")
        self._cache = None
        self._eval_pass = False

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace=False"

    _cache_attrs = ("_cache", "_eval_pass")

    def forward(self, x: Any) -> Tensor:
        x = self._input(x)
        if not self.training or self.p == 0.0:
            self._cache, self._eval_pass = None, True
            return x
        y, mask = self._call_core(F.dropout, x, self.p, True, return_mask=True)
        self._cache, self._eval_pass = mask, False
        return y

    def backward(self, grad_output: Any) -> Tensor:
        if self._eval_pass:
            self._eval_pass = False
            return grad_output
        if self._cache is None:
            raise self._no_cache()
        dx = self._call_core(F.dropout_backward, self._input(grad_output), self._cache)
        self._cache = None
        return dx
