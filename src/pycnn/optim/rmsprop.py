"""RMSprop with PyTorch's exact update rule (`torch.optim.RMSprop`).

For each parameter p with gradient g, in C++ via `_core.rmsprop_step` (one call per group, in place):

    g = -g if maximize;  g = g + weight_decay * p
    sq = alpha * sq + (1 - alpha) * g * g
    centered: ga = alpha * ga + (1 - alpha) * g; avg = sqrt(sq - ga * ga) + eps   else avg = sqrt(sq) + eps
    momentum > 0: buf = momentum * buf + g / avg; p = p - lr * buf                else p = p - lr * g / avg
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence

from .. import _core
from .._core import Tensor
from ._fused import FusedOptimizer, check_flag, check_number


class RMSprop(FusedOptimizer):
    """`RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
    maximize=False)`, as `torch.optim.RMSprop`.

    State per parameter: "step", "square_avg", "momentum_buffer" (momentum > 0) and "grad_avg"
    (centered). `step(closure=None, *, found_inf=None)`.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, *,
                 maximize: bool = False) -> None:
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize)
        self._validate_group(defaults)
        super().__init__(params, defaults)

    def _validate_group(self, group: Dict[str, Any]) -> None:
        check_number("RMSprop", "lr", group["lr"], message="Invalid learning rate")
        check_number("RMSprop", "alpha", group["alpha"], message="Invalid alpha value")
        check_number("RMSprop", "eps", group["eps"], message="Invalid epsilon value")
        check_number("RMSprop", "weight_decay", group["weight_decay"], message="Invalid weight_decay value")
        check_number("RMSprop", "momentum", group["momentum"], message="Invalid momentum value")
        check_flag("RMSprop", "centered", group["centered"])
        check_flag("RMSprop", "maximize", group["maximize"])

    def _buffers(self, group: Dict[str, Any]) -> Sequence[str]:
        names = ["square_avg"]
        if float(group["momentum"]) > 0:
            names.append("momentum_buffer")
        if group["centered"]:
            names.append("grad_avg")
        return names

    def _run(self, group: Dict[str, Any], params: List[Tensor], grads: List[Tensor],
             buffers: Dict[str, List[Tensor]], steps: List[Tensor], found_inf: Optional[Tensor]) -> None:
        _core.rmsprop_step(params, grads, buffers["square_avg"], buffers.get("grad_avg", []),
                           buffers.get("momentum_buffer", []), steps, float(group["lr"]), float(group["alpha"]),
                           float(group["eps"]), float(group["weight_decay"]), float(group["momentum"]),
                           bool(group["centered"]), bool(group["maximize"]), found_inf=found_inf)
