"""``pc.onnx.export(model, path, input_size)``: the model in eval mode as an ONNX graph.

Needs the ``onnx`` package (``pip install "pycnn[onnx]"``); the file runs in onnxruntime or any
other ONNX runtime.  The graph has one input ``input`` of shape ``(N, *input_size[1:])`` whose
batch axis ``N`` is dynamic, and one output ``output``; the parameters and BatchNorm statistics
are initializers named as in ``model.state_dict()``.

How each layer is written (eval mode, as ``model.eval()`` computes it):

* Conv2d -> Conv; MaxPool2d -> MaxPool (the models' ``CeilMaxPool2d`` with ``ceil_mode=1``);
  AvgPool2d -> AveragePool (``count_include_pad=1``); AdaptiveAvgPool2d -> GlobalAveragePool for a
  1x1 output, otherwise two MatMuls with the (separable) averaging matrices of its windows.
* BatchNorm1d/2d -> BatchNormalization with the running statistics; Dropout -> Identity.
* ReLU, LeakyReLU, ELU, Sigmoid, Tanh, PReLU, Softmax -> the ONNX op of that name; Softplus(beta,
  threshold) -> ``Where(beta*x > threshold, x, Softplus(beta*x) / beta)``.
* Linear -> Gemm (MatMul + Add for inputs of rank > 2); Flatten -> Flatten or Reshape.
* Sequential -> its layers in order; Residual -> block, shortcut, Add; Concat -> its branches and
  Concat; Identity -> Identity; ResNet's BasicBlock and DenseNet's DenseLayer as their forward does;
  a model wrapped in ``nn.parallel.DistributedDataParallel`` is exported as the model it wraps.

A module of any other type, or a subclass of one of these that overrides ``forward``, raises
``NotImplementedError`` naming it: the export never silently writes a different computation.
The shapes each layer sees come from one forward pass of a zero batch of ``input_size``.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from . import nn
from .models.densenet import DenseLayer
from .models.googlenet import CeilMaxPool2d
from .models.resnet import BasicBlock
from .nn.parallel import DistributedDataParallel
from .nn.parameter import Parameter
from .summary import batch_shape, eval_mode, model_dtype
from .tensor import zeros

__all__ = ["export", "OPSET"]

OPSET = 17


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError("pc.onnx.export needs the onnx package: pip install \"pycnn[onnx]\" "
                          "(or pip install onnx)") from None
    return onnx


class _Graph:
    """The nodes and initializers written so far, and the shapes the traced forward recorded."""

    def __init__(self, onnx: Any, names: Dict[int, str], calls: Dict[int, List[Tuple[tuple, tuple]]],
                 np_dtype: np.dtype) -> None:
        self.onnx, self.names, self.calls, self.np_dtype = onnx, names, calls, np_dtype
        self.nodes: List[Any] = []
        self.initializers: Dict[str, Any] = {}
        self._count = 0

    def name(self, m: Any) -> str:
        return self.names.get(id(m), "") or type(m).__name__

    def shapes(self, m: Any) -> Tuple[tuple, tuple]:
        """(input shape, output shape) of m's next call, in the order the forward pass made them."""
        calls = self.calls.get(id(m))
        if not calls:
            raise NotImplementedError(f"onnx.export: {self.name(m)} ({type(m).__name__}) was not called by the "
                                      "model's forward pass as its containers describe it")
        return calls.pop(0)

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, name: str, value: Any, dtype: Any = None) -> str:
        if name not in self.initializers:
            self.initializers[name] = np.ascontiguousarray(value, dtype=self.np_dtype if dtype is None else dtype)
        return name

    def param(self, m: Any, attr: str) -> str:
        t = getattr(m, attr)
        data = t.data if isinstance(t, Parameter) else t
        return self.const(f"{self.names.get(id(m), '')}.{attr}".lstrip("."), np.asarray(data.numpy()))

    def node(self, m: Any, op: str, inputs: List[str], **attrs: Any) -> str:
        out = self.fresh(op)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=f"{self.name(m)}:{out}", **attrs))
        return out


# ------------------------------------------------------------------------------------------------
# one converter per layer type: (graph, module, input value name) -> output value name
# ------------------------------------------------------------------------------------------------
def _pairs(v: Any) -> List[int]:
    return [int(v), int(v)] if isinstance(v, (int, np.integer)) else [int(t) for t in v]


def _conv(g: _Graph, m: Any, x: str) -> str:
    g.shapes(m)
    top, bottom, left, right = m._pad4
    inputs = [x, g.param(m, "weight")] + ([g.param(m, "bias")] if m.bias is not None else [])
    return g.node(m, "Conv", inputs, kernel_shape=list(m.kernel_size), strides=list(m.stride),
                  pads=[top, left, bottom, right], dilations=list(m.dilation), group=int(m.groups))


def _pool_attrs(m: Any) -> Dict[str, Any]:
    (ph, pw) = _pairs(m.padding)
    return {"kernel_shape": _pairs(m.kernel_size), "strides": _pairs(m.stride), "pads": [ph, pw, ph, pw]}


def _max_pool(g: _Graph, m: Any, x: str) -> str:
    g.shapes(m)
    return g.node(m, "MaxPool", [x], ceil_mode=int(bool(getattr(m, "ceil_mode", False))), **_pool_attrs(m))


def _avg_pool(g: _Graph, m: Any, x: str) -> str:
    g.shapes(m)
    return g.node(m, "AveragePool", [x], count_include_pad=1, **_pool_attrs(m))


def _bins(size: int, out: int) -> np.ndarray:
    """(out, size) matrix whose row i averages adaptive pooling's window i: floor(i*size/out) up to
    ceil((i+1)*size/out)."""
    a = np.zeros((out, size))
    for i in range(out):
        lo, hi = (i * size) // out, -(-((i + 1) * size) // out)
        a[i, lo:hi] = 1.0 / (hi - lo)
    return a


def _adaptive_avg_pool(g: _Graph, m: Any, x: str) -> str:
    (_, _, h, w), (_, _, oh, ow) = g.shapes(m)
    if (oh, ow) == (1, 1):
        return g.node(m, "GlobalAveragePool", [x])
    if (oh, ow) == (h, w):
        return g.node(m, "Identity", [x])
    # any other size (windows of unequal size, or an output larger than the input): the pooling is
    # linear and separable, y = A_h @ x @ A_w^T with A the averaging matrices of the windows
    rows = g.node(m, "MatMul", [x, g.const(g.fresh(f"{g.name(m)}.cols"), _bins(w, ow).T)])
    return g.node(m, "MatMul", [g.const(g.fresh(f"{g.name(m)}.rows"), _bins(h, oh)), rows])


def _batch_norm(g: _Graph, m: Any, x: str) -> str:
    g.shapes(m)
    c = m.num_features
    scale = g.param(m, "weight") if m.weight is not None else g.const(g.fresh("ones"), np.ones(c))
    bias = g.param(m, "bias") if m.bias is not None else g.const(g.fresh("zeros"), np.zeros(c))
    if m.running_mean is None:
        raise NotImplementedError(f"onnx.export: {g.name(m)} ({type(m).__name__}) has no running statistics "
                                  "(track_running_stats=False): its eval mode uses the batch's own")
    return g.node(m, "BatchNormalization", [x, scale, bias, g.param(m, "running_mean"), g.param(m, "running_var")],
                  epsilon=float(m.eps))


def _op(op: str, **fixed: Callable[[Any], Any]) -> Callable[[_Graph, Any, str], str]:
    def convert(g: _Graph, m: Any, x: str) -> str:
        g.shapes(m)
        return g.node(m, op, [x], **{k: f(m) for k, f in fixed.items()})
    return convert


def _prelu(g: _Graph, m: Any, x: str) -> str:
    (in_shape, _) = g.shapes(m)
    w = np.asarray(m.weight.data.numpy())
    if w.size > 1:  # one slope per channel (dim 1): broadcast over the dims after it
        w = w.reshape((w.size,) + (1,) * max(0, len(in_shape) - 2))
    return g.node(m, "PRelu", [x, g.const(f"{g.name(m)}.weight", w)])


def _softplus(g: _Graph, m: Any, x: str) -> str:
    g.shapes(m)
    beta = g.const(g.fresh("beta"), float(m.beta))
    bx = g.node(m, "Mul", [x, beta])
    soft = g.node(m, "Div", [g.node(m, "Softplus", [bx]), beta])
    linear = g.node(m, "Greater", [bx, g.const(g.fresh("threshold"), float(m.threshold))])
    return g.node(m, "Where", [linear, x, soft])


def _linear(g: _Graph, m: Any, x: str) -> str:
    (in_shape, _) = g.shapes(m)
    if len(in_shape) == 2:
        inputs = [x, g.param(m, "weight")] + ([g.param(m, "bias")] if m.bias is not None else [])
        return g.node(m, "Gemm", inputs, transB=1)
    wt = g.const(f"{g.name(m)}.weight_t", np.asarray(m.weight.data.numpy()).T)
    y = g.node(m, "MatMul", [x, wt])
    return g.node(m, "Add", [y, g.param(m, "bias")]) if m.bias is not None else y


def _flatten(g: _Graph, m: Any, x: str) -> str:
    (in_shape, out_shape) = g.shapes(m)
    start = m.start_dim % len(in_shape)
    end = m.end_dim % len(in_shape)
    if start == 1 and end == len(in_shape) - 1:
        return g.node(m, "Flatten", [x], axis=1)
    target = list(out_shape)
    target[0] = -1 if start == 0 else 0  # 0: keep the (dynamic) batch size
    return g.node(m, "Reshape", [x, g.const(g.fresh("shape"), target, np.int64)])


def _softmax(g: _Graph, m: Any, x: str) -> str:
    g.shapes(m)
    return g.node(m, "Softmax", [x], axis=int(m.dim))


def _identity(g: _Graph, m: Any, x: str) -> str:
    g.shapes(m)
    return g.node(m, "Identity", [x])


def _sequential(g: _Graph, m: Any, x: str) -> str:
    g.shapes(m)
    for layer in m:
        x = _convert(g, layer, x)
    return x


def _residual(g: _Graph, m: Any, x: str) -> str:
    g.shapes(m)
    y = _convert(g, m.block, x)
    s = x if m.shortcut is None else _convert(g, m.shortcut, x)
    return g.node(m, "Add", [y, s])


def _concat(g: _Graph, m: Any, x: str) -> str:
    g.shapes(m)
    outs = [_convert(g, b, x) for b in m]
    return g.node(m, "Concat", outs, axis=int(m.dim))


def _basic_block(g: _Graph, m: Any, x: str) -> str:
    g.shapes(m)
    y = x
    for layer in (m.conv1, m.bn1, m.relu, m.conv2, m.bn2):
        y = _convert(g, layer, y)
    s = x if m.downsample is None else _convert(g, m.downsample, x)
    return _convert(g, m.relu, g.node(m, "Add", [y, s]))


def _dense_layer(g: _Graph, m: Any, x: str) -> str:
    g.shapes(m)
    return _convert(g, m.concat, x)


@functools.lru_cache(maxsize=None)
def _converters() -> Tuple[Tuple[type, Callable[[_Graph, Any, str], str]], ...]:
    """(class, converter), most specific first: a module takes the first class it is an instance of."""
    return (
        (BasicBlock, _basic_block), (DenseLayer, _dense_layer), (CeilMaxPool2d, _max_pool),
        (nn.Sequential, _sequential), (nn.Residual, _residual), (nn.Concat, _concat), (nn.Identity, _identity),
        (nn.Conv2d, _conv), (nn.Linear, _linear), (nn.Flatten, _flatten),
        (nn.MaxPool2d, _max_pool), (nn.AvgPool2d, _avg_pool), (nn.AdaptiveAvgPool2d, _adaptive_avg_pool),
        (nn.BatchNorm1d, _batch_norm), (nn.BatchNorm2d, _batch_norm), (nn.Dropout, _identity),
        (nn.ReLU, _op("Relu")), (nn.LeakyReLU, _op("LeakyRelu", alpha=lambda m: float(m.negative_slope))),
        (nn.ELU, _op("Elu", alpha=lambda m: float(m.alpha))), (nn.Sigmoid, _op("Sigmoid")),
        (nn.Tanh, _op("Tanh")), (nn.Softplus, _softplus), (nn.PReLU, _prelu), (nn.Softmax, _softmax),
    )


def _convert(g: _Graph, m: Any, x: str) -> str:
    for cls, fn in _converters():
        if isinstance(m, cls):
            for attr in ("forward", "_fwd", "_op"):  # a subclass that computes something else is not cls
                if getattr(type(m), attr, None) is not getattr(cls, attr, None):
                    raise NotImplementedError(
                        f"onnx.export: {g.name(m)} ({type(m).__name__}) overrides {cls.__name__}.{attr}, so it "
                        f"cannot be written as {cls.__name__}; ONNX export covers pycnn's own layers only")
            return fn(g, m, x)
    supported = ", ".join(sorted({c.__name__ for c, _ in _converters()}))
    raise NotImplementedError(f"onnx.export: {g.name(m)} ({type(m).__name__}) has no ONNX equivalent here; "
                              f"supported layers: {supported}")


# ------------------------------------------------------------------------------------------------
def _trace(model: Any, shape: Tuple[int, ...], dtype: Any) -> Dict[int, List[Tuple[tuple, tuple]]]:
    """Runs a zero batch through the model in eval mode; returns id(module) -> [(in, out) shape per call]."""
    calls: Dict[int, List[Tuple[tuple, tuple]]] = {}

    def hook(module: Any, args: Tuple[Any, ...], out: Any) -> None:
        inp = args[0] if args else None
        calls.setdefault(id(module), []).append((tuple(getattr(inp, "shape", ())), tuple(getattr(out, "shape", ()))))

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with eval_mode(model):
            model(zeros(*shape, dtype=dtype, device=getattr(model, "device", "cpu")))
    finally:
        for h in handles:
            h.remove()
    return calls


def export(model: Any, path: Any, input_size: Any, opset: int = OPSET) -> Any:
    """Writes ``model`` (as ``model.eval()`` computes it) to the ONNX file ``path``.

    input_size: ``(C, H, W)`` or ``(N, C, H, W)`` as in :func:`pycnn.summary` (``(features,)`` for
    fully connected models); the exported batch axis is dynamic whatever N is.  The graph is float32
    (a float64 model's parameters are rounded to float32).  Returns the
    ``onnx.ModelProto`` that was saved (checked with ``onnx.checker``).  Raises
    NotImplementedError naming the first layer that ONNX cannot express.
    """
    onnx = _onnx()
    if opset < 13:
        raise ValueError(f"onnx.export: opset must be >= 13 (Softmax over one axis), got {opset}")
    if isinstance(model, DistributedDataParallel):  # in eval mode it computes its module, names unprefixed
        model = model.module
    shape = batch_shape(input_size)
    calls = _trace(model, shape, model_dtype(model, None))
    np_dtype = np.dtype(np.float32)  # what ONNX runtimes have kernels for (onnxruntime has no float64 Conv)
    out_shape = calls[id(model)][0][1]
    names = {id(m): n for n, m in model.named_modules()}
    g = _Graph(onnx, names, calls, np_dtype)
    out = _convert(g, model, "input")
    g.nodes.append(onnx.helper.make_node("Identity", [out], ["output"], name="output"))

    elem = onnx.helper.np_dtype_to_tensor_dtype(np_dtype)
    graph = onnx.helper.make_graph(
        g.nodes, type(model).__name__,
        [onnx.helper.make_tensor_value_info("input", elem, ["N"] + list(shape[1:]))],
        [onnx.helper.make_tensor_value_info("output", elem, ["N"] + list(out_shape[1:]))])
    opsets = [onnx.helper.make_opsetid("", int(opset))]
    proto = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="pycnn")
    for name, arr in g.initializers.items():  # written in place: VGG's half a gigabyte is copied once
        t = proto.graph.initializer.add()
        t.name, t.data_type, t.raw_data = name, onnx.helper.np_dtype_to_tensor_dtype(arr.dtype), arr.tobytes()
        t.dims.extend(arr.shape)
    proto.ir_version = onnx.helper.find_min_ir_version_for(opsets)  # the oldest runtimes that know the opset
    data = proto.SerializeToString()
    onnx.checker.check_model(data)
    with open(os.fspath(path), "wb") as f:
        f.write(data)
    return proto
