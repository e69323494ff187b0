"""pycnn.nn models against PyTorch in float64 (skipped when torch is not installed): LeNet-5, a zoo
of every layer (train and eval mode), Residual and Concat -- outputs, loss, input and parameter
gradients, buffers."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from pycnn import nn

from helpers import T64 as T, close, rng


# ----------------------------------------------------------------------------------------------
# PyTorch parity
# ----------------------------------------------------------------------------------------------
def _torch_to_pycnn(tmodel, model):
    model.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})


def _compare_with_torch(torch, tmodel, model, x, labels, rtol=1e-10, atol=1e-12):
    _torch_to_pycnn(tmodel, model)
    xt = torch.tensor(x, requires_grad=True)
    tout = tmodel(xt)
    tloss = torch.nn.functional.cross_entropy(tout, torch.tensor(labels))
    tloss.backward()
    crit = nn.CrossEntropyLoss()
    out = model(T(x))
    close(out, tout.detach().numpy(), rtol, atol)
    loss = crit(out, labels)
    assert loss.item() == pytest.approx(tloss.item(), rel=1e-12)
    model.zero_grad()
    dx = model.backward(crit.backward())
    close(dx, xt.grad.numpy(), rtol, atol)
    grads = dict(model.named_parameters())
    for name, p in tmodel.named_parameters():
        close(grads[name].grad, p.grad.numpy(), rtol, atol)
    for name, b in tmodel.named_buffers():
        close(model.state_dict()[name], b.numpy(), rtol, atol)


def test_lenet5_parity_with_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tn = torch.nn
    tmodel = tn.Sequential(tn.Conv2d(1, 6, 5, padding=2), tn.ReLU(), tn.MaxPool2d(2), tn.Conv2d(6, 16, 5), tn.ReLU(),
                           tn.MaxPool2d(2), tn.Flatten(), tn.Linear(400, 120), tn.ReLU(), tn.Linear(120, 84),
                           tn.ReLU(), tn.Linear(84, 10)).double()
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                          nn.ReLU(), nn.Linear(84, 10)).double()
    assert repr(model) == repr(tmodel)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in tmodel.named_parameters()]
    x = rng(13).standard_normal((4, 1, 28, 28))
    _compare_with_torch(torch, tmodel, model, x, np.array([3, 1, 4, 1]))


def test_layer_zoo_parity_with_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    tn = torch.nn

    def build(m):
        return m.Sequential(
            m.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), m.BatchNorm2d(8), m.PReLU(8),
            m.Conv2d(8, 8, 4, padding="same", dilation=2, bias=False), m.ELU(0.8), m.AvgPool2d(3, 1, 1),
            m.Conv2d(8, 6, 3), m.LeakyReLU(0.1), m.MaxPool2d(2, 1), m.AdaptiveAvgPool2d((3, 2)), m.Flatten(),
            m.Linear(36, 12), m.BatchNorm1d(12), m.Softplus(), m.Dropout(0.0), m.Linear(12, 7), m.Sigmoid(),
            m.Linear(7, 5), m.Tanh(), m.Linear(5, 4))

    tmodel, model = build(tn).double(), build(nn).double()
    x = rng(14).standard_normal((3, 4, 11, 10))
    _compare_with_torch(torch, tmodel, model, x, np.array([0, 3, 2]), rtol=1e-9, atol=1e-11)
    # eval mode (running statistics) too
    tmodel.eval()
    model.eval()
    tmodel.zero_grad()
    _compare_with_torch(torch, tmodel, model, x, np.array([1, 1, 2]), rtol=1e-9, atol=1e-11)


def test_residual_and_concat_parity_with_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    tn = torch.nn

    class TRes(tn.Module):
        def __init__(self):
            super().__init__()
            self.block = tn.Sequential(tn.Conv2d(3, 4, 3, padding=1), tn.ReLU(), tn.Conv2d(4, 4, 3, padding=1))
            self.shortcut = tn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.block(x) + self.shortcut(x)

    class TCat(tn.Module):
        def __init__(self):
            super().__init__()
            self.a = tn.Conv2d(4, 2, 1)
            self.b = tn.Conv2d(4, 3, 3, padding=1)

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x)], 1)

    tmodel = tn.Sequential(TRes(), TCat(), tn.Flatten(), tn.Linear(5 * 16, 3)).double()
    model = nn.Sequential(nn.Residual(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                                                    nn.Conv2d(4, 4, 3, padding=1)), nn.Conv2d(3, 4, 1)),
                          nn.Concat(OrderedDict(a=nn.Conv2d(4, 2, 1), b=nn.Conv2d(4, 3, 3, padding=1))),
                          nn.Flatten(), nn.Linear(5 * 16, 3)).double()
    x = rng(15).standard_normal((2, 3, 4, 4))
    _compare_with_torch(torch, tmodel, model, x, np.array([2, 0]))
