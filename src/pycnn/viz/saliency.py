"""What a CNN looks at, without matplotlib: saliency maps, activations, top-activating patches.

* :func:`saliency` — Simonyan, Vedaldi & Zisserman (2014), "Deep Inside Convolutional Networks":
  the gradient of the target class score (the logit, before softmax) with respect to the input
  image, ``max_c |d logit_target / d x[c, h, w]|``.  One forward pass in eval mode and one
  ``model.backward`` of a one-hot gradient on the logits.
* :func:`activations` — the output of one layer for an input batch (a forward hook).
* :func:`top_activating_patches` — the k input patches (receptive-field crops) that drive one
  channel of a layer hardest over a dataset (Zeiler & Fergus, 2014).
"""
from __future__ import annotations

from typing import Any, Iterator, List, Tuple, Union

import numpy as np

from ..summary import eval_mode, summary
from ..tensor import Tensor, as_tensor, float32, float64, from_numpy

__all__ = ["saliency", "activations", "top_activating_patches"]


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _model_dtype(model: Any) -> Any:
    for p in model.parameters():
        if p.dtype in (float32, float64):
            return p.dtype
    return float32


def _as_input(model: Any, x: Any, fn: str) -> Any:
    """x as a Tensor on the model's device with the model's float dtype."""
    dtype = _model_dtype(model)
    if isinstance(x, Tensor):
        t = x
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{fn}: x must be a pycnn Tensor or a numeric NumPy array, got dtype {arr.dtype}")
        np_dt = np.float32 if dtype == float32 else np.float64
        t = as_tensor(np.ascontiguousarray(arr, dtype=np_dt))
    if t.dtype != dtype:
        t = t.to(dtype)
    dev = getattr(model, "device", "cpu")
    if t.device != dev:
        t = t.to(dev)
    return t


def _resolve_layer(model: Any, layer: Any) -> Tuple[str, Any]:
    """(qualified name, module) for a Module, a qualified name ("features.0") or an index."""
    named = list(model.named_modules())
    if isinstance(layer, str):
        for n, m in named:
            if n == layer:
                return n, m
        raise ValueError(f"layer {layer!r} not found in {type(model).__name__}; names: "
                         + ", ".join(repr(n) for n, _ in named[1:20]) + (" ..." if len(named) > 21 else ""))
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        children = list(model.named_children())
        if not -len(children) <= int(layer) < len(children):
            raise IndexError(f"layer index {layer} out of range: {type(model).__name__} has {len(children)} children")
        return children[int(layer)]
    for n, m in named:
        if m is layer:
            return n, m
    raise ValueError(f"layer {type(layer).__name__} is not a submodule of {type(model).__name__}")


# ------------------------------------------------------------------------------------------------
# saliency
# ------------------------------------------------------------------------------------------------
def saliency(model: Any, x: Any, target: Any) -> np.ndarray:
    """Vanilla-gradient saliency maps (Simonyan et al., 2014) as a NumPy array (N, H, W).

    x: (N, C, H, W) images (Tensor or array); target: the class whose logit is explained, an int
    (the same for every image) or one int per image.  The model runs in eval mode (its training
    flags are restored), and its parameter gradients are left untouched.
    """
    xt = _as_input(model, x, "saliency")
    if len(xt.shape) != 4:
        raise ValueError(f"saliency: x must be a batch of images (N, C, H, W), got shape {tuple(xt.shape)}")
    n = xt.shape[0]
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    with eval_mode(model):
        try:
            for p, _ in frozen:  # no parameter gradients: faster, and .grad stays as it was
                p.requires_grad = False
            logits = model(xt)
            if len(logits.shape) != 2 or logits.shape[0] != n:
                raise ValueError(f"saliency: the model must return logits of shape (N, classes); got "
                                 f"{tuple(logits.shape)} for N = {n}")
            k = logits.shape[1]
            t = np.asarray(target.numpy() if hasattr(target, "numpy") else target)
            if t.dtype.kind not in "iu" and not (t.dtype.kind == "f" and np.all(t == np.round(t))):
                raise TypeError(f"saliency: target must be class indices (ints), got {t.dtype}")
            t = np.broadcast_to(t.astype(np.int64).reshape(-1) if t.ndim else t.astype(np.int64), (n,))
            if np.any(t < 0) or np.any(t >= k):
                raise ValueError(f"saliency: target classes must lie in [0, {k}), got {t.tolist()}")
            onehot = np.zeros((n, k), dtype=np.float32 if logits.dtype.name == "float32" else np.float64)
            onehot[np.arange(n), t] = 1.0
            g = from_numpy(onehot)
            if logits.device != "cpu":
                g = g.to(logits.device)
            dx = model.backward(g)
        finally:
            for p, flag in frozen:
                p.requires_grad = flag
    grad = np.asarray(dx.numpy())
    return np.abs(grad).max(axis=1)


# ------------------------------------------------------------------------------------------------
# activations and top patches
# ------------------------------------------------------------------------------------------------
def activations(model: Any, layer: Any, x: Any) -> np.ndarray:
    """The output of ``layer`` (a submodule, its qualified name, or a child index) for input x,
    as NumPy, from one forward pass in eval mode."""
    _, module = _resolve_layer(model, layer)
    xt = _as_input(model, x, "activations")
    captured: List[Any] = []
    handle = module.register_forward_hook(lambda m, args, out: captured.append(out) and None)
    try:
        with eval_mode(model):
            model(xt)
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"activations: layer {type(module).__name__} did not run in the forward pass")
    return np.asarray(captured[0].numpy())


def _batches(dataset: Any, batch_size: int) -> Iterator[np.ndarray]:
    """Input batches (NumPy) from an array/Tensor, an (x, y) pair, an indexable dataset of
    (x, y) samples, or a DataLoader-like iterable of (x, y) batches."""
    def arr(v: Any) -> np.ndarray:
        return np.asarray(v.numpy()) if isinstance(v, Tensor) or hasattr(v, "numpy") else np.asarray(v)

    if isinstance(dataset, (np.ndarray, Tensor)):
        a = arr(dataset)
        for i in range(0, len(a), batch_size):
            yield a[i:i + batch_size]
        return
    if isinstance(dataset, tuple) and len(dataset) == 2 and hasattr(dataset[0], "shape"):
        yield from _batches(dataset[0], batch_size)
        return
    if hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        buf = []
        for i in range(len(dataset)):
            item = dataset[i]
            buf.append(arr(item[0] if isinstance(item, (tuple, list)) else item))
            if len(buf) == batch_size:
                yield np.stack(buf)
                buf = []
        if buf:
            yield np.stack(buf)
        return
    for batch in dataset:  # DataLoader
        yield arr(batch[0] if isinstance(batch, (tuple, list)) else batch)


def _layer_geometry(model: Any, name: str, sample_shape: Tuple[int, ...]):
    s = summary(model, (1,) + tuple(sample_shape))
    for r in s.rows:
        if r.name == name:
            return r
    raise RuntimeError(f"top_activating_patches: layer {name!r} did not run in the forward pass")


def top_activating_patches(model: Any, layer: Any, unit: int, dataset: Any, k: int = 9,
                           batch_size: int = 64, return_indices: bool = False):
    """The k input patches that most activate channel ``unit`` of ``layer`` over ``dataset``.

    For every image, the position where the channel responds most is found; the k images with the
    largest such responses are kept and the receptive field of that position is cropped from the
    input (zero-padded where the field runs past the border).  For a layer whose output is flat
    (after Flatten/Linear) the whole image is the patch.

    Returns ``(patches, activations)``: NumPy arrays (k, C, rh, rw) and (k,), strongest first;
    with ``return_indices=True`` also ``locations`` (k, 3): dataset index, output row, column.
    """
    name, module = _resolve_layer(model, layer)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"top_activating_patches: k must be a positive int, got {k!r}")
    k = int(k)
    best: List[Tuple[float, Tuple[int, int, int], np.ndarray]] = []  # (activation, location, patch)
    geometry = None
    offset = 0
    captured: List[Any] = []
    handle = module.register_forward_hook(lambda m, args, out: captured.append(out) and None)
    try:
        with eval_mode(model):
            for xb in _batches(dataset, batch_size):
                if len(xb) == 0:
                    continue
                if geometry is None:
                    geometry = _layer_geometry(model, name, xb.shape[1:])
                    model.eval()
                captured.clear()
                model(_as_input(model, xb, "top_activating_patches"))
                a = np.asarray(captured[0].numpy())
                nch = a.shape[1]
                if not -nch <= unit < nch:
                    raise IndexError(f"top_activating_patches: unit {unit} out of range: layer {name!r} "
                                     f"has {nch} channels")
                if a.ndim == 4:
                    plane = a[:, unit].reshape(len(a), -1)
                    pos = plane.argmax(axis=1)
                    val = plane[np.arange(len(a)), pos]
                    rows, cols = np.unravel_index(pos, a.shape[2:])
                else:
                    val = a[:, unit].reshape(len(a), -1)[:, 0]
                    rows = cols = np.zeros(len(a), dtype=np.int64)
                for i in np.argsort(-val, kind="stable")[:k]:  # this batch's candidates
                    loc = (offset + int(i), int(rows[i]), int(cols[i]))
                    best.append((float(val[i]), loc, _patch(xb[i], geometry, loc[1], loc[2])))
                best.sort(key=lambda e: (-e[0], e[1][0]))
                del best[k:]
                offset += len(a)
    finally:
        handle.remove()
    if geometry is None:
        raise ValueError("top_activating_patches: the dataset is empty")
    patches = np.stack([e[2] for e in best])
    values = np.asarray([e[0] for e in best], dtype=np.float64)
    if return_indices:
        return patches, values, np.asarray([e[1] for e in best], dtype=np.int64).reshape(-1, 3)
    return patches, values


def _patch(img: np.ndarray, geometry: Any, i: int, j: int) -> np.ndarray:
    """The receptive field of output (i, j) cropped from img (C, H, W); the whole image when the
    field is global."""
    if geometry.receptive_field is None or geometry.rf_offset is None:
        return np.array(img, copy=True)
    rh, rw = _two(geometry.receptive_field)
    jh, jw = _two(geometry.jump)
    top, left = geometry.rf_offset[0] + i * jh, geometry.rf_offset[1] + j * jw
    return _crop(img, top, left, rh, rw)


def _two(v: Union[int, Tuple[int, int]]) -> Tuple[int, int]:
    return (v, v) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


def _crop(img: np.ndarray, top: int, left: int, h: int, w: int) -> np.ndarray:
    """img[:, top:top+h, left:left+w] with zeros where the window leaves the image."""
    c, H, W = img.shape
    out = np.zeros((c, h, w), dtype=img.dtype)
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + h, H), min(left + w, W)
    if t1 > t0 and l1 > l0:
        out[:, t0 - top:t1 - top, l0 - left:l1 - left] = img[:, t0:t1, l0:l1]
    return out
