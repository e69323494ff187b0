"""Habits of a PyTorch / Keras user that pycnn must honour (found by probing against torch 2.x)."""
import numpy as np
import pytest

import pycnn as pc
from pycnn import nn
from pycnn.summary import ModelSummary


def test_no_grad_decorates_without_parentheses_as_torch():
    @pc.no_grad
    def infer(x):
        return x * 2

    x = pc.tensor([1.0, 2.0], requires_grad=True)
    y = infer(x)
    assert not y.requires_grad and y.tolist() == [2.0, 4.0]
    assert infer.__name__ == "infer"

    @pc.enable_grad
    def train_part(x):
        return x * 3

    with pc.no_grad():
        assert train_part(x).requires_grad
    assert pc.is_grad_enabled()


def test_model_summary_prints_its_table_and_returns_it(capsys):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    result = model.summary((1, 8, 8))
    printed = capsys.readouterr().out
    assert isinstance(result, ModelSummary)
    assert printed.strip() == str(result).strip() and "Linear" in printed
    quiet = model.summary((1, 8, 8), verbose=False)
    assert capsys.readouterr().out == "" and quiet.total_params == result.total_params


def test_iterating_rows_keeps_the_graph():
    # `for row in x` was built on the untraced index op: rows lost requires_grad, so a loss over
    # them silently dropped their gradient (torch's rows are unbind views in the graph).
    x = pc.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=pc.float64, requires_grad=True)
    rows = list(x)
    assert all(r.requires_grad for r in rows)
    loss = sum((i + 1) * (r ** 2).sum() for i, r in enumerate(rows)) + x.sum()
    loss.backward()
    expected = np.array([[1.0, 1.0], [2.0, 2.0]]) * 2 * x.detach().numpy() + 1
    np.testing.assert_allclose(x.grad.numpy(), expected)
    assert [r.tolist() for r in pc.tensor([[1, 2], [3, 4]])] == [[1, 2], [3, 4]]
