"""Reverse-mode automatic differentiation over pycnn's ops (see docs/python_layer.md)."""
from __future__ import annotations

from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled"]
