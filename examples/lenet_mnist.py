"""Train LeNet-5 on the MNIST sample shipped with pycnn, the complete Keras-style workflow.

    python examples/lenet_mnist.py                    # 15 epochs, about 98% test accuracy
    python examples/lenet_mnist.py --epochs 1 --limit 256 --out /tmp/lenet   # a quick smoke run

What it shows:
  * a validation split held out of the training digits (the test digits are touched only once,
    at the end),
  * `Trainer.fit` with a learning-rate scheduler (cosine annealing), `EarlyStopping` on the
    validation loss (restoring the best weights) and `ModelCheckpoint` keeping the best epoch,
  * `evaluate` on the test digits, `pc.save` to a safetensors file, `pc.load` into a fresh
    LeNet-5 that predicts exactly the same,
  * the confusion matrix of the test digits (rows: true digit, columns: predicted digit).

Files written to --out: lenet5.safetensors (final weights), best.safetensors (the checkpoint of
the best validation epoch, with the training state for `fit(..., resume_from=...)`).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import pycnn as pc
from pycnn import nn, optim
from pycnn.train.callbacks import EarlyStopping, ModelCheckpoint


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=positive_int, default=15, help="maximum number of epochs (default: %(default)s)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="use only the first N training digits")
    p.add_argument("--out", default=os.path.join("runs", "lenet_mnist"), help="output folder (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="mini-batch size (default: %(default)s)")
    p.add_argument("--lr", type=float, default=0.03, help="initial learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: pycnn's default)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p.parse_args(argv)


def print_confusion_matrix(cm: np.ndarray) -> None:
    k = cm.shape[0]
    width = max(4, len(str(cm.max())) + 1)
    print("confusion matrix (rows: true digit, columns: predicted digit):")
    print("true\\pred" + "".join(f"{j:>{width}}" for j in range(k)))
    for i in range(k):
        print(f"{i:>9}" + "".join(f"{v:>{width}}" for v in cm[i]))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        pc.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    pc.manual_seed(args.seed)

    # --- data: 4,000 training and 1,000 test digits; 1 in 8 training digits held out for validation
    x_train, y_train, x_test, y_test = pc.data.datasets.load_mnist_sample()
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    n_val = max(1, len(x_train) // 8)
    x_val, y_val = x_train[-n_val:], y_train[-n_val:]
    x_train, y_train = x_train[:-n_val], y_train[:-n_val]
    print(f"data: {len(x_train)} training, {len(x_val)} validation, {len(x_test)} test digits")

    # --- model, optimiser, schedule, callbacks
    model = pc.models.lenet5()
    opt = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    trainer = pc.Trainer(model, opt, nn.CrossEntropyLoss(), metrics=["accuracy"], scheduler=sched)
    best_path = os.path.join(args.out, "best.safetensors")
    callbacks = [
        EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True, verbose=1),
        ModelCheckpoint(best_path, monitor="val_loss", save_best_only=True),
    ]

    t0 = time.perf_counter()
    history = trainer.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                          validation_data=(x_val, y_val), callbacks=callbacks, verbose=0 if args.quiet else 2)
    h = history.history
    best = int(np.argmin(h["val_loss"]))
    print(f"trained {len(history)} epoch(s) in {time.perf_counter() - t0:.1f} s; best epoch {best + 1}: "
          f"val_loss {h['val_loss'][best]:.4f}, val_accuracy {h['val_accuracy'][best]:.4f}")

    # --- test once, save, reload into a fresh model
    result = trainer.evaluate(x_test, y_test)
    n_ok = round(result["accuracy"] * len(x_test))
    print(f"test accuracy: {result['accuracy']:.4f} ({n_ok}/{len(x_test)}), test loss: {result['loss']:.4f}")

    weights = os.path.join(args.out, "lenet5.safetensors")
    pc.save(model, weights)
    print(f"saved weights to {weights}")

    fresh = pc.models.lenet5()
    fresh.load_state_dict(pc.load(weights))
    fresh.eval()                                   # inference mode (matters for dropout / batch norm)
    model.eval()
    logits = model(pc.tensor(x_test))
    logits_fresh = fresh(pc.tensor(x_test))
    same = np.array_equal(logits.numpy(), logits_fresh.numpy())
    acc_fresh = pc.metrics.accuracy(logits_fresh, y_test)
    print(f"reloaded model: test accuracy {acc_fresh:.4f}, same outputs as the trained model: {same}")

    cm = pc.metrics.confusion_matrix(logits_fresh, y_test, num_classes=10)
    print_confusion_matrix(cm)
    worst = max(((i, j) for i in range(10) for j in range(10) if i != j), key=lambda ij: cm[ij])
    if cm[worst] > 0:
        print(f"most frequent mistake: {cm[worst]} x a {worst[0]} read as a {worst[1]}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
