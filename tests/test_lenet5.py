"""pycnn.models.lenet5: architecture and parameter count, PyTorch's state_dict names, and the project's
key promise: `pycnn train` defaults reach 97% test accuracy on the MNIST sample."""
import numpy as np
import pytest

import pycnn as pc
from pycnn import metrics
from pycnn.models import lenet5


def test_lenet5_architecture():
    model = lenet5()
    assert sum(p.numel() for p in model.parameters()) == 61706
    assert len(model) == 12
    assert model(pc.zeros(2, 1, 28, 28)).shape == (2, 10)
    m3 = lenet5(num_classes=5, in_channels=3)
    assert sum(p.numel() for p in m3.parameters()) == 61706 + 6 * 2 * 25 - 85 * 5
    assert m3(pc.zeros(1, 3, 28, 28)).shape == (1, 5)
    with pytest.raises(ValueError):
        lenet5(num_classes=0)


def test_lenet5_state_dict_names_match_torch():
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    t = tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5),
                       tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(),
                       tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))
    ours = lenet5()
    sd = {k: v.detach().numpy().copy() for k, v in t.state_dict().items()}
    assert list(sd) == list(ours.state_dict())
    ours.load_state_dict(sd)
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(ours.eval()(pc.from_numpy(x)).numpy(), t(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


def test_lenet5_mnist_sample_reaches_97_percent_with_cli_defaults():
    """The project's key promise: `pycnn train` defaults give >= 97% test accuracy on the sample.

    Runs single-threaded: on a busy 2-core machine OpenMP's barriers make 2 threads much slower,
    and the result does not depend on the thread count's speed."""
    from pycnn import cli

    threads = pc.get_num_threads()
    pc.set_num_threads(1)
    try:
        res = cli.train_lenet(verbose=0)
    finally:
        pc.set_num_threads(threads)
    assert res["n_train"] == 4000 and res["n_test"] == 1000
    assert len(res["history"]) == cli.DEFAULTS["epochs"]
    assert res["test_accuracy"] >= 0.97, res["test_accuracy"]
    from pycnn.data.datasets import load_mnist_sample

    _, _, x_test, y_test = load_mnist_sample()
    logits = res["trainer"].predict(x_test)
    assert logits.shape == (1000, 10)
    assert metrics.accuracy(logits, y_test) == res["test_accuracy"]
    cm = metrics.confusion_matrix(logits, y_test)
    assert cm.shape == (10, 10) and cm.sum() == 1000 and np.trace(cm) == round(1000 * res["test_accuracy"])
