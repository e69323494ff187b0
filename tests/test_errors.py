"""Every bad input of the contract's "Errors" section (docs/api.md), run in a subprocess.

A crash (segfault, abort, sanitizer report) in one case must fail that case's test, not kill
pytest, so the cases run in a child Python: one child runs all of them in order, printing one
JSON line per case (exception type and message, or the returned value); if it dies, the case it
was running is recorded as a crash and a new child continues with the next case.

Each case states the exact exception type and fragments its message must contain (the layer or
op and the expected and received shapes).  Cases with exc=None document a behaviour (NaN
propagation, empty batches) and assert it inside the child.  test_zz_error_table prints the
observed type and message of every case (visible with -rA or -s).

Known problems in other files are xfail(strict=True) with the location in the reason: the xfail
turns into a failure as soon as the problem is fixed, so the marker is then removed.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pytest

import pycnn

PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(pycnn.__file__)))
CHILD_TIMEOUT = 300


@dataclass
class Case:
    name: str
    code: str
    exc: Optional[str]                  # exception class name, or None: must not raise
    frags: Sequence[str] = ()           # substrings the message must contain
    alt_exc: Sequence[str] = ()         # other acceptable exception class names
    xfail: Optional[str] = None         # reason (a known bug elsewhere), strict
    any_frag: Sequence[str] = field(default_factory=tuple)  # at least one of these must appear


CONV = "Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1))"
BACKWARD_FIRST = "backward() called before forward()"
# A CPU-only build says how to get a CUDA build; a CUDA build on a machine without a usable GPU
# says why the device is unusable.
NO_CUDA = (["no usable CUDA device"] if pycnn.build_info()["cuda"]
           else ["no CUDA backend", "Install a CUDA build", "PYCNN_CUDA=ON"])

CASES = [
    # ---------------------------------------------------------- wrong input rank / channels
    Case("conv2d_wrong_rank", "nn.Conv2d(3, 4, 3)(f32(3, 5, 5))", "ValueError",
         [CONV, "expected input of shape (N, 3, H, W)", "got (3, 5, 5)"]),
    Case("conv2d_wrong_channels", "nn.Conv2d(3, 4, 3)(f32(2, 2, 5, 5))", "ValueError",
         [CONV, "(N, 3, H, W)", "got (2, 2, 5, 5)"]),
    Case("linear_wrong_features", "nn.Linear(4, 2)(f32(2, 3))", "ValueError",
         ["Linear(in_features=4, out_features=2", "(N, 4)", "got (2, 3)"]),
    Case("linear_image_input", "nn.Linear(4, 2)(f32(2, 3, 5, 5))", "ValueError",
         ["Linear(", "(N, 4)", "(2, 3, 5, 5)", "Flatten"]),
    Case("linear_scalar_input", "nn.Linear(4, 2)(np.array(1.0, np.float32))", "ValueError",
         ["Linear(", "(N, 4)", "got ()"]),
    Case("maxpool2d_wrong_rank", "nn.MaxPool2d(2)(f32(3, 5, 5))", "ValueError",
         ["MaxPool2d(kernel_size=2", "(N, C, H, W)", "got (3, 5, 5)"]),
    Case("avgpool2d_wrong_rank", "nn.AvgPool2d(2)(f32(2, 3, 5, 5, 1))", "ValueError",
         ["AvgPool2d(kernel_size=2", "(N, C, H, W)", "(2, 3, 5, 5, 1)"]),
    Case("batchnorm2d_wrong_rank", "nn.BatchNorm2d(3)(f32(3, 5, 5))", "ValueError",
         ["BatchNorm2d(3", "(N, 3, H, W)", "got (3, 5, 5)"]),
    Case("batchnorm2d_wrong_channels", "nn.BatchNorm2d(3)(f32(2, 4, 5, 5))", "ValueError",
         ["BatchNorm2d(3", "(N, 3, H, W)", "got (2, 4, 5, 5)"]),
    Case("batchnorm1d_wrong_features", "nn.BatchNorm1d(3)(f32(2, 4))", "ValueError",
         ["BatchNorm1d(3", "(N, 3)", "got (2, 4)"]),
    Case("crossentropy_logits_rank", "nn.CrossEntropyLoss()(f32(2, 3, 1), np.array([0, 1]))", "ValueError",
         ["CrossEntropyLoss", "(N, C)", "(2, 3, 1)"]),
    # ------------------------------------------------------------- kernel larger than input
    Case("conv2d_kernel_larger_than_input", "nn.Conv2d(3, 4, 7)(f32(2, 3, 5, 5))", "ValueError",
         ["Conv2d(3, 4, kernel_size=(7, 7)", "conv2d", "7x7 kernel", "larger than the padded input 5x5",
          "(2, 3, 5, 5)"]),
    Case("conv2d_dilated_kernel_larger", "nn.Conv2d(3, 4, 3, dilation=3)(f32(1, 3, 5, 5))", "ValueError",
         ["Conv2d(", "dilated extent 7x7", "(1, 3, 5, 5)"]),
    Case("functional_conv2d_kernel_larger", "F.conv2d(f32(1, 1, 2, 9), f32(1, 1, 3, 3))", "ValueError",
         ["conv2d", "3x3 kernel", "(1, 1, 2, 9)", "(1, 1, 3, 3)"]),
    Case("maxpool2d_kernel_larger_than_input", "nn.MaxPool2d(7)(f32(2, 3, 5, 5))", "ValueError",
         ["MaxPool2d(kernel_size=7", "max_pool2d", "output size would be 0x0", "(2, 3, 5, 5)"]),
    Case("avgpool2d_kernel_larger_than_input", "nn.AvgPool2d((2, 6))(f32(1, 1, 4, 5))", "ValueError",
         ["AvgPool2d(", "avg_pool2d", "output size would be 2x0", "(1, 1, 4, 5)"]),
    # -------------------------------------------------------------------- zero/negative stride
    Case("conv2d_stride_zero", "nn.Conv2d(3, 4, 3, stride=0)", "ValueError", ["Conv2d", "stride", "positive", "0"]),
    Case("conv2d_stride_negative", "nn.Conv2d(3, 4, 3, stride=(1, -2))", "ValueError",
         ["Conv2d", "stride", "(1, -2)"]),
    Case("functional_conv2d_stride_negative", "F.conv2d(f32(1, 3, 5, 5), f32(4, 3, 3, 3), stride=-1)",
         "ValueError", ["conv2d", "stride", "-1"]),
    Case("maxpool2d_stride_zero", "nn.MaxPool2d(2, stride=0)", "ValueError", ["MaxPool2d", "stride", "0"]),
    Case("avgpool2d_stride_negative", "F.avg_pool2d(f32(1, 1, 4, 4), 2, stride=(-1, 1))", "ValueError",
         ["avg_pool2d", "stride", "(-1, 1)"]),
    Case("conv2d_stride_float", "nn.Conv2d(3, 4, 3, stride=1.5)", "TypeError", ["Conv2d", "stride", "1.5"]),
    # ----------------------------------------------------------------------- negative padding
    Case("conv2d_padding_negative", "nn.Conv2d(3, 4, 3, padding=-1)", "ValueError",
         ["Conv2d", "padding", ">= 0", "-1"]),
    Case("conv2d_padding4_negative", "nn.Conv2d(3, 4, 3, padding=(0, 0, -1, 0))", "ValueError",
         ["Conv2d", "padding", "(0, 0, -1, 0)"]),
    Case("functional_conv2d_padding_negative", "F.conv2d(f32(1, 3, 5, 5), f32(4, 3, 3, 3), padding=(1, -1))",
         "ValueError", ["conv2d", "padding", "(1, -1)"]),
    Case("maxpool2d_padding_negative", "nn.MaxPool2d(3, padding=-1)", "ValueError", ["MaxPool2d", "padding", "-1"]),
    Case("maxpool2d_padding_over_half_kernel", "nn.MaxPool2d(2, padding=2)", "ValueError",
         ["MaxPool2d", "padding", "half of the kernel size", "(2, 2)"]),
    Case("conv2d_same_padding_strided", "nn.Conv2d(3, 4, 3, stride=2, padding='same')", "ValueError",
         ["Conv2d", "same", "stride"]),
    Case("conv2d_padding_bad_string", "nn.Conv2d(3, 4, 3, padding='full')", "ValueError",
         ["Conv2d", "padding", "'full'"]),
    # --------------------------------------------------------------------- groups not dividing
    Case("conv2d_groups_not_dividing_in", "nn.Conv2d(3, 4, 3, groups=2)", "ValueError",
         ["Conv2d", "in_channels (3)", "groups (2)"]),
    Case("conv2d_groups_not_dividing_out", "nn.Conv2d(4, 6, 3, groups=4)", "ValueError",
         ["Conv2d", "out_channels (6)", "groups (4)"]),
    Case("conv2d_groups_zero", "nn.Conv2d(4, 4, 3, groups=0)", "ValueError", ["Conv2d", "groups", "0"]),
    Case("functional_conv2d_groups_not_dividing", "F.conv2d(f32(2, 3, 5, 5), f32(4, 1, 3, 3), groups=2)",
         "ValueError", ["conv2d", "groups=2", "(2, 3, 5, 5)", "3 channels"]),
    Case("functional_conv2d_weight_channels", "F.conv2d(f32(2, 4, 5, 5), f32(4, 3, 3, 3), groups=2)",
         "ValueError", ["conv2d", "weight of shape (O, C/groups=2, kh, kw)", "4 channels", "got (4, 3, 3, 3)"]),
    # ------------------------------------------------------------------ CrossEntropyLoss labels
    Case("crossentropy_label_too_large", "nn.CrossEntropyLoss()(f32(4, 3), np.array([0, 1, 2, 3]))",
         "ValueError", ["CrossEntropyLoss", "label 3 at position 3", "out of range for 3 classes", "[0, 3)"]),
    Case("crossentropy_label_negative", "nn.CrossEntropyLoss()(f32(4, 3), np.array([0, -1, 2, 1]))",
         "ValueError", ["CrossEntropyLoss", "label -1 at position 1", "[0, 3)"]),
    Case("crossentropy_float_labels", "nn.CrossEntropyLoss()(f32(4, 3), np.array([0., 1., 2., 1.]))",
         "TypeError", ["CrossEntropyLoss", "labels must be integers", "float64"]),
    Case("crossentropy_float_tensor_labels", "nn.CrossEntropyLoss()(f32(2, 3), pc.tensor([0.0, 1.0]))",
         "TypeError", ["CrossEntropyLoss", "int64", "float32"]),
    Case("crossentropy_wrong_label_count", "nn.CrossEntropyLoss()(f32(4, 3), np.array([0, 1, 2]))",
         "ValueError", ["CrossEntropyLoss", "labels of shape (4,)", "(4, 3)", "got (3,)"]),
    Case("crossentropy_2d_labels", "nn.CrossEntropyLoss()(f32(2, 3), np.array([[0], [1]]))", "ValueError",
         ["CrossEntropyLoss", "(2,)", "got (2, 1)"]),
    Case("crossentropy_int_logits", "nn.CrossEntropyLoss()(np.ones((2, 3), np.int64), np.array([0, 1]))",
         "TypeError", ["CrossEntropyLoss", "float32 or float64", "int64"]),
    # ------------------------------------------------------------------ backward before forward
    Case("conv2d_backward_before_forward", "nn.Conv2d(3, 4, 3).backward(f32(2, 4, 3, 3))", "RuntimeError",
         [CONV, BACKWARD_FIRST]),
    Case("linear_backward_before_forward", "nn.Linear(4, 2).backward(f32(3, 2))", "RuntimeError",
         ["Linear(in_features=4", BACKWARD_FIRST]),
    Case("maxpool2d_backward_before_forward", "nn.MaxPool2d(2).backward(f32(1, 1, 2, 2))", "RuntimeError",
         ["MaxPool2d(", BACKWARD_FIRST]),
    Case("batchnorm2d_backward_before_forward", "nn.BatchNorm2d(3).backward(f32(2, 3, 4, 4))", "RuntimeError",
         ["BatchNorm2d(3", BACKWARD_FIRST]),
    Case("sequential_backward_before_forward", "model().backward(f32(4, 3))", "RuntimeError",
         ["Linear(", BACKWARD_FIRST]),
    Case("crossentropy_backward_before_forward", "nn.CrossEntropyLoss().backward()", "RuntimeError",
         ["CrossEntropyLoss", BACKWARD_FIRST]),
    Case("conv2d_backward_twice", """
         c = nn.Conv2d(3, 4, 3); y = c(f32(2, 3, 5, 5)); c.backward(np.ones(y.shape, np.float32))
         c.backward(np.ones(y.shape, np.float32))""", "RuntimeError", [CONV, "more often than forward()"]),
    # --------------------------------------------------------- backward with a wrong-shape grad
    Case("conv2d_backward_wrong_grad_shape", """
         c = nn.Conv2d(3, 4, 3); c(f32(2, 3, 5, 5)); c.backward(f32(2, 4, 2, 2))""", "ValueError",
         [CONV, "conv2d_backward", "grad_output of shape (N, O, OH, OW) = (2, 4, 3, 3)", "got (2, 4, 2, 2)"]),
    Case("linear_backward_wrong_grad_shape", """
         l = nn.Linear(4, 2); l(f32(3, 4)); l.backward(f32(3, 3))""", "ValueError",
         ["Linear(", "linear_backward", "grad_output of shape (3, 2)", "got (3, 3)"]),
    Case("maxpool2d_backward_wrong_grad_shape", """
         m = nn.MaxPool2d(2); m(f32(2, 3, 4, 4)); m.backward(f32(2, 3, 1, 1))""", "ValueError",
         ["MaxPool2d(", "max_pool2d_backward", "expected grad_output of shape (2, 3, 2, 2)", "(2, 3, 1, 1)"]),
    Case("avgpool2d_backward_wrong_grad_shape", """
         m = nn.AvgPool2d(2); m(f32(2, 3, 4, 4)); m.backward(f32(2, 3, 1, 1))""", "ValueError",
         ["AvgPool2d(", "avg_pool2d_backward", "expected grad_output of shape (2, 3, 2, 2)", "got (2, 3, 1, 1)"]),
    Case("batchnorm2d_backward_wrong_grad_shape", """
         b = nn.BatchNorm2d(3); b(f32(2, 3, 4, 4)); b.backward(f32(2, 3, 4, 5))""", "ValueError",
         ["BatchNorm2d(3", "grad_output of shape (2, 3, 4, 4)", "got (2, 3, 4, 5)"]),
    Case("relu_backward_wrong_grad_shape", """
         r = nn.ReLU(); r(f32(2, 3)); r.backward(f32(3, 2))""", "ValueError",
         ["ReLU()", "grad_output of shape (2, 3)", "got (3, 2)"]),
    Case("sequential_backward_wrong_grad_shape", """
         m = model(); m(f32(4, 1, 6, 6)); m.backward(f32(4, 5))""", "ValueError",
         ["Linear(in_features=32, out_features=3", "grad_output of shape (4, 3)", "got (4, 5)"]),
    Case("crossentropy_backward_nonscalar_grad", """
         c = nn.CrossEntropyLoss(); c(f32(2, 3), np.array([0, 1])); c.backward(pc.zeros(2))""", "ValueError",
         ["CrossEntropyLoss", "scalar", "(2,)"]),
    # ---------------------------------------------------------------------- dtype mix / int64
    Case("conv2d_float64_input_float32_layer", "nn.Conv2d(3, 4, 3)(f32(2, 3, 5, 5).astype(np.float64))",
         "TypeError", [CONV, "input (2, 3, 5, 5) is float64", "weight (4, 3, 3, 3) is float32"]),
    Case("functional_conv2d_dtype_mix", "F.conv2d(f32(1, 3, 5, 5), f32(4, 3, 3, 3).astype(np.float64))",
         "TypeError", ["conv2d", "float32", "float64", "(1, 3, 5, 5)"]),
    Case("linear_dtype_mix", "nn.Linear(4, 2)(f32(3, 4).astype(np.float64))", "TypeError",
         ["Linear(", "linear", "input is float64 but weight is float32"]),
    Case("batchnorm2d_dtype_mix", "nn.BatchNorm2d(3)(f32(2, 3, 4, 4).astype(np.float64))", "TypeError",
         ["BatchNorm2d(3", "float64", "float32"]),
    Case("conv2d_int64_input", "nn.Conv2d(3, 4, 3)(np.ones((2, 3, 5, 5), np.int64))", "TypeError",
         [CONV, "float32 or float64", "int64 input of shape (2, 3, 5, 5)", "x.to(pycnn.float32)"]),
    Case("functional_conv2d_int64_input", "F.conv2d(np.ones((1, 3, 5, 5), np.int64), f32(4, 3, 3, 3))",
         "TypeError", ["conv2d", "int64 input of shape (1, 3, 5, 5)"]),
    Case("linear_int64_input", "nn.Linear(4, 2)(np.ones((3, 4), np.int64))", "TypeError",
         ["Linear(", "int64"]),
    Case("maxpool2d_int64_input", "nn.MaxPool2d(2)(np.ones((1, 1, 4, 4), np.int64))", "TypeError",
         ["MaxPool2d(", "max_pool2d", "int64"]),
    Case("mse_float64_target_is_converted", """
         result = nn.MSELoss()(np.zeros((2, 3), np.float32), np.ones((2, 3))).item()
         assert result == 1.0, result""", None),
    # -------------------------------------------------------------- object / string / bad data
    Case("tensor_object_array", "pc.tensor(np.array([1, 'a', None], dtype=object))", "TypeError",
         ["tensor", "dtype object", "pass numbers"]),
    Case("tensor_list_of_strings", "pc.tensor(['a', 'b'])", "TypeError", ["tensor", "<U1"]),
    Case("tensor_string_array", "pc.tensor(np.array(['1.0', '2.0']))", "TypeError", ["tensor", "<U3"]),
    Case("tensor_none", "pc.tensor(None)", "TypeError", ["tensor", "object"]),
    Case("tensor_dict", "pc.tensor({'a': 1})", "TypeError", ["tensor", "object"]),
    Case("tensor_complex", "pc.tensor(np.zeros(2, np.complex64))", "TypeError", ["tensor", "complex64"]),
    Case("tensor_ragged_list", "pc.tensor([[1.0, 2.0], [3.0]])", "ValueError", ["inhomogeneous"]),
    Case("from_numpy_object_array", "pc.from_numpy(np.array([1.0, None]))", "TypeError",
         ["from_numpy", "object"]),
    Case("conv2d_object_array", "nn.Conv2d(1, 1, 1)(np.array([[[[None]]]], dtype=object))", "TypeError",
         ["Conv2d(1, 1", "dtype object"]),
    Case("conv2d_nested_list", "nn.Conv2d(1, 1, 1)([[[[1.0]]]])", "TypeError",
         ["Conv2d(1, 1", "must be a pycnn Tensor or a NumPy array", "list"]),
    # ----------------------------------------------------------------------------- NaN input
    Case("crossentropy_nan_logits_propagate", """
         c = nn.CrossEntropyLoss()
         logits = np.array([[np.nan, 0, 0], [1, 2, 3]], np.float32)
         loss = c(logits, np.array([0, 1])).item()
         assert np.isnan(loss), loss
         g = np.asarray(c.backward())
         assert np.isnan(g[0]).all() and np.isfinite(g[1]).all(), g
         result = f"loss={loss}, dlogits row 0 NaN, row 1 finite" """, None),
    Case("mse_nan_propagates", """
         result = nn.MSELoss()(np.array([[np.nan, 1.0]], np.float32), np.zeros((1, 2), np.float32)).item()
         assert np.isnan(result), result""", None),
    Case("relu_propagates_nan", """
         result = np.asarray(F.relu(np.array([np.nan, -1.0, 2.0]))).tolist()
         assert result[1:] == [0.0, 2.0] and np.isnan(result[0]), result  # as torch.relu""", None),
    Case("fit_nan_input_through_relu_raises", """
         x = f32(8, 1, 6, 6); x[5, 0, 2, 2] = np.nan
         m = model()   # Conv2d -> ReLU -> Flatten -> Linear: NaN must survive the ReLU
         Trainer(m, optim.SGD(m.parameters(), lr=0.1), nn.CrossEntropyLoss()).fit(
             x, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0, shuffle=False)""", "FloatingPointError",
         ["fit", "nan", "epoch 1, batch 2"]),
    Case("fit_nan_input_raises", """
         pc.manual_seed(0)
         m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(32, 3))   # no ReLU: NaN reaches the loss
         x = f32(8, 1, 6, 6); x[5, 0, 2, 2] = np.nan
         Trainer(m, optim.SGD(m.parameters(), lr=0.1), nn.CrossEntropyLoss()).fit(
             x, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0, shuffle=False)""", "FloatingPointError",
         ["fit", "nan", "epoch 1, batch 2"]),
    Case("fit_diverging_raises", """
         m = model()
         Trainer(m, optim.SGD(m.parameters(), lr=1e30), nn.CrossEntropyLoss()).fit(
             f32(8, 1, 6, 6) * 1e30, np.arange(8) % 3, batch_size=4, epochs=3, verbose=0)""",
         "FloatingPointError", ["fit", "the loss became", "diverged"]),
    # ----------------------------------------------------------------------------- empty batch
    Case("conv2d_empty_batch", """
         c = nn.Conv2d(3, 4, 3); y = c(f32(0, 3, 5, 5)); assert y.shape == (0, 4, 3, 3), y.shape
         dx = c.backward(np.zeros((0, 4, 3, 3), np.float32)); assert dx.shape == (0, 3, 5, 5)
         assert c.weight.grad.shape == (4, 3, 3, 3) and not np.asarray(c.weight.grad).any()
         assert np.array_equal(np.asarray(c.bias.grad), np.zeros(4))
         result = f"y {y.shape}, dx {dx.shape}, zero weight/bias grads" """, None),
    Case("linear_empty_batch", """
         l = nn.Linear(4, 2); y = l(f32(0, 4)); assert y.shape == (0, 2), y.shape
         dx = l.backward(np.zeros((0, 2), np.float32)); assert dx.shape == (0, 4)
         assert not np.asarray(l.weight.grad).any()
         result = f"y {y.shape}, dx {dx.shape}" """, None),
    Case("pools_empty_batch", """
         y1 = nn.MaxPool2d(2)(f32(0, 3, 4, 4)); y2 = nn.AvgPool2d(2)(f32(0, 3, 4, 4))
         assert y1.shape == y2.shape == (0, 3, 2, 2)
         result = f"{y1.shape}" """, None),
    Case("model_eval_empty_batch", """
         m = model(); m.eval(); y = m(f32(0, 1, 6, 6)); assert y.shape == (0, 3), y.shape
         result = f"{y.shape}" """, None),
    Case("batchnorm2d_eval_empty_batch", """
         b = nn.BatchNorm2d(3); b.eval(); y = b(f32(0, 3, 4, 4)); assert y.shape == (0, 3, 4, 4)
         result = f"{y.shape}" """, None),
    Case("batchnorm2d_train_empty_batch", "nn.BatchNorm2d(3)(f32(0, 3, 4, 4))", "ValueError",
         ["BatchNorm2d(3", "more than 1 value per channel", "(0, 3, 4, 4)"]),
    Case("crossentropy_empty_batch", "nn.CrossEntropyLoss()(f32(0, 3), np.zeros(0, np.int64))", "ValueError",
         ["CrossEntropyLoss", "cross_entropy", "empty", "(0, 3)"]),
    Case("fit_empty_data", """
         m = model()
         Trainer(m, optim.SGD(m.parameters(), lr=0.1), nn.CrossEntropyLoss()).fit(
             f32(0, 1, 6, 6), np.zeros(0, np.int64), batch_size=4, verbose=0)""", "ValueError",
         ["fit", "no batches"]),
    # ----------------------------------------------------------------- sizes too large / overflow
    Case("zeros_2e40_by_2e40", "pc.zeros(2**40, 2**40)", "MemoryError",
         ["(1099511627776, 1099511627776)", "too large"], alt_exc=["ValueError"]),
    Case("zeros_2e62", "pc.zeros(2**62)", "MemoryError", ["(4611686018427387904,)", "too large"],
         alt_exc=["ValueError"]),
    Case("zeros_2e63_minus_1", "pc.zeros(2**63 - 1)", "MemoryError", ["too large"], alt_exc=["ValueError"]),
    Case("ones_product_overflows_int64", "pc.ones(2**31, 2**31, 2**31)", "MemoryError", ["too large"],
         alt_exc=["ValueError"]),
    Case("zeros_1_pib_cannot_be_allocated", "pc.zeros(2**48)", "MemoryError",
         ["could not allocate", "1125899906842624 bytes"], alt_exc=["ValueError"]),
    Case("zeros_negative_size", "pc.zeros(3, -1)", "ValueError", ["negative size", "(3, -1)"]),
    Case("reshape_to_huge", "pc.zeros(4).reshape(2**62, 4)", "MemoryError", ["reshape", "(4611686018427387904, 4)"],
         alt_exc=["ValueError"]),
    Case("linear_layer_too_large", "nn.Linear(2**40, 2**40)", "MemoryError", ["too large"], alt_exc=["ValueError"]),
    Case("zeros_size_beyond_int64", "pc.zeros(2**63)", "ValueError", ["zeros", "9223372036854775808"],
         alt_exc=["MemoryError", "OverflowError"]),
    Case("conv2d_output_size_overflows_int64", "F.conv2d(f64(1, 1, 1, 1), f64(1, 1, 1, 1), padding=2**31 - 1)",
         "MemoryError", ["(1, 1, 4294967295, 4294967295)", "too large"], alt_exc=["ValueError"]),
    Case("im2col_column_count_overflows_int64", "F.im2col(f64(1, 1, 1, 1), 1, padding=2**31 - 1)", "MemoryError",
         ["im2col", "too large"], alt_exc=["ValueError"]),
    Case("conv2d_stride_2e31", "F.conv2d(f64(1, 1, 4, 4), f64(1, 1, 1, 1), stride=2**31)", "ValueError",
         ["conv2d", "stride", "2147483648"], any_frag=["at most", "too large", "< 2147483648", "<= 2147483647"]),
    Case("avgpool2d_huge_kernel_divisor", """
         y = np.asarray(F.avg_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 2**32, stride=1, padding=2**31))
         assert y.shape == (1, 1, 5, 5), y.shape
         assert np.allclose(y, 120.0 / 2.0**64, rtol=1e-9, atol=0), y   # sum / kernel area (count_include_pad)
         result = "ok" """, None),
    Case("maxpool2d_huge_kernel", """
         y = np.asarray(F.max_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 2**62, stride=1, padding=2**61))
         assert y.shape == (1, 1, 5, 5) and (y == 15.0).all(), y
         result = "ok" """, None),
    Case("functional_conv2d_same_padding_empty_kernel", "F.conv2d(f64(1, 1, 4, 4), f64(1, 1, 1, 0), padding='same')",
         "ValueError", ["conv2d", "(1, 1, 1, 0)"]),
    # -------------------------------------------------------------------- CUDA on a CPU build
    Case("cuda_zeros", "skip_if_cuda(); pc.zeros(2, device='cuda')", "RuntimeError", NO_CUDA),
    Case("cuda_tensor", "skip_if_cuda(); pc.tensor([1.0], device='cuda:0')", "RuntimeError", NO_CUDA),
    Case("cuda_tensor_method", "skip_if_cuda(); pc.zeros(2).cuda()", "RuntimeError", NO_CUDA),
    Case("cuda_model_to", "skip_if_cuda(); model().to('cuda')", "RuntimeError", NO_CUDA),
    Case("cuda_device_name", "skip_if_cuda(); pc.cuda.get_device_name()", "RuntimeError", NO_CUDA),
    Case("cuda_memory_stats", "skip_if_cuda(); pc.cuda.memory_allocated()", "RuntimeError", NO_CUDA),
    Case("unknown_device", "pc.zeros(2, device='gpu')", "ValueError", ["unknown device 'gpu'", "cuda:N"]),
    # ---------------------------------------------------------------------------------- files
    Case("load_truncated_safetensors", """
         p = os.path.join(TMP, 'm.safetensors'); pc.save(model(), p)
         b = open(p, 'rb').read(); open(p, 'wb').write(b[:len(b) // 2]); pc.load(p)""", "ValueError",
         ["load", "m.safetensors", "truncated"]),
    Case("load_truncated_data_section", """
         p = os.path.join(TMP, 'd.safetensors'); pc.save(model(), p)
         b = open(p, 'rb').read(); open(p, 'wb').write(b[:-3]); pc.load(p)""", "ValueError",
         ["load", "d.safetensors", "data_offsets", "truncated"]),
    Case("load_5_byte_file", "p = os.path.join(TMP, 'five'); open(p, 'wb').write(b'12345'); pc.load(p)",
         "ValueError", ["load", "5 bytes", "shorter than the 8-byte"]),
    Case("load_empty_file", "p = os.path.join(TMP, 'empty'); open(p, 'wb').close(); pc.load(p)", "ValueError",
         ["load", "0 bytes"]),
    Case("load_pickle_file", """
         p = os.path.join(TMP, 'w.pkl'); open(p, 'wb').write(pickle.dumps({'w': np.zeros(3)})); pc.load(p)""",
         "ValueError", ["load", "pickle", "safetensors"]),
    Case("load_pickle_never_runs_code", """
         class Evil:
             def __reduce__(self):
                 return (open, (os.path.join(TMP, 'pwned'), 'w'))
         p = os.path.join(TMP, 'evil.pt'); open(p, 'wb').write(pickle.dumps(Evil()))
         try:
             pc.load(p)
         finally:
             assert not os.path.exists(os.path.join(TMP, 'pwned')), 'loading ran code'""", "ValueError",
         ["load", "pickle"]),
    Case("load_protocol0_pickle", """
         p = os.path.join(TMP, 'w0.pkl'); open(p, 'wb').write(pickle.dumps({'w': 1}, protocol=0)); pc.load(p)""",
         "ValueError", ["load", "not a safetensors file"]),
    Case("load_torch_zip_checkpoint", """
         import zipfile
         p = os.path.join(TMP, 'ckpt.pt')
         with zipfile.ZipFile(p, 'w') as z:
             z.writestr('archive/data.pkl', pickle.dumps({'w': 1}))
         pc.load(p)""", "ValueError", ["load", "pickle/zip checkpoint"]),
    Case("load_into_model_from_pickle", """
         p = os.path.join(TMP, 'w2.pkl'); open(p, 'wb').write(pickle.dumps({'w': 1}))
         pc.io.load_into(model(), p)""", "ValueError", ["load", "pickle"]),
    Case("load_zero_size_tensor_with_huge_dim", """
         import json, struct
         h = json.dumps({"w": {"dtype": "F32", "shape": [0, 2**62], "data_offsets": [0, 0]}}).encode()
         p = os.path.join(TMP, 'zero.safetensors'); open(p, 'wb').write(struct.pack('<Q', len(h)) + h)
         pc.load(p)""", "ValueError", ["load", "zero.safetensors", "(0, 4611686018427387904)"]),
    Case("load_missing_file", "pc.load(os.path.join(TMP, 'nope.safetensors'))", "FileNotFoundError",
         ["load", "no such file"]),
]

PRELUDE = textwrap.dedent("""
    import atexit, json, os, pickle, shutil, sys, tempfile, textwrap, traceback
    import numpy as np
    import pycnn as pc
    from pycnn import nn, optim, functional as F
    try:
        from pycnn.train import Trainer
    except Exception as e:  # only the fit cases need it; they then fail with this error
        _trainer_error = e

        def Trainer(*a, **k):
            raise ImportError(f"pycnn.train.Trainer is not importable: {_trainer_error!r}")

    TMP = tempfile.mkdtemp(prefix="pycnn-errors-")
    atexit.register(shutil.rmtree, TMP, True)

    class SkipCase(Exception):
        pass

    def skip_if_cuda():
        if pc.cuda.is_available():
            raise SkipCase("a CUDA device is available")

    def f32(*shape):
        return np.random.default_rng(0).standard_normal(shape).astype(np.float32)

    def f64(*shape):
        return np.random.default_rng(0).standard_normal(shape)

    def model():
        pc.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))

    def emit(d):
        sys.stdout.write("@@CASE " + json.dumps(d) + "\\n"); sys.stdout.flush()

    cases = json.loads(sys.stdin.read())
    for name, code in cases:
        sys.stdout.write("@@START " + name + "\\n"); sys.stdout.flush()
        g = dict(globals())
        try:
            exec(compile(textwrap.dedent(code), name, "exec"), g)
        except SkipCase as e:
            emit({"name": name, "status": "skip", "msg": str(e)})
        except BaseException as e:
            emit({"name": name, "status": "raised", "exc": type(e).__name__, "msg": str(e),
                  "tb": traceback.format_exc()[-1500:]})
        else:
            emit({"name": name, "status": "returned", "result": str(g.get("result", ""))[:300]})
""")


def _child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


SANITIZER_REPORT = re.compile(r"ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer|SUMMARY: \w+Sanitizer")


def _stderr_summary(err):
    """The lines that say what went wrong (sanitizer headlines, the Python error) and the tail."""
    key = [line for line in err.splitlines() if SANITIZER_REPORT.search(line) or line.startswith("Fatal Python")]
    return "\n".join(key[:10] + ["..."] + [err[-1500:]]) if key else err[-3000:]


def run_cases(cases, echo=None):
    """{name: outcome} running `cases` in child processes; a child that dies marks the running case
    as crashed (with its exit status and stderr tail) and a new child resumes after it."""
    results = {}
    todo = [(c.name, c.code) for c in cases]
    while todo:
        proc = subprocess.run([sys.executable, "-c", PRELUDE], input=json.dumps(todo), capture_output=True,
                              text=True, env=_child_env(), timeout=CHILD_TIMEOUT, cwd=PKG_ROOT)
        if echo is not None and SANITIZER_REPORT.search(proc.stderr):
            # under tools/sanitize_check.sh: show the child's report on the terminal even when the
            # case is an expected failure (xfail), so that the script sees every report
            echo("\n[test_errors child sanitizer report]\n" + proc.stderr + "\n")
        started = None
        for line in proc.stdout.splitlines():
            if line.startswith("@@START "):
                started = line[len("@@START "):]
            elif line.startswith("@@CASE "):
                d = json.loads(line[len("@@CASE "):])
                results[d["name"]] = d
                started = None
        done = {n for n, _ in todo if n in results}
        if started is not None:  # the child died inside this case
            results[started] = {"name": started, "status": "crashed", "returncode": proc.returncode,
                                "stderr": _stderr_summary(proc.stderr)}
            done.add(started)
        elif proc.returncode != 0 and len(done) < len(todo):
            for n, _ in todo:  # died before starting anything: blame them all
                results.setdefault(n, {"name": n, "status": "crashed", "returncode": proc.returncode,
                                       "stderr": _stderr_summary(proc.stderr)})
            break
        todo = [(n, c) for n, c in todo if n not in done]
    return results


@pytest.fixture(scope="module")
def outcomes(request):
    capman = request.config.pluginmanager.getplugin("capturemanager")

    def echo(text):  # past pytest's output capture
        if capman is None:
            sys.stderr.write(text)
            return
        with capman.global_and_fixture_disabled():
            sys.stderr.write(text)
            sys.stderr.flush()

    return run_cases(CASES, echo)


def _param(c):
    marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
    return pytest.param(c, id=c.name, marks=marks)


def test_case_names_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input(case, outcomes):
    r = outcomes[case.name]
    assert r["status"] != "crashed", (f"{case.name}: the process died (exit status {r['returncode']}) -- a crash, "
                                      f"not an exception:\n{r['stderr']}")
    if r["status"] == "skip":
        pytest.skip(r["msg"])
    if case.exc is None:
        assert r["status"] == "returned", f"{case.name}: expected no exception, got {r.get('exc')}: {r.get('msg')}\n" \
                                          f"{r.get('tb', '')}"
        return
    assert r["status"] == "raised", f"{case.name}: expected {case.exc}, but it returned {r.get('result')!r}"
    allowed = (case.exc, *case.alt_exc)
    assert r["exc"] in allowed, f"{case.name}: expected {' or '.join(allowed)}, got {r['exc']}: {r['msg']}\n{r['tb']}"
    for frag in case.frags:
        assert frag in r["msg"], f"{case.name}: message lacks {frag!r}: {r['msg']}"
    if case.any_frag:
        assert any(f in r["msg"] for f in case.any_frag), f"{case.name}: message lacks any of {case.any_frag}: " \
                                                          f"{r['msg']}"


def test_zz_error_table(outcomes):
    """The observed behaviour of every case (shown with -s / -rA): name | type | message."""
    rows = []
    for c in CASES:
        r = outcomes.get(c.name, {"status": "missing"})
        if r["status"] == "raised":
            what, msg = r["exc"], r["msg"].replace("\n", " ")
        elif r["status"] == "returned":
            what, msg = "(no error)", r.get("result", "")
        else:
            what, msg = r["status"], r.get("msg", r.get("stderr", ""))[-200:]
        rows.append(f"{c.name:42s} {what:18s} {msg[:160]}")
    print("\n".join(rows))  # shown with -rA or -s
    assert all(outcomes[c.name]["status"] != "crashed" for c in CASES if not c.xfail)
