"""Regenerate the figures in docs/ (used by README.md).

    PYTHONPATH=. python docs/make_figures.py          # about 30 s on 2 CPU cores; needs matplotlib

Trains LeNet-5 on the MNIST sample exactly as `python -m pycnn train` does (the CLI's defaults:
12 epochs, batch 32, SGD lr 0.03 with momentum 0.9 and a cosine schedule, seed 0), with the
1,000 test digits as validation data so that the learning curves have a second line, then writes

    docs/lenet_filters.png     the 6 learned 5x5 kernels of the first convolution (plot_filters)
    docs/saliency.png          8 test digits above their saliency maps (pc.viz.saliency)
    docs/learning_curves.png   loss and accuracy per epoch (plot_history)
    docs/confusion_matrix.png  the test digits' confusion matrix (plot_confusion_matrix)
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import pycnn as pc
from pycnn import nn, optim
from pycnn.cli import DEFAULTS

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Regenerate the figures in docs/.")
    p.add_argument("--out", default=HERE, help="output folder (default: docs/)")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    p.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pc.set_num_threads(2)
    pc.manual_seed(DEFAULTS["seed"])
    x_train, y_train, x_test, y_test = pc.data.datasets.load_mnist_sample()
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    model = pc.models.lenet5()
    opt = optim.SGD(model.parameters(), lr=DEFAULTS["lr"], momentum=DEFAULTS["momentum"])
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    trainer = pc.Trainer(model, opt, nn.CrossEntropyLoss(), scheduler=sched)
    history = trainer.fit(x_train, y_train, batch_size=DEFAULTS["batch_size"], epochs=args.epochs,
                          validation_data=(x_test, y_test), verbose=2)
    logits = trainer.predict(x_test).numpy()
    preds = logits.argmax(axis=1)
    acc = float(np.mean(preds == y_test))
    print(f"test accuracy: {acc:.4f}")
    os.makedirs(args.out, exist_ok=True)
    written = []

    # ---- filters of the first convolution
    fig, ax = plt.subplots(figsize=(6.0, 1.9))
    pc.viz.plot_filters(model[0], ncols=6, ax=ax,
                        title="LeNet-5 conv1: the 6 learned 5×5 filters (bright = large weight)")
    written.append(os.path.join(args.out, "lenet_filters.png"))
    fig.savefig(written[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    # ---- saliency: the first test digit of six classes, and the first two mistakes
    wrong = np.flatnonzero(preds != y_test)[:2]
    classes = [d for d in range(10) if d not in set(y_test[wrong].tolist())][:8 - len(wrong)]
    idx = np.array([np.flatnonzero((y_test == d) & (preds == y_test))[0] for d in classes] + list(wrong))
    x = x_test[idx]
    maps = pc.viz.saliency(model, x, preds[idx])       # explain the class the model chose
    n = len(idx)
    fig, axes = plt.subplots(2, n, figsize=(1.35 * n + 0.9, 3.5), squeeze=False)
    for i in range(n):
        ok = preds[idx[i]] == y_test[idx[i]]
        axes[0, i].imshow(x[i, 0], cmap="gray_r", vmin=0, vmax=1)
        axes[0, i].set_title(f"label {y_test[idx[i]]}\npred {preds[idx[i]]}" + ("" if ok else " ✗"),
                             fontsize=9, color="black" if ok else "crimson")
        axes[1, i].imshow(maps[i] / max(float(maps[i].max()), 1e-12), cmap="inferno", vmin=0, vmax=1)
        for a in axes[:, i]:
            a.set_xticks([])
            a.set_yticks([])
    axes[0, 0].set_ylabel("test digit", fontsize=10)
    axes[1, 0].set_ylabel("saliency", fontsize=10)
    fig.suptitle("Saliency maps of LeNet-5: |∂ logit(predicted class) / ∂ pixel| (bright = influential)",
                 fontsize=10)
    fig.tight_layout(h_pad=0.6)
    written.append(os.path.join(args.out, "saliency.png"))
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    # ---- learning curves
    fig = pc.viz.plot_history(history)
    for a in fig.axes:
        a.set_title(f"{a.get_ylabel()} per epoch (val = the 1,000 test digits)", fontsize=10)
    fig.tight_layout()
    written.append(os.path.join(args.out, "learning_curves.png"))
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    # ---- confusion matrix
    cm = pc.metrics.confusion_matrix(preds, y_test, num_classes=10)
    fig = pc.viz.plot_confusion_matrix(cm, class_names=[str(d) for d in range(10)])
    fig.axes[0].set_title(f"LeNet-5 on the 1,000 test digits (accuracy {acc:.1%})", fontsize=10)
    fig.tight_layout()
    written.append(os.path.join(args.out, "confusion_matrix.png"))
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
