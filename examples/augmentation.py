"""Data augmentation: a DataLoader with random transforms feeding `Trainer.fit`.

    python examples/augmentation.py                 # two LeNet-5 runs, about a minute on 2 CPU cores
    python examples/augmentation.py --epochs 1 --limit 256 --out /tmp/aug

Every training batch is shifted (`RandomCrop(28, padding=2)`: pad by 2 pixels, crop 28x28 at a
random place), rotated (`RandomRotation(10)`: up to 10 degrees either way) and made noisy
(`GaussianNoise(0.05)`), a fresh random draw per digit and per epoch, so the network never sees
the same image twice. The transforms work on whole NumPy batches inside the DataLoader:

    train = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True,
                       transform=Compose([RandomCrop(28, padding=2), RandomRotation(10), GaussianNoise(0.05)]))
    trainer.fit(train, epochs=..., validation_data=(x_test, y_test))

The script trains LeNet-5 twice, with and without augmentation, and tests both on the clean test
digits and on a harder copy of them, shifted by up to 3 pixels and rotated by up to 20 degrees
(the same perturbed copy for both models). Augmentation mostly pays off on the harder copy.
Files written to --out: lenet5_augmented.safetensors, and augmented_batch.png (what the network
sees) when matplotlib is installed.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import pycnn as pc
from pycnn import nn, optim
from pycnn.data import DataLoader, TensorDataset
from pycnn.data.transforms import Compose, GaussianNoise, RandomCrop, RandomRotation


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=positive_int, default=12, help="epochs of each run (default: %(default)s)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="use only the first N training digits")
    p.add_argument("--out", default=os.path.join("runs", "augmentation"), help="output folder (default: %(default)s)")
    p.add_argument("--no-baseline", action="store_true", help="skip the run without augmentation")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: pycnn's default)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p.parse_args(argv)


def train(loader, x_val, y_val, epochs: int, verbose: int):
    model = pc.models.lenet5()
    opt = optim.SGD(model.parameters(), lr=0.03, momentum=0.9)
    trainer = pc.Trainer(model, opt, nn.CrossEntropyLoss(),
                         scheduler=optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs))
    trainer.fit(loader, epochs=epochs, validation_data=(x_val, y_val), verbose=verbose)
    return model, trainer


def save_batch_figure(x: np.ndarray, path: str) -> None:
    import matplotlib

    if not os.environ.get("DISPLAY") and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(x), 16)
    fig, axes = plt.subplots(2, 8, figsize=(8.5, 2.6), squeeze=False)
    for i, a in enumerate(axes.ravel()):
        a.set_axis_off()
        if i < n:
            a.imshow(x[i, 0], cmap="gray_r", vmin=0, vmax=1)
    fig.suptitle("An augmented training batch (random crop with padding 2, rotation ±10°, noise σ=0.05)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        pc.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    verbose = 0 if args.quiet else 2
    x_train, y_train, x_test, y_test = pc.data.datasets.load_mnist_sample()
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]

    # A fixed, harder copy of the test digits: shifted by up to 3 px and rotated by up to 20 degrees.
    pc.manual_seed(12345)
    x_hard = Compose([RandomCrop(28, padding=3), RandomRotation(20)])(x_test)

    augment = Compose([RandomCrop(28, padding=2), RandomRotation(10), GaussianNoise(0.05)])
    pc.manual_seed(args.seed)
    aug_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=32, shuffle=True, transform=augment)
    print(f"training LeNet-5 on {len(x_train)} digits with augmentation: {augment.transforms}")
    model, trainer = train(aug_loader, x_test, y_test, args.epochs, verbose)
    results = {"with augmentation": (trainer.evaluate(x_test, y_test)["accuracy"],
                                     trainer.evaluate(x_hard, y_test)["accuracy"])}
    path = os.path.join(args.out, "lenet5_augmented.safetensors")
    pc.save(model, path)
    print(f"saved weights to {path}")

    if not args.no_baseline:
        pc.manual_seed(args.seed)
        plain_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=32, shuffle=True)
        print(f"training LeNet-5 on {len(x_train)} digits without augmentation")
        _, plain = train(plain_loader, x_test, y_test, args.epochs, verbose)
        results["without augmentation"] = (plain.evaluate(x_test, y_test)["accuracy"],
                                           plain.evaluate(x_hard, y_test)["accuracy"])

    print(f"{'test accuracy':<22}{'clean':>8}{'shifted+rotated':>18}")
    for name, (clean, hard) in results.items():
        print(f"{name:<22}{clean:>8.4f}{hard:>18.4f}")

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed (pip install pycnn[viz]): figure skipped")
        return 0
    pc.manual_seed(args.seed)
    batch = next(iter(DataLoader(TensorDataset(x_train, y_train), batch_size=16, transform=augment)))[0]
    path = os.path.join(args.out, "augmented_batch.png")
    save_batch_figure(batch, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
