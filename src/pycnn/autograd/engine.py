"""The backward pass over the tape: ``backward(tensors, grad_tensors)``.

1. From the roots, one depth-first walk finds every node that leads to a leaf to be filled (a
   leaf that requires grad; leaves marked ``_explicit_only``, such as the input alias of
   ``Module.backward`` on a traced model, only when asked for), and counts each node's consumers.
2. Nodes run newest first (a max-heap on their creation number): a node's consumers were all made
   after it, so it runs once every gradient flowing into it has been summed. Each gets the summed
   gradient of each of its outputs and ``needs_input_grad`` for this backward (an input whose
   edge leads to no wanted leaf is skipped: e.g. the images' gradient of a first convolution).
3. Leaves sum their gradient into ``.grad`` (an nn.Parameter's own ``.grad`` for a parameter).
Without ``retain_graph`` each node drops its saved tensors once it has run.
"""
from __future__ import annotations

import heapq
from typing import Any, Dict, List, Optional, Sequence

from .. import _core
from ..tensor import Tensor
from . import grad_mode
from .function import AccumulateGrad, Node, edge_of

__all__ = ["backward", "grad"]


def _ones_like(t: Tensor) -> Tensor:
    return _core.full(list(t.shape), 1.0, t.dtype, t.device)


def _root_grads(tensors: Sequence[Tensor], grad_tensors: Sequence[Any]) -> List[Tensor]:
    out = []
    for t, g in zip(tensors, grad_tensors):
        if g is None:
            if t.numel() != 1:
                raise RuntimeError(f"backward: grad can be implicitly created only for scalar outputs; this "
                                   f"tensor has shape {tuple(t.shape)}: pass gradient= of that shape")
            g = _ones_like(t)
        elif not isinstance(g, Tensor):
            g = _core.full(list(t.shape), float(g), t.dtype, t.device)
        if tuple(g.shape) != tuple(t.shape) and g.numel() == t.numel() == 1:
            g = g.reshape(*t.shape)  # a one-element gradient for a one-element output of another rank
        if tuple(g.shape) != tuple(t.shape):
            raise RuntimeError(f"backward: gradient has shape {tuple(g.shape)}, expected the output's shape "
                               f"{tuple(t.shape)}")
        out.append(g)
    return out


def _plan(roots: List[Node], wanted: Optional[set], extra: set) -> tuple:
    """(consumers per node, whether each node leads to a wanted leaf), by one iterative DFS."""
    consumers: Dict[Node, int] = {}
    useful: Dict[Node, bool] = {}
    stack = [(r, False) for r in roots]
    seen: set = set()
    while stack:
        node, done = stack.pop()
        if done:
            if isinstance(node, AccumulateGrad):
                t = node.target()
                useful[node] = t is not None and (id(t) in wanted if wanted is not None
                                                  else not t._explicit_only or id(t) in extra)
            else:
                useful[node] = (wanted is None and node.fills_leaves) or \
                    any(e is not None and useful.get(e[0], False) for e in node.edges)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        for e in node.edges:
            if e is not None:
                consumers[e[0]] = consumers.get(e[0], 0) + 1
                if e[0] not in seen:
                    stack.append((e[0], False))
    return consumers, useful


def backward(tensors: Any, grad_tensors: Any = None, retain_graph: bool = False,
             inputs: Optional[Sequence[Tensor]] = None, extra: Sequence[Tensor] = ()) -> None:
    """Sums d(tensors)/d(leaf) (weighted by grad_tensors) into the leaves' ``.grad``; with
    `inputs`, only into those tensors. `extra`: leaves marked ``_explicit_only`` to fill too."""
    tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if grad_tensors is None or not isinstance(grad_tensors, (list, tuple)):
        grad_tensors = [grad_tensors] * len(tensors)
    grads = _root_grads(tensors, grad_tensors)
    edges = [edge_of(t) for t in tensors]
    for t, e in zip(tensors, edges):
        if e is None:
            raise RuntimeError("backward: element 0 of tensors does not require grad and does not have a "
                               "grad_fn (was it computed under pc.no_grad(), from tensors that do not require "
                               "grad, or detached?)")
    wanted = None if inputs is None else {id(t) for t in inputs}
    _run(edges, grads, retain_graph, wanted, {id(t) for t in extra})


def grad(outputs: Any, inputs: Sequence[Tensor], grad_outputs: Any = None, retain_graph: bool = False) -> tuple:
    """d(outputs)/d(inputs) returned (not summed into ``.grad``), as ``torch.autograd.grad``."""
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    saved = [t.grad for t in inputs]
    for t in inputs:
        t.grad = None
    try:
        backward(outputs, grad_outputs, retain_graph, inputs=inputs)
        return tuple(t.grad for t in inputs)
    finally:
        for t, g in zip(inputs, saved):
            t.grad = g


def _run(edges: List[Any], grads: List[Tensor], retain_graph: bool, wanted: Optional[set], extra: set) -> None:
    roots = [e[0] for e in edges]
    consumers, useful = _plan(roots, wanted, extra)
    buffers: Dict[Node, List[Any]] = {}
    for (node, i), g in zip(edges, grads):
        _add_into(buffers, node, i, g)
    heap = []
    for node in set(roots):
        if consumers.get(node, 0) == 0:
            heapq.heappush(heap, (-node.seq, id(node), node))
    with grad_mode.no_grad():
        while heap:
            _, _, node = heapq.heappop(heap)
            outs = buffers.pop(node, [])
            for i, t in node.__dict__.get("retained", ()):  # Tensor.retain_grad: the gradient of that output
                if i < len(outs) and outs[i] is not None:
                    t.grad = outs[i].clone() if t.grad is None else _sum(t.grad, outs[i])
            if useful.get(node, False):
                if isinstance(node, AccumulateGrad):
                    if outs and outs[0] is not None:
                        node.accumulate(outs[0])
                else:
                    _apply(node, outs, useful, buffers, retain_graph)
            for e in node.edges:
                if e is None:
                    continue
                nxt = e[0]
                consumers[nxt] -= 1
                if consumers[nxt] == 0:
                    heapq.heappush(heap, (-nxt.seq, id(nxt), nxt))


def _apply(node: Node, outs: List[Any], useful: Dict[Node, bool], buffers: Dict[Node, List[Any]],
           retain_graph: bool) -> None:
    if node.released:
        raise RuntimeError(f"{node.name()}: backward through this part of the graph a second time, but the first "
                           "backward freed what it saved; pass retain_graph=True to the first backward")
    need = tuple(e is not None and useful.get(e[0], False) for e in node.edges)
    saved_need = node.needs_input_grad
    node.needs_input_grad = need
    try:
        in_grads = node.backward(*outs) if any(need) or node.fills_leaves else ()
    finally:
        node.needs_input_grad = saved_need
        if not retain_graph:
            node.release()
    if len(in_grads) > len(node.edges):
        raise RuntimeError(f"{node.name()}: backward returned {len(in_grads)} gradients for "
                           f"{len(node.edges)} inputs")
    for e, g, n in zip(node.edges, in_grads, need):
        if e is not None and n and g is not None:
            _add_into(buffers, e[0], e[1], g)


def _add_into(buffers: Dict[Node, List[Any]], node: Node, index: int, g: Tensor) -> None:
    slots = buffers.get(node)
    if slots is None:
        slots = buffers[node] = []
    while len(slots) <= index:
        slots.append(None)
    prev = slots[index]
    slots[index] = g if prev is None else _sum(prev, g)


def _sum(a: Tensor, b: Tensor) -> Tensor:
    if a.dtype != b.dtype:
        b = b.to(a.dtype)
    if tuple(a.shape) != tuple(b.shape):
        raise RuntimeError(f"autograd: gradients of shapes {tuple(a.shape)} and {tuple(b.shape)} flow into one "
                           "tensor")
    return _core.add(a, b)
