"""Plots for teaching (matplotlib, the optional extra ``pycnn[viz]``, imported lazily).

Every function returns the matplotlib ``Figure`` it drew on (``fig.savefig("x.png")`` writes it);
pass ``ax=`` to draw into an existing Axes instead.  Without a display (no ``DISPLAY`` on Linux
and no backend chosen by the user) the non-interactive Agg backend is selected.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .saliency import _resolve_layer, activations

__all__ = ["plot_filters", "plot_feature_maps", "plot_history", "plot_confusion_matrix"]


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install pycnn[viz]") from None
    headless = (sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
                and not os.environ.get("WAYLAND_DISPLAY"))
    if headless and "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fig_ax(ax: Any, figsize: Sequence[float]):
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    else:
        fig = ax.figure
    return fig, ax


def _grid(tiles: np.ndarray, ncols: int, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """(n, h, w) or (n, h, w, 3) tiles in [0, 1] -> one image with `pad`-pixel separators."""
    n, h, w = tiles.shape[:3]
    ncols = max(1, min(int(ncols), n))
    nrows = -(-n // ncols)
    shape = (nrows * (h + pad) + pad, ncols * (w + pad) + pad) + tiles.shape[3:]
    out = np.full(shape, fill, dtype=np.float64)
    for i in range(n):
        r, c = divmod(i, ncols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = tiles[i]
    return out


def _normalise(a: np.ndarray) -> np.ndarray:
    """Each tile (first axis) scaled to [0, 1] on its own."""
    a = a.astype(np.float64)
    flat = a.reshape(len(a), -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (a - lo.reshape((-1,) + (1,) * (a.ndim - 1))) / span.reshape((-1,) + (1,) * (a.ndim - 1))


def _first_conv(model_or_conv: Any) -> Any:
    for m in (model_or_conv.modules() if hasattr(model_or_conv, "modules") else [model_or_conv]):
        w = getattr(m, "_parameters", {}).get("weight") if hasattr(m, "_parameters") else getattr(m, "weight", None)
        if w is not None and len(tuple(w.shape)) == 4:
            return m
    raise ValueError(f"plot_filters: {type(model_or_conv).__name__} has no convolution layer")


def plot_filters(model_or_conv: Any, ncols: int = 8, ax: Any = None, title: Optional[str] = None):
    """The first convolution's kernels as an image grid, each filter normalised to [0, 1] on its
    own.  Kernels with 3 input channels are shown in colour (RGB), others as the mean over their
    input channels in grey."""
    conv = _first_conv(model_or_conv)
    w = np.asarray(conv.weight.numpy(), dtype=np.float64)  # (O, C, kh, kw)
    if w.shape[1] == 3:
        tiles = _normalise(w.transpose(0, 2, 3, 1))
        cmap = None
    else:
        tiles = _normalise(w.mean(axis=1))
        cmap = "gray"
    ncols = max(1, min(int(ncols), len(tiles)))
    nrows = -(-len(tiles) // ncols)
    fig, ax = _fig_ax(ax, (max(2.0, 0.8 * ncols), max(2.0, 0.8 * nrows)))
    ax.imshow(_grid(tiles, ncols), cmap=cmap, interpolation="nearest", vmin=0.0, vmax=1.0)
    ax.set_axis_off()
    kh, kw = w.shape[2:]
    ax.set_title(title or f"{w.shape[0]} filters {kh}×{kw}×{w.shape[1]} of {type(conv).__name__}")
    return fig


def plot_feature_maps(model: Any, layer: Any, x: Any, ncols: int = 8, max_maps: int = 64, ax: Any = None,
                      cmap: str = "viridis"):
    """The output channels of ``layer`` (a submodule, its name, or a child index) for the first
    image of ``x``, each map normalised on its own."""
    name, module = _resolve_layer(model, layer)
    x = np.asarray(x.numpy()) if hasattr(x, "numpy") else np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    a = activations(model, module, x[:1])
    if a.ndim != 4:
        raise ValueError(f"plot_feature_maps: layer {name!r} outputs shape {a.shape}; feature maps need (N, C, H, W)")
    maps = a[0][: int(max_maps)]
    ncols = max(1, min(int(ncols), len(maps)))
    nrows = -(-len(maps) // ncols)
    fig, ax = _fig_ax(ax, (max(2.0, 1.2 * ncols), max(2.0, 1.2 * nrows)))
    ax.imshow(_grid(_normalise(maps), ncols), cmap=cmap, interpolation="nearest", vmin=0.0, vmax=1.0)
    ax.set_axis_off()
    ax.set_title(f"{name or type(model).__name__} ({type(module).__name__}): {len(maps)} of {a.shape[1]} "
                 f"maps, {a.shape[2]}×{a.shape[3]}")
    return fig


def plot_history(history: Any, metrics: Optional[Sequence[str]] = None, ax: Any = None):
    """Training curves from a ``History`` (``.history``) or a dict of per-epoch lists: one panel
    per metric (``loss``, ``accuracy``, ...), training and ``val_`` curves together."""
    h: Mapping[str, Sequence[float]] = getattr(history, "history", history)
    if not isinstance(h, Mapping) or not h:
        raise ValueError("plot_history: expected a History or a non-empty dict of per-epoch lists")
    if metrics is None:
        metrics = [k for k in h if not k.startswith("val_") and k != "lr"]
        metrics += [k[4:] for k in h if k.startswith("val_") and k[4:] not in h]
    metrics = list(metrics)
    plt = _pyplot()
    if ax is None:
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5), squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(np.ravel(ax)) if isinstance(ax, (list, tuple, np.ndarray)) else [ax] * len(metrics)
        fig = axes[0].figure
    for a, m in zip(axes, metrics):
        for key, style in ((m, "-"), ("val_" + m, "--")):
            if key in h and len(h[key]):
                ys = np.asarray(h[key], dtype=np.float64)
                a.plot(np.arange(1, len(ys) + 1), ys, style, marker="o", markersize=3, label=key)
        a.set_xlabel("epoch")
        a.set_ylabel(m)
        a.grid(True, alpha=0.3)
        a.legend()
    fig.tight_layout()
    return fig


def plot_confusion_matrix(cm: Any, class_names: Optional[Sequence[str]] = None, normalize: bool = False,
                          ax: Any = None, cmap: str = "Blues", annotate: Optional[bool] = None):
    """A confusion matrix (rows: true class, columns: predicted class) with counts in the cells;
    ``normalize=True`` shows each row as fractions of that class."""
    m = np.asarray(cm.numpy() if hasattr(cm, "numpy") else cm, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"plot_confusion_matrix: expected a square matrix, got shape {m.shape}")
    k = m.shape[0]
    if class_names is not None and len(class_names) != k:
        raise ValueError(f"plot_confusion_matrix: {len(class_names)} class names for {k} classes")
    if normalize:
        sums = m.sum(axis=1, keepdims=True)
        m = np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)
    fig, ax = _fig_ax(ax, (max(4.0, 0.5 * k + 2), max(3.5, 0.5 * k + 1.5)))
    im = ax.imshow(m, cmap=cmap, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(k)]
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(names, rotation=45 if max(len(n) for n in names) > 2 else 0, ha="right" if
                       max(len(n) for n in names) > 2 else "center")
    ax.set_yticklabels(names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if annotate is None:
        annotate = k <= 20
    if annotate:
        thresh = (m.max() + m.min()) / 2.0
        for i in range(k):
            for j in range(k):
                txt = f"{m[i, j]:.2f}" if normalize else f"{int(round(m[i, j]))}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] > thresh else "black")
    ax.set_title("Confusion matrix" + (" (normalised by row)" if normalize else ""))
    fig.tight_layout()
    return fig
