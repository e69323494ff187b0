"""CrossEntropyLoss and MSELoss: ``loss = crit(logits, y)`` is a tensor of shape ();
``crit.backward()`` returns d loss / d logits."""
from __future__ import annotations

from typing import Any, Optional

from .. import _args, _core
from .. import functional as F
from ..tensor import Tensor
from .module import Module

__all__ = ["CrossEntropyLoss", "MSELoss"]


class _Loss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _args.reduction(reduction, type(self).__name__)
        self._cache: Optional[tuple] = None

    def extra_repr(self) -> str:
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"

    def _grad_scale(self, grad: Any) -> float:
        if grad is None:
            return 1.0
        if isinstance(grad, Tensor):
            if grad.numel() != 1:
                raise ValueError(f"{self._name()}: backward(grad) expects a scalar, got shape {tuple(grad.shape)}")
            return float(grad.item())
        return _args.number(grad, f"{self._name()}.backward", "grad")

    @staticmethod
    def _tagged(dx: Tensor, pass_id: Optional[int]) -> Tensor:
        """d loss / d input carries the forward pass of the input, so ``model.backward`` of it reads
        that pass's caches (or refuses when a later training forward replaced them)."""
        if pass_id is not None:
            dx._pass_id = pass_id
        return dx


class CrossEntropyLoss(_Loss):
    """Fused log-softmax + negative log-likelihood: logits (N, C) (raw scores), labels (N,) int64
    (NumPy integer arrays are converted, and moved to the logits' device). Mean over the batch."""

    def forward(self, input: Any, target: Any) -> Tensor:
        logits = self._input(input)
        if logits.ndim != 2:
            raise ValueError(f"{self._name()}: expected logits of shape (N, C), got {tuple(logits.shape)}")
        labels = self._call_core(_args.labels, target, self._name(), logits.device)
        if tuple(labels.shape) != (logits.shape[0],):
            raise ValueError(f"{self._name()}: expected labels of shape ({logits.shape[0]},) for logits "
                             f"{tuple(logits.shape)}, got {tuple(labels.shape)}")
        loss, probs, labels, scale = self._call_core(F.cross_entropy_forward, logits, labels, self.reduction)
        self._cache = (probs, labels, scale, getattr(logits, "_pass_id", None))
        return loss

    def backward(self, grad_output: Any = None) -> Tensor:
        """d loss / d logits (times `grad_output`, default 1)."""
        if self._cache is None:
            raise self._no_cache()
        probs, labels, scale, pass_id = self._cache
        dx = self._call_core(_core.cross_entropy_backward, probs, labels, self._grad_scale(grad_output) * scale)
        self._cache = None
        return self._tagged(dx, pass_id)


class MSELoss(_Loss):
    """mean((input - target)^2) over every element; target of the input's shape (a NumPy array
    is converted to the input's dtype and device)."""

    def forward(self, input: Any, target: Any) -> Tensor:
        x = self._input(input)
        t = self._call_core(_args.target_like, target, x, self._name())
        if tuple(t.shape) != tuple(x.shape):
            raise ValueError(f"{self._name()}: input {tuple(x.shape)} and target {tuple(t.shape)} must have the "
                             "same shape")
        loss = self._call_core(F.mse_loss, x, t, self.reduction)
        self._cache = (x, t, getattr(x, "_pass_id", None))
        return loss

    def backward(self, grad_output: Any = None) -> Tensor:
        if self._cache is None:
            raise self._no_cache()
        x, t, pass_id = self._cache
        dx = self._call_core(F.mse_loss_backward, x, t, self._grad_scale(grad_output), self.reduction)
        self._cache = None
        return self._tagged(dx, pass_id)
