"""Stochastic gradient descent with PyTorch's exact update rule.

For each parameter p with gradient g (all in place, in C++ via `_core.sgd_step`, one call per group):

    g = g + weight_decay * p
    if momentum != 0:
        buf = g                                   (first step of this parameter)
        buf = momentum * buf + (1 - dampening) * g (later steps)
        g = g + momentum * buf if nesterov else buf
    p = p - lr * g

`step(found_inf=flag)` (a float32 one-element tensor on the parameters' device, e.g.
`_core.nonfinite_flag([loss, *grads])`) skips the whole step when the flag is non-zero: the kernels
read it on the device, so a CUDA step never waits for the host and can be captured in a graph.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, List, Optional

from .. import _core
from .._core import Tensor
from .optimizer import Optimizer, required


def _check_hyper(lr: Any, momentum: Any, dampening: Any, weight_decay: Any, nesterov: Any) -> None:
    for name, v in (("lr", lr), ("momentum", momentum), ("dampening", dampening), ("weight_decay", weight_decay)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            try:
                float(v)
            except (TypeError, ValueError):
                raise TypeError(f"SGD: {name} must be a number, got {type(v).__name__}") from None
        if not math.isfinite(float(v)):
            raise ValueError(f"SGD: {name} must be a finite number, got {v} (a NaN or Inf hyper-parameter "
                             "would put NaN into every weight at the first step)")
    if lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")
    if momentum < 0.0:
        raise ValueError(f"Invalid momentum value: {momentum}")
    if weight_decay < 0.0:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")


class SGD(Optimizer):
    """`SGD(params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False)`, as `torch.optim.SGD`.

    `params` is an iterable of Parameters or of dicts (parameter groups, each with its own `lr`,
    `momentum`, ...). Parameters that are frozen (`requires_grad=False`) or have no gradient are
    skipped entirely: neither they nor their momentum buffers change.
    """

    def __init__(self, params: Iterable[Any], lr: float = required, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False) -> None:
        if lr is not required:
            _check_hyper(lr, momentum, dampening, weight_decay, nesterov)
        elif nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    def _validate_group(self, group: dict) -> None:
        _check_hyper(group["lr"], group["momentum"], group["dampening"], group["weight_decay"], group["nesterov"])

    def step(self, closure: Any = None, *, found_inf: Optional[Tensor] = None) -> Any:
        """One update of every parameter that has a gradient. `closure` (optional) re-evaluates the
        loss and is called first; its result is returned, as in PyTorch. `found_inf`: a float32
        one-element tensor on the parameters' device; non-zero skips the whole step (parameters and
        momentum buffers unchanged), read by the kernels without a host sync."""
        loss = None
        if closure is not None:
            loss = closure()
        found_inf = self._check_found_inf(found_inf)
        for group in self.param_groups:
            lr = float(group["lr"])
            momentum = float(group["momentum"])
            dampening = float(group["dampening"])
            weight_decay = float(group["weight_decay"])
            nesterov = bool(group["nesterov"])
            # (params, grads, buffers) for parameters whose buffer exists, and for those taking their first step
            cont: List[list] = [[], [], []]
            first: List[list] = [[], [], []]
            for p in group["params"]:
                g = p.grad
                if g is None or not p.requires_grad:
                    continue
                data = p.data
                if momentum == 0.0:
                    cont[0].append(data)
                    cont[1].append(g)
                    continue
                st = self.state[p]
                buf = st.get("momentum_buffer")
                if buf is None:
                    if found_inf is not None and self._skipped_first_step(found_inf, dampening):
                        continue  # no buffer yet, as if this step never happened
                    buf = _core.zeros(list(data.shape), data.dtype, data.device)
                    if p not in self.state:
                        self.state[p] = st
                    st["momentum_buffer"] = buf
                    # Without dampening, a step that the flag skips leaves this zero buffer as it is, and
                    # the later-step path is exact for both cases: momentum * 0 + 1 * g == g, the
                    # first-step rule. With dampening, _skipped_first_step has read the flag instead.
                    target = cont if found_inf is not None and dampening == 0.0 else first
                else:
                    if buf.device != data.device:  # the model moved (model.to(device)) after some steps
                        buf = buf.to(data.device)
                        st["momentum_buffer"] = buf
                    target = cont
                target[0].append(data)
                target[1].append(g)
                target[2].append(buf)
            for (ps, gs, bs), is_first in ((first, True), (cont, False)):
                if ps:
                    _core.sgd_step(ps, gs, bs, lr, momentum, dampening, weight_decay, nesterov, is_first,
                                   found_inf=found_inf)
        return loss

    @staticmethod
    def _skipped_first_step(found_inf: Tensor, dampening: float) -> bool:
        """Whether a first step with dampening is skipped: its buffer must then stay absent, and only
        the host can know (one read per parameter's first step; free on the CPU)."""
        return dampening != 0.0 and found_inf.item() != 0.0
