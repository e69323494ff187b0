"""One training step as one unit, and the on-device sums of an epoch.

`TrainStep(x, y)` runs forward, loss, backward and the guarded optimizer step and returns
`(loss, logits, flag)`. The Trainer's eager path calls it for every batch; `GraphStep` (graph_step.py)
calls the very same object once inside a CUDA-graph capture and replays what it recorded, so a
batch travels one way: Trainer -> (GraphStep ->) TrainStep -> back to the Trainer, which adds the
result to its `EpochSums`.

The guard: a NaN never reaches the weights. The step computes a device flag over the loss and the
gradients (`optim.nonfinite_flag`) that the optimizer's kernels read (`step(found_inf=flag)`, no host
sync) and skip the whole update on; the model's buffers (BatchNorm's running statistics, changed by
the forward) are kept or put back on the same flag (`optim.keep_or_undo_`). With a sticky flag
(on_nonfinite="raise") every later step of the fit is skipped too, so the error raised at the next
logging point leaves the weights of before the bad batch.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, List, Optional, Tuple

from .. import _core, metrics
from ..nn._passes import takes_need_input_grad, traced_last_pass
from ..nn.module import Module, clear_cache
from ..nn.parameter import zero_grads
from ..optim.guard import keep_or_undo_, nonfinite_flag
from ..tensor import Tensor, float32, float64, int64, zeros

__all__ = ["TrainStep", "EpochSums", "backward_for_step"]


def backward_for_step(model: Module, criterion: Any, loss: Tensor) -> None:
    """The backward of a training step. A model whose every module defines backward takes the
    explicit route, ``model.backward(criterion.backward())``: parameter gradients only, the
    input's d/dx skipped where the model can skip it (a user model whose backward has no such
    option runs as is). Any other model (a forward-only custom module) runs ``loss.backward()``
    on the tape its forward recorded."""
    if isinstance(model, Module) and traced_last_pass(model):
        loss.backward()
    elif takes_need_input_grad(model):
        model.backward(criterion.backward(), need_input_grad=False)
    else:
        model.backward(criterion.backward())


def _signature_has_found_inf(fn: Any) -> bool:
    try:
        return "found_inf" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@functools.lru_cache(maxsize=64)
def _function_takes_found_inf(fn: Any) -> bool:
    return _signature_has_found_inf(fn)


def _takes_found_inf(step: Any) -> bool:
    """Whether optimizer.step accepts found_inf. Asked every step: for a method the answer is
    cached by its function (inspect.signature cost ~0.1 ms, a tenth of a LeNet-5 step at batch 64)."""
    fn = getattr(step, "__func__", None)
    return _function_takes_found_inf(fn) if fn is not None else _signature_has_found_inf(step)


class TrainStep:
    """forward, loss, backward, guarded update: `step(x, y) -> (loss, logits, flag)`, all on the
    model's device. `sticky`: the guard flag stays set after a bad step (on_nonfinite="raise")."""

    def __init__(self, model: Any, loss: Any, optimizer: Any, sticky: bool) -> None:
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.sticky = sticky
        self.bad: Optional[Tensor] = None  # the sticky flag (a fixed tensor: a CUDA graph bakes it in)
        self.buffers: List[Tensor] = []    # the model's buffers, guarded like the weights
        self.backups: List[Tensor] = []
        self.outside: Optional[List[Any]] = None  # the model's parameters the optimizer does not hold

    def __call__(self, x: Tensor, y: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        model, crit, opt = self.model, self.loss, self.optimizer
        logits = model(x)
        loss = crit(logits, y)
        opt.zero_grad()
        if self.outside is None:
            model.zero_grad()
        else:  # the same parameters, listed once per epoch (walking the model costs ~25 us a step)
            zero_grads(self.outside)
        backward_for_step(model, crit, loss)
        return loss, logits, self._guarded_update(loss)

    def begin_epoch(self) -> None:
        """List the model's parameters that the optimizer does not hold (their gradients are
        cleared each step too, as model.zero_grad() would); None where either side cannot say."""
        self.outside = None
        groups = getattr(self.optimizer, "param_groups", None)
        if groups and isinstance(self.model, Module):
            held = {id(p) for g in groups for p in g["params"]}
            self.outside = [p for p in self.model.parameters() if id(p) not in held]

    def params(self) -> List[Any]:
        groups = getattr(self.optimizer, "param_groups", None)
        return [p for g in groups for p in g["params"]] if groups else list(self.model.parameters())

    def _guarded_update(self, loss: Tensor) -> Tensor:
        """opt.step() unless the loss or a gradient is NaN/Inf; returns this step's flag."""
        flag = nonfinite_flag([loss] + [p.grad for p in self.params() if p.grad is not None])
        gate = flag
        if self.sticky:
            if self.bad is None or self.bad.device != flag.device:
                self.bad = zeros((), dtype=float32, device=flag.device)
            _core.add_(self.bad, flag)  # two float32 () flags of one device: the plain kernel
            gate = self.bad
        if _takes_found_inf(self.optimizer.step):
            self.optimizer.step(found_inf=gate)
        elif gate.item() == 0.0:  # an optimizer without found_inf: the host decides (a sync per step)
            self.optimizer.step()
        if self.buffers:  # what the forward changed outside the optimizer (BatchNorm's statistics)
            keep_or_undo_(self.buffers, self.backups, gate)
        return flag

    def clear_caches(self) -> None:
        """Drop what the model's and the criterion's layers cached for a backward."""
        for m in (self.model, self.loss):
            mods = m.modules() if callable(getattr(m, "modules", None)) else [m]
            for sub in mods:
                clear_cache(sub)

    def applied(self, flag: Tensor) -> bool:
        """Whether the step that returned `flag` changed the weights (one host read)."""
        return (self.bad if self.bad is not None else flag).item() == 0.0

    def begin_fit(self) -> None:
        """Clear the sticky flag and back up the model's buffers. Backups are reused while the
        buffers keep their shapes: a captured CUDA graph holds their addresses."""
        if self.bad is not None:
            self.bad.fill_(0.0)
        model = self.model
        bufs = [b for b in model.buffers() if isinstance(b, Tensor) and b.dtype in (float32, float64, int64)] \
            if callable(getattr(model, "buffers", None)) else []
        old = self.backups
        if len(old) == len(bufs) and all(tuple(o.shape) == tuple(b.shape) and o.dtype == b.dtype
                                         and o.device == b.device for o, b in zip(old, bufs)):
            for o, b in zip(old, bufs):
                o.copy_(b)
        else:
            self.backups = [b.clone() for b in bufs]
        self.buffers = bufs


class EpochSums:
    """The running loss (float64, so that large finite losses never overflow the sum) and the
    number of correct predictions, kept on the device and read only when asked for."""

    def __init__(self, device: str, reduction: str, track_acc: bool) -> None:
        self.device, self.reduction = device, reduction
        self.loss: Optional[Tensor] = None
        self.one: Optional[Tensor] = None  # float64 () scratch: each step's loss, cast, before it is added
        self.correct = zeros((), dtype=int64, device=device) if track_acc else None
        self.seen = 0

    def add(self, loss: Any, logits: Tensor, y: Tensor, n: int) -> None:
        if not isinstance(loss, Tensor):
            raise TypeError(f"Trainer: the loss returned {type(loss).__name__}; expected a Tensor")
        loss = loss.detach()  # a sum for the logs: nothing for autograd to record
        if loss.numel() != 1:  # reduction="none": one value per sample
            loss, alpha = loss.sum(), 1.0
        else:
            alpha = 1.0 if self.reduction == "sum" else float(n)
            if loss.dim() != 0:
                loss = loss.reshape(())
        if self.loss is None:
            self.loss = zeros((), dtype=float64, device=loss.device)
            self.one = zeros((), dtype=float64, device=loss.device)
        # The plain kernels (the Tensor methods' checks cost ~40 us a step): copy_into converts to float64.
        _core.copy_into(self.one, loss)
        _core.add_(self.loss, self.one, alpha)
        if self.correct is not None:
            _core.add_(self.correct, metrics.count_correct(logits, y))
        self.seen += n

    def mean_loss(self) -> float:
        return self.loss.item() / self.seen

    def accuracy(self) -> Optional[float]:
        return self.correct.item() / self.seen if self.correct is not None else None
