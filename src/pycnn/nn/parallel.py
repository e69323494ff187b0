"""`DistributedDataParallel`: the same model on every rank, each on its own share of the batch.

At construction every rank must hold the same parameter and buffer names and shapes (checked: the
first mismatch is named), and all take rank 0's values. Backward averages the parameter gradients
over the ranks in a few large buckets (~25 MB, in reverse parameter order, which is the order
backward produces them). When the wrapped model is a plain `Sequential`, DDP runs its layers'
backward itself and starts a bucket's non-blocking all-reduce (MPI Iallreduce, NCCL on its side
stream) as soon as the layers holding its parameters are done, so communication overlaps the
backward of earlier layers; otherwise the buckets start after the model's backward. Frozen
parameters (requires_grad=False) are left out.

The averaged gradient is the gradient of the loss averaged over the global batch (when each rank's
loss is a mean over an equal share), so N ranks x batch b train like one process with batch N x b.

With autograd (`loss.backward()`): a model whose every module defines backward makes DDP one node
on the tape, whose backward is DDP's own (above); a forward-only model, traced op by op, runs inside
one `_TapeThenAverage` node whose backward runs the model's tape from its output and then averages.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from .. import _core
from .. import autograd as _autograd
from .. import distributed as _dist
from .. import functional as F
from ..tensor import Tensor
from .container import Sequential
from ._passes import explicit_backward, takes_need_input_grad
from .module import Module
from .parameter import Parameter

__all__ = ["DistributedDataParallel"]


class _Bucket:
    """Parameters whose gradients travel together in one flat all-reduce."""

    def __init__(self, params: List[Parameter]) -> None:
        self.params = params
        self.sizes = [p.numel() for p in params]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.numel = int(self.offsets[-1])
        self.nbytes = self.numel * _np_dtype(params[0]).itemsize
        self.host: Optional[np.ndarray] = None  # the CPU flat buffer, reused every step
        self.ready_after = 0  # the Sequential child after whose backward all its gradients exist


def _np_dtype(p: Parameter) -> np.dtype:
    return np.dtype({"float32": np.float32, "float64": np.float64}[str(p.dtype).rsplit(".", 1)[-1]])


class DistributedDataParallel(Module):
    """DistributedDataParallel(module, broadcast_buffers=True, bucket_cap_mb=25).

    forward runs `module` (after broadcasting rank 0's buffers, e.g. BatchNorm's running
    statistics, when training and `broadcast_buffers`); backward(grad) runs the module's backward
    and averages the gradients over all ranks. parameters(), state_dict() (the module's own names,
    no wrapper prefix), load_state_dict(), train()/eval() act on the wrapped module.
    """

    def __init__(self, module: Module, broadcast_buffers: bool = True, bucket_cap_mb: float = 25.0) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be an nn.Module, got {type(module).__name__}")
        if isinstance(module, DistributedDataParallel):
            raise TypeError("DistributedDataParallel: the module is already wrapped in DistributedDataParallel")
        if not _dist.is_initialized():
            raise RuntimeError("DistributedDataParallel: the process group is not initialized; call "
                               "pc.distributed.init_process_group() first (and start with mpiexec -n N)")
        if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float)) or not bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be a number > 0, got {bucket_cap_mb!r}")
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.bucket_cap_bytes = int(bucket_cap_mb * 1024 * 1024)
        self._plan_key: Optional[Tuple[int, ...]] = None
        self._buckets: List[_Bucket] = []
        self.comm_seconds = 0.0  # time spent waiting for all-reduces (what the benchmark reports)
        self.comm_bytes = 0      # bytes all-reduced, summed over backward calls
        self._check_same_model()
        self._broadcast_state(buffers_only=False)

    # ---- construction ---------------------------------------------------------------------------
    def _layout(self) -> List[Tuple[str, str, Tuple[int, ...], str]]:
        out = [("parameter", n, tuple(p.shape), str(p.dtype)) for n, p in self.module.named_parameters()]
        out += [("buffer", n, tuple(b.shape), str(b.dtype)) for n, b in self.module.named_buffers()]
        return out

    def _check_same_model(self) -> None:
        mine = self._layout()
        ref = _dist.broadcast_object(mine, 0)
        problem = ""
        if mine != ref:
            for i in range(max(len(mine), len(ref))):
                a = ref[i] if i < len(ref) else None
                b = mine[i] if i < len(mine) else None
                if a != b:
                    problem = (f"rank {_dist.get_rank()}: {b[0]} {b[1]!r} {b[2]} {b[3]}" if b else
                               f"rank {_dist.get_rank()}: nothing") + \
                              (f" where rank 0 has {a[0]} {a[1]!r} {a[2]} {a[3]}" if a else " where rank 0 has nothing")
                    break
        problems = [p for p in _dist.all_gather_object(problem) if p]
        if problems:
            raise RuntimeError("DistributedDataParallel: the ranks hold different models (same parameter and "
                               "buffer names, shapes and dtypes needed, in the same order); first mismatch: "
                               + problems[0])

    def sync_buffers(self) -> None:
        """Every rank takes rank 0's buffers now (BatchNorm's running statistics drift apart between
        training forwards, each rank updating them from its own share of the batch)."""
        self._broadcast_state(buffers_only=True)

    def _broadcast_state(self, buffers_only: bool) -> None:
        tensors: List[Tensor] = [] if buffers_only else [p.data for p in self.module.parameters()]
        tensors += list(self.module.buffers())
        for t in tensors:
            _dist.broadcast(t, 0)

    # ---- forward --------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.training and self.broadcast_buffers:
            self.sync_buffers()
        if self._on_tape() and _autograd.is_grad_enabled() and not kwargs:
            trainable = [p for p in self.module.parameters() if p.requires_grad]
            if trainable:
                return _TapeThenAverage.apply(self, len(args), *args, *trainable)
        return self.module(*args, **kwargs)

    def _on_tape(self) -> bool:
        """Whether the wrapped model is differentiated on the autograd tape (some module inside it
        has no backward of its own) rather than by its explicit backward."""
        return not explicit_backward(self.module.modules())

    # ---- backward -------------------------------------------------------------------------------
    def backward(self, grad_output: Any, need_input_grad: bool = True) -> Any:
        """The wrapped module's backward, with the parameter gradients averaged over all ranks."""
        if self._on_tape():  # the tape from this call's output: _TapeThenAverage below averages
            return Module.backward(self, grad_output, need_input_grad)
        buckets = self._plan()
        pending: List[Tuple[_Bucket, Any, Any]] = []
        launched = 0

        def launch_ready(done_child: int) -> None:
            nonlocal launched
            while launched < len(buckets) and buckets[launched].ready_after >= done_child:
                pending.append(self._start(buckets[launched]))
                launched += 1
            for _, work, _ in pending:  # lets MPI make progress on what is already in flight
                work.is_completed()

        children = self._sequential_children()
        g = grad_output
        if children is None:  # the buckets leave after the whole backward
            if not need_input_grad and takes_need_input_grad(self.module):
                g = self.module.backward(g, need_input_grad=False)
            else:
                g = self.module.backward(g)
        else:
            for i in range(len(children) - 1, -1, -1):
                if i == 0 and not need_input_grad and takes_need_input_grad(children[0]):
                    g = children[0].backward(g, need_input_grad=False)
                else:
                    g = children[i].backward(g)
                launch_ready(i)
        launch_ready(-1)
        self._wait_all(pending)
        return g if need_input_grad else None

    def _average_now(self) -> None:
        """Averages the gradients the parameters hold now (after a backward on the tape)."""
        self._wait_all([self._start(b) for b in self._plan()])

    def _wait_all(self, pending: List[Tuple[_Bucket, Any, Any]]) -> None:
        t0 = time.perf_counter()
        for bucket, work, flat in pending:
            work.wait()
            self._finish(bucket, flat)
        self.comm_seconds += time.perf_counter() - t0

    def _sequential_children(self) -> Optional[List[Module]]:
        """The layers to run one by one, when the model is a Sequential with Sequential's own
        forward and backward (a subclass with its own may do anything)."""
        m = self.module
        if isinstance(m, Sequential) and type(m).backward is Sequential.backward \
                and type(m).forward is Sequential.forward and len(m) > 0:
            return list(m)
        return None

    def _plan(self) -> List[_Bucket]:
        """Buckets of the trainable parameters in reverse order (remade when that set changes)."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        key = tuple(id(p) for p in params) + tuple(hash(str(p.device)) for p in params)
        if key == self._plan_key:
            return self._buckets
        children = self._sequential_children()
        first_child: Dict[int, int] = {}
        if children is not None:
            for i, child in enumerate(children):
                for p in child.parameters():
                    first_child.setdefault(id(p), i)
        buckets: List[_Bucket] = []
        current: List[Parameter] = []
        size = 0
        for p in reversed(params):
            nbytes = p.numel() * _np_dtype(p).itemsize
            if current and (size + nbytes > self.bucket_cap_bytes or p.dtype != current[0].dtype
                            or p.device != current[0].device):
                buckets.append(_Bucket(current))
                current, size = [], 0
            current.append(p)
            size += nbytes
        if current:
            buckets.append(_Bucket(current))
        for b in buckets:
            b.ready_after = min((first_child.get(id(p), 0) for p in b.params), default=0)
            if not b.params[0].is_cuda:
                b.host = np.empty(b.numel, dtype=_np_dtype(b.params[0]))
        self._plan_key, self._buckets = key, buckets
        return buckets

    def _start(self, bucket: _Bucket) -> Tuple[_Bucket, Any, Any]:
        """Packs the bucket's gradients (zeros for a parameter that got none) and starts the mean."""
        self.comm_bytes += bucket.nbytes
        if bucket.host is not None:
            flat = bucket.host
            for p, lo, hi in zip(bucket.params, bucket.offsets[:-1], bucket.offsets[1:]):
                if p.grad is None:
                    flat[lo:hi] = 0
                else:
                    flat[lo:hi] = np.asarray(p.grad).reshape(-1)
            tensor = _core.from_numpy(flat)
        else:
            parts = [p.grad.reshape(-1) if p.grad is not None else
                     _core.zeros([p.numel()], p.dtype, p.device) for p in bucket.params]
            tensor = F.concat(parts, 0) if len(parts) > 1 else parts[0].clone()  # never the grad's own memory
        return bucket, _dist.all_reduce(tensor, "mean", async_op=True), tensor

    @staticmethod
    def _finish(bucket: _Bucket, flat: Any) -> None:
        """Each parameter's gradient becomes its slice of the averaged bucket (a new tensor)."""
        if bucket.host is not None:
            for p, lo, hi in zip(bucket.params, bucket.offsets[:-1], bucket.offsets[1:]):
                p.grad = _core.from_numpy(bucket.host[lo:hi].reshape(p.shape).copy())
            return
        parts = F.split(flat, bucket.sizes, 0) if len(bucket.params) > 1 else [flat]
        for p, part in zip(bucket.params, parts):
            p.grad = part.reshape(*p.shape) if tuple(part.shape) != tuple(p.shape) else part

    # ---- what acts on the wrapped module --------------------------------------------------------
    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[Tuple[str, Parameter]]:
        return self.module.named_parameters(prefix=prefix, recurse=recurse, remove_duplicate=remove_duplicate)

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[Tuple[str, Tensor]]:
        return self.module.named_buffers(prefix=prefix, recurse=recurse, remove_duplicate=remove_duplicate)

    def state_dict(self, destination: Optional[dict] = None, prefix: str = "",
                   keep_vars: bool = False) -> "OrderedDict[str, Any]":
        return self.module.state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict)

    def summary(self, input_size: Any, **kw: Any) -> Any:
        return self.module.summary(input_size, **kw)

    def extra_repr(self) -> str:
        return f"world_size={_dist.get_world_size()}, broadcast_buffers={self.broadcast_buffers}"


class _TapeThenAverage(_autograd.Function):
    """A forward-only model under DDP: one node on the tape standing for the model's whole call.
    Its backward runs the model's own tape from its output (summing into the parameters' .grad),
    then averages the gradients over the ranks, and returns d/dx of the inputs. The parameters
    are arguments only so that the node counts as leading to them (loss.backward() then runs it);
    their gradients were summed by the inner tape, so the node returns None for them."""

    @staticmethod
    def forward(ctx: Any, ddp: "DistributedDataParallel", n_inputs: int, *args: Any) -> Any:
        inputs = [_input_leaf(x) for x in args[:n_inputs]]
        with _autograd.enable_grad():
            out = ddp.module(*inputs)
        if not isinstance(out, Tensor):
            raise TypeError("DistributedDataParallel: a forward-only model must return one Tensor, got "
                            f"{type(out).__name__}")
        ctx.ddp, ctx.inputs, ctx.out, ctx.n_params = ddp, inputs, out, len(args) - n_inputs
        return _autograd.alias(out)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> Any:
        need = ctx.needs_input_grad[2:2 + len(ctx.inputs)]
        leaves = [x for x, n in zip(ctx.inputs, need) if n and isinstance(x, Tensor)]
        _autograd.backward([ctx.out], [grad], extra=leaves)
        ctx.ddp._average_now()
        dx = []
        for x, n in zip(ctx.inputs, need):
            g = x.grad if n and isinstance(x, Tensor) else None
            if g is not None:
                x.grad = None
            dx.append(g)
        return (None, None, *dx) + (None,) * ctx.n_params


def _input_leaf(x: Any) -> Any:
    """An input that needs a gradient, as a new leaf over its storage: the model's tape then ends
    there (the node returns its gradient to the outer tape) instead of running on past it."""
    if not isinstance(x, Tensor) or not x._rg:
        return x
    leaf = _autograd.alias(x)
    leaf._rg = True
    leaf._explicit_only = True
    return leaf
