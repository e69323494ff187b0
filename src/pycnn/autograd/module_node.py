"""nn.Module on the tape: a module whose every submodule defines backward is one node, whose
backward is the module's explicit one reading the caches of the very call that made the node
(nn/module.py tags them with the call's capture id); and the inputs of a traced model's outermost
call, aliased as leaves that only Module.backward asks a gradient for."""
from __future__ import annotations

from typing import Any

from ..tensor import Tensor
from .function import Node, _as_traced, _fresh, alias, edge_of, mark_outputs
from .grad_mode import per_thread

__all__ = ["module_node", "input_leaf", "ModuleNode"]


def input_leaf(a: Any) -> Any:
    """A floating input of a traced model's outermost forward as a new leaf over its storage whose
    gradient only Module.backward asks for (loss.backward() skips it, as torch skips inputs)."""
    if isinstance(a, Tensor) and not a._rg and a.dtype.numpy.kind == "f":
        leaf = alias(a)
        leaf._rg = True
        leaf._explicit_only = True
        return leaf
    return a


def module_node(m: Any, tree: Any, capture: int, args: tuple, out: Any) -> Any:
    """Puts module `m` (whose modules are `tree`) on the tape as one node, when an input or one of
    its parameters needs a gradient; returns the output (a new tensor object where the module
    returned its input itself)."""
    edges = tuple([edge_of(a if isinstance(a, Tensor) else _as_traced(a)) for a in args])
    trainable = any(p is not None and p.requires_grad for sub in tree for p in sub._parameters.values())
    if not trainable and all(e is None for e in edges):
        return out
    many = isinstance(out, (tuple, list))
    node = ModuleNode(m, capture, edges, trainable, many)
    outs = [_fresh(o, args) for o in (out if many else (out,))]
    mark_outputs(node, outs)
    return type(out)(outs) if many else outs[0]


class ModuleNode(Node):
    """A module with its own backward on the tape."""

    __slots__ = ("module", "capture", "fills_leaves", "many")

    def __init__(self, module: Any, capture: int, edges: tuple, trainable: bool, many: bool) -> None:
        super().__init__()
        self.module, self.capture, self.fills_leaves, self.many = module, capture, trainable, many
        self.edges = edges
        self.needs_input_grad = tuple(e is not None for e in edges)

    def name(self) -> str:
        return f"{type(self.module).__name__}Backward"

    def backward(self, *grads: Any) -> Any:
        from ..nn._passes import takes_need_input_grad  # nn imports this package

        if not grads or all(g is None for g in grads):
            return (None,) * len(self.edges)
        m = self.module
        g = tuple(grads) if self.many else grads[0]
        need_x = bool(self.needs_input_grad) and self.needs_input_grad[0]
        per_thread.state.next_capture = self.capture  # the module's backward reads this call's caches
        try:
            if not need_x and takes_need_input_grad(m):
                dx = m.backward(g, need_input_grad=False)
            else:
                dx = m.backward(g)
        finally:
            per_thread.state.next_capture = None
        return tuple(dx) if isinstance(dx, (tuple, list)) else (dx,) + (None,) * (len(self.edges) - 1)
