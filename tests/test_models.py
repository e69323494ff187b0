"""pc.models: published parameter counts, torchvision state_dict names, small forward/backward checks."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn
from pycnn.models.alexnet import alexnet
from pycnn.models.mobilenet import mobilenet_v1
from pycnn.models.resnet import BasicBlock, resnet18
from pycnn.models.vgg import vgg11, vgg16


@pytest.fixture(scope="module")
def no_init():
    """Building VGG-16 draws 138M random numbers; the parameter-count and name tests only need the
    shapes, so initialisation is switched off while they build the big models."""
    mp = pytest.MonkeyPatch()
    for name in ("uniform_", "normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
                 "xavier_normal_"):
        mp.setattr(nn.init, name, lambda t, *a, **k: t)
    yield
    mp.undo()


def _count(model):
    return sum(p.numel() for p in model.parameters())


def _shapes(sd):
    return {k: tuple(v.shape) for k, v in sd.items()}


@pytest.mark.parametrize("build,expected", [
    (alexnet, 61_100_840),
    (vgg11, 132_863_336),
    (vgg16, 138_357_544),
    (resnet18, 11_689_512),
    (mobilenet_v1, 4_231_976),
])
def test_published_parameter_counts(no_init, build, expected):
    model = build()
    assert _count(model) == expected
    del model


def test_num_classes_in_channels_and_width():
    assert _count(resnet18(num_classes=10, in_channels=1)) == 11_689_512 - 513_000 + 5_130 - 9_408 + 3_136
    m = mobilenet_v1(num_classes=10, width_mult=0.5)
    assert m.classifier.weight.shape == (10, 512)
    assert m.features[0][0].weight.shape == (16, 3, 3, 3)
    assert mobilenet_v1(in_channels=1).features[0][0].weight.shape == (32, 1, 3, 3)
    with pytest.raises(ValueError):
        mobilenet_v1(width_mult=0)


def test_models_exported():
    models = pytest.importorskip("pycnn.models")
    for name in ("alexnet", "vgg11", "vgg16", "resnet18", "mobilenet_v1", "googlenet", "densenet121"):
        assert callable(getattr(models, name, None)), name


def test_mobilenet_is_depthwise_separable():
    m = mobilenet_v1()
    block = m.features[1]
    dw, pw = block[0], block[3]
    assert dw.groups == 32 and dw.weight.shape == (32, 1, 3, 3)
    assert pw.weight.shape == (64, 32, 1, 1)
    assert dw.bias is None and pw.bias is None
    assert len(m.features) == 14


# ------------------------------------------------------------------------------------------------
# torchvision names (torchvision is not installed: the torch twins are built here from torch.nn)
# ------------------------------------------------------------------------------------------------
def _torch_alexnet(tnn, num_classes=1000):
    class AlexNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = tnn.Sequential(
                tnn.Conv2d(3, 64, 11, 4, 2), tnn.ReLU(), tnn.MaxPool2d(3, 2),
                tnn.Conv2d(64, 192, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(3, 2),
                tnn.Conv2d(192, 384, 3, padding=1), tnn.ReLU(), tnn.Conv2d(384, 256, 3, padding=1), tnn.ReLU(),
                tnn.Conv2d(256, 256, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(3, 2))
            self.avgpool = tnn.AdaptiveAvgPool2d((6, 6))
            self.classifier = tnn.Sequential(
                tnn.Dropout(), tnn.Linear(9216, 4096), tnn.ReLU(), tnn.Dropout(), tnn.Linear(4096, 4096),
                tnn.ReLU(), tnn.Linear(4096, num_classes))
    return AlexNet()


def _torch_vgg(tnn, cfg):
    class VGG(tnn.Module):
        def __init__(self):
            super().__init__()
            layers, c = [], 3
            for v in cfg:
                if v == "M":
                    layers.append(tnn.MaxPool2d(2, 2))
                else:
                    layers += [tnn.Conv2d(c, v, 3, padding=1), tnn.ReLU()]
                    c = v
            self.features = tnn.Sequential(*layers)
            self.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
            self.classifier = tnn.Sequential(
                tnn.Linear(25088, 4096), tnn.ReLU(), tnn.Dropout(), tnn.Linear(4096, 4096), tnn.ReLU(),
                tnn.Dropout(), tnn.Linear(4096, 1000))
    return VGG()


def _torch_resnet18(torch, num_classes=1000):
    tnn = torch.nn

    class TBasicBlock(tnn.Module):
        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    class TResNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.inplanes = 64
            self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.relu = tnn.ReLU(inplace=True)
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
            self.layer1 = self._make(64, 1)
            self.layer2 = self._make(128, 2)
            self.layer3 = self._make(256, 2)
            self.layer4 = self._make(512, 2)
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.fc = tnn.Linear(512, num_classes)

        def _make(self, planes, stride):
            ds = None
            if stride != 1 or self.inplanes != planes:
                ds = tnn.Sequential(tnn.Conv2d(self.inplanes, planes, 1, stride, bias=False), tnn.BatchNorm2d(planes))
            blocks = [TBasicBlock(self.inplanes, planes, stride, ds), TBasicBlock(planes, planes)]
            self.inplanes = planes
            return tnn.Sequential(*blocks)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return TResNet(), TBasicBlock


@pytest.mark.parametrize("which", ["alexnet", "vgg11", "vgg16", "resnet18"])
def test_state_dict_names_match_torchvision(no_init, which):
    torch = pytest.importorskip("torch")
    from pycnn.models.vgg import CONFIGS

    with torch.device("meta"):  # shapes only, no memory
        if which == "alexnet":
            tm = _torch_alexnet(torch.nn)
        elif which == "resnet18":
            tm = _torch_resnet18(torch)[0]
        else:
            tm = _torch_vgg(torch.nn, CONFIGS["A" if which == "vgg11" else "D"])
    ours = {"alexnet": alexnet, "vgg11": vgg11, "vgg16": vgg16, "resnet18": resnet18}[which]()
    sd_t, sd_p = tm.state_dict(), ours.state_dict()
    assert list(sd_p) == list(sd_t)  # same names in the same order
    assert _shapes(sd_p) == _shapes(sd_t)


def test_resnet18_loads_torch_weights_and_matches(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    tm, _ = _torch_resnet18(torch, num_classes=10)
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in tm.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
                m.num_batches_tracked.fill_(7)
    tm.eval()
    p = tmp_path / "resnet18.safetensors"
    save_file(tm.state_dict(), str(p))

    model = resnet18(num_classes=10)
    from pycnn.io import load

    model.load_state_dict(load(p))
    assert model.layer1[0].bn1.num_batches_tracked.item() == 7
    model.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = tm(torch.from_numpy(x)).numpy()
    out = np.asarray(model(pc.from_numpy(x)).numpy())
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-4)


def test_basic_block_backward_matches_torch():
    torch = pytest.importorskip("torch")
    _, TBasicBlock = _torch_resnet18(torch)
    rng = np.random.default_rng(1)
    for stride, cin, cout in ((1, 4, 4), (2, 3, 6)):
        ds_t = None
        ds_p = None
        if stride != 1 or cin != cout:
            ds_t = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False), torch.nn.BatchNorm2d(cout))
            ds_p = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        tb = TBasicBlock(cin, cout, stride, ds_t).double()
        pb = BasicBlock(cin, cout, stride, ds_p).double()
        pb.load_state_dict({k: pc.from_numpy(v.detach().numpy().copy()) for k, v in tb.state_dict().items()})
        tb.train(), pb.train()
        x = rng.standard_normal((2, cin, 6, 6))
        g = rng.standard_normal((2, cout, 6 // stride, 6 // stride))
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = tb(xt)
        yt.backward(torch.from_numpy(g))
        y = pb(pc.from_numpy(x))
        np.testing.assert_allclose(np.asarray(y.numpy()), yt.detach().numpy(), rtol=1e-9, atol=1e-10)
        dx = pb.backward(pc.from_numpy(g))
        np.testing.assert_allclose(np.asarray(dx.numpy()), xt.grad.numpy(), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(np.asarray(pb.conv1.weight.grad.numpy()), tb.conv1.weight.grad.numpy(),
                                   rtol=1e-8, atol=1e-10)
        if ds_p is not None:
            np.testing.assert_allclose(np.asarray(pb.downsample[0].weight.grad.numpy()),
                                       tb.downsample[0].weight.grad.numpy(), rtol=1e-8, atol=1e-10)
        with pytest.raises(RuntimeError):
            pb.backward(pc.from_numpy(g))  # cache consumed


def test_small_forward_backward_shapes():
    for model, n in ((resnet18(num_classes=7), 2), (mobilenet_v1(num_classes=7, width_mult=0.25), 2)):
        x = pc.randn(n, 3, 32, 32)
        model.train()
        y = model(x)
        assert y.shape == (n, 7)
        dx = model.backward(pc.ones(n, 7))
        assert dx.shape == (n, 3, 32, 32)
        assert all(p.grad is not None for p in model.parameters())
