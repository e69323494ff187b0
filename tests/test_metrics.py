"""pycnn.metrics: accuracy and confusion_matrix."""
import numpy as np
import pytest

import pycnn as pc
from pycnn import metrics


def test_accuracy_metric():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    y = np.array([1, 0, 0, 0])
    assert metrics.accuracy(logits, y) == 0.75
    assert metrics.accuracy(pc.tensor(logits), pc.tensor(y)) == 0.75
    assert metrics.accuracy(np.array([1, 0, 1, 0]), y) == 0.75
    assert metrics.accuracy([1, 0, 0, 0], y) == 1.0
    with pytest.raises(ValueError, match="4 predictions but 3 labels"):
        metrics.accuracy(logits, y[:3])
    with pytest.raises(ValueError):
        metrics.accuracy(np.zeros((2, 2, 2)), y[:2])
    with pytest.raises(ValueError, match="0 samples"):
        metrics.accuracy(np.zeros((0, 3)), np.zeros(0, np.int64))


def test_confusion_matrix():
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 0, 2])
    cm = metrics.confusion_matrix(p, y)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert cm.sum() == 6 and np.trace(cm) == 4
    logits = np.eye(4)[p]  # (6, 4): 4 classes from the logits' width
    assert metrics.confusion_matrix(logits, y).shape == (4, 4)
    assert metrics.confusion_matrix(p, y, num_classes=5).shape == (5, 5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.confusion_matrix(p, y, num_classes=2)
    with pytest.raises(ValueError):
        metrics.confusion_matrix(p, np.array([0, 0, 1, 2, 2, -1]))
