"""Grad mode: whether forwards record what a backward needs (thread-local, on by default).

``no_grad()`` turns it off: layers keep no cache (and leave the cache of an earlier training
forward alone), and tensor ops record no node on the tape. ``enable_grad()`` turns it back on
inside a ``no_grad`` block. Both are context managers and decorators, as in PyTorch.
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Callable

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled"]

class _State:
    """One thread's grad mode, and the forward/backward pass bookkeeping of nn.Module (see
    nn/_passes.py: recording_forward, restoring_cache). A plain object behind one thread-local
    attribute: the hot paths read several fields per call."""

    __slots__ = ("enabled", "depth", "record", "training", "capture", "pass_id", "bw_depth", "bw_pass",
                 "bw_field", "next_capture")

    def __init__(self) -> None:
        self.enabled = True       # grad mode
        self.depth = 0            # nested module forwards
        self.record = True        # the outermost forward's grad mode: whether caches are kept
        self.training = True      # the outermost forward's mode: a training pass replaces earlier caches
        self.capture = None       # the id of the outermost module with its own backward now in
        #                           forward; while set, ops record nothing (that module is the node)
        self.pass_id = None       # the id of the outermost forward now running (a pass)
        self.bw_depth = 0         # nested module backwards
        self.bw_pass = None       # the pass (or capture) a running backward differentiates
        self.bw_field = 0         # 0: bw_pass is a pass id, 1: a capture id (cache entries hold both)
        self.next_capture = None  # the capture the next outermost backward differentiates


class _PerThread(threading.local):
    def __init__(self) -> None:
        self.state = _State()


per_thread = _PerThread()  # read by autograd and nn/_passes.py, nn/parameter.py: ``per_thread.state``


def is_grad_enabled() -> bool:
    """True unless inside ``no_grad()`` (on this thread)."""
    return per_thread.state.enabled


class _GradMode:
    """A context manager that sets grad mode to ``self._mode`` and restores it on exit; used as a
    decorator, each call of the function runs in its own context (thread- and re-entry-safe)."""

    _mode = True

    def __enter__(self) -> None:
        st = per_thread.state
        self._prev = st.enabled
        st.enabled = self._mode

    def __exit__(self, *exc: Any) -> None:
        per_thread.state.enabled = self._prev

    def __call__(self, fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError(f"{type(self).__name__}: expected a function to decorate, got {type(fn).__name__}")
        mode = self._mode

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            st = per_thread.state
            prev = st.enabled
            st.enabled = mode
            try:
                return fn(*args, **kwargs)
            finally:
                st.enabled = prev

        return wrapper

    def __repr__(self) -> str:
        return f"pycnn.{type(self).__name__}()"


class _NoArgGradMode(_GradMode):
    """``@pc.no_grad`` without parentheses decorates too, as in PyTorch 2."""

    def __new__(cls, orig_func: Callable | None = None) -> Any:
        if orig_func is None:
            return super().__new__(cls)
        return cls()(orig_func)


class no_grad(_NoArgGradMode):
    """``with pc.no_grad():``, ``@pc.no_grad()`` or ``@pc.no_grad``: nothing is recorded for a
    backward (inference)."""

    _mode = False


class enable_grad(_NoArgGradMode):
    """``with pc.enable_grad():`` or ``@pc.enable_grad()``: recording back on inside ``no_grad``."""

    _mode = True


class set_grad_enabled(_GradMode):
    """``set_grad_enabled(False)`` as a function call, a context manager or a decorator."""

    def __init__(self, mode: bool) -> None:
        if not isinstance(mode, bool):
            raise TypeError(f"set_grad_enabled: mode must be a bool, got {mode!r}")
        self._mode = mode
        st = per_thread.state
        self._prev = st.enabled
        st.enabled = mode

    def __enter__(self) -> None:  # the constructor already switched
        pass
