"""`Trainer(..., cuda_graph=True)`: the training step (forward, loss, backward, optimizer step)
captured once as a CUDA graph for the full batch shape and replayed for every full batch.

The first full batch runs eagerly (warm-up: cuBLAS handle, momentum buffers, scratch arena), the
second is captured and replayed, later ones are copied into the static input tensors and replayed.
A batch of another shape (the last, partial one) takes the eager path. The graph is captured
again when something it baked in changes: an optimizer hyper-parameter (a scheduler's new lr),
or the tensors of the parameters or momentum buffers (a resumed checkpoint, `model.to`).

What is captured is the Trainer's own `TrainStep` (step.py), NaN guard included (its flag over loss
and gradients is read by the optimizer's kernels): a replay with a bad batch changes no weight. Warm-up repeats until one
eager step was applied, so that the capture never records an optimizer's first-step path.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

from ..runtime import CUDAGraph
from ..tensor import Tensor
from .step import TrainStep


class GraphStep:
    """`graph_step(x, y) -> (loss, logits, flag)`, like the `TrainStep` it captures and replays."""

    def __init__(self, step: TrainStep, device: str) -> None:
        self.step = step
        self.device = device
        self.key: Optional[tuple] = None   # (x shape, x dtype, y shape, y dtype) of the full batch
        self.warm = False
        self.graph: Optional[CUDAGraph] = None
        self.static_x: Optional[Tensor] = None
        self.static_y: Optional[Tensor] = None
        self.loss: Optional[Tensor] = None
        self.logits: Optional[Tensor] = None
        self.flag: Optional[Tensor] = None
        self.grads: List[Tuple[Any, Tensor]] = []
        self.baked: Optional[tuple] = None
        self.captures = 0  # how many times a graph was recorded (tests, logs)
        self.replays = 0

    @staticmethod
    def batch_key(xt: Tensor, yt: Tensor) -> tuple:
        return (tuple(xt.shape), str(xt.dtype), tuple(yt.shape), str(yt.dtype))

    def _params(self) -> List[Any]:
        return [p for p in self.step.model.parameters() if p.requires_grad]

    def _state(self) -> tuple:
        """What the graph baked in besides shapes: hyper-parameters and tensor addresses."""
        opt = self.step.optimizer
        # every optimizer's hyper-parameters (SGD's momentum, Adam's betas...) and state tensors
        groups = tuple(tuple((k, repr(v)) for k, v in sorted(g.items()) if k != "params")
                       for g in getattr(opt, "param_groups", ()))
        ptrs = []
        state = getattr(opt, "state", None)
        for p in self._params():
            ptrs.append(p.data.data_ptr())
            st = state[p] if state is not None else {}
            ptrs.append(tuple((k, v.data_ptr()) for k, v in sorted(st.items()) if isinstance(v, Tensor)))
        ptrs += [t.data_ptr() for t in self.step.buffers + self.step.backups]  # the buffer guard's
        return groups, tuple(ptrs)

    def reset(self) -> None:
        if self.graph is not None:
            self.graph.reset()
        self.graph = None
        self.loss = self.logits = self.flag = None
        self.grads = []
        self.baked = None

    def __call__(self, xt: Tensor, yt: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """One training step on (xt, yt) (already on the device): (loss, logits, non-finite flag).
        After a replay loss and flag are copies the caller may keep, while logits is the graph's own
        output tensor, overwritten by the next replay (the Trainer uses it at once)."""
        eager_step = self.step
        key = self.batch_key(xt, yt)
        if self.key is None:
            self.key = key
        if key != self.key:
            return eager_step(xt, yt)
        if not self.warm:
            out = eager_step(xt, yt)
            self.warm = self.step.applied(out[2])  # one host read per warm-up
            return out
        if self.graph is not None and self.baked != self._state():
            # Something the graph baked in changed (a scheduler's lr, loaded parameters or optimizer
            # state): one eager step first, so that the capture below never records a first-step
            # path (SGD creating its momentum buffers) that every replay would then repeat.
            self.reset()
            return eager_step(xt, yt)
        if self.graph is None:
            self._capture(xt, yt)
        else:
            self.static_x.copy_(xt)
            self.static_y.copy_(yt)
        self.graph.replay()
        self.replays += 1
        for p, g in self.grads:  # the graph wrote its own gradient tensors: show them
            p.grad = g
        return self.loss.clone(), self.logits, self.flag.clone()

    def _capture(self, xt: Tensor, yt: Tensor) -> None:
        step = self.step
        self.static_x = xt.clone()
        self.static_y = yt.clone()
        g = CUDAGraph(self.device)
        try:
            g.capture_begin()
            try:
                # the eager path's own step, NaN guard included (the optimizer reads the flag on the device)
                loss, logits, flag = step(self.static_x, self.static_y)
            except BaseException:
                g.reset()
                raise
            g.capture_end()
        except Exception as e:
            step.clear_caches()
            step.model.zero_grad()
            raise RuntimeError(f"Trainer(cuda_graph=True): capturing the training step failed: {e}. Use "
                               "cuda_graph=False for this model (a layer that reads values back to the host "
                               "in training, such as BatchNorm(momentum=None)'s cumulative average, cannot "
                               "be captured)") from e
        self.graph, self.loss, self.logits, self.flag = g, loss, logits, flag
        self.grads = [(p, p.grad) for p in self._params() if p.grad is not None]
        self.baked = self._state()
        self.captures += 1
