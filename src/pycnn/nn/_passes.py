"""The bookkeeping of the explicit route's forward passes. A module may appear several times in one
forward pass (a shared ReLU, or shared weights): each call's cache is stacked, tagged with its
pass's id, and the backward calls, made in reverse order, take them back one by one, so a backward
never reads another pass's cache (or says why it cannot: a stale or missing cache). Module wraps
its subclasses' forward with recording_forward and backward with restoring_cache."""
from __future__ import annotations

import functools
import inspect
import itertools
from typing import TYPE_CHECKING, Any, Callable, Tuple

from ..autograd.grad_mode import per_thread
from ..autograd.module_node import input_leaf as _input_leaf, module_node as _module_node
from ..tensor import Tensor

if TYPE_CHECKING:
    from .module import Module


_ids = itertools.count(1)  # forward passes and captures
_NOTHING = object()


def _no_backward(cls: type) -> bool:
    """Whether `cls` has no backward of its own (Module's, marked in module.py): it is traced through its ops."""
    return getattr(cls.backward, "traced_through_ops", False)


def recording_forward(forward: Callable) -> Callable:
    """Wraps a module's forward (``self(x)`` and ``self.forward(x)`` alike) with the pass logic.

    The outermost module with a backward starts a *capture*: every cache entry pushed during its
    forward (its own and its children's) is tagged with the capture's id, and so is its output, so
    the backward of that output (and ``crit.backward()`` of a loss on it) takes exactly these
    caches. A forward under ``no_grad`` keeps no cache and leaves earlier caches alone; an
    eval-mode forward keeps its own caches (for saliency and other eval-mode gradients) apart
    from those of the last training pass, which only the next training forward replaces."""

    @functools.wraps(forward)
    def wrapper(self: "Module", *args: Any, **kwargs: Any) -> Any:
        d = self.__dict__
        if d.get("_in_forward"):  # super().forward() of a subclass: one call, one cache entry
            return forward(self, *args, **kwargs)
        tls = per_thread.state
        depth = tls.depth
        traced = False
        explicit = tree = None
        if depth == 0:
            record, training, capture = tls.enabled, self.training, None
            tls.record, tls.training, tls.capture = record, training, None
            if record:
                tls.pass_id = next(_ids)
                tree = self._tree()
                _start_pass(tree, training)
                explicit = d["_explicit_last"] = explicit_backward(tree)
                traced = not explicit
                if traced:  # Module.backward of a traced model differentiates this call on the tape
                    args = tuple(_input_leaf(a) for a in args)
        else:
            record, training, capture = tls.record, tls.training, tls.capture
        pass_id = tls.pass_id
        if record and capture is None and not _no_backward(type(self)) and explicit is None:
            tree = self._tree()
            explicit = explicit_backward(tree)
        root = record and capture is None and not _no_backward(type(self)) and explicit
        if root:
            capture = tls.capture = next(_ids)
        attrs = self._cache_attrs
        saved = None if record else [d.get(a, _NOTHING) for a in attrs]
        tls.depth = depth + 1
        d["_in_forward"] = True
        try:
            out = forward(self, *args, **kwargs)
        finally:
            d["_in_forward"] = False
            tls.depth = depth
            if root:
                tls.capture = None
            if saved is not None:  # no_grad: what this forward cached is dropped at once
                for a, v in zip(attrs, saved):
                    if v is _NOTHING:
                        d.pop(a, None)
                    else:
                        d[a] = v
        if record:
            if attrs[0] in d:
                values = (d.get(attrs[0]),) if len(attrs) == 1 else tuple([d.get(a) for a in attrs])
                d.setdefault("_cache_stack", []).append((pass_id, capture, training, values))
            if root:
                out = _module_node(self, tree, capture, args, out)
            if depth == 0:
                _tag_outputs(out, pass_id)
                if traced:
                    d["_traced_call"] = (pass_id, args, out)
        return out

    wrapper.records_pass = True  # type: ignore[attr-defined]
    return wrapper


def _tag_outputs(out: Any, tag: int) -> None:
    if isinstance(out, Tensor):
        out._pass_id = tag
    elif isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, Tensor):
                o._pass_id = tag


def _stale_cache(m: "Module", want: int, stack: list) -> RuntimeError:
    return RuntimeError(
        f"{m._name()}: backward() would read the cache of another forward pass than the one it "
        f"differentiates (its gradient comes from forward pass #{want}; this layer holds the caches of "
        f"pass(es) {sorted({e[0] for e in stack})}): a later forward in training mode replaced that pass's "
        "caches. Call backward() before the next training forward, or run the other forward under "
        "pc.no_grad() or in eval mode")


def _start_pass(tree: Any, training: bool) -> None:
    """A new outermost forward over the modules `tree`: a training pass drops every cache an
    earlier pass left (an unused inference pass, or a training pass never back-propagated); an
    eval pass drops only earlier eval passes' caches and leaves the last training pass's alone."""
    for m in tree:
        stack = m.__dict__.get("_cache_stack")
        if stack:
            if training:
                stack.clear()
            else:
                stack[:] = [e for e in stack if e[2]]


def traced_last_pass(m: "Module") -> bool:
    """Whether m's last recorded forward was traced (some module inside has no backward of its own)."""
    return not m.__dict__.get("_explicit_last", True)


def explicit_backward(tree: Any) -> bool:
    """Whether every module in `tree` defines backward (none is traced through its ops)."""
    for m in tree:
        if _no_backward(type(m)):
            return False
    return True


def _take_entry(m: "Module", stack: list) -> Tuple[int, Any]:
    """(index, entry) of the cache this backward reads: the newest of the capture (autograd's
    node) or pass being differentiated (the newest of all when none is chosen yet). Entries are
    (pass id, capture id, training, values). (-1, None) when empty."""
    tls = per_thread.state
    want, field = tls.bw_pass, tls.bw_field
    if not stack:
        return -1, None
    if want is None:
        tls.bw_pass, tls.bw_field = stack[-1][0], 0
        return len(stack) - 1, stack.pop()
    for i in range(len(stack) - 1, -1, -1):
        if stack[i][field] == want:
            return i, stack.pop(i)
    raise _stale_cache(m, want, stack)


def restoring_cache(backward: Callable) -> Callable:
    """Wraps a layer's backward: the outermost call on an instance first restores the cache of
    the forward it differentiates (see recording_forward and Module._cache_attrs). The pass is
    the one the incoming gradient is tagged with (an output of that pass, or a loss's gradient),
    else the newest cached one; nested backwards follow the same pass."""

    @functools.wraps(backward)
    def wrapper(self: "Module", *args: Any, **kwargs: Any) -> Any:
        d = self.__dict__
        if d.get("_in_backward", False):
            return backward(self, *args, **kwargs)
        tls = per_thread.state
        bw_depth = tls.bw_depth
        if bw_depth == 0:
            if tls.next_capture is not None:  # autograd's node of one module call
                tls.bw_pass, tls.bw_field, tls.next_capture = tls.next_capture, 1, None
            else:
                g = args[0] if args else kwargs.get("grad_output")
                tls.bw_pass, tls.bw_field = (g._pass_id if isinstance(g, Tensor) else None), 0
        stack = d.get("_cache_stack")
        i, entry = -1, None
        try:
            if stack is not None:  # this module records: never read a cache left on self
                if stack and tls.bw_pass is not None and stack[-1][tls.bw_field] == tls.bw_pass:
                    i, entry = len(stack) - 1, stack.pop()  # the usual case: the newest entry
                else:
                    i, entry = _take_entry(self, stack)
                d.update(zip(self._cache_attrs, entry[3] if entry is not None else (None,) * len(self._cache_attrs)))
            d["_in_backward"] = True
            tls.bw_depth = bw_depth + 1
            return backward(self, *args, **kwargs)
        except BaseException:
            if entry is not None:  # a refused backward (bad gradient) keeps its cache for a retry
                stack.insert(i, entry)
            raise
        finally:
            d["_in_backward"] = False
            tls.bw_depth = bw_depth
            if bw_depth == 0:
                tls.bw_pass = None

    wrapper.restores_cache = True  # type: ignore[attr-defined]
    return wrapper


@functools.lru_cache(maxsize=None)
def _backward_takes_need_input_grad(backward: Callable) -> bool:
    try:
        return "need_input_grad" in inspect.signature(backward).parameters
    except (TypeError, ValueError):
        return False


def takes_need_input_grad(m: "Module") -> bool:
    """Whether m.backward accepts ``need_input_grad`` (user layers may not): looked up once per class."""
    return _backward_takes_need_input_grad(type(m).backward)

