"""What does LeNet-5 look at? Saliency maps and first-layer filters.

    python examples/saliency.py                  # trains LeNet-5 (about 30 s), writes the figures
    python examples/saliency.py --weights runs/lenet_mnist/lenet5.safetensors   # reuse trained weights
    python examples/saliency.py --epochs 1 --limit 256 --out /tmp/sal

A saliency map (Simonyan, Vedaldi & Zisserman, 2014) is the gradient of one class score (the
logit, before softmax) with respect to the input pixels, `|d logit_target / d x|`: the pixels
whose change would move that score most. pycnn computes it with one forward pass and one
`model.backward` of a one-hot gradient: `pc.viz.saliency(model, x, target)`.

Files written to --out: saliency.png (test digits above their saliency maps for the predicted
class), filters.png (the 6 learned 5x5 kernels of the first convolution), saliency.npy (the maps),
and lenet5.safetensors when the model was trained here. The figures need matplotlib
(`pip install pycnn[viz]`); without it only the .npy file is written.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import pycnn as pc
from pycnn import nn, optim


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=positive_int, default=12, help="training epochs (default: %(default)s)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="use only the first N training digits")
    p.add_argument("--out", default=os.path.join("runs", "saliency"), help="output folder (default: %(default)s)")
    p.add_argument("--weights", default=None, help="a LeNet-5 weights file to load instead of training")
    p.add_argument("--num", type=positive_int, default=8, help="how many test digits to explain (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: pycnn's default)")
    return p.parse_args(argv)


def near_stroke_fraction(images: np.ndarray, maps: np.ndarray, radius: int = 2):
    """Per image, the share of the saliency that falls on the digit's stroke or within `radius`
    pixels of it (the stroke: pixels brighter than 0.3), and the share of the image that region
    covers (what a map spread evenly over the image would score)."""
    mask = images[:, 0] > 0.3
    grown = mask.copy()
    h, w = mask.shape[1:]
    padded = np.pad(mask, ((0, 0), (radius, radius), (radius, radius)))
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            grown |= padded[:, dy:dy + h, dx:dx + w]
    total = maps.reshape(len(maps), -1).sum(axis=1)
    inside = (maps * grown).reshape(len(maps), -1).sum(axis=1)
    return inside / np.maximum(total, 1e-12), grown.reshape(len(maps), -1).mean(axis=1)


def plot_saliency(images: np.ndarray, maps: np.ndarray, labels, preds, path: str) -> None:
    """Digits in the top row, their saliency maps (each scaled to its own maximum) below."""
    import matplotlib

    if not os.environ.get("DISPLAY") and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.35 * n + 0.9, 3.4), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(images[i, 0], cmap="gray_r", vmin=0, vmax=1)
        axes[0, i].set_title(f"label {labels[i]}\npred {preds[i]}", fontsize=9,
                             color="black" if labels[i] == preds[i] else "crimson")
        axes[1, i].imshow(maps[i] / max(float(maps[i].max()), 1e-12), cmap="inferno", vmin=0, vmax=1)
        for a in axes[:, i]:
            a.set_xticks([])
            a.set_yticks([])
    axes[0, 0].set_ylabel("input", fontsize=10)
    axes[1, 0].set_ylabel("saliency", fontsize=10)
    fig.suptitle("Saliency |∂ logit(pred) / ∂ pixel| of LeNet-5", fontsize=11)
    fig.tight_layout(h_pad=0.6)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        pc.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    pc.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = pc.data.datasets.load_mnist_sample()
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]

    model = pc.models.lenet5()
    if args.weights:
        model.load_state_dict(pc.load(args.weights))
        print(f"loaded {args.weights}")
    else:
        opt = optim.SGD(model.parameters(), lr=0.03, momentum=0.9)
        trainer = pc.Trainer(model, opt, nn.CrossEntropyLoss(),
                             scheduler=optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs))
        trainer.fit(x_train, y_train, batch_size=32, epochs=args.epochs, verbose=0)
        path = os.path.join(args.out, "lenet5.safetensors")
        pc.save(model, path)
        print(f"trained LeNet-5 for {args.epochs} epoch(s) on {len(x_train)} digits, saved to {path}")
    model.eval()
    logits = model(pc.tensor(x_test))
    print(f"test accuracy: {pc.metrics.accuracy(logits, y_test):.4f}")

    # one test digit of each class 0, 1, 2, ... (the first one in the test set)
    idx = np.array([np.flatnonzero(y_test == d)[0] for d in range(min(args.num, 10))])
    x, labels = x_test[idx], y_test[idx]
    preds = np.argmax(logits.numpy()[idx], axis=1)
    maps = pc.viz.saliency(model, x, preds)          # (n, 28, 28): explain the predicted class
    np.save(os.path.join(args.out, "saliency.npy"), maps)
    near, area = near_stroke_fraction(x, maps)
    for i in range(len(idx)):
        print(f"test digit #{idx[i]}: label {labels[i]}, predicted {preds[i]}, {100 * near[i]:.0f}% of the "
              f"saliency on or next to the stroke ({100 * area[i]:.0f}% of the image)")

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed (pip install pycnn[viz]): figures skipped")
        return 0
    path = os.path.join(args.out, "saliency.png")
    plot_saliency(x, maps, labels, preds, path)
    print(f"wrote {path}")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 1.9))
    pc.viz.plot_filters(model[0], ncols=6, ax=ax, title="LeNet-5 conv1: the 6 learned 5×5 filters "
                                                       "(bright = large weight)")
    path = os.path.join(args.out, "filters.png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
