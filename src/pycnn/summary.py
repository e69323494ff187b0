"""``pc.summary(model, input_size)`` / ``model.summary(input_size)``: a torchinfo-style table.

A real forward pass of a zero batch runs through the model in eval mode (the training flags are
restored afterwards); forward hooks on every module record, in call order, each layer's output
shape, its own parameter count and the formula behind it, its multiply-adds and its receptive
field.  Containers (Sequential, Residual, Concat, ResNet's BasicBlock, any Module with children)
get a row of their own followed by their children's rows, indented as torchinfo does.

Conventions
-----------
* Parameter formula, as a course writes it: Conv2d ``16×(5×5×6)+16 = 2,416`` (out × (kh × kw ×
  in/groups) + bias), Linear ``120×400+120 = 48,120``, BatchNorm ``2×64 = 128`` (gamma and beta;
  the running statistics are buffers, not parameters).
* Mult-adds are counted as the lectures and the papers count them: a convolution costs
  ``(kh × kw × C_in/groups) × C_out × (OH × OW)`` multiply-adds per sample, a linear layer
  ``in × out``; a bias add is not a multiply-add, and every other layer (BatchNorm, pooling,
  activations) counts 0.  The figures are for the whole batch given (N times the per-sample
  count).  ``LayerRow.mac_formula`` shows the product: ``5×5×3 × 256 × 12×12 = 2,764,800``.
* Receptive field ``r`` (in input pixels) and jump ``j`` (the distance in input pixels between two
  neighbouring outputs): a layer with kernel k, dilation d and stride s maps
  ``r_out = r_in + (k−1)·d·j_in`` and ``j_out = j_in·s``, starting from r = j = 1 at the input, so
  L stacked stride-1 K×K convolutions see ``1 + L(K−1)`` pixels.  Element-wise layers (ReLU,
  BatchNorm, Dropout) keep r and j; where branches meet (Residual, Concat) the larger field is
  reported; after Flatten/Linear the field is global and shown as ``--``.
  ``ModelSummary.receptive_field`` is that of the last spatial layer (the last layer with an
  (N, C, H, W) output, global adaptive pooling excluded).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .tensor import float32, float64, zeros

__all__ = ["summary", "ModelSummary", "LayerRow"]

Pair = Tuple[int, int]
RF = Union[int, Tuple[int, int]]


@dataclass
class LayerRow:
    """One line of the table."""

    name: str                      # qualified name ("features.0"); "" for the model itself
    type: str                      # class name ("Conv2d")
    depth: int                     # 0 for the model, 1 for its children, ...
    index: int                     # 1-based position among the rows of the same parent
    input_shape: Optional[Tuple[int, ...]]
    output_shape: Optional[Tuple[int, ...]]
    params: int                    # the layer's own parameters (0 for a container)
    trainable_params: int
    formula: str                   # "16×(5×5×6)+16 = 2,416"; "" when the layer has no own parameters
    mult_adds: int                 # (kh·kw·C_in/groups)·C_out·OH·OW·N for a conv, in·out·N for a linear layer
    receptive_field: Optional[RF]  # input pixels; None once the field is global (after Flatten)
    jump: Optional[RF]             # stride of the layer's output grid, in input pixels
    is_container: bool = False
    # input pixel (row, col) of the top-left corner of output (0, 0)'s receptive field (may be
    # negative: padding); output (i, j) sees rows rf_offset[0] + i*jump ... + receptive_field - 1
    rf_offset: Optional[Tuple[int, int]] = None
    mac_formula: str = ""          # "5×5×3 × 256 × 12×12 = 2,764,800"; "" when the layer does no multiply-adds

    @property
    def local_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]


@dataclass
class ModelSummary:
    """What :func:`summary` returns; ``str()`` is the table."""

    model_name: str
    input_size: Tuple[int, ...]
    rows: List[LayerRow]
    total_params: int
    trainable_params: int
    total_mult_adds: int
    receptive_field: Optional[RF]
    input_bytes: int = 0
    activation_bytes: int = 0
    param_bytes: int = 0
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def frozen_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def non_trainable_params(self) -> int:
        return self.frozen_params

    def __getitem__(self, name: str) -> LayerRow:
        """The row of the layer with qualified name ``name`` ("features.0")."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"summary: no layer named {name!r}")

    def __repr__(self) -> str:
        return self.__str__()

    def __str__(self) -> str:
        return _table(self)


# ------------------------------------------------------------------------------------------------
# layer geometry
# ------------------------------------------------------------------------------------------------
def _kernel(module: Any, in_shape: Sequence[int],
            out_shape: Sequence[int]) -> Optional[Tuple[Pair, Pair, Pair, Pair, bool]]:
    """(kernel, stride, dilation, (pad top, pad left), pools globally) of a layer that slides a
    window, as the layer reports it (``_summary_geometry``: Conv2d, the pools; the fifth entry, which
    a layer may leave out, says that the window is the whole input, as global average pooling's);
    None for a layer that keeps the spatial size; a layer that resamples without saying how counts
    as a window of the size ratio."""
    geometry = getattr(module, "_summary_geometry", None)
    if geometry is not None:
        geo = tuple(geometry(tuple(in_shape), tuple(out_shape)))
        return geo if len(geo) == 5 else geo + (False,)
    if tuple(in_shape[2:4]) != tuple(out_shape[2:4]):
        s = (max(1, in_shape[2] // max(1, out_shape[2])), max(1, in_shape[3] // max(1, out_shape[3])))
        return s, s, (1, 1), (0, 0), False
    return None


_Geo = Tuple[Pair, Pair, Pair]  # (receptive field, jump, offset of output (0, 0)'s field's top-left)


def _union(geos: List[_Geo]) -> _Geo:
    """The field covered by several branches that meet (Residual add, Concat)."""
    top = tuple(min(g[2][i] for g in geos) for i in (0, 1))
    end = tuple(max(g[2][i] + g[0][i] for g in geos) for i in (0, 1))
    jump = tuple(max(g[1][i] for g in geos) for i in (0, 1))
    return ((end[0] - top[0], end[1] - top[1]), (jump[0], jump[1]), (top[0], top[1]))


def _own_params(module: Any) -> List[Tuple[str, Any]]:
    return [(n, p) for n, p in module.named_parameters(recurse=False)]


def _numel(p: Any) -> int:
    return int(np.prod(tuple(p.shape), dtype=np.int64)) if len(tuple(p.shape)) else 1


def _formula(module: Any, params: List[Tuple[str, Any]]) -> str:
    if not params:
        return ""
    total = sum(_numel(p) for _, p in params)
    d = dict(params)
    w, b = d.get("weight"), d.get("bias")
    rest = [p for n, p in params if n not in ("weight", "bias")]
    if w is not None and not rest:
        ws = tuple(w.shape)
        bias = f"+{ws[0]}" if b is not None else ""
        if len(ws) == 4:
            return f"{ws[0]}×({ws[2]}×{ws[3]}×{ws[1]}){bias} = {total:,}"
        if len(ws) == 2:
            return f"{ws[0]}×{ws[1]}{bias} = {total:,}"
        if len(ws) == 1 and b is not None and tuple(b.shape) == ws:  # a per-channel scale and shift (BatchNorm)
            return f"2×{ws[0]} = {total:,}"
    parts = ["×".join(str(s) for s in p.shape) or "1" for _, p in params]
    return f"{'+'.join(parts)} = {total:,}"


def _mult_adds(module: Any, params: List[Tuple[str, Any]],
               out_shape: Optional[Tuple[int, ...]]) -> Tuple[int, str]:
    """(multiply-adds for the batch, the product behind them) of a convolution or linear layer; (0, "")
    for any other layer.  The bias is left out: adding it is not a multiply-add."""
    w = dict(params).get("weight")
    if w is None or not out_shape:
        return 0, ""
    ws = tuple(w.shape)
    batch = int(out_shape[0])
    lead = f"{batch} × " if batch != 1 else ""
    if len(ws) == 4 and len(out_shape) == 4:  # (C_out, C_in/groups, kh, kw) -> (N, C_out, OH, OW)
        c_out, c_in_g, kh, kw = ws
        oh, ow = out_shape[2], out_shape[3]
        n = batch * kh * kw * c_in_g * c_out * oh * ow
        return n, f"{lead}{kh}×{kw}×{c_in_g} × {c_out} × {oh}×{ow} = {n:,}"
    if len(ws) == 2 and out_shape[-1] == ws[0]:  # Linear: (out, in) -> (..., out)
        rows = int(np.prod(out_shape[:-1], dtype=np.int64))
        lead = f"{rows} × " if rows != 1 else ""
        n = rows * ws[1] * ws[0]
        return n, f"{lead}{ws[1]} × {ws[0]} = {n:,}"
    return 0, ""


def _fmt_rf(v: Optional[Pair]) -> Optional[RF]:
    if v is None:
        return None
    return v[0] if v[0] == v[1] else (v[0], v[1])


# ------------------------------------------------------------------------------------------------
# the traced forward pass
# ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[Any]:
    """Every module of ``model`` in eval mode for a forward pass that only looks (summary,
    onnx.export, the viz maps); on exit each module gets its own training flag back and drops what
    the pass cached."""
    modules = list(model.modules())
    flags = [(m, getattr(m, "training", False)) for m in modules]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            object.__setattr__(m, "training", flag)
        for m in modules:
            clear = getattr(m, "_clear_cache", None)
            if callable(clear):
                clear()


class _Frame:
    __slots__ = ("row", "module", "rf_in", "child_rfs")

    def __init__(self, row: LayerRow, module: Any, rf_in: Optional[_Geo]):
        self.row, self.module, self.rf_in = row, module, rf_in
        self.child_rfs: List[_Geo] = []


def model_dtype(model: Any, dtype: Any) -> Any:
    """The dtype of the zero batch: `dtype` when given (pc or NumPy float32/float64), else that of
    the model's first floating-point parameter (float32 for none); summary and onnx.export."""
    if dtype is not None:
        if dtype in (float32, float64):
            return dtype
        nd = np.dtype(dtype)
        if nd == np.float32:
            return float32
        if nd == np.float64:
            return float64
        raise TypeError(f"summary: dtype must be float32 or float64, got {dtype!r}")
    for p in model.parameters():
        if p.dtype in (float32, float64):
            return p.dtype
    return float32


def batch_shape(input_size: Any) -> Tuple[int, ...]:
    """input_size as the zero batch's shape: (C, H, W) and (features,) get a batch of one."""
    if isinstance(input_size, (int, np.integer)):
        input_size = (input_size,)
    try:
        shape = tuple(input_size)
    except TypeError:
        raise TypeError(f"summary: input_size must be a tuple like (C, H, W) or (N, C, H, W), got {input_size!r}") from None
    if not shape or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ValueError(f"summary: input_size must hold positive ints, e.g. (1, 28, 28), got {input_size!r}")
    shape = tuple(int(s) for s in shape)
    if len(shape) in (1, 3):  # (C, H, W) or (features,): prepend the batch
        shape = (1,) + shape
    return shape


def summary(model: Any, input_size: Any, dtype: Any = None, device: Optional[str] = None) -> ModelSummary:
    """Run a zero batch of ``input_size`` through ``model`` and tabulate every layer.

    input_size: ``(C, H, W)`` (a batch of one is prepended) or ``(N, C, H, W)``; ``(features,)``
    or ``(N, features)`` for fully connected models.  dtype: float32 or float64, by default the
    dtype of the model's parameters.  device: by default the model's.
    """
    shape = batch_shape(input_size)
    dt = model_dtype(model, dtype)
    dev = device if device is not None else getattr(model, "device", "cpu")
    x = zeros(*shape, dtype=dt, device=dev)

    all_modules = list(model.named_modules())
    names = {id(m): n for n, m in all_modules}
    rows: List[LayerRow] = []
    stack: List[_Frame] = []
    counters: List[int] = [0]  # rows so far at each depth
    rf_of: Dict[int, _Geo] = {id(x): ((1, 1), (1, 1), (0, 0))}
    keep: List[Any] = [x]  # keeps traced tensors alive so that their ids stay unique
    global_pools: set = set()  # ids of the rows of layers whose window is the whole input
    leaf_out_bytes = [0]

    def lookup_rf(t: Any) -> Optional[_Geo]:
        hit = rf_of.get(id(t))
        if hit is not None or not stack:
            return hit
        parent = stack[-1]  # a tensor made by functional code inside a container
        if parent.child_rfs:
            return _union(parent.child_rfs)
        return parent.rf_in

    def pre_hook(module: Any, args: Tuple[Any, ...]) -> None:
        inp = args[0] if args else None
        in_shape = tuple(inp.shape) if hasattr(inp, "shape") else None
        depth = len(stack)
        while len(counters) <= depth:
            counters.append(0)
        counters[depth] += 1  # torchinfo numbers the rows of each depth through the whole model
        row = LayerRow(name=names.get(id(module), "?"), type=type(module).__name__, depth=depth,
                       index=counters[depth], input_shape=in_shape, output_shape=None, params=0,
                       trainable_params=0, formula="", mult_adds=0, receptive_field=None, jump=None,
                       is_container=bool(getattr(module, "_modules", None)))
        rows.append(row)
        stack.append(_Frame(row, module, lookup_rf(inp) if inp is not None else None))
        return None

    def hook(module: Any, args: Tuple[Any, ...], out: Any) -> None:
        frame = stack.pop()
        row = frame.row
        out_t = out[0] if isinstance(out, (tuple, list)) and out else out
        row.output_shape = tuple(out_t.shape) if hasattr(out_t, "shape") else None
        params = _own_params(module)
        row.params = sum(_numel(p) for _, p in params)
        row.trainable_params = sum(_numel(p) for _, p in params if getattr(p, "requires_grad", True))
        row.formula = _formula(module, params)
        row.mult_adds, row.mac_formula = _mult_adds(module, params, row.output_shape)

        rf: Optional[_Geo]
        if row.output_shape is None or len(row.output_shape) != 4:
            rf = None
        elif row.is_container:
            rf = rf_of.get(id(out_t))
            if rf is None:
                rf = _union(frame.child_rfs) if frame.child_rfs else frame.rf_in
        else:
            rf_in = frame.rf_in
            if rf_in is None or row.input_shape is None or len(row.input_shape) != 4:
                rf = None
            else:
                (r, j, o) = rf_in
                geo = _kernel(module, row.input_shape, row.output_shape)
                if geo is None:
                    rf = rf_in
                else:
                    k, s, d, p, pools_globally = geo
                    if pools_globally:
                        global_pools.add(id(row))
                    rf = ((r[0] + (k[0] - 1) * d[0] * j[0], r[1] + (k[1] - 1) * d[1] * j[1]),
                          (j[0] * s[0], j[1] * s[1]),
                          (o[0] - p[0] * j[0], o[1] - p[1] * j[1]))
            if hasattr(out_t, "shape"):
                leaf_out_bytes[0] += int(np.prod(row.output_shape, dtype=np.int64)) * _itemsize(out_t)
        if rf is not None:
            row.receptive_field, row.jump = _fmt_rf(rf[0]), _fmt_rf(rf[1])
            row.rf_offset = rf[2]
            if hasattr(out_t, "shape"):
                rf_of[id(out_t)] = rf
                keep.append(out_t)
            if stack:
                stack[-1].child_rfs.append(rf)
        return None

    handles = []
    with eval_mode(model):
        try:
            for _, m in all_modules:
                handles.append(m.register_forward_pre_hook(pre_hook))
                handles.append(m.register_forward_hook(hook))
            try:
                model(x)
            except Exception as e:
                where = f" in {stack[-1].row.name or stack[-1].row.type} ({stack[-1].row.type})" if stack else ""
                msg = f"summary: the forward pass of a zero batch of shape {shape}{where} failed: {e}"
                try:
                    err = type(e)(msg)
                except Exception:
                    err = RuntimeError(msg)
                raise err from e
        finally:
            for h in handles:
                h.remove()

    seen = set()
    total = trainable = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += _numel(p)
        if getattr(p, "requires_grad", True):
            trainable += _numel(p)
    param_bytes = sum(_numel(p) * _itemsize(p) for p in model.parameters())
    param_bytes += sum(_numel(b) * _itemsize(b) for b in model.buffers())

    last_rf = None
    for r in rows:
        if not r.is_container and r.receptive_field is not None and id(r) not in global_pools:
            last_rf = r.receptive_field
    return ModelSummary(model_name=type(model).__name__, input_size=shape, rows=rows, total_params=total,
                        trainable_params=trainable, total_mult_adds=sum(r.mult_adds for r in rows),
                        receptive_field=last_rf, input_bytes=int(np.prod(shape)) * _itemsize(x),
                        activation_bytes=2 * leaf_out_bytes[0], param_bytes=param_bytes)


def _itemsize(t: Any) -> int:
    dt = getattr(t, "dtype", None)
    name = str(dt)
    return 8 if ("64" in name) else 4


# ------------------------------------------------------------------------------------------------
# the table
# ------------------------------------------------------------------------------------------------
def shape_text(s: Optional[Tuple[int, ...]]) -> str:
    """A shape as the table shows it: "[1, 6, 28, 28]" ("--" for none)."""
    return "--" if s is None else "[" + ", ".join(str(v) for v in s) + "]"


def receptive_field_text(r: LayerRow) -> str:
    """The row's "receptive field / jump" as the table shows it ("--" once the field is global)."""
    if r.receptive_field is None:
        return "--"
    def one(v: RF) -> str:
        return str(v) if isinstance(v, int) else f"{v[0]}×{v[1]}"
    return f"{one(r.receptive_field)} / {one(r.jump)}"


def _layer_label(rows: List[LayerRow], i: int) -> str:
    r = rows[i]
    if r.depth == 0:
        return r.type
    # torchinfo's tree: "│    " for every open ancestor level, then "├─" or "└─"
    prefix = ""
    for level in range(1, r.depth):
        prefix += "│    " if _has_later_sibling(rows, i, level) else "     "
    branch = "├─" if _has_later_sibling(rows, i, r.depth) else "└─"
    return f"{prefix}{branch}{r.type} ({r.local_name}): {r.depth}-{r.index}"


def _has_later_sibling(rows: List[LayerRow], i: int, level: int) -> bool:
    for r in rows[i + 1:]:
        if r.depth < level:
            return False
        if r.depth == level:
            return True
    return False


def _units(n: int) -> str:
    if n >= 1e9:
        return f"Total mult-adds (G): {n / 1e9:,.2f}"
    return f"Total mult-adds (M): {n / 1e6:,.2f}"


def _table(s: ModelSummary) -> str:
    header = ("Layer (type (name): depth-idx)", "Output Shape", "Param #", "Param formula", "MAC formula",
              "Mult-Adds", "RF / jump (px)")
    body = []
    for i, r in enumerate(s.rows):
        params = "--" if (r.is_container and r.params == 0) or r.params == 0 else f"{r.params:,}"
        mac = r.mac_formula.split(" = ")[0] if r.mac_formula else "--"  # the product; its value is the next column
        body.append((_layer_label(s.rows, i), shape_text(r.output_shape), params, r.formula or "--", mac,
                     f"{r.mult_adds:,}" if r.mult_adds else "--", receptive_field_text(r)))
    widths = [max(len(h), *(len(b[c]) for b in body)) if body else len(h) for c, h in enumerate(header)]
    def line(cells: Sequence[str]) -> str:
        out = cells[0].ljust(widths[0])
        for c in range(1, len(cells)):
            out += "  " + (cells[c].ljust(widths[c]) if c in (1, 3, 4) else cells[c].rjust(widths[c]))
        return out.rstrip()
    width = sum(widths) + 2 * (len(widths) - 1)
    sep = "=" * width
    out = [sep, line(header), sep]
    out += [line(b) for b in body]
    mb = 1024 ** 2
    total_mb = (s.input_bytes + s.activation_bytes + s.param_bytes) / mb
    rf = "--" if s.receptive_field is None else (
        str(s.receptive_field) if isinstance(s.receptive_field, int) else "×".join(map(str, s.receptive_field)))
    out += [
        sep,
        f"Total params: {s.total_params:,}",
        f"Trainable params: {s.trainable_params:,}",
        f"Non-trainable params: {s.frozen_params:,}",
        _units(s.total_mult_adds),
        f"Receptive field (last spatial layer): {rf} px",
        sep,
        f"Input size (MB): {s.input_bytes / mb:,.2f}",
        f"Forward/backward pass size (MB): {s.activation_bytes / mb:,.2f}",
        f"Params size (MB): {s.param_bytes / mb:,.2f}",
        f"Estimated Total Size (MB): {total_mb:,.2f}",
        sep,
    ]
    return "\n".join(out)
