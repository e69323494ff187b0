#include "linear.h"

#include <algorithm>

#include "../blas.h"

namespace pycnn {

LinearDims linear_shape(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor* dy, const char* op) {
  check_operands(x, w, op, "input", "weight");
  PYCNN_CHECK(w.dim() == 2, ValueError, op, ": expected weight of 2 dimensions (out_features, in_features), got shape ",
              shape_str(w.shape()));
  LinearDims d;
  d.out = w.size(0);
  d.in = w.size(1);
  if (x.dim() != 2) {
    std::string fix = x.dim() > 2 ? cat("; flatten it first, e.g. x.reshape(", x.size(0), ", -1)")
                                  : std::string("; add a batch dimension, e.g. x.reshape(1, -1)");
    throw ValueError(cat(op, ": expected input of 2 dimensions (N, in_features=", d.in, "), got shape ",
                         shape_str(x.shape()), fix));
  }
  d.N = x.size(0);
  PYCNN_CHECK(x.size(1) == d.in, ValueError, op, ": expected input of shape (N, ", d.in, ") for in_features=", d.in,
              ", got ", shape_str(x.shape()), "; the layer's in_features must equal the input's feature count (",
              x.size(1), ")");
  if (b) {
    check_same_device(x, *b, op, "input", "bias");
    check_same_dtype(x, *b, op, "input", "bias");
    PYCNN_CHECK(b->shape() == Shape{d.out}, ValueError, op, ": expected bias of shape (", d.out,
                ",) for out_features=", d.out, ", got ", shape_str(b->shape()));
  }
  if (dy) {
    check_same_device(*dy, x, op, "grad_output", "input");
    check_same_dtype(*dy, x, op, "grad_output", "input");
    PYCNN_CHECK(dy->shape() == (Shape{d.N, d.out}), ValueError, op, ": expected grad_output of shape ",
                shape_str({d.N, d.out}), " (N, out_features) for input ", shape_str(x.shape()), " and weight ",
                shape_str(w.shape()), ", got ", shape_str(dy->shape()));
  }
  return d;
}

Tensor linear_forward(const Tensor& x_, const Tensor& w_, const std::optional<Tensor>& b_) {
  const Tensor* bp = b_ && b_->defined() ? &*b_ : nullptr;
  const LinearDims d = linear_shape(x_, w_, bp, nullptr, "linear");
  const Tensor x = x_.contiguous(), w = w_.contiguous();
  const Tensor b = bp ? bp->contiguous() : Tensor();
  return dispatch_float(x.dtype(), "linear", [&](auto t) {
    using T = decltype(t);
    Tensor y = Tensor::empty({d.N, d.out}, x.dtype(), x.device());
    PYCNN_ON_DEVICE(x.device(), linear_forward<T>, x.data<T>(), w.data<T>(), b.defined() ? b.data<T>() : nullptr,
                    y.data<T>(), d);
    return y;
  });
}

std::tuple<std::optional<Tensor>, std::optional<Tensor>, std::optional<Tensor>> linear_backward(
    const Tensor& dy_, const Tensor& x_, const Tensor& w_, bool need_dx, bool need_dw, bool need_db) {
  const char* op = "linear_backward";
  check_defined(dy_, op, "grad_output");
  const LinearDims d = linear_shape(x_, w_, nullptr, &dy_, op);
  const Tensor dy = dy_.contiguous(), x = x_.contiguous(), w = w_.contiguous();
  std::optional<Tensor> dx, dw, db;
  dispatch_float(x.dtype(), op, [&](auto t) {
    using T = decltype(t);
    if (need_dx) dx = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (need_dw) dw = Tensor::empty(w.shape(), w.dtype(), w.device());
    if (need_db) db = Tensor::empty({d.out}, w.dtype(), w.device());
    if (!need_dx && !need_dw && !need_db) return;
    PYCNN_ON_DEVICE(x.device(), linear_backward<T>, dy.data<T>(), x.data<T>(), w.data<T>(),
                    dx ? dx->data<T>() : nullptr, dw ? dw->data<T>() : nullptr, db ? db->data<T>() : nullptr, d);
  });
  return {dx, dw, db};
}

namespace cpu {

constexpr int64_t kColumnBlock = 256;        // columns per task of the bias gradient

template <class T>
void linear_forward(const T* x, const T* w, const T* b, T* y, LinearDims d) {
  if (d.N == 0 || d.out == 0) return;
  if (d.in == 0) std::fill(y, y + d.N * d.out, T(0));
  else blas::gemm<T>(false, true, d.N, d.out, d.in, T(1), x, d.in, w, d.in, T(0), y, d.out);
  if (!b) return;
#pragma omp parallel for if (d.N * d.out > kParallelGrain)
  for (int64_t r = 0; r < d.N; ++r) {
    T* yr = y + r * d.out;
    for (int64_t c = 0; c < d.out; ++c) yr[c] += b[c];
  }
}

template <class T>
void linear_backward(const T* dy, const T* x, const T* w, T* dx, T* dw, T* db, LinearDims d) {
  if (dx) {  // dx (N, in) = dy (N, out) @ w (out, in)
    if (d.out == 0) std::fill(dx, dx + d.N * d.in, T(0));
    else blas::gemm<T>(false, false, d.N, d.in, d.out, T(1), dy, d.out, w, d.in, T(0), dx, d.in);
  }
  if (dw) {  // dw (out, in) = dy^T (out, N) @ x (N, in)
    if (d.N == 0) std::fill(dw, dw + d.out * d.in, T(0));
    else blas::gemm<T>(true, false, d.out, d.in, d.N, T(1), dy, d.out, x, d.in, T(0), dw, d.in);
  }
  if (db) {  // db[c] = dy[0, c] + dy[1, c] + ... : each task owns a block of columns, rows in order
    const int64_t blocks = (d.out + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for if (d.N * d.out > kParallelGrain)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t c0 = blk * kColumnBlock, c1 = std::min(c0 + kColumnBlock, d.out);
      std::fill(db + c0, db + c1, T(0));
      for (int64_t r = 0; r < d.N; ++r) {
        const T* row = dy + r * d.out;
        for (int64_t c = c0; c < c1; ++c) db[c] += row[c];
      }
    }
  }
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_LINEAR_KERNELS)

}  // namespace cpu
}  // namespace pycnn
