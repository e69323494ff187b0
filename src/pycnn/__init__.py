"""pycnn: convolutional neural networks with a C++/CUDA core."""
from __future__ import annotations

__version__ = "0.1.0"  # before the imports: runtime, io and viz read it when they load

from . import _core_loader  # noqa: F401  (loads the core and its BLAS first)
from . import _core
from ._random import manual_seed
from .tensor import (DType, Tensor, arange, as_tensor, cat, empty, float32, float64, from_dlpack, from_numpy, full,
                     full_like, int64, is_tensor, ones, ones_like, rand, randn, stack, tensor, zeros, zeros_like)
from .tensor import bool_ as bool  # noqa: A001  (pycnn.bool, as torch.bool)
from .runtime import backends, build_info, cuda, get_num_threads, set_num_threads
from . import functional, nn, testing, data, distributed, io, metrics, models, optim, train, viz  # noqa: E402
from .io import load, save  # noqa: E402
from .summary import ModelSummary, summary  # noqa: E402
from .train import History, Trainer, callbacks  # noqa: E402
from . import onnx  # noqa: E402  (pc.onnx.export; the onnx package is imported only when it runs)
from . import autograd  # noqa: E402
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa: E402
autograd.install()  # last: makes the ops defined above record on the tape

__all__ = [
    "bool", "cat", "stack", "arange", "zeros_like", "ones_like", "full_like",
    "DType", "Tensor", "as_tensor", "empty", "float32", "float64", "from_dlpack", "from_numpy", "full", "int64",
    "is_tensor", "ones", "rand", "randn", "tensor", "zeros", "manual_seed", "backends", "build_info", "cuda",
    "get_num_threads", "set_num_threads", "__version__", "functional", "nn", "testing", "data", "distributed",
    "io", "metrics", "models", "optim", "viz", "load", "save", "ModelSummary", "summary", "Trainer", "History",
    "callbacks", "onnx",
    "autograd", "no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled",
]
