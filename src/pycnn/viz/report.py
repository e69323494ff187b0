"""``pc.viz.report``: one self-contained HTML page that explains a trained model on one input.

The page walks from the answer back to the weights: the prediction (top-5 softmax
probabilities), the saliency map of the explained class, the layer table of ``pc.summary`` (shapes,
parameter and multiply-add formulas, receptive fields), every convolution's filters and the input's
feature maps, and optionally the dataset patches that drive a few units hardest and the learning
curves.  Every figure is a PNG drawn with matplotlib's Agg renderer and inlined as a ``data:`` URI;
the page loads nothing (no script, no style sheet, no font), so it can be mailed or opened offline.
"""
from __future__ import annotations

import base64
import html
import io
import os
from types import SimpleNamespace
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import __version__
from ..summary import eval_mode, receptive_field_text, shape_text, summary
from .plots import _grid, _pyplot, plot_feature_maps, plot_filters, plot_history
from .saliency import _as_input, activations, saliency, top_activating_patches

__all__ = ["report"]

_FN = "viz.report"
_MAX_FILTERS = 64        # a layer with more filters shows its first 64
_MAX_MAPS = 32           # feature maps shown per layer
_PATCH_UNITS = 4         # units whose top-activating patches are shown
_PATCH_K = 9             # patches per unit
_PATCH_SEARCH = 2000     # dataset images searched for those patches


def report(model: Any, x: Any, path: Any = "report.html", target: Optional[int] = None, dataset: Any = None,
           history: Any = None, *, class_names: Optional[Sequence[str]] = None, title: Optional[str] = None) -> str:
    """Write an HTML page explaining ``model`` on the input ``x``; returns the path written.

    x: one input, ``(C, H, W)`` or ``(1, C, H, W)`` (Tensor or array), scaled as in training.
    target: the class whose saliency map is drawn (e.g. x's true label); by default the predicted
    class.  dataset: ``(x, y)`` arrays or a pycnn Dataset; its first 2,000 images are searched for
    the patches that most activate four channels of the last convolution.  history: the
    ``History`` that ``fit`` returned (or its dict), drawn as learning curves.  class_names: one
    label per output class (default: the dataset's ``classes``, else the class indices).
    Needs matplotlib (``pip install pycnn[viz]``).
    """
    path = _check_path(path)
    img = _check_input(model, x)
    logits = _logits(model, img)
    k = logits.size
    names = _class_names(class_names, dataset, k)
    pred = int(np.argmax(logits))
    explained = pred if target is None else _check_target(target, k)
    hist = _check_history(history)
    data = None if dataset is None else _check_dataset(dataset, img.shape[1:])
    try:
        plt = _pyplot()
    except ImportError:
        raise ImportError(f"{_FN} draws its figures with matplotlib: pip install pycnn[viz]") from None
    geometry = summary(model, img.shape)

    z = logits - logits.max()
    probs = np.exp(z) / np.exp(z).sum()
    sal = saliency(model, img, explained)[0]
    convs = _conv_layers(model, geometry)
    model_name = type(model).__name__
    sections = [
        _section_prediction(img[0], probs, names, pred, None if target is None else explained),
        _section_saliency(img[0], sal, names[explained], explained == pred),
        _section_summary(geometry),
        _section_convs(model, img, convs, plt),
        _section_patches(model, img, convs, data) if data is not None else _missing(
            "top-patches", "5. What the units look for", "pass dataset=(x, y) to see the dataset patches "
            "that drive a few units of the last convolution hardest."),
        _section_history(hist, plt) if hist is not None else _missing(
            "history", "6. How it learned", "pass history= (what fit returned) to see the learning curves."),
    ]
    page = _PAGE.format(title=_e(title or f"{model_name}: what it sees in this input"),
                        lead=_e(f"{model_name}, {geometry.total_params:,} parameters, on one input of shape "
                                f"{tuple(img.shape[1:])}: it predicts {names[pred]} with probability "
                                f"{_percent(probs[pred])}."),
                        body="\n".join(sections), version=_e(__version__))
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)
    except OSError as e:
        raise OSError(f"{_FN}: cannot write {path!r}: {e.strerror or e}") from e
    return path


# ------------------------------------------------------------------------------------------------
# checks (before any work)
# ------------------------------------------------------------------------------------------------
def _check_path(path: Any) -> str:
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"{_FN}: path must be a file name (str or os.PathLike), got {type(path).__name__}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"{_FN}: path {path!r} is a folder; expected a file name such as report.html")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{_FN}: cannot write {path!r}: folder {folder!r} does not exist")
    if not os.access(path if os.path.exists(path) else folder, os.W_OK):
        raise PermissionError(f"{_FN}: cannot write {path!r}: permission denied")
    return path


def _first_conv_channels(model: Any) -> Optional[Tuple[str, int]]:
    for name, m in model.named_modules():
        w = getattr(m, "_parameters", {}).get("weight")
        if w is not None and len(tuple(w.shape)) == 4:
            return name, int(w.shape[1]) * int(getattr(m, "groups", 1) or 1)
    return None


def _check_input(model: Any, x: Any) -> np.ndarray:
    """x as a float NumPy batch of one, (1, C, H, W)."""
    arr = np.asarray(x.numpy()) if hasattr(x, "numpy") else np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{_FN}: x must be a numeric image (Tensor or array), got dtype {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[0] != 1:
        hint = " (pick one, e.g. x[0])" if arr.ndim == 4 else ""
        raise ValueError(f"{_FN}: x must be one image, (C, H, W) or (1, C, H, W); got shape {arr.shape}{hint}")
    first = _first_conv_channels(model)
    if first is not None and first[1] != arr.shape[1]:
        raise ValueError(f"{_FN}: x has {arr.shape[1]} channel(s) (shape {arr.shape}) but the model's first "
                         f"convolution {first[0]!r} expects {first[1]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{_FN}: x contains NaN or Inf")
    return arr


def _logits(model: Any, img: np.ndarray) -> np.ndarray:
    try:
        with eval_mode(model):
            out = model(_as_input(model, img, _FN))
    except Exception as e:
        raise ValueError(f"{_FN}: the model cannot run on x of shape {img.shape}: {e}") from e
    shape = tuple(out.shape)
    if len(shape) != 2 or shape[0] != 1:
        raise ValueError(f"{_FN}: the model must return class scores of shape (1, classes) for one image; "
                         f"got {shape}")
    return np.asarray(out.numpy(), dtype=np.float64)[0]


def _check_target(target: Any, k: int) -> int:
    t = np.asarray(target.numpy() if hasattr(target, "numpy") else target)
    if t.size != 1 or t.dtype.kind not in "iu":
        raise TypeError(f"{_FN}: target must be one class index (int), got {target!r}")
    t = int(t.reshape(()))
    if not 0 <= t < k:
        raise ValueError(f"{_FN}: target must be a class in [0, {k}), got {t}")
    return t


def _class_names(class_names: Optional[Sequence[str]], dataset: Any, k: int) -> List[str]:
    if class_names is None:
        class_names = getattr(dataset, "classes", None)
        if class_names is None or len(class_names) != k:
            return [str(i) for i in range(k)]
    names = [str(c) for c in class_names]
    if len(names) != k:
        raise ValueError(f"{_FN}: {len(names)} class names for a model with {k} outputs")
    return names


def _check_history(history: Any) -> Optional[Mapping[str, Sequence[float]]]:
    if history is None:
        return None
    h = getattr(history, "history", history)
    if not isinstance(h, Mapping) or not h or not any(len(v) for v in h.values()):
        raise TypeError(f"{_FN}: history must be the History that fit returned (or a dict of per-epoch "
                        f"lists) with at least one epoch; got {history!r}")
    return h


def _check_dataset(dataset: Any, shape: Tuple[int, ...]) -> Any:
    """The first images of dataset (an array, an (x, y) pair or an indexable Dataset)."""
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2 and hasattr(dataset[0], "shape"):
        dataset = dataset[0]
    if hasattr(dataset, "shape"):
        images = np.asarray(dataset.numpy() if hasattr(dataset, "numpy") else dataset)[:_PATCH_SEARCH]
    elif hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        n = min(len(dataset), _PATCH_SEARCH)
        items = [dataset[i] for i in range(n)]
        images = np.stack([np.asarray(it[0] if isinstance(it, (tuple, list)) else it) for it in items]) if n else None
    else:
        raise TypeError(f"{_FN}: dataset must be (x, y) arrays, an image array or a pycnn Dataset; "
                        f"got {type(dataset).__name__}")
    if images is None or len(images) == 0:
        raise ValueError(f"{_FN}: dataset is empty")
    if tuple(images.shape[1:]) != tuple(shape):
        raise ValueError(f"{_FN}: dataset images have shape {tuple(images.shape[1:])} but x has {tuple(shape)}")
    return images


# ------------------------------------------------------------------------------------------------
# figures: Agg into PNG bytes into data URIs
# ------------------------------------------------------------------------------------------------
def _figure(nrows: int = 1, ncols: int = 1, size: Tuple[float, float] = (4.0, 3.0)):
    """A figure outside pyplot's registry (nothing to close, no window), drawn by Agg."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _img(fig: Any, alt: str, close: Any = None) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    if close is not None:
        close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _display(img: np.ndarray) -> Tuple[np.ndarray, Optional[str]]:
    """(C, H, W) -> something imshow draws: RGB for 3 channels, grey (the channel mean) otherwise,
    scaled to [0, 1] over the whole image."""
    a = np.asarray(img, dtype=np.float64)
    a = a.transpose(1, 2, 0) if a.shape[0] == 3 else a.mean(axis=0)
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo if hi > lo else 1.0), (None if a.ndim == 3 else "gray")


def _first_filters(weight: np.ndarray) -> Any:
    """The first `_MAX_FILTERS` kernels of a convolution, as the conv-like object plot_filters reads."""
    w = weight[:_MAX_FILTERS]
    return SimpleNamespace(weight=SimpleNamespace(shape=w.shape, numpy=lambda: w))


# ------------------------------------------------------------------------------------------------
# sections
# ------------------------------------------------------------------------------------------------
def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _section(anchor: str, heading: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{_e(heading)}</h2>\n{body}\n</section>'


def _missing(anchor: str, heading: str, note: str) -> str:
    return _section(anchor, heading, f'<p class="note">{_e(note)}</p>')


def _section_prediction(img: np.ndarray, probs: np.ndarray, names: List[str], pred: int,
                        target: Optional[int]) -> str:
    fig, ax = _figure(size=(2.4, 2.4))
    shown, cmap = _display(img)
    ax[0, 0].imshow(shown, cmap=cmap, interpolation="nearest")
    ax[0, 0].set_axis_off()
    ax[0, 0].set_title(f"input {img.shape[0]}×{img.shape[1]}×{img.shape[2]}")
    rows = []
    for c in np.argsort(-probs, kind="stable")[:5]:
        mark = " (target)" if target is not None and int(c) == int(target) else ""
        rows.append(f'<tr><td>{_e(names[c])}{_e(mark)}</td><td class="num">{_e(_percent(probs[c]))}</td>'
                    f'<td class="bar"><span style="width:{100 * probs[c]:.1f}%"></span></td></tr>')
    verdict = ""
    if target is not None and int(target) != pred:
        verdict = (f'<p class="warn">The model predicts {_e(names[pred])}, not the target {_e(names[int(target)])} '
                   f'(probability {_e(_percent(probs[int(target)]))}).</p>')
    text = ("<p>The last layer gives one score (logit) per class; the softmax "
            "p<sub>i</sub> = e<sup>z<sub>i</sub></sup> / &Sigma;<sub>j</sub> e<sup>z<sub>j</sub></sup> turns them "
            "into probabilities. The five most likely classes:</p>")
    table = '<table class="top5"><tr><th>class</th><th>probability</th><th></th></tr>' + "".join(rows) + "</table>"
    body = (f'<div class="row"><div>{_img(fig, "the input image")}</div>'
            f'<div class="grow">{text}{table}{verdict}</div></div>')
    return _section("prediction", "1. The prediction", body)


def _percent(p: float) -> str:
    """Two decimals, without rounding a near-certainty up to 100% or a small chance down to 0%."""
    if 0.9999 < p < 1.0:
        return "> 99.99%"
    return f"{p:.2%}" if p >= 1e-4 or p == 0.0 else f"{p:.1e}"


def _section_saliency(img: np.ndarray, sal: np.ndarray, name: str, is_pred: bool) -> str:
    fig, ax = _figure(1, 3, size=(7.5, 2.6))
    shown, cmap = _display(img)
    heat = sal / sal.max() if sal.max() > 0 else sal
    ax[0, 0].imshow(shown, cmap=cmap, interpolation="nearest")
    ax[0, 0].set_title("input")
    ax[0, 1].imshow(heat, cmap="hot", interpolation="nearest", vmin=0, vmax=1)
    ax[0, 1].set_title("saliency")
    ax[0, 2].imshow(shown.mean(axis=2) if shown.ndim == 3 else shown, cmap="gray", interpolation="nearest")
    ax[0, 2].imshow(heat, cmap="hot", alpha=0.55, interpolation="nearest", vmin=0, vmax=1)
    ax[0, 2].set_title("overlay")
    for a in ax[0]:
        a.set_axis_off()
    which = "the predicted class" if is_pred else "the target class"
    text = (f"<p>How much each pixel moves the score of {_e(which)} <b>{_e(name)}</b>: "
            "|&part; z<sub>class</sub> / &part; x| at every pixel, the largest over the colour channels "
            "(Simonyan, Vedaldi &amp; Zisserman, 2014). Bright pixels are those where a small change "
            "would change the score most: what the model looked at.</p>")
    return _section("saliency", "2. Where it looked: the saliency map", text + _img(fig, f"saliency map for {name}"))


def _section_summary(s: Any) -> str:
    head = ("layer", "output shape", "parameters", "parameter formula", "multiply-adds", "MAC formula",
            "receptive field / jump (px)")
    rows = []
    for r in s.rows:
        label = (r.name + " " if r.name else "") + f"({r.type})"
        mac = r.mac_formula.split(" = ")[0] if r.mac_formula else "--"
        cells = (shape_text(r.output_shape), f"{r.params:,}" if r.params else "--", r.formula or "--",
                 f"{r.mult_adds:,}" if r.mult_adds else "--", mac, receptive_field_text(r))
        rows.append(f'<tr><td style="padding-left:{0.3 + 1.2 * r.depth:.1f}em">{_e(label)}</td>'
                    + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    rf = s.receptive_field
    rf_text = "global" if rf is None else (f"{rf}×{rf}" if isinstance(rf, int) else f"{rf[0]}×{rf[1]}")
    totals = (f"<p>{s.total_params:,} parameters ({s.trainable_params:,} trainable), "
              f"{s.total_mult_adds:,} multiply-adds for this input, receptive field of the last spatial "
              f"layer {_e(rf_text)} pixels.</p>")
    text = ("<p>Every layer with its output shape (N, C, H, W). A convolution with C<sub>out</sub> filters of "
            "k<sub>h</sub>×k<sub>w</sub>×C<sub>in</sub> weights has C<sub>out</sub>×(k<sub>h</sub>×k<sub>w</sub>"
            "×C<sub>in</sub>)+C<sub>out</sub> parameters and costs (k<sub>h</sub>×k<sub>w</sub>×C<sub>in</sub>) × "
            "C<sub>out</sub> × (OH×OW) multiply-adds. The receptive field r is how many input pixels one output "
            "pixel sees; a layer with kernel k, dilation d and stride s gives r<sub>out</sub> = r<sub>in</sub> + "
            "(k−1)·d·j<sub>in</sub> and the jump (the input-pixel distance between neighbouring outputs) "
            "j<sub>out</sub> = j<sub>in</sub>·s.</p>")
    table = ('<table class="summary"><tr>' + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"
             + "".join(rows) + "</table>")
    return _section("summary", "3. The layers", text + '<div class="scroll">' + table + "</div>" + totals)


def _conv_layers(model: Any, geometry: Any) -> List[Tuple[Any, Any]]:
    """(summary row, module) of every convolution, in the order the forward pass ran them."""
    modules = dict(model.named_modules())
    out = []
    for r in geometry.rows:
        m = modules.get(r.name)
        w = getattr(m, "_parameters", {}).get("weight") if m is not None else None
        if (not r.is_container and w is not None and len(tuple(w.shape)) == 4 and r.output_shape is not None
                and len(r.output_shape) == 4 and all(m is not seen for _, seen in out)):
            out.append((r, m))
    return out


def _section_convs(model: Any, img: np.ndarray, convs: List[Tuple[Any, Any]], plt: Any) -> str:
    if not convs:
        return _missing("conv-layers", "4. Inside each convolution", "This model has no convolution.")
    parts = ["<p>Each convolution slides its filters over its input; each filter gives one feature map. "
             "Filters are drawn each scaled to its own range (in colour when they read RGB, else the mean "
             "over their input channels); each feature map is scaled to its own range too.</p>"]
    for r, m in convs:
        w = np.asarray(m.weight.numpy(), dtype=np.float64)
        o, c, kh, kw = w.shape
        shown = f"the first {_MAX_FILTERS} of " if o > _MAX_FILTERS else ""
        filt = plot_filters(_first_filters(w), title=f"{shown}{o} filters {kh}×{kw}×{c}")
        maps = plot_feature_maps(model, r.name, img, max_maps=_MAX_MAPS)
        caption = (f"{c} → {o} channels, kernel {kh}×{kw}, output "
                   f"{r.output_shape[1]}×{r.output_shape[2]}×{r.output_shape[3]}; each output pixel sees "
                   f"{receptive_field_text(r).split(' / ')[0]} input pixels "
                   f"(receptive field / jump {receptive_field_text(r)}).")
        parts.append(f'<div class="conv"><h3>Layer {_e(r.name)} ({_e(r.type)})</h3><p>{_e(caption)}</p>'
                     '<div class="row">'
                     f'<div>{_img(filt, f"filters of {r.name}", plt.close)}</div>'
                     f'<div>{_img(maps, f"feature maps of {r.name}", plt.close)}</div></div></div>')
    return _section("conv-layers", "4. Inside each convolution", "\n".join(parts))


def _section_patches(model: Any, img: np.ndarray, convs: List[Tuple[Any, Any]], images: np.ndarray) -> str:
    heading = "5. What the units look for"
    spatial = [(r, m) for r, m in convs if r.receptive_field is not None]
    if not spatial:
        return _missing("top-patches", heading, "No convolution with a spatial output to search.")
    r, _ = spatial[-1]
    a = activations(model, r.name, img)[0]
    units = [int(u) for u in np.argsort(-a.reshape(len(a), -1).max(axis=1), kind="stable")[:_PATCH_UNITS]]
    fig, axes = _figure(len(units), 1, size=(7.0, 1.1 * len(units) + 0.3))
    for ax, u in zip(axes[:, 0], units):
        patches, acts = top_activating_patches(model, r.name, u, images, k=_PATCH_K)
        tiles = np.stack([_display(p)[0] for p in patches])
        ax.imshow(_grid(tiles, ncols=len(tiles)), cmap=None if tiles.ndim == 4 else "gray",
                  interpolation="nearest", vmin=0, vmax=1)
        ax.set_axis_off()
        ax.set_title(f"unit {u}: activations {acts[0]:.2f} … {acts[-1]:.2f}", fontsize=9, loc="left")
    text = (f"<p>Layer {_e(r.name)} ({_e(r.type)}), whose output pixels each see "
            f"{_e(receptive_field_text(r).split(' / ')[0])} input pixels. "
            f"For the {len(units)} channels (units) that respond "
            f"most to this input, the {_PATCH_K} patches of the dataset ({len(images):,} images searched) where "
            "each responds most strongly, strongest first: the unit's receptive field cropped from the image "
            "(Zeiler &amp; Fergus, 2014).</p>")
    return _section("top-patches", heading, text + _img(fig, f"top-activating patches of {r.name}"))


def _section_history(h: Mapping[str, Sequence[float]], plt: Any) -> str:
    fig = plot_history(h)
    finals = ", ".join(f"{k} {float(v[-1]):.4g}" for k, v in h.items() if len(v))
    dashed = "; dashed: on the validation data" if any(k.startswith("val_") for k in h) else ""
    text = (f"<p>One point per epoch{dashed}. After {max(len(v) for v in h.values())} "
            f"epoch(s): {_e(finals)}.</p>")
    return _section("history", "6. How it learned", text + _img(fig, "learning curves", plt.close))


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1.2em; color: #222; line-height: 1.45; }}
h1 {{ font-size: 1.6em; margin-bottom: 0.2em; }}
h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }}
img {{ max-width: 100%; height: auto; }}
.lead {{ font-size: 1.1em; color: #444; }}
.row {{ display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }}
.row > .grow {{ flex: 1 1 24em; }}
.note {{ color: #777; font-style: italic; }}
.warn {{ color: #a33; }}
.scroll {{ overflow-x: auto; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #eee; padding: 0.25em 0.6em; text-align: left; white-space: nowrap; }}
th {{ background: #f5f5f5; white-space: normal; }}
table.summary td {{ font-family: ui-monospace, "DejaVu Sans Mono", monospace; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
td.bar {{ width: 12em; }}
td.bar span {{ display: block; height: 0.8em; background: #3b7dd8; border-radius: 2px; }}
footer {{ margin-top: 3em; color: #888; font-size: 0.85em; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p class="lead">{lead}</p>
{body}
<footer>Written by pycnn {version} (pc.viz.report). Self-contained: every image is inside this file.</footer>
</body>
</html>
"""
