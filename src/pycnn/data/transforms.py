"""Batch data augmentation on NumPy arrays of shape (N, C, H, W).

Every transform works on a whole batch at once (vectorised, no Python loop over samples) and
draws a separate random choice for every sample. Working per batch is what makes augmentation
cheap enough to run in the training loop; drawing per sample is what makes it augmentation.
Randomness comes from ``pycnn._random.generator()`` at call time, so ``pc.manual_seed`` makes
augmented runs repeatable. Inputs are never modified in place; the output has the input dtype.

Use them through ``DataLoader(..., transform=...)``, or on a single item via a dataset's
``transform`` (which applies them to a batch of one).
"""
from __future__ import annotations

import numbers
from typing import Callable, Iterable, Sequence, Tuple, Union

import numpy as np

from .. import _args, _random

__all__ = [
    "Compose",
    "Normalize",
    "RandomHorizontalFlip",
    "RandomCrop",
    "RandomRotation",
    "GaussianNoise",
    "ColorJitter",
]

Pair = Tuple[int, int]


def _check_batch(x: np.ndarray, name: str) -> np.ndarray:
    """Return ``x`` as an array, insisting on a float (N, C, H, W) batch.

    Integer images are refused rather than silently converted: a uint8 batch would make
    Normalize / GaussianNoise produce values on the wrong scale.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name}: expected a batch of shape (N, C, H, W), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"{name}: expected a floating-point batch (e.g. float32 in [0, 1]), got dtype {x.dtype}"
        )
    return x


def _is_number(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


class Compose:
    """Apply transforms in order: ``Compose([RandomCrop(28, 2), Normalize(0.13, 0.31)])``."""

    def __init__(self, transforms: Iterable[Callable[[np.ndarray], np.ndarray]]) -> None:
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"Compose: transform {i} is not callable, got {type(t).__name__}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])" if self.transforms else "Compose([])"


class Normalize:
    """``(x - mean[c]) / std[c]`` per channel. ``mean``/``std``: a number or one value per channel."""

    def __init__(self, mean: Union[float, Sequence[float]], std: Union[float, Sequence[float]]) -> None:
        self.mean = self._values(mean, "mean")
        self.std = self._values(std, "std")
        if np.any(self.std == 0):
            raise ValueError(f"Normalize: std must be non-zero, got {self.std.tolist()}")
        if len(self.mean) != len(self.std) and 1 not in (len(self.mean), len(self.std)):
            raise ValueError(
                f"Normalize: mean and std must have the same length, got {len(self.mean)} and {len(self.std)}"
            )

    @staticmethod
    def _values(v: Union[float, Sequence[float]], what: str) -> np.ndarray:
        arr = np.atleast_1d(np.asarray(v, dtype=np.float64))
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"Normalize: {what} must be a number or a 1-D sequence, got {v!r}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"Normalize: {what} must be finite, got {arr.tolist()}")
        return arr

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = _check_batch(x, "Normalize")
        c = x.shape[1]
        for what, arr in (("mean", self.mean), ("std", self.std)):
            if arr.size not in (1, c):
                raise ValueError(
                    f"Normalize: {what} has {arr.size} values but the batch has {c} channels "
                    f"(shape {x.shape})"
                )
        mean = self.mean.astype(x.dtype).reshape(1, -1, 1, 1)
        std = self.std.astype(x.dtype).reshape(1, -1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class RandomHorizontalFlip:
    """Mirror each sample left-right with probability ``p`` (chosen independently per sample)."""

    def __init__(self, p: float = 0.5) -> None:
        if not _is_number(p) or not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be a number in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = _check_batch(x, "RandomHorizontalFlip")
        flip = _random.generator().random(x.shape[0]) < self.p
        out = x.copy()
        out[flip] = x[flip, :, :, ::-1]
        return out

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """Zero-pad by ``padding`` on every side, then cut a random ``size`` window per sample.

    ``size`` and ``padding`` are an int or an ``(h, w)`` pair. With ``padding=4`` and the
    original size this is the standard CIFAR "shift by up to 4 pixels" augmentation.
    """

    def __init__(self, size: Union[int, Sequence[int]], padding: Union[int, Sequence[int]] = 0) -> None:
        self.size = _args.pair(size, "RandomCrop", "size", minimum=1)
        self.padding = _args.pair(padding, "RandomCrop", "padding", minimum=0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = _check_batch(x, "RandomCrop")
        n = x.shape[0]
        ph, pw = self.padding
        h, w = self.size
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        hp, wp = x.shape[2], x.shape[3]
        if h > hp or w > wp:
            raise ValueError(
                f"RandomCrop: crop size {self.size} is larger than the padded image {(hp, wp)} "
                f"(image {(hp - 2 * ph, wp - 2 * pw)} plus padding {self.padding} on each side)"
            )
        rng = _random.generator()
        top = rng.integers(0, hp - h + 1, size=n)
        left = rng.integers(0, wp - w + 1, size=n)
        # windows[n, c, i, j] is the (h, w) window whose top-left corner is (i, j); a view, no copy.
        windows = np.lib.stride_tricks.sliding_window_view(x, (h, w), axis=(2, 3))
        return np.ascontiguousarray(windows[np.arange(n), :, top, left])

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomRotation:
    """Rotate each sample by an angle drawn uniformly from ``degrees`` about the image centre.

    ``degrees``: a number ``d`` (range ``(-d, d)``) or a ``(min, max)`` pair. Positive angles turn
    the image counter-clockwise, as in torchvision. Bilinear interpolation; pixels that come from
    outside the image are 0.
    """

    def __init__(self, degrees: Union[float, Sequence[float]]) -> None:
        if _is_number(degrees):
            if degrees < 0:
                raise ValueError(f"RandomRotation: degrees must be >= 0 when a single number, got {degrees}")
            self.degrees = (-float(degrees), float(degrees))
        elif isinstance(degrees, (tuple, list)) and len(degrees) == 2 and all(_is_number(d) for d in degrees):
            lo, hi = float(degrees[0]), float(degrees[1])
            if lo > hi:
                raise ValueError(f"RandomRotation: degrees must be (min, max) with min <= max, got {degrees!r}")
            self.degrees = (lo, hi)
        else:
            raise TypeError(f"RandomRotation: degrees must be a number or a (min, max) pair, got {degrees!r}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = _check_batch(x, "RandomRotation")
        angles = _random.generator().uniform(self.degrees[0], self.degrees[1], size=x.shape[0])
        return _rotate(x, np.deg2rad(angles))

    def __repr__(self) -> str:
        return f"RandomRotation(degrees={self.degrees})"


def _rotate(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Rotate each x[n] counter-clockwise by theta[n] radians, bilinear, zero fill.

    Inverse mapping: for every output pixel find the source point it comes from and interpolate
    there, so every output pixel is defined exactly once. Coordinates are relative to the centre
    ((H-1)/2, (W-1)/2) with the vertical axis pointing up, where a counter-clockwise turn is the
    usual rotation matrix; the source point is the output point rotated by -theta.
    """
    n, c, h, w = x.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    u = (cols - cx)[None]          # (1, H, W), x to the right
    v = (cy - rows)[None]          # (1, H, W), y up
    cos = np.cos(theta)[:, None, None]
    sin = np.sin(theta)[:, None, None]
    src_col = cos * u + sin * v + cx          # (N, H, W)
    src_row = cy - (-sin * u + cos * v)

    r0 = np.floor(src_row)
    c0 = np.floor(src_col)
    # Weights and accumulation in the input dtype: float64 would double the memory traffic.
    fr = (src_row - r0).astype(x.dtype)
    fc = (src_col - c0).astype(x.dtype)
    r0 = r0.astype(np.int64)
    c0 = c0.astype(np.int64)

    flat = x.reshape(n, c, h * w)
    out = np.zeros((n, c, h * w), dtype=x.dtype)
    for dr, dc, weight in (
        (0, 0, (1 - fr) * (1 - fc)),
        (0, 1, (1 - fr) * fc),
        (1, 0, fr * (1 - fc)),
        (1, 1, fr * fc),
    ):
        rr, cc = r0 + dr, c0 + dc
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        idx = (np.clip(rr, 0, h - 1) * w + np.clip(cc, 0, w - 1)).reshape(n, 1, h * w)
        wgt = np.where(inside, weight, 0).reshape(n, 1, h * w)
        out += wgt * np.take_along_axis(flat, np.broadcast_to(idx, (n, c, h * w)), axis=2)
    return out.reshape(n, c, h, w)


class GaussianNoise:
    """Add independent N(0, std^2) noise to every value (no clipping)."""

    def __init__(self, std: float) -> None:
        if not _is_number(std) or not np.isfinite(std) or std < 0:
            raise ValueError(f"GaussianNoise: std must be a finite number >= 0, got {std!r}")
        self.std = float(std)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = _check_batch(x, "GaussianNoise")
        dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
        noise = _random.generator().standard_normal(x.shape, dtype=dtype)
        return (x + noise * self.std).astype(x.dtype, copy=False)

    def __repr__(self) -> str:
        return f"GaussianNoise(std={self.std})"


class ColorJitter:
    """Random per-sample brightness and contrast, as torchvision's ColorJitter does them.

    Factors are drawn uniformly from ``[max(0, 1 - b), 1 + b]``. Brightness scales the image;
    contrast blends it with the mean of its grayscale version (ITU-R 601 weights for 3 channels,
    the channel mean otherwise). Like torchvision, results are clipped to [0, 1], so apply this
    before ``Normalize``. Brightness is applied before contrast.
    """

    def __init__(self, brightness: float = 0, contrast: float = 0) -> None:
        for what, v in (("brightness", brightness), ("contrast", contrast)):
            if not _is_number(v) or not np.isfinite(v) or v < 0:
                raise ValueError(f"ColorJitter: {what} must be a finite number >= 0, got {v!r}")
        self.brightness = float(brightness)
        self.contrast = float(contrast)

    @staticmethod
    def _factors(amount: float, n: int) -> np.ndarray:
        return _random.generator().uniform(max(0.0, 1.0 - amount), 1.0 + amount, size=n)

    @staticmethod
    def _gray_mean(x: np.ndarray) -> np.ndarray:
        """Per-sample mean intensity, shape (N, 1, 1, 1)."""
        if x.shape[1] == 3:
            weights = np.array([0.299, 0.587, 0.114], dtype=x.dtype).reshape(1, 3, 1, 1)
            gray = (x * weights).sum(axis=1, keepdims=True)
        else:
            gray = x.mean(axis=1, keepdims=True)
        return gray.mean(axis=(2, 3), keepdims=True)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = _check_batch(x, "ColorJitter")
        n = x.shape[0]
        out = x
        if self.brightness > 0:
            b = self._factors(self.brightness, n).astype(x.dtype).reshape(n, 1, 1, 1)
            out = np.clip(out * b, 0.0, 1.0)
        if self.contrast > 0:
            f = self._factors(self.contrast, n).astype(x.dtype).reshape(n, 1, 1, 1)
            out = np.clip(f * out + (1 - f) * self._gray_mean(out), 0.0, 1.0)
        return out.astype(x.dtype, copy=False) if out is not x else x.copy()

    def __repr__(self) -> str:
        return f"ColorJitter(brightness={self.brightness}, contrast={self.contrast})"
