"""Adam and AdamW with PyTorch's exact update rules (`torch.optim.Adam` / `torch.optim.AdamW`).

For each parameter p with gradient g, in C++ via `_core.adam_step` (one call per group, in place):

    t = step + 1;  g = -g if maximize
    Adam:  g = g + weight_decay * p          AdamW: p = p * (1 - lr * weight_decay)
    m = beta1 * m + (1 - beta1) * g          (torch's lerp)
    v = beta2 * v + (1 - beta2) * g * g
    v_max = max(v_max, v); v = v_max         (amsgrad)
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

The step count t lives on the parameter's device and the kernel derives the bias corrections from
it, so a step never waits for the host (CUDA-graph capturable).
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .. import _core
from .._core import Tensor
from ._fused import FusedOptimizer, check_flag, check_number


def _check_betas(opt: str, betas: Any) -> Tuple[float, float]:
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise TypeError(f"{opt}: betas must be a pair of numbers (beta1, beta2), got {betas!r}") from None
    return (check_number(opt, "betas[0]", b1, high=1.0, message="Invalid beta parameter at index 0"),
            check_number(opt, "betas[1]", b2, high=1.0, message="Invalid beta parameter at index 1"))


class Adam(FusedOptimizer):
    """`Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
    maximize=False, decoupled_weight_decay=False)`, as `torch.optim.Adam`.

    `params` is an iterable of Parameters or of dicts (parameter groups, each with its own `lr`,
    `betas`, ...). State per parameter: "step", "exp_avg", "exp_avg_sq" and, with amsgrad,
    "max_exp_avg_sq"; `state_dict()` / `load_state_dict()` save and restore it (and so does the
    Trainer's checkpoint). `step(closure=None, *, found_inf=None)`.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False) -> None:
        defaults = dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas, eps=eps,
                        weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay)
        self._validate_group(defaults)
        super().__init__(params, defaults)

    def _validate_group(self, group: Dict[str, Any]) -> None:
        opt = type(self).__name__
        check_number(opt, "lr", group["lr"], message="Invalid learning rate")
        _check_betas(opt, group["betas"])
        check_number(opt, "eps", group["eps"], message="Invalid epsilon value")
        check_number(opt, "weight_decay", group["weight_decay"], message="Invalid weight_decay value")
        for name in ("amsgrad", "maximize", "decoupled_weight_decay"):
            check_flag(opt, name, group[name])

    def _buffers(self, group: Dict[str, Any]) -> Sequence[str]:
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if group["amsgrad"] else ("exp_avg", "exp_avg_sq")

    def _run(self, group: Dict[str, Any], params: List[Tensor], grads: List[Tensor],
             buffers: Dict[str, List[Tensor]], steps: List[Tensor], found_inf: Optional[Tensor]) -> None:
        beta1, beta2 = group["betas"]
        _core.adam_step(params, grads, buffers["exp_avg"], buffers["exp_avg_sq"], buffers.get("max_exp_avg_sq", []),
                        steps, float(group["lr"]), float(beta1), float(beta2), float(group["eps"]),
                        float(group["weight_decay"]), bool(group["amsgrad"]), bool(group["maximize"]),
                        bool(group["decoupled_weight_decay"]), found_inf=found_inf)


class AdamW(Adam):
    """`AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
    maximize=False)`, as `torch.optim.AdamW`: Adam with decoupled weight decay
    (p = p * (1 - lr * weight_decay) before the Adam update, instead of an L2 term in the gradient)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, decoupled_weight_decay=True)
