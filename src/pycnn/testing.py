"""Gradient checking: analytic backward against float64 central differences.

``gradcheck(module, x)``
    A deep copy of the module is cast to float64. With a fixed random projection R of the output,
    ``module.backward(R)`` is compared with the numeric gradient of ``sum(f(x) * R)`` with respect
    to x, and every trainable parameter's ``.grad`` with the numeric gradient with respect to that
    parameter. ``inputs`` may be one array/Tensor or a tuple; only the first is differentiated (the
    rest, e.g. class labels of a loss, are passed through as they are). The module is used in the
    mode it is in (put Dropout in eval mode, or p=0, first); the original is not modified.

``gradcheck((forward, backward), inputs)``
    For plain functions: ``forward(*inputs) -> Tensor`` and ``backward(grad_output, *inputs)``
    returning the gradient with respect to each input (a Tensor for one input, else a tuple with
    None for inputs that are not differentiated). Floating inputs are cast to float64.

Returns True, or raises AssertionError naming the worst element (False when
``raise_exception=False``). Numeric gradients cost two forwards per element: keep inputs small.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

from .nn.module import Module
from .tensor import Tensor, as_tensor, float64

__all__ = ["gradcheck"]


def _to_numpy(t: Any) -> np.ndarray:
    return np.array(t.numpy() if isinstance(t, Tensor) else t, copy=True)


def _as_inputs(inputs: Any) -> list:
    return list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]


def _float64_input(v: Any, device: str) -> Any:
    """Floating arrays/Tensors -> float64 Tensor on `device`; anything else as it is."""
    if isinstance(v, Tensor):
        if v.dtype == float64 or v.dtype.numpy.kind == "f":
            t = v.to(float64)
            return t.to(device) if t.device != device else t
        return v
    if isinstance(v, np.ndarray) and v.dtype.kind == "f":
        t = as_tensor(np.ascontiguousarray(v, dtype=np.float64))
        return t.to(device) if device != "cpu" else t
    return v


def _is_float_tensor(v: Any) -> bool:
    return isinstance(v, Tensor) and v.dtype.numpy.kind == "f"


def _tensor_from(arr: np.ndarray, device: str) -> Tensor:
    t = as_tensor(np.ascontiguousarray(arr, dtype=np.float64))
    return t.to(device) if device != "cpu" else t


class _Mismatch:
    def __init__(self) -> None:
        self.worst: Optional[Tuple[float, str]] = None
        self.failed = False

    def compare(self, what: str, analytic: np.ndarray, numeric: np.ndarray, atol: float, rtol: float) -> None:
        if analytic.shape != numeric.shape:
            self.failed = True
            self.worst = (np.inf, f"{what}: analytic gradient has shape {analytic.shape}, expected {numeric.shape}")
            return
        if analytic.size == 0:
            return
        allowed = atol + rtol * np.abs(numeric)
        err = np.abs(analytic - numeric)
        bad = ~(err <= allowed)  # NaN counts as bad
        excess = np.where(np.isnan(err), np.inf, err - allowed)
        k = int(np.argmax(excess))
        idx = np.unravel_index(k, analytic.shape)
        if bad.any():
            self.failed = True
            score = float(excess.reshape(-1)[k])
            msg = (f"{what}[{', '.join(str(int(i)) for i in idx)}]: analytic {float(analytic[idx]):.10g} vs numeric "
                   f"{float(numeric[idx]):.10g} (abs error {err[idx]:.3g} > allowed {allowed[idx]:.3g}; "
                   f"{int(bad.sum())} of {bad.size} elements out of tolerance)")
            if self.worst is None or score > self.worst[0]:
                self.worst = (score, msg)


def _numeric(f: Callable[[], float], arr: np.ndarray, write: Callable[[np.ndarray], None], eps: float) -> np.ndarray:
    """Central differences of f() w.r.t. every element of arr; write(arr) installs a perturbed copy."""
    grad = np.zeros(arr.shape, dtype=np.float64)
    flat, gflat = arr.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        write(arr)
        fp = f()
        flat[k] = old - eps
        write(arr)
        fm = f()
        flat[k] = old
        gflat[k] = (fp - fm) / (2.0 * eps)
    write(arr)
    return grad


def _projection(y: Tensor, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(tuple(y.shape))


def gradcheck(module_or_fn: Any, inputs: Any, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True) -> bool:
    """See the module docstring. Returns True, or raises AssertionError naming the worst element."""
    rng = np.random.default_rng(1234)  # a local generator: does not disturb pc.manual_seed's stream
    mism = _Mismatch()
    if isinstance(module_or_fn, Module):
        label = f"gradcheck({type(module_or_fn).__name__})"
        _check_module(module_or_fn, _as_inputs(inputs), eps, atol, rtol, rng, mism)
    elif isinstance(module_or_fn, (tuple, list)) and len(module_or_fn) == 2 and all(map(callable, module_or_fn)):
        fwd, bwd = module_or_fn
        label = f"gradcheck({getattr(fwd, '__name__', 'forward')})"
        _check_function(fwd, bwd, _as_inputs(inputs), eps, atol, rtol, rng, mism)
    else:
        raise TypeError("gradcheck: expected an nn.Module or a (forward, backward) pair of callables, got "
                        f"{type(module_or_fn).__name__}")
    if mism.failed:
        if raise_exception:
            raise AssertionError(f"{label} failed: {mism.worst[1] if mism.worst else 'mismatch'}")
        return False
    return True


def _check_module(module: Any, inputs: List[Any], eps: float, atol: float, rtol: float,
                  rng: np.random.Generator, mism: _Mismatch) -> None:
    m = copy.deepcopy(module)
    m.to(float64)
    device = m.device
    if not inputs:
        raise ValueError("gradcheck: needs at least one input")
    args = [_float64_input(v, device) for v in inputs]
    if not _is_float_tensor(args[0]):
        raise TypeError("gradcheck: the first input must be a floating-point array or Tensor")
    x0 = _to_numpy(args[0])
    rest = args[1:]

    def run(x: Tensor) -> Tensor:
        return m(x, *rest)

    m.zero_grad()
    y = run(_tensor_from(x0, device))
    R = _projection(y, rng)
    loss_like = len(tuple(y.shape)) == 0 and hasattr(m, "reduction")
    dx = m.backward(float(R) if loss_like else _tensor_from(R, device))
    params = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
    analytic_params = {n: (None if p.grad is None else _to_numpy(p.grad)) for n, p in params}

    def objective_x(cur: List[np.ndarray]) -> Callable[[], float]:
        return lambda: float(np.sum(_to_numpy(run(_tensor_from(cur[0], device))) * R))

    box = [x0.copy()]
    num_dx = _numeric(objective_x(box), box[0], lambda a: None, eps)
    mism.compare("d/d input", _to_numpy(dx) if dx is not None else np.zeros_like(x0), num_dx, atol, rtol)

    xt = _tensor_from(x0, device)
    f_params = lambda: float(np.sum(_to_numpy(run(xt)) * R))  # noqa: E731
    for name, p in params:
        arr = _to_numpy(p.data).astype(np.float64)

        def write(a: np.ndarray, p: Any = p) -> None:
            p.data.copy_(_tensor_from(a, device))

        num = _numeric(f_params, arr, write, eps)
        ana = analytic_params[name]
        mism.compare(f"d/d {name}", np.zeros_like(num) if ana is None else ana, num, atol, rtol)


def _check_function(fwd: Callable, bwd: Callable, inputs: List[Any], eps: float, atol: float, rtol: float,
                    rng: np.random.Generator, mism: _Mismatch) -> None:
    device = next((v.device for v in inputs if isinstance(v, Tensor)), "cpu")
    args = [_float64_input(v, device) for v in inputs]
    y = fwd(*args)
    R = _projection(y, rng)
    grads = bwd(_tensor_from(R, device), *args)
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    if len(grads) > len(args):
        raise ValueError(f"gradcheck: backward returned {len(grads)} gradients for {len(args)} inputs")
    for i, g in enumerate(grads):
        if g is None:
            continue
        if not _is_float_tensor(args[i]):
            raise TypeError(f"gradcheck: backward returned a gradient for input {i}, which is not floating-point")
        arr = _to_numpy(args[i])
        cur = list(args)

        def write(a: np.ndarray, i: int = i) -> None:
            cur[i] = _tensor_from(a, device)

        f = lambda: float(np.sum(_to_numpy(fwd(*cur)) * R))  # noqa: E731
        num = _numeric(f, arr, write, eps)
        mism.compare(f"d/d input {i}", _to_numpy(g), num, atol, rtol)
