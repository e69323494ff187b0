#include "softmax_ce.h"

#include <cmath>
#include <vector>

namespace pycnn {

namespace {
void check_rows(const Tensor& x, const char* op, const char* arg) {
  check_defined(x, op, arg);
  PYCNN_CHECK(x.dim() == 2, ValueError, op, ": expected ", arg, " of 2 dimensions (N, C), got shape ",
              shape_str(x.shape()), "; flatten the other dimensions first (x.reshape(N, -1))");
}

Tensor softmax_impl(const Tensor& x_, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  check_rows(x_, op, "input");
  const Tensor x = x_.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float(x.dtype(), op, [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(x.device(), softmax_forward<T>, x.data<T>(), y.data<T>(), x.size(0), x.size(1), log);
  });
  return y;
}

// cross_entropy's inputs: scores (N, C) with N > 0 (`if_empty` ends the message when N == 0) and N
// labels in [0, C).
void check_cross_entropy(const Tensor& scores, const Tensor& labels, const char* op, const char* scores_name,
                         const char* if_empty) {
  check_rows(scores, op, scores_name);
  check_class_labels(labels, scores, op, scores_name);
  PYCNN_CHECK(scores.size(0) > 0, ValueError, op, ": the batch is empty (", scores_name, " of shape ",
              shape_str(scores.shape()), "); ", if_empty);
}
}  // namespace

void check_class_labels(const Tensor& labels, const Tensor& scores, const char* op, const char* scores_name) {
  check_defined(labels, op, "labels");
  PYCNN_CHECK(labels.dtype() == DType::Int64, TypeError, op, ": labels must be int64 class indices, got a ",
              dtype_name(labels.dtype()), " tensor of shape ", shape_str(labels.shape()),
              "; convert them with labels.long() (or build them with dtype=int64)");
  check_same_device(scores, labels, op, scores_name, "labels");
  const int64_t n = scores.size(0), c = scores.size(1);
  PYCNN_CHECK(labels.dim() == 1 && labels.size(0) == n, ValueError, op, ": expected labels of shape ",
              shape_str({n}), " for ", scores_name, " ", shape_str(scores.shape()), ", got ",
              shape_str(labels.shape()), "; pass one class index per row");
  // On CUDA the range is not checked here: that would wait for the device at every step. The
  // kernels never index with a bad label (its row's loss and gradient are NaN, it never counts as
  // correct) and record it in the device's deferred-error word; the host raises ValueError at its
  // next wait for the device (.item(), .numpy(), synchronize, isfinite_all; cuda/context.cuh).
  if (labels.device().is_cuda()) return;
  const Tensor h = labels.contiguous();
  const int64_t* l = h.data<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    PYCNN_CHECK(l[i] >= 0 && l[i] < c, ValueError, op, ": label ", l[i], " at position ", i,
                " is out of range for ", c, " classes; labels must be class indices in [0, ", c, ")");
}

Tensor softmax_forward(const Tensor& x) { return softmax_impl(x, false); }
Tensor log_softmax_forward(const Tensor& x) { return softmax_impl(x, true); }

Tensor softmax_backward(const Tensor& dy_, const Tensor& y_) {
  const char* op = "softmax_backward";
  check_rows(y_, op, "saved output");
  check_grad_matches(dy_, y_, op, "output");
  return float_op_like(dy_, y_, op, [&](auto t, const Tensor& dy, const Tensor& y, const Tensor& dx) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(y.device(), softmax_backward<T>, dy.data<T>(), y.data<T>(), dx.data<T>(), y.size(0), y.size(1));
  });
}

std::pair<Tensor, Tensor> cross_entropy_forward(const Tensor& logits_, const Tensor& labels_) {
  const char* op = "cross_entropy";
  check_cross_entropy(logits_, labels_, op, "logits", "the mean loss over no samples is undefined, skip empty batches");
  const Tensor logits = logits_.contiguous(), labels = labels_.contiguous();
  Tensor probs = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
  Tensor loss = Tensor::empty({}, logits.dtype(), logits.device());
  dispatch_float(logits.dtype(), op, [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(logits.device(), cross_entropy_forward<T>, logits.data<T>(), labels.data<int64_t>(),
                    probs.data<T>(), loss.data<T>(), logits.size(0), logits.size(1));
  });
  return {loss, probs};
}

Tensor cross_entropy_backward(const Tensor& probs_, const Tensor& labels_, double grad_scale) {
  const char* op = "cross_entropy_backward";
  check_cross_entropy(probs_, labels_, op, "probs", "the mean loss over no samples has no gradient");
  const Tensor probs = probs_.contiguous(), labels = labels_.contiguous();
  const int64_t n = probs.size(0);
  Tensor dx = Tensor::empty(probs.shape(), probs.dtype(), probs.device());
  dispatch_float(probs.dtype(), op, [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(probs.device(), cross_entropy_backward<T>, probs.data<T>(), labels.data<int64_t>(),
                    dx.data<T>(), n, probs.size(1), T(grad_scale / static_cast<double>(n)));
  });
  return dx;
}

namespace cpu {

// One row: its max m and sum of exp(x - m), in double (callers recompute exp per element rather
// than storing a rounded copy, so probabilities are exact to the last bit of T).
template <class T>
inline void row_exp(const T* x, int64_t c, double* m_out, double* s_out) {
  T m = x[0];
  for (int64_t j = 1; j < c; ++j)
    if (x[j] > m) m = x[j];
  double s = 0;
  for (int64_t j = 0; j < c; ++j) {
    s += std::exp(static_cast<double>(x[j]) - static_cast<double>(m));
  }
  *m_out = m;
  *s_out = s;
}

// One row of softmax (log_softmax when log) into yr; m and s as row_exp gives them.
template <class T>
inline void softmax_row(const T* xr, T* yr, int64_t c, bool log, double* m_out, double* s_out) {
  double m, s;
  row_exp<T>(xr, c, &m, &s);
  if (log) {
    const double ls = std::log(s);
    for (int64_t j = 0; j < c; ++j) yr[j] = static_cast<T>((static_cast<double>(xr[j]) - m) - ls);
  } else {
    const double inv = 1.0 / s;
    for (int64_t j = 0; j < c; ++j) yr[j] = static_cast<T>(std::exp(static_cast<double>(xr[j]) - m) * inv);
  }
  *m_out = m;
  *s_out = s;
}

template <class T>
void softmax_forward(const T* x, T* y, int64_t n, int64_t c, bool log) {
  if (c == 0) return;
#pragma omp parallel for if (n * c > kParallelGrain)
  for (int64_t r = 0; r < n; ++r) {
    double m, s;
    softmax_row(x + r * c, y + r * c, c, log, &m, &s);
  }
}

template <class T>
void softmax_backward(const T* dy, const T* y, T* dx, int64_t n, int64_t c) {
#pragma omp parallel for if (n * c > kParallelGrain)
  for (int64_t r = 0; r < n; ++r) {
    const T* dyr = dy + r * c;
    const T* yr = y + r * c;
    double dot = 0;
    for (int64_t j = 0; j < c; ++j) dot += static_cast<double>(dyr[j]) * static_cast<double>(yr[j]);
    for (int64_t j = 0; j < c; ++j)
      dx[r * c + j] = static_cast<T>(static_cast<double>(yr[j]) * (static_cast<double>(dyr[j]) - dot));
  }
}

template <class T>
void cross_entropy_forward(const T* logits, const int64_t* labels, T* probs, T* loss, int64_t n, int64_t c) {
  std::vector<double> row_loss(static_cast<size_t>(n));
#pragma omp parallel for if (n * c > kParallelGrain)
  for (int64_t r = 0; r < n; ++r) {
    const T* xr = logits + r * c;
    double m, s;
    softmax_row(xr, probs + r * c, c, false, &m, &s);
    // -log p[label] = log(sum exp(z)) - z[label]
    row_loss[r] = std::log(s) - (static_cast<double>(xr[labels[r]]) - m);
  }
  double total = 0;  // fixed order
  for (int64_t r = 0; r < n; ++r) total += row_loss[r];
  loss[0] = static_cast<T>(total / static_cast<double>(n));
}

template <class T>
void cross_entropy_backward(const T* probs, const int64_t* labels, T* dx, int64_t n, int64_t c, T scale) {
#pragma omp parallel for if (n * c > kParallelGrain)
  for (int64_t r = 0; r < n; ++r) {
    const T* pr = probs + r * c;
    T* dr = dx + r * c;
    for (int64_t j = 0; j < c; ++j) dr[j] = pr[j] * scale;
    dr[labels[r]] = (pr[labels[r]] - T(1)) * scale;
  }
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_SOFTMAX_CE_KERNELS)

}  // namespace cpu
}  // namespace pycnn
