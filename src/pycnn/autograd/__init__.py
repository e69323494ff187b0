"""Reverse-mode automatic differentiation over pycnn's ops (see docs/python_layer.md).

A thin layer over the ops' existing backwards: while grad mode is on, each differentiable op on a
tensor that requires grad records a node (function.py) whose backward is the op's backward; a
module with its own ``backward`` is one node (nn/module.py), its explicit backward the rule;
``loss.backward()`` runs the nodes newest first (engine.py) and sums into ``.grad``.
"""
from __future__ import annotations

from .engine import backward, grad
from .function import AccumulateGrad, Function, FunctionCtx, Node, alias, edge_of, mark_outputs
from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from . import functional_rules, tensor_api, tensor_rules

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "backward", "grad", "Function",
           "FunctionCtx", "Node", "AccumulateGrad", "install",
           "alias", "edge_of", "mark_outputs"]  # the last three: for modules that put themselves on the tape

tensor_api.install()


def install() -> list:
    """Makes pycnn.functional's ops and Tensor's methods record on the tape (once, after every
    module that defines them is loaded; pycnn/__init__ calls it). Returns the differentiable
    Tensor methods that were not found."""
    functional_rules.install()
    tensor_api.install_creation()
    return tensor_rules.install()
