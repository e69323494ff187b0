"""Tests for pycnn.data: the shipped MNIST sample, IDX / CIFAR-10 readers, loader, transforms."""
import gzip
import os
import struct

import numpy as np
import pytest

import pycnn
from pycnn.data import DataLoader, TensorDataset, datasets, transforms as T


# --------------------------------------------------------------------------- helpers

def write_idx(path, array, magic=None, truncate=0, gz=False):
    """Write ``array`` (uint8) as an IDX file; ``magic``/``truncate`` let tests corrupt it."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | array.ndim
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.tobytes()
    if truncate:
        payload = payload[:-truncate]
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(payload)
    return path


def make_mnist_files(root, n=7, prefix="train", gz=False, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    os.makedirs(root, exist_ok=True)
    ext = ".gz" if gz else ""
    write_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte{ext}"), images, gz=gz)
    write_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte{ext}"), labels, gz=gz)
    return images, labels


def write_cifar_batch(path, images, labels):
    records = np.concatenate([labels[:, None].astype(np.uint8), images.reshape(len(labels), -1)], axis=1)
    with open(path, "wb") as f:
        f.write(records.tobytes())


def batch(n=4, c=3, h=8, w=10, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w)).astype(np.float32)


# --------------------------------------------------------------------------- load_mnist_sample

def test_load_mnist_sample_shapes_dtypes_ranges():
    x_train, y_train, x_test, y_test = datasets.load_mnist_sample()
    assert x_train.shape == (4000, 1, 28, 28) and x_test.shape == (1000, 1, 28, 28)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    assert y_train.shape == (4000,) and y_test.shape == (1000,)
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0 and x_train.max() > 0.9
    assert np.array_equal(np.bincount(y_test, minlength=10), np.full(10, 100))
    assert np.array_equal(np.bincount(y_train, minlength=10), np.full(10, 400))
    # Shuffled, not sorted by label.
    assert np.any(np.diff(y_train) < 0)


def test_load_mnist_sample_returns_fresh_arrays():
    a = datasets.load_mnist_sample()[0]
    a[:] = 0
    assert datasets.load_mnist_sample()[0].max() > 0


# --------------------------------------------------------------------------- MNIST (IDX)

def test_mnist_reads_plain_idx_files(tmp_path):
    images, labels = make_mnist_files(str(tmp_path), n=7)
    ds = datasets.MNIST(str(tmp_path), train=True)
    assert len(ds) == 7
    assert ds.data.shape == (7, 1, 28, 28) and ds.data.dtype == np.float32
    assert ds.targets.dtype == np.int64
    np.testing.assert_allclose(ds.data[:, 0] * 255, images, atol=1e-4)
    np.testing.assert_array_equal(ds.targets, labels)
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and y == labels[3]
    assert len(ds.classes) == 10


def test_mnist_reads_gzipped_files_in_torchvision_layout(tmp_path):
    raw = os.path.join(str(tmp_path), "MNIST", "raw")
    images, labels = make_mnist_files(raw, n=5, prefix="t10k", gz=True)
    ds = datasets.MNIST(str(tmp_path), train=False)
    np.testing.assert_allclose(ds.data[:, 0] * 255, images, atol=1e-4)
    np.testing.assert_array_equal(ds.targets, labels)


def test_fashion_mnist_same_format(tmp_path):
    make_mnist_files(str(tmp_path), n=3)
    ds = datasets.FashionMNIST(str(tmp_path))
    assert len(ds) == 3 and ds.classes[0] == "T-shirt/top"


def test_mnist_missing_files_lists_paths(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        datasets.MNIST(str(tmp_path))
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg and os.path.join("MNIST", "raw") in msg


@pytest.mark.parametrize(
    "corrupt, fragment",
    [
        (dict(magic=0x0000_0801), "magic"),          # labels magic on an images file
        (dict(magic=0x0100_0803), "magic"),          # non-zero leading byte
        (dict(truncate=5), "truncated"),
    ],
)
def test_mnist_corrupt_images_raise_value_error(tmp_path, corrupt, fragment):
    make_mnist_files(str(tmp_path), n=4)
    path = os.path.join(str(tmp_path), "train-images-idx3-ubyte")
    write_idx(path, np.zeros((4, 28, 28)), **corrupt)
    with pytest.raises(ValueError, match=fragment) as err:
        datasets.MNIST(str(tmp_path))
    assert "train-images-idx3-ubyte" in str(err.value)


def test_mnist_trailing_bytes_and_empty_file(tmp_path):
    make_mnist_files(str(tmp_path), n=4)
    path = os.path.join(str(tmp_path), "train-labels-idx1-ubyte")
    with open(path, "ab") as f:
        f.write(b"\x00")
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte"):
        datasets.MNIST(str(tmp_path))
    open(path, "wb").close()
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte"):
        datasets.MNIST(str(tmp_path))


def test_mnist_truncated_gzip_raises_value_error(tmp_path):
    make_mnist_files(str(tmp_path), n=4, gz=True)
    path = os.path.join(str(tmp_path), "train-images-idx3-ubyte.gz")
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        f.write(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        datasets.MNIST(str(tmp_path))


def test_mnist_label_count_mismatch(tmp_path):
    make_mnist_files(str(tmp_path), n=4)
    write_idx(os.path.join(str(tmp_path), "train-labels-idx1-ubyte"), np.zeros(3))
    with pytest.raises(ValueError, match="3 labels"):
        datasets.MNIST(str(tmp_path))


def test_mnist_label_out_of_range(tmp_path):
    make_mnist_files(str(tmp_path), n=4)
    write_idx(os.path.join(str(tmp_path), "train-labels-idx1-ubyte"), [0, 1, 12, 3])
    with pytest.raises(ValueError, match="label 12"):
        datasets.MNIST(str(tmp_path))


def test_mnist_item_transform_applies_batch_transform(tmp_path):
    make_mnist_files(str(tmp_path), n=2)
    ds = datasets.MNIST(str(tmp_path), transform=T.Normalize(0.5, 0.25))
    x, _ = ds[1]
    np.testing.assert_allclose(x, (ds.data[1] - 0.5) / 0.25, rtol=1e-6)


# --------------------------------------------------------------------------- CIFAR10

def make_cifar(root, per_batch=2, meta=None):
    rng = np.random.default_rng(1)
    os.makedirs(root, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        images = rng.integers(0, 256, size=(per_batch, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch, dtype=np.uint8)
        write_cifar_batch(os.path.join(root, name), images, labels)
        written[name] = (images, labels)
    if meta is not None:
        with open(os.path.join(root, "batches.meta.txt"), "w") as f:
            f.write("\n".join(meta) + "\n\n")
    return written


def test_cifar10_reads_binary_batches(tmp_path):
    names = [f"class{i}" for i in range(10)]
    written = make_cifar(os.path.join(str(tmp_path), "cifar-10-batches-bin"), meta=names)
    train = datasets.CIFAR10(str(tmp_path), train=True)
    assert train.data.shape == (10, 3, 32, 32) and train.data.dtype == np.float32
    assert train.targets.dtype == np.int64 and len(train) == 10
    imgs = np.concatenate([written[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    np.testing.assert_allclose(train.data * 255, imgs, atol=1e-3)
    assert train.classes == names
    test = datasets.CIFAR10(str(tmp_path), train=False)
    np.testing.assert_array_equal(test.targets, written["test_batch.bin"][1])


def test_cifar10_default_classes_and_errors(tmp_path):
    root = str(tmp_path)
    make_cifar(root)
    assert datasets.CIFAR10(root, train=False).classes[0] == "airplane"
    path = os.path.join(root, "test_batch.bin")
    with open(path, "ab") as f:
        f.write(b"\x01\x02")
    with pytest.raises(ValueError, match="test_batch.bin"):
        datasets.CIFAR10(root, train=False)
    images = np.zeros((1, 3, 32, 32), np.uint8)
    write_cifar_batch(path, images, np.array([10], np.uint8))
    with pytest.raises(ValueError, match="label 10"):
        datasets.CIFAR10(root, train=False)
    os.remove(os.path.join(root, "data_batch_3.bin"))
    with pytest.raises(FileNotFoundError, match="data_batch_3.bin"):
        datasets.CIFAR10(root, train=True)


# --------------------------------------------------------------------------- TensorDataset / DataLoader

def test_tensor_dataset_indexing_and_size_check():
    x, y = np.arange(20).reshape(10, 2), np.arange(10)
    ds = TensorDataset(x, y)
    assert len(ds) == 10
    xi, yi = ds[3]
    assert np.array_equal(xi, [6, 7]) and yi == 3
    xb, yb = ds[np.array([1, 4])]
    assert xb.shape == (2, 2) and np.array_equal(yb, [1, 4])
    with pytest.raises(ValueError, match=r"\[10, 9\]"):
        TensorDataset(x, np.arange(9))
    with pytest.raises(ValueError):
        TensorDataset()
    with pytest.raises(TypeError):
        TensorDataset(object())


def test_dataloader_batches_len_and_drop_last():
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    y = np.arange(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    assert np.array_equal(np.concatenate([b[1] for b in batches]), y)
    dropped = DataLoader(TensorDataset(x, y), batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [b[1].shape[0] for b in dropped] == [4, 4]
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(TensorDataset(x, y), batch_size=0)


def test_dataloader_shuffle_is_seeded_by_manual_seed():
    y = np.arange(50)
    loader = DataLoader(TensorDataset(y), batch_size=8, shuffle=True)
    pycnn.manual_seed(123)
    first = np.concatenate([b[0] for b in loader])
    second = np.concatenate([b[0] for b in loader])
    pycnn.manual_seed(123)
    again = np.concatenate([b[0] for b in loader])
    assert np.array_equal(first, again)
    assert not np.array_equal(first, second)          # a new permutation each epoch
    assert not np.array_equal(first, y)
    assert np.array_equal(np.sort(first), y)


class _ListDataset:
    """No .data/.targets: exercises the item-by-item path."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full((1, 2, 2), i, np.float32), np.int64(i)


def test_dataloader_slow_path_and_transform():
    loader = DataLoader(_ListDataset(5), batch_size=2, transform=T.Normalize(1.0, 2.0))
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(2, 1, 2, 2), (2, 1, 2, 2), (1, 1, 2, 2)]
    np.testing.assert_allclose(batches[1][0][:, 0, 0, 0], [(2 - 1) / 2, (3 - 1) / 2])
    assert np.array_equal(batches[2][1], [4])


def test_dataloader_fast_path_on_dataset_with_data_targets(tmp_path):
    make_mnist_files(str(tmp_path), n=7)
    ds = datasets.MNIST(str(tmp_path))
    xb, yb = next(iter(DataLoader(ds, batch_size=3)))
    np.testing.assert_array_equal(xb, ds.data[:3])
    np.testing.assert_array_equal(yb, ds.targets[:3])


# --------------------------------------------------------------------------- transforms

ALL_RANDOM = [
    T.RandomHorizontalFlip(0.5),
    T.RandomCrop(8, padding=2),
    T.RandomRotation(30),
    T.GaussianNoise(0.1),
    T.ColorJitter(brightness=0.4, contrast=0.4),
]


@pytest.mark.parametrize("t", ALL_RANDOM, ids=lambda t: type(t).__name__)
def test_random_transforms_shape_dtype_and_determinism(t):
    x = batch(n=6, h=8, w=8)
    pycnn.manual_seed(7)
    a = t(x)
    pycnn.manual_seed(7)
    b = t(x)
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, x)
    assert np.array_equal(x, batch(n=6, h=8, w=8))    # input untouched
    assert type(t).__name__ in repr(t)


@pytest.mark.parametrize("t", ALL_RANDOM + [T.Normalize(0, 1)], ids=lambda t: type(t).__name__)
def test_transforms_reject_non_batch(t):
    with pytest.raises(ValueError, match=rf"{type(t).__name__}.*\(3, 8, 8\)"):
        t(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(TypeError, match=type(t).__name__):
        t(np.zeros((1, 3, 8, 8), np.uint8))


def test_horizontal_flip_flips():
    x = batch(n=3)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(x), x[..., ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=0.0)(x), x)
    pycnn.manual_seed(0)
    out = T.RandomHorizontalFlip(0.5)(batch(n=64))
    src = batch(n=64)
    flipped = np.array([np.array_equal(o, s[..., ::-1]) for o, s in zip(out, src)])
    kept = np.array([np.array_equal(o, s) for o, s in zip(out, src)])
    assert np.all(flipped | kept) and flipped.any() and kept.any()


def test_random_crop_identity_and_padding():
    x = batch(h=8, w=10)
    np.testing.assert_array_equal(T.RandomCrop((8, 10))(x), x)
    pycnn.manual_seed(3)
    out = T.RandomCrop((8, 10), padding=2)(x)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for o, p in zip(out, padded):     # each sample is some window of its padded image
        hits = [(i, j) for i in range(5) for j in range(5) if np.array_equal(o, p[:, i:i + 8, j:j + 10])]
        assert hits
    assert T.RandomCrop(4)(x).shape == (4, 3, 4, 4)
    with pytest.raises(ValueError, match="RandomCrop"):
        T.RandomCrop(20)(x)


def test_rotation_zero_is_identity_and_ninety_matches_rot90():
    x = batch(n=3, h=7, w=7)
    np.testing.assert_array_equal(T.RandomRotation(0)(x), x)
    np.testing.assert_allclose(T.RandomRotation((90, 90))(x), np.rot90(x, k=1, axes=(2, 3)), atol=1e-5)
    # Rotating a centred square by 45 degrees fills corners with zeros.
    square = np.ones((1, 1, 9, 9), np.float32)
    out = T.RandomRotation((45, 45))(square)
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 4, 4] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        T.RandomRotation(-5)


def test_normalize_math_and_validation():
    x = batch(n=2, c=3)
    mean, std = [0.1, 0.2, 0.3], [0.5, 1.0, 2.0]
    out = T.Normalize(mean, std)(x)
    expected = (x - np.array(mean).reshape(1, 3, 1, 1)) / np.array(std).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match="std"):
        T.Normalize([0.0, 0.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="channels"):
        T.Normalize([0.1, 0.2], [1.0, 1.0])(x)
    assert "mean=[0.1, 0.2, 0.3]" in repr(T.Normalize(mean, std))


def test_gaussian_noise_statistics():
    x = np.zeros((8, 1, 32, 32), np.float32)
    pycnn.manual_seed(0)
    out = T.GaussianNoise(0.5)(x)
    assert abs(out.std() - 0.5) < 0.02 and abs(out.mean()) < 0.02
    np.testing.assert_array_equal(T.GaussianNoise(0.0)(x), x)


def test_color_jitter_brightness_and_contrast():
    x = batch(n=16, c=3) * 0.5                       # in [0, 0.5]: no clipping at 1.5x
    pycnn.manual_seed(1)
    out = T.ColorJitter(brightness=0.5)(x)
    ratio = out / x
    per_sample = ratio.reshape(16, -1)
    np.testing.assert_allclose(per_sample, per_sample[:, :1] * np.ones_like(per_sample), rtol=1e-5)
    assert np.all((per_sample >= 0.5 - 1e-6) & (per_sample <= 1.5 + 1e-6))
    # Contrast keeps the per-sample grayscale mean (when nothing is clipped).
    gray = lambda a: (a * np.array([0.299, 0.587, 0.114], np.float32).reshape(1, 3, 1, 1)).sum(1).mean((1, 2))
    mid = 0.25 + x                                    # in [0.25, 0.75]: no clipping at 0.5x..1.5x
    out = T.ColorJitter(contrast=0.5)(mid)
    np.testing.assert_allclose(gray(out), gray(mid), rtol=1e-5)
    assert not np.allclose(out, mid)
    np.testing.assert_array_equal(T.ColorJitter()(x), x)


def test_compose_applies_in_order_and_repr():
    t = T.Compose([T.Normalize(1.0, 1.0), T.Normalize(0.0, 2.0)])
    x = batch()
    np.testing.assert_allclose(t(x), (x - 1.0) / 2.0, rtol=1e-6)
    assert "Normalize" in repr(t) and repr(t).startswith("Compose(")
    with pytest.raises(TypeError):
        T.Compose([1])
