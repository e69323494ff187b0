"""Transfer learning with LeNet-5: learn digits 0-6, then reuse what was learned for digits 7-9.

    python examples/transfer_learning.py                      # about a minute on 2 CPU cores
    python examples/transfer_learning.py --weights runs/transfer_learning/lenet5_digits0-6.safetensors
    python examples/transfer_learning.py --epochs 1 --limit 256 --transfer-epochs 2 --out /tmp/tl

The new task (7, 8, 9) gets only a few labelled digits per class (--shots, default 20), which is
where transfer pays off. Stages, each printing its test accuracy:

  1. source model: LeNet-5 trained on digits 0-6 (or loaded with --weights);
  2. feature extraction: the source model is frozen (`model.freeze()`), its last layer is replaced
     by a new 3-class head (`model[-1] = nn.Linear(84, 3)`, trainable), the frozen layers turn
     every digit into an 84-number feature vector once (`features = model[:-1](x)`) and only the
     head is trained on those features;
  3. fine-tuning: everything unfrozen, SGD with two parameter groups: the pretrained layers at
     lr/10 (small steps keep what they learned), the head at lr;
  4. baseline: the same LeNet-5 trained from scratch on the same few digits for the same number
     of epochs.

With the defaults (seed 0) the source model reaches about 98.7% on digits 0-6; on digits 7-9
feature extraction gives about 89%, fine-tuning about 92% and training from scratch about 50%
(40-80% depending on the seed). Transfer wins on a budget: given ten times more epochs the
from-scratch model catches up on this easy three-class task (about 93%), so the gain here is
reaching that accuracy in a few epochs from 60 digits.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import pycnn as pc
from pycnn import nn, optim

SOURCE_DIGITS = (0, 1, 2, 3, 4, 5, 6)
TARGET_DIGITS = (7, 8, 9)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs of training on digits 0-6 (default: %(default)s)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="use only the first N training digits (before splitting by class)")
    p.add_argument("--out", default=os.path.join("runs", "transfer_learning"),
                   help="output folder (default: %(default)s)")
    p.add_argument("--weights", default=None,
                   help="a LeNet-5 weights file to start from instead of training on digits 0-6")
    p.add_argument("--shots", type=positive_int, default=20,
                   help="labelled training digits per new class 7, 8, 9 (default: %(default)s)")
    p.add_argument("--transfer-epochs", type=positive_int, default=10,
                   help="epochs of each transfer stage and of the baseline (default: %(default)s)")
    p.add_argument("--lr", type=float, default=0.03, help="learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: pycnn's default)")
    return p.parse_args(argv)


def subset(x: np.ndarray, y: np.ndarray, digits, shots=None):
    """The samples of `digits`, relabelled 0..len(digits)-1; at most `shots` per digit."""
    keep = []
    for d in digits:
        idx = np.flatnonzero(y == d)
        keep.append(idx if shots is None else idx[:shots])
    keep = np.sort(np.concatenate(keep))
    relabel = np.full(10, -1, dtype=np.int64)
    relabel[list(digits)] = np.arange(len(digits))
    return x[keep], relabel[y[keep]]


def fit(model, params, x, y, epochs, lr, batch_size=32) -> None:
    """Train `params` (a list of Parameters or of param-group dicts) of `model` with SGD + momentum."""
    trainer = pc.Trainer(model, optim.SGD(params, lr=lr, momentum=0.9), nn.CrossEntropyLoss())
    trainer.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)


def accuracy(model, x, y) -> float:
    """Test accuracy: one forward pass in eval mode."""
    model.eval()
    logits = model(pc.tensor(x))
    model.train()
    return pc.metrics.accuracy(logits, y)


def n_trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        pc.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    pc.manual_seed(args.seed)

    x_train, y_train, x_test, y_test = pc.data.datasets.load_mnist_sample()
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    xs_train, ys_train = subset(x_train, y_train, SOURCE_DIGITS)
    xs_test, ys_test = subset(x_test, y_test, SOURCE_DIGITS)
    xt_train, yt_train = subset(x_train, y_train, TARGET_DIGITS, shots=args.shots)
    xt_test, yt_test = subset(x_test, y_test, TARGET_DIGITS)
    print(f"source task: digits 0-6, {len(xs_train)} training / {len(xs_test)} test digits")
    print(f"target task: digits 7-9, {len(xt_train)} training digits ({args.shots} per class at most), "
          f"{len(xt_test)} test digits")

    # ---- 1. the source model -----------------------------------------------------------------
    if args.weights:
        state = pc.load(args.weights)
        if "11.weight" not in state:
            raise SystemExit(f"{args.weights}: not a LeNet-5 weights file (no '11.weight')")
        model = pc.models.lenet5(num_classes=int(state["11.weight"].shape[0]))
        model.load_state_dict(state)
        print(f"[1] source model: loaded {args.weights} ({model[-1].out_features} classes)")
    else:
        model = pc.models.lenet5(num_classes=len(SOURCE_DIGITS))
        opt = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
        trainer = pc.Trainer(model, opt, nn.CrossEntropyLoss(),
                             scheduler=optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs))
        trainer.fit(xs_train, ys_train, batch_size=32, epochs=args.epochs, verbose=0)
        path = os.path.join(args.out, "lenet5_digits0-6.safetensors")
        pc.save(model, path)
        print(f"[1] source model: trained {args.epochs} epoch(s) on digits 0-6, saved to {path}")
    if model[-1].out_features == len(SOURCE_DIGITS):
        print(f"[1] source model, digits 0-6: test accuracy {accuracy(model, xs_test, ys_test):.4f}")

    # ---- 2. feature extraction: frozen body, new head ----------------------------------------
    model.freeze()                           # requires_grad=False everywhere
    model[-1] = nn.Linear(84, len(TARGET_DIGITS))  # a new head: fresh, trainable parameters
    print(f"[2] frozen body + new head: {n_trainable(model):,} of "
          f"{sum(p.numel() for p in model.parameters()):,} parameters trainable")
    body = model[:-1]                        # a Sequential sharing the layers (conv ... ReLU after fc2)
    body.eval()
    features = body(pc.tensor(xt_train)).numpy()  # (N, 84), computed once
    print(f"[2] features = model[:-1](x): {tuple(features.shape)}")
    fit(model[-1], model[-1].parameters(), features, yt_train, args.transfer_epochs, args.lr)
    acc_fx = accuracy(model, xt_test, yt_test)
    print(f"[2] feature extraction, digits 7-9: test accuracy {acc_fx:.4f}")

    # ---- 3. fine-tuning: everything trainable, earlier layers at lr/10 -----------------------
    model.unfreeze()
    groups = [{"params": model[:-1].parameters(), "lr": args.lr / 10},  # the pretrained layers
              {"params": model[-1].parameters(), "lr": args.lr}]        # the new head
    fit(model, groups, xt_train, yt_train, args.transfer_epochs, args.lr)
    acc_ft = accuracy(model, xt_test, yt_test)
    print(f"[3] fine-tuning (earlier layers lr={args.lr / 10:g}, head lr={args.lr:g}), digits 7-9: "
          f"test accuracy {acc_ft:.4f}")
    path = os.path.join(args.out, "lenet5_digits7-9.safetensors")
    pc.save(model, path)

    # ---- 4. baseline: from scratch on the same few digits ------------------------------------
    pc.manual_seed(args.seed)
    scratch = pc.models.lenet5(num_classes=len(TARGET_DIGITS))
    fit(scratch, scratch.parameters(), xt_train, yt_train, args.transfer_epochs, args.lr)
    acc_scratch = accuracy(scratch, xt_test, yt_test)
    print(f"[4] from scratch on the same {len(xt_train)} digits, digits 7-9: test accuracy {acc_scratch:.4f}")

    print(f"summary (digits 7-9, {len(xt_train)} training digits): feature extraction {acc_fx:.4f}, "
          f"fine-tuning {acc_ft:.4f}, from scratch {acc_scratch:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
