"""pc.onnx.export: every zoo model and every layer, run in onnxruntime against pycnn's eval output."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def _ours(model, x):
    model.eval()
    return np.asarray(model(pc.from_numpy(x)).numpy())


def _realistic(model, seed=0):
    """Weights that keep activations of order one (GoogLeNet's N(0, 0.01) would make every output
    about its biases) and BatchNorm statistics that are not the identity."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(pc.from_numpy(rng.uniform(-0.1, 0.1, c).astype(np.float32)))
            m.running_var.copy_(pc.from_numpy(rng.uniform(0.5, 1.5, c).astype(np.float32)))
            m.weight.copy_(pc.from_numpy(rng.uniform(0.5, 1.5, c).astype(np.float32)))
            m.bias.copy_(pc.from_numpy(rng.uniform(-0.1, 0.1, c).astype(np.float32)))
    return model


_ZOO = [("lenet5", (1, 28, 28)), ("alexnet", (3, 64, 64)), ("vgg11", (3, 32, 32)), ("vgg16", (3, 32, 32)),
        ("resnet18", (3, 32, 32)), ("mobilenet_v1", (3, 32, 32)), ("googlenet", (3, 32, 32)),
        ("densenet121", (3, 32, 32))]


@pytest.mark.parametrize("name,size", _ZOO, ids=[n for n, _ in _ZOO])
def test_every_zoo_model_runs_in_onnxruntime(name, size, tmp_path):
    pc.manual_seed(0)
    model = _realistic(getattr(pc.models, name)(num_classes=10))
    model.train()
    proto = pc.onnx.export(model, tmp_path / f"{name}.onnx", size)
    assert model.training  # the export's eval pass leaves the training flags as they were
    x = np.random.default_rng(1).standard_normal((3,) + size).astype(np.float32)  # batch 3: the axis is dynamic
    ref = _ours(model, x)
    assert np.abs(ref).max() > 1e-3 and np.ptp(ref, axis=0).max() > 1e-4  # outputs that depend on the input
    np.testing.assert_allclose(_run(tmp_path / f"{name}.onnx", x), ref, rtol=1e-4, atol=1e-4)
    names = {t.name for t in proto.graph.initializer}
    assert {k for k in model.state_dict() if not k.endswith("num_batches_tracked")} <= names


def test_every_layer_in_eval_mode(tmp_path):
    pc.manual_seed(1)
    body = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding="same"), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=(0, 1, 1, 2), dilation=1, groups=2), nn.LeakyReLU(0.2),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, bias=False), nn.ELU(0.7),
        nn.MaxPool2d(3, stride=2, padding=1), nn.Sigmoid(),
        nn.Residual(nn.Sequential(nn.Conv2d(8, 8, 1), nn.Tanh())),
        nn.Residual(nn.Conv2d(8, 4, 3, padding=1), shortcut=nn.Conv2d(8, 4, 1)),
        nn.Concat(nn.Identity(), nn.Sequential(nn.Conv2d(4, 3, 1), nn.Softplus(beta=2.0)),
                  nn.AvgPool2d(3, stride=1, padding=1)),
        nn.PReLU(11), nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d((3, 5)),  # from 7x10: windows of unequal size
        nn.Flatten(), nn.Linear(11 * 15, 20), nn.BatchNorm1d(20), nn.PReLU(), nn.Softplus(),
        nn.Linear(20, 6), nn.Softmax(dim=1),
    )
    model = _realistic(body)
    pc.onnx.export(model, tmp_path / "all.onnx", (2, 3, 13, 19))
    x = np.random.default_rng(2).standard_normal((4, 3, 13, 19)).astype(np.float32)
    np.testing.assert_allclose(_run(tmp_path / "all.onnx", x), _ours(model, x), rtol=1e-5, atol=1e-6)


def test_softplus_threshold_and_flatten_and_linear_on_rank_3(tmp_path):
    model = nn.Sequential(nn.Conv2d(2, 4, 1), nn.Flatten(start_dim=2), nn.Linear(12, 5), nn.Softplus(beta=3.0),
                          nn.Flatten(), nn.Softmax(dim=-1))
    pc.onnx.export(model, tmp_path / "m.onnx", (2, 3, 4))
    x = (10 * np.random.default_rng(3).standard_normal((2, 2, 3, 4))).astype(np.float32)  # past the threshold
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", x), _ours(model, x), rtol=1e-5, atol=1e-6)


def test_adaptive_pool_larger_output_and_global(tmp_path):
    model = nn.Sequential(nn.AdaptiveAvgPool2d((4, 6)), nn.Conv2d(2, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    pc.onnx.export(model, tmp_path / "m.onnx", (2, 3, 2))
    x = np.random.default_rng(4).standard_normal((3, 2, 3, 2)).astype(np.float32)
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", x), _ours(model, x), rtol=1e-5, atol=1e-6)
    ops = [n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node]
    assert "GlobalAveragePool" in ops and ops.count("MatMul") == 2


def test_batch_axis_is_dynamic(tmp_path):
    model = pc.models.lenet5()
    proto = pc.onnx.export(model, tmp_path / "lenet.onnx", (7, 1, 28, 28))  # an explicit batch: still dynamic
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    assert proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "N"
    onnx.checker.check_model(onnx.load(str(tmp_path / "lenet.onnx")))
    for n in (1, 5):
        x = np.random.default_rng(n).random((n, 1, 28, 28), dtype=np.float32)
        np.testing.assert_allclose(_run(tmp_path / "lenet.onnx", x), _ours(model, x), rtol=1e-5, atol=1e-6)


class _Custom(nn.Module):
    def forward(self, x):
        return x


class _MySequential(nn.Sequential):
    def forward(self, x):
        return super().forward(pc.functional.tanh(x))


class _MyReLU(nn.ReLU):
    def _fwd(self, x):
        return x


@pytest.mark.parametrize("layer,message", [
    (_Custom(), r"1 \(_Custom\) has no ONNX equivalent"),
    (_MySequential(nn.ReLU()), r"1 \(_MySequential\) overrides Sequential.forward"),
    (_MyReLU(), r"1 \(_MyReLU\) overrides ReLU._fwd"),
    (nn.BatchNorm2d(2, track_running_stats=False), r"1 \(BatchNorm2d\) has no running statistics"),
])
def test_a_layer_it_cannot_express_is_named(layer, message, tmp_path):
    model = nn.Sequential(nn.Conv2d(2, 2, 1), layer)
    with pytest.raises(NotImplementedError, match=message):
        pc.onnx.export(model, tmp_path / "m.onnx", (2, 4, 4))
    assert not (tmp_path / "m.onnx").exists()


def test_bad_input_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="input_size"):
        pc.onnx.export(pc.models.lenet5(), tmp_path / "m.onnx", (1, 0, 28))
    with pytest.raises(ValueError, match="opset"):
        pc.onnx.export(pc.models.lenet5(), tmp_path / "m.onnx", (1, 28, 28), opset=11)


def test_a_float64_model_exports_as_float32(tmp_path):
    model = pc.models.lenet5().double()
    proto = pc.onnx.export(model, tmp_path / "m.onnx", (1, 28, 28))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    x = np.random.default_rng(5).random((2, 1, 28, 28))
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", x.astype(np.float32)), _ours(model, x), rtol=1e-4, atol=1e-5)


def test_a_distributed_wrapper_exports_the_model_it_wraps(tmp_path):
    model = pc.models.lenet5()
    ddp = nn.parallel.DistributedDataParallel.__new__(nn.parallel.DistributedDataParallel)
    nn.Module.__init__(ddp)  # the wrapper as a training run holds it, built here without a process group
    ddp.module = model
    proto = pc.onnx.export(ddp, tmp_path / "m.onnx", (1, 28, 28))
    assert {t.name for t in proto.graph.initializer} == set(model.state_dict())  # no "module." prefix
    x = np.random.default_rng(6).random((2, 1, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", x), _ours(model, x), rtol=1e-5, atol=1e-6)
