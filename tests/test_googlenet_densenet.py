"""pc.models.googlenet and densenet121: parameter counts, torchvision names and outputs, training
through every branch, gradcheck of the blocks, the ceil-mode max pool, and their summaries."""
from __future__ import annotations

import numpy as np
import pytest

import pycnn as pc
from pycnn import nn
from pycnn.models import DenseBlock, DenseLayer, Inception, Transition, densenet121, googlenet
from pycnn.models.googlenet import BasicConv2d, CeilMaxPool2d
from pycnn.testing import gradcheck


def _count(model):
    return sum(p.numel() for p in model.parameters())


def _np(t):
    return np.asarray(t.numpy())


def test_published_parameter_counts():
    assert _count(googlenet()) == 6_624_904
    assert _count(densenet121()) == 7_978_856
    # 10 classes, one input channel: only the stem conv and the classifier change
    assert _count(googlenet(num_classes=10, in_channels=1)) == 6_624_904 - 1_025_000 + 10_250 - 64 * 49 * 2
    assert _count(densenet121(num_classes=10, in_channels=1)) == 7_978_856 - 1_025_000 + 10_250 - 64 * 49 * 2


def test_blocks_are_concats_of_the_documented_branches():
    block = Inception(192, 64, 96, 128, 16, 32, 32)  # the paper's inception (3a)
    assert isinstance(block, nn.Concat) and block.out_channels == 256
    assert [n for n, _ in block.named_children()] == ["branch1", "branch2", "branch3", "branch4"]
    assert block.branch1.conv.weight.shape == (64, 192, 1, 1)
    assert block.branch2[1].conv.weight.shape == (128, 96, 3, 3)
    assert block.branch3[1].conv.weight.shape == (32, 16, 3, 3)  # torchvision's 3x3 (the paper's 5x5)
    assert isinstance(block.branch4[0], nn.MaxPool2d) and block.branch4[1].conv.weight.shape == (32, 192, 1, 1)
    y = block(pc.randn(2, 192, 7, 7))
    assert y.shape == (2, 256, 7, 7)

    layer = DenseLayer(64, growth_rate=32, bn_size=4)
    assert isinstance(layer.concat, nn.Concat) and layer.out_channels == 96
    assert [n for n, _ in layer.named_parameters()] == ["norm1.weight", "norm1.bias", "conv1.weight", "norm2.weight",
                                                        "norm2.bias", "conv2.weight"]
    x = pc.randn(2, 64, 5, 5)
    layer.eval()
    y = layer(x)
    assert y.shape == (2, 96, 5, 5)
    np.testing.assert_array_equal(_np(y)[:, :64], _np(x))  # the input passes through unchanged
    assert repr(layer).count("Conv2d(128, 32") == 1  # the layers are listed once, not again inside concat
    block = DenseBlock(3, 16, growth_rate=4, bn_size=2)
    assert block.out_channels == 28 and [n for n, _ in block.named_children()] == ["denselayer1", "denselayer2",
                                                                                   "denselayer3"]
    assert block(pc.randn(1, 16, 4, 4)).shape == (1, 28, 4, 4)
    assert Transition(28, 14)(pc.randn(1, 28, 4, 4)).shape == (1, 14, 2, 2)


def test_gradcheck_tiny_blocks():
    pc.manual_seed(3)
    rng = np.random.default_rng(3)
    inc = Inception(3, 2, 2, 3, 1, 2, 2).double()
    assert gradcheck(inc, rng.standard_normal((2, 3, 5, 5)))
    assert gradcheck(DenseLayer(3, growth_rate=2, bn_size=2).double(), rng.standard_normal((2, 3, 4, 4)))
    assert gradcheck(DenseBlock(2, 3, growth_rate=2, bn_size=2).double(), rng.standard_normal((2, 3, 4, 4)))
    assert gradcheck(Transition(4, 2).double(), rng.standard_normal((2, 4, 4, 4)))
    assert gradcheck(CeilMaxPool2d(3, stride=2).double(), rng.standard_normal((2, 2, 6, 7)))


@pytest.mark.parametrize("size,k,s,p", [((6, 7), 3, 2, 0), ((112, 112), 3, 2, 0), ((7, 7), 2, 2, 0),
                                        ((8, 5), 3, 2, 1), ((5, 5), 3, 3, 0)])
def test_ceil_max_pool_matches_torch(size, k, s, p):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(sum(size)).standard_normal((2, 3) + size)
    g_shape = tuple(torch.nn.functional.max_pool2d(torch.from_numpy(x), k, s, p, ceil_mode=True).shape)
    g = np.random.default_rng(1).standard_normal(g_shape)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.nn.functional.max_pool2d(xt, k, s, p, ceil_mode=True)
    yt.backward(torch.from_numpy(g))
    pool = CeilMaxPool2d(k, stride=s, padding=p)
    y = pool(pc.from_numpy(x))
    np.testing.assert_array_equal(_np(y), yt.detach().numpy())
    np.testing.assert_array_equal(_np(pool.backward(pc.from_numpy(g))), xt.grad.numpy())


@pytest.mark.parametrize("build", [googlenet, densenet121])
def test_train_step_reaches_every_branch(build):
    pc.manual_seed(0)
    model = build(num_classes=5)
    model.train()
    x = pc.randn(4, 3, 32, 32)
    y = np.array([0, 1, 2, 3])
    loss_fn = nn.CrossEntropyLoss()
    opt = pc.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(4):
        opt.zero_grad()
        out = model(x)
        losses.append(float(loss_fn(out, y).item()))
        model.backward(loss_fn.backward())
        if not losses[1:]:  # first step: every parameter of every branch got a gradient
            for name, p in model.named_parameters():
                assert p.grad is not None and np.abs(_np(p.grad)).sum() > 0, name
        opt.step()
    assert losses[-1] < 0.8 * losses[0]  # it fits the batch (measured: 1.71 -> 0.95, 1.80 -> 1.00)


def test_summary_of_the_new_models():
    g = pc.summary(googlenet(), (3, 224, 224))
    assert g.total_params == 6_624_904
    assert round(g.total_mult_adds / 1e9, 2) == 1.50  # torchvision lists 1.498 GFLOPS
    assert g["inception3a"].type == "Inception" and g["inception3a"].output_shape == (1, 256, 28, 28)
    assert g["maxpool1"].output_shape == (1, 64, 56, 56)  # ceil mode: 112 -> 56
    assert g["inception5b"].output_shape == (1, 1024, 7, 7)
    assert g["inception3a.branch3.1.conv"].mac_formula == "3×3×16 × 32 × 28×28 = 3,612,672"
    d = pc.summary(densenet121(), (3, 64, 64))
    assert d.total_params == 7_978_856
    assert d["features.denseblock1"].output_shape == (1, 256, 16, 16)
    assert d["features.denseblock4"].output_shape == (1, 1024, 2, 2)
    assert d["features.denseblock1.denselayer1"].type == "DenseLayer"
    assert d["features.denseblock1.denselayer1.conv2"].formula == "32×(3×3×128) = 36,864"
    assert "Total params: 7,978,856" in str(d)


# ------------------------------------------------------------------------------------------------
# torchvision's names and outputs (torch twins written from torchvision's models/googlenet.py and
# densenet.py; the real torchvision is compared too when it is installed)
# ------------------------------------------------------------------------------------------------
def _torch_googlenet(torch, num_classes=1000):
    tnn = torch.nn

    class TBasicConv2d(tnn.Module):
        def __init__(self, cin, cout, **kw):
            super().__init__()
            self.conv = tnn.Conv2d(cin, cout, bias=False, **kw)
            self.bn = tnn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x):
            return torch.relu(self.bn(self.conv(x)))

    class TInception(tnn.Module):
        def __init__(self, cin, c1, c3r, c3, c5r, c5, pp):
            super().__init__()
            self.branch1 = TBasicConv2d(cin, c1, kernel_size=1)
            self.branch2 = tnn.Sequential(TBasicConv2d(cin, c3r, kernel_size=1),
                                          TBasicConv2d(c3r, c3, kernel_size=3, padding=1))
            self.branch3 = tnn.Sequential(TBasicConv2d(cin, c5r, kernel_size=1),
                                          TBasicConv2d(c5r, c5, kernel_size=3, padding=1))
            self.branch4 = tnn.Sequential(tnn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                          TBasicConv2d(cin, pp, kernel_size=1))

        def forward(self, x):
            return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)

    from pycnn.models.googlenet import _INCEPTIONS

    class TGoogLeNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = TBasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
            self.maxpool1 = tnn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.conv2 = TBasicConv2d(64, 64, kernel_size=1)
            self.conv3 = TBasicConv2d(64, 192, kernel_size=3, padding=1)
            self.maxpool2 = tnn.MaxPool2d(3, stride=2, ceil_mode=True)
            for name in ("3a", "3b"):
                setattr(self, f"inception{name}", TInception(*_INCEPTIONS[name]))
            self.maxpool3 = tnn.MaxPool2d(3, stride=2, ceil_mode=True)
            for name in ("4a", "4b", "4c", "4d", "4e"):
                setattr(self, f"inception{name}", TInception(*_INCEPTIONS[name]))
            self.maxpool4 = tnn.MaxPool2d(2, stride=2, ceil_mode=True)
            for name in ("5a", "5b"):
                setattr(self, f"inception{name}", TInception(*_INCEPTIONS[name]))
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.dropout = tnn.Dropout(0.2)
            self.fc = tnn.Linear(1024, num_classes)

        def forward(self, x):
            for m in list(self.children())[:-1]:
                x = m(x)
            return self.fc(torch.flatten(x, 1))

    return TGoogLeNet()


def _torch_densenet121(torch, num_classes=1000):
    from collections import OrderedDict

    tnn = torch.nn

    class TDenseLayer(tnn.Module):
        def __init__(self, cin, growth=32, bn_size=4):
            super().__init__()
            self.norm1, self.relu1 = tnn.BatchNorm2d(cin), tnn.ReLU()
            self.conv1 = tnn.Conv2d(cin, bn_size * growth, 1, bias=False)
            self.norm2, self.relu2 = tnn.BatchNorm2d(bn_size * growth), tnn.ReLU()
            self.conv2 = tnn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

        def forward(self, feats):
            x = torch.cat(feats, 1)
            return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))

    class TDenseBlock(tnn.ModuleDict):
        def __init__(self, n, cin):
            super().__init__()
            for i in range(n):
                self.add_module(f"denselayer{i + 1}", TDenseLayer(cin + i * 32))

        def forward(self, x):
            feats = [x]
            for layer in self.values():
                feats.append(layer(feats))
            return torch.cat(feats, 1)

    class TDenseNet(tnn.Module):
        def __init__(self):
            super().__init__()
            f = OrderedDict([("conv0", tnn.Conv2d(3, 64, 7, 2, 3, bias=False)), ("norm0", tnn.BatchNorm2d(64)),
                             ("relu0", tnn.ReLU()), ("pool0", tnn.MaxPool2d(3, 2, 1))])
            c = 64
            for i, n in enumerate((6, 12, 24, 16)):
                f[f"denseblock{i + 1}"] = TDenseBlock(n, c)
                c += n * 32
                if i != 3:
                    f[f"transition{i + 1}"] = tnn.Sequential(OrderedDict([
                        ("norm", tnn.BatchNorm2d(c)), ("relu", tnn.ReLU()),
                        ("conv", tnn.Conv2d(c, c // 2, 1, bias=False)), ("pool", tnn.AvgPool2d(2, 2))]))
                    c //= 2
            f["norm5"] = tnn.BatchNorm2d(c)
            self.features = tnn.Sequential(f)
            self.classifier = tnn.Linear(c, num_classes)

        def forward(self, x):
            x = torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.features(x)), (1, 1))
            return self.classifier(torch.flatten(x, 1))

    return TDenseNet()


def _randomise_batch_norm(torch, tm):
    with torch.no_grad():  # non-trivial running statistics, so that eval mode is really tested
        for m in tm.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
                m.num_batches_tracked.fill_(3)


def _check_same_outputs(torch, tm, ours, tmp_path, size=32):
    from safetensors.torch import save_file

    from pycnn.io import load

    _randomise_batch_norm(torch, tm)
    tm.eval()
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in tm.state_dict().items()}, str(path))
    ours.load_state_dict(load(path))  # torchvision's names load as they are
    ours.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        ref = tm(torch.from_numpy(x)).numpy()
    out = _np(ours(pc.from_numpy(x)))
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("which", ["googlenet", "densenet121"])
def test_state_dict_names_match_torchvision(which):
    torch = pytest.importorskip("torch")
    with torch.device("meta"):
        tm = _torch_googlenet(torch) if which == "googlenet" else _torch_densenet121(torch)
    ours = googlenet() if which == "googlenet" else densenet121()
    sd_t, sd_p = tm.state_dict(), ours.state_dict()
    assert list(sd_p) == list(sd_t)
    assert {k: tuple(v.shape) for k, v in sd_p.items()} == {k: tuple(v.shape) for k, v in sd_t.items()}


@pytest.mark.parametrize("which", ["googlenet", "densenet121"])
def test_torch_twin_weights_give_the_same_outputs(which, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    if which == "googlenet":
        _check_same_outputs(torch, _torch_googlenet(torch, 10), googlenet(num_classes=10), tmp_path)
    else:
        _check_same_outputs(torch, _torch_densenet121(torch, 10), densenet121(num_classes=10), tmp_path)


@pytest.mark.parametrize("which", ["googlenet", "densenet121"])
def test_torchvision_weights_give_the_same_outputs(which, tmp_path):
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    if which == "googlenet":
        tm = tv.models.googlenet(num_classes=10, aux_logits=False, init_weights=True)
        _check_same_outputs(torch, tm, googlenet(num_classes=10), tmp_path)
    else:
        _check_same_outputs(torch, tv.models.densenet121(num_classes=10), densenet121(num_classes=10), tmp_path)


def test_blocks_train_mode_forward_backward_match_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    rng = np.random.default_rng(2)
    tg = _torch_googlenet(torch)
    for tblock, block, cin in ((tg.inception3a, Inception(192, 64, 96, 128, 16, 32, 32), 192),
                               (_torch_densenet121(torch).features.denseblock1, DenseBlock(6, 64), 64)):
        tblock.double().train()
        block.double().train()
        block.load_state_dict({k: pc.from_numpy(v.detach().numpy().copy()) for k, v in tblock.state_dict().items()})
        x = rng.standard_normal((2, cin, 6, 6))
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = tblock(xt)
        g = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.from_numpy(g))
        y = block(pc.from_numpy(x))
        np.testing.assert_allclose(_np(y), yt.detach().numpy(), rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(_np(block.backward(pc.from_numpy(g))), xt.grad.numpy(), rtol=1e-8, atol=1e-9)
        grads_t = dict(tblock.named_parameters())
        for name, p in block.named_parameters():
            np.testing.assert_allclose(_np(p.grad), grads_t[name].grad.numpy(), rtol=1e-7, atol=1e-9, err_msg=name)


def test_basic_conv2d_names():
    b = BasicConv2d(3, 8, kernel_size=3, padding=1)
    assert list(b.state_dict()) == ["conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                                    "bn.num_batches_tracked"]
    assert b.bn.eps == 0.001 and b.conv.bias is None
