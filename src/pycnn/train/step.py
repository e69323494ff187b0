"""The backward of one training step, shared by the Trainer's eager step and its CUDA-graph capture."""
from __future__ import annotations

from typing import Any

from ..nn.module import Module
from ..nn._passes import _takes_need_input_grad
from ..tensor import Tensor


def backward_for_step(model: Module, criterion: Any, loss: Tensor) -> None:
    """The backward of a training step. A model whose every module defines backward takes the
    explicit route, ``model.backward(criterion.backward())``: parameter gradients only, the
    input's d/dx skipped where the model can skip it (a user model whose backward has no such
    option runs as is). Any other model (a forward-only custom module) runs ``loss.backward()``
    on the tape its forward recorded."""
    if isinstance(model, Module) and not model.__dict__.get("_explicit_last", True):
        loss.backward()
    elif _takes_need_input_grad(model):
        model.backward(criterion.backward(), need_input_grad=False)
    else:
        model.backward(criterion.backward())
