"""The `pycnn` command line (also `python -m pycnn`).

    pycnn train [--epochs 12] [--batch-size 32] [--lr 0.03] [--momentum 0.9] [--seed 0]
                [--device cpu|cuda[:N]] [--threads N] [--save PATH] [--plot PATH] [--report PATH] [--quiet]
        Trains LeNet-5 on the MNIST sample shipped with pycnn (4,000 training / 1,000 test
        digits) with SGD + momentum and a cosine learning-rate schedule, then prints the test
        accuracy and the time taken. The defaults reach about 98% test accuracy.
    pycnn info
        Prints the build: version, CUDA (and why it is unavailable), BLAS, OpenMP, threads.
    pycnn bench [--quick] [--threads N] [--json PATH] [--cases a,b] [--no-torch] [--list] ...
        The CPU benchmark: pycnn vs NumPy vs PyTorch (when installed), checked for agreement
        first (pycnn.bench; `pycnn bench --help` lists its options).

Exit status: 0 on success, 1 when training fails (e.g. the loss diverges), 2 for bad options,
130 when interrupted with Ctrl-C (the results so far are still printed).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Any, Dict, Optional, Sequence

# Defaults measured on the shipped sample (2-core CPU): 0.977-0.985 test accuracy over seeds,
# 15-25 s of training.
DEFAULTS = {"epochs": 12, "batch_size": 32, "lr": 0.03, "momentum": 0.9, "seed": 0}


def _bounded(name: str, kind: type, minimum: int, strict: bool = False):
    """An argparse type: a whole number (kind int) or a finite number (kind float), >= minimum
    (> minimum when strict); the error names the option."""
    what = "a whole number" if kind is int else "a number"

    def parse(s: str) -> Any:
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {what}, got {s!r}") from None
        if not math.isfinite(v) or (v <= minimum if strict else v < minimum):
            shown = v if kind is int else s
            raise argparse.ArgumentTypeError(f"{name} must be {'>' if strict else '>='} {minimum}, got {shown}")
        return v
    return parse


def _device(s: str) -> str:
    s = s.strip().lower()
    if s == "cpu":
        return "cpu"
    if s == "cuda" or (s.startswith("cuda:") and s[5:].isdigit()):
        return s if ":" in s else "cuda:0"
    raise argparse.ArgumentTypeError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {s!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pycnn", description="pycnn: convolutional neural networks with a C++/CUDA core.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="{train,info,bench}")
    t = sub.add_parser("train", help="train LeNet-5 on the bundled MNIST sample",
                       description="Train LeNet-5 on the MNIST sample shipped with pycnn (4,000 training / "
                                   "1,000 test digits) with SGD + momentum and a cosine learning-rate schedule, "
                                   "then print the test accuracy and the time taken.")
    t.add_argument("--epochs", type=_bounded("--epochs", int, 1), default=DEFAULTS["epochs"],
                   help="passes over the training set (default: %(default)s)")
    t.add_argument("--batch-size", type=_bounded("--batch-size", int, 1), default=DEFAULTS["batch_size"],
                   help="mini-batch size (default: %(default)s)")
    t.add_argument("--lr", type=_bounded("--lr", float, 0, strict=True), default=DEFAULTS["lr"],
                   help="initial learning rate, annealed to 0 along a cosine (default: %(default)s)")
    t.add_argument("--momentum", type=_bounded("--momentum", float, 0), default=DEFAULTS["momentum"],
                   help="SGD momentum (default: %(default)s)")
    t.add_argument("--seed", type=_bounded("--seed", int, 0), default=DEFAULTS["seed"],
                   help="random seed for initialisation and shuffling (default: %(default)s)")
    t.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    t.add_argument("--threads", type=_bounded("--threads", int, 1), default=None,
                   help="CPU threads for OpenMP and BLAS (default: pycnn's default)")
    t.add_argument("--save", metavar="PATH", default=None, help="save the trained weights (safetensors) to PATH")
    t.add_argument("--plot", metavar="PATH", default=None,
                   help="save the learning curves (loss and accuracy per epoch) as an image; needs matplotlib")
    t.add_argument("--report", metavar="PATH", default=None,
                   help="write an HTML page explaining the trained model on a test digit (pc.viz.report); "
                        "needs matplotlib")
    t.add_argument("--quiet", "-q", action="store_true", help="no progress bars; print only the results")
    t.add_argument("--limit", type=_bounded("--limit", int, 1), default=None, help=argparse.SUPPRESS)
    parser.set_defaults(train_parser=t)
    sub.add_parser("info", help="print build information (version, CUDA, BLAS, OpenMP, threads)")
    # listed for --help; main() hands `bench ...` to pycnn.bench's own parser before this one runs
    sub.add_parser("bench", add_help=False, help="CPU benchmark: pycnn vs NumPy vs PyTorch (--quick: short)")
    return parser


def train_lenet(epochs: int = DEFAULTS["epochs"], batch_size: int = DEFAULTS["batch_size"],
                lr: float = DEFAULTS["lr"], momentum: float = DEFAULTS["momentum"], seed: int = DEFAULTS["seed"],
                device: str = "cpu", limit: Optional[int] = None, verbose: int = 1,
                on_start: Any = None) -> Dict[str, Any]:
    """What `pycnn train` does: returns model, history, test accuracy / loss and timings.
    `on_start(model)` is called once the model is built, before training."""
    import pycnn as pc
    from pycnn import nn, optim
    from pycnn.data.datasets import load_mnist_sample
    from pycnn.models import lenet5
    from pycnn.optim.lr_scheduler import CosineAnnealingLR
    from pycnn.train import Trainer

    t_start = time.perf_counter()
    pc.manual_seed(seed)
    x_train, y_train, x_test, y_test = load_mnist_sample()
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    model = lenet5()
    opt = optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    sched = CosineAnnealingLR(opt, T_max=epochs)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), device=device, scheduler=sched)
    if on_start is not None:
        on_start(model)
    t_fit = time.perf_counter()
    history = trainer.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=verbose)
    fit_s = time.perf_counter() - t_fit
    result = trainer.evaluate(x_test, y_test)
    total_s = time.perf_counter() - t_start
    return {
        "model": model, "history": history, "trainer": trainer,
        "test_accuracy": result["accuracy"], "test_loss": result["loss"],
        "n_train": int(x_train.shape[0]), "n_test": int(x_test.shape[0]),
        "fit_seconds": fit_s, "total_seconds": total_s,
    }


def _cmd_info() -> int:
    import pycnn as pc

    info = pc.build_info()
    info.update(pc.distributed.status())  # mpi, nccl: usable, or what to install
    width = max(len(k) for k in info)
    for k, v in info.items():
        print(f"{k:<{width}}  {v}")
    return 0


def _require_folder(parser: argparse.ArgumentParser, option: str, path: str) -> None:
    """Exits with a usage error unless the folder that `path` is to be written into exists."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        parser.error(f"{option} {path}: folder {folder!r} does not exist")


def _cmd_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import pycnn as pc

    world = 1
    if pc.distributed.launched_with_several_processes():  # `mpiexec -n N pycnn train`: data-parallel
        pc.distributed.init_process_group()
        world = pc.distributed.get_world_size()
        if args.device != "cpu" and pc.cuda.is_available():
            args.device = pc.distributed.get_device()  # the GPU of this rank's rank on its node
        if pc.distributed.get_rank() != 0:  # one copy of the output and of the files: rank 0's
            args.save = args.plot = args.report = None
            sys.stdout = open(os.devnull, "w")
    if args.device != "cpu" and not pc.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available ({pc.cuda.unavailable_reason()})")
    if args.device != "cpu" and int(args.device.split(":")[1]) >= pc.cuda.device_count():
        parser.error(f"--device {args.device}: only {pc.cuda.device_count()} CUDA device(s)")
    if args.save is not None:
        _require_folder(parser, "--save", args.save)
        try:
            from pycnn import io as _io  # noqa: F401
        except ImportError as e:  # pragma: no cover - io ships with pycnn
            parser.error(f"--save: saving needs pycnn.io, which failed to import ({e})")
    if args.plot is not None:
        _require_folder(parser, "--plot", args.plot)
        try:
            import matplotlib
            from matplotlib.backend_bases import FigureCanvasBase
        except ImportError:
            parser.error("--plot needs matplotlib: pip install pycnn[viz]")
        # checked before training; matplotlib would add its default extension to a name without one
        ext = os.path.splitext(args.plot)[1][1:].lower()
        if not ext:
            args.plot += "." + matplotlib.rcParams["savefig.format"]
        elif ext not in FigureCanvasBase.get_supported_filetypes():
            parser.error(f"--plot {args.plot}: unknown image type '.{ext}'; use one of "
                         + ", ".join("." + f for f in sorted(FigureCanvasBase.get_supported_filetypes())))
    if args.report is not None:
        _require_folder(parser, "--report", args.report)
        if os.path.splitext(args.report)[1].lower() not in (".html", ".htm"):
            parser.error(f"--report {args.report}: the report is an HTML page; give a name ending in .html")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--report needs matplotlib: pip install pycnn[viz]")
    if args.threads is not None:
        pc.set_num_threads(args.threads)

    def header(model: Any) -> None:
        if args.quiet:
            return
        n_params = sum(p.numel() for p in model.parameters())
        print(f"pycnn {pc.__version__}: LeNet-5 ({n_params:,} parameters) on the MNIST sample, "
              f"device {args.device}, {pc.get_num_threads()} thread(s)")
        print(f"SGD lr={args.lr:g} (cosine schedule), momentum={args.momentum:g}, batch size {args.batch_size}, "
              f"{args.epochs} epoch(s), seed {args.seed}", flush=True)

    try:
        res = train_lenet(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                          seed=args.seed, device=args.device, limit=args.limit, verbose=0 if args.quiet else 1,
                          on_start=header)
    except FloatingPointError as e:
        print(f"pycnn train: error: {e}", file=sys.stderr)
        return 1
    history = res["history"]
    acc, n_test = res["test_accuracy"], res["n_test"]
    print(f"train: {len(history)} epoch(s) on {res['n_train']} digits"
          + (f" ({world} processes x batch {args.batch_size})" if world > 1 else "") + ", final loss "
          f"{history.last('loss', float('nan')):.4f}, accuracy {history.last('accuracy', float('nan')):.4f}")
    print(f"test accuracy: {acc:.4f} ({round(acc * n_test)}/{n_test}), test loss: {res['test_loss']:.4f}")
    print(f"time: {res['total_seconds']:.1f} s (training {res['fit_seconds']:.1f} s)", flush=True)
    if args.save is not None:
        from pycnn import io as pio

        pio.save(res["model"], args.save)
        print(f"saved weights to {args.save}")
    if args.plot is not None:
        fig = pc.viz.plot_history(history)
        fig.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"saved learning curves to {args.plot}")
    if args.report is not None:
        from pycnn.data.datasets import load_mnist_sample

        _, _, x_test, y_test = load_mnist_sample()
        pc.viz.report(res["model"], x_test[0], args.report, target=int(y_test[0]), dataset=(x_test, y_test),
                      history=history, title="LeNet-5 on one MNIST test digit")
        print(f"wrote the model's explainer page to {args.report}")
    return 130 if history.interrupted else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from pycnn.bench import run as bench

        return bench.main(argv[1:], prog="pycnn bench")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        import pycnn as pc

        print(f"pycnn {pc.__version__}")
        return 0
    if args.command == "info":
        return _cmd_info()
    if args.command == "train":
        return _cmd_train(args, args.train_parser)
    parser.print_usage(sys.stderr)
    print("pycnn: error: a command is required: train, info or bench (see pycnn --help)", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
