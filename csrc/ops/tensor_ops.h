// Small tensor utilities the autograd engine and the training loop need: elementwise add (new
// and in place, for gradient accumulation), in-place scale, concat/split along one dim (always
// contiguous copies), a fixed-order sum, an accuracy counter and NaN/Inf checks (a host bool, or a
// device flag that optimiser kernels read without a host sync).
// Reductions run over fixed blocks in double, so results repeat bit for bit whatever the threads.
#pragma once

#include <vector>

#include "../tensor.h"

namespace pycnn {

Tensor add(const Tensor& a, const Tensor& b);                    // same shape, dtype, device
void add_(const Tensor& dst, const Tensor& src, double alpha);   // dst += alpha * src, in place
void scale_(const Tensor& t, double s);                          // t *= s, in place
Tensor concat(const std::vector<Tensor>& tensors, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
Tensor sum_all(const Tensor& x);                                 // shape (), dtype of x
Tensor count_correct(const Tensor& logits, const Tensor& labels);  // int64 (): rows whose first argmax == label
bool isfinite_all(const Tensor& x);                              // no NaN, no Inf
// float32 () on the tensors' device: 1 when any element of any tensor is NaN/Inf, else 0 (no host
// sync; int64 tensors count as finite). All tensors must share one device; an empty list is refused.
Tensor nonfinite_flag(const std::vector<Tensor>& tensors);
// In place, per pair, decided on the device by found_inf (a float32 one-element flag, no host
// sync): 0 keeps the step (backups[i] = tensors[i]), non-zero undoes it (tensors[i] = backups[i]).
// The Trainer's guard for what a forward changes outside the optimizer (BatchNorm's statistics).
void keep_or_undo_(const std::vector<Tensor>& tensors, const std::vector<Tensor>& backups, const Tensor& found_inf);

// The kernels, CPU (tensor_ops.cpp) and CUDA (tensor_ops.cu) alike (see PYCNN_DECLARE_KERNELS in common.h):
// the first list for float, double and int64_t, the second for float and double.
// copy_rows: dst[r * dst_stride + j] = src[r * src_stride + j] for r < rows, j < cols.
// isfinite_all: `result` points to host memory. mark_nonfinite: *flag = 1 when x has NaN/Inf (flag in
// the memory of the kernel's device).
#define PYCNN_TENSOR_OPS_KERNELS_WITH_INT64(X, T)                                                                      \
  X(add, (const T* a, const T* b, T* out, int64_t n))                                                                  \
  X(add_, (T* dst, const T* src, int64_t n, T alpha))                                                                  \
  X(copy_rows, (const T* src, int64_t src_stride, T* dst, int64_t dst_stride, int64_t rows, int64_t cols))             \
  X(keep_or_undo, (T* t, T* backup, int64_t n, const float* flag))
#define PYCNN_TENSOR_OPS_KERNELS_FLOAT(X, T)                                                                           \
  X(scale_, (T* t, int64_t n, T s))                                                                                    \
  X(sum_all, (const T* x, T* out, int64_t n))                                                                          \
  X(count_correct, (const T* logits, const int64_t* labels, int64_t* out, int64_t n, int64_t c))                       \
  X(isfinite_all, (const T* x, int64_t n, bool* result))                                                               \
  X(mark_nonfinite, (const T* x, int64_t n, float* flag))
#define PYCNN_TENSOR_OPS_KERNELS(X, T) PYCNN_TENSOR_OPS_KERNELS_WITH_INT64(X, T) PYCNN_TENSOR_OPS_KERNELS_FLOAT(X, T)
namespace cpu {
PYCNN_DECLARE_KERNELS(PYCNN_TENSOR_OPS_KERNELS)
// Whether any of x[0, n) is NaN or Inf, on the calling thread (vectorised; one copy per x86-64 level).
bool any_nonfinite(const float* x, int64_t n);
bool any_nonfinite(const double* x, int64_t n);
}  // namespace cpu
namespace cuda { PYCNN_DECLARE_KERNELS(PYCNN_TENSOR_OPS_KERNELS) }  // namespace cuda

}  // namespace pycnn
