// CUDA kernels of tensor_ops.h: elementwise ops one thread per element; sum_all a deterministic
// two-stage sum in double (fixed chunks, fixed trees); count_correct one thread per row then a
// fixed-order integer sum; isfinite_all and mark_nonfinite a flag that any thread may set (every
// writer stores the same value, so the result does not depend on timing). No atomics, except the compare-and-swap
// that records a bad label as the device's deferred error (count_correct, context.cuh).
#include "../cuda/context.cuh"
#include "tensor_ops.h"

namespace pycnn::cuda {
namespace {

template <class T>
__global__ void add_kernel(const T* a, const T* b, T* out, int64_t n) {
  PYCNN_KERNEL_LOOP(i, n) out[i] = a[i] + b[i];
}

template <class T>
__global__ void add_inplace_kernel(T* dst, const T* src, int64_t n, T alpha) {
  if (alpha == T(1)) {
    PYCNN_KERNEL_LOOP(i, n) dst[i] += src[i];
  } else {
    PYCNN_KERNEL_LOOP(i, n) dst[i] += alpha * src[i];
  }
}

template <class T>
__global__ void scale_kernel(T* t, int64_t n, T s) {
  PYCNN_KERNEL_LOOP(i, n) t[i] *= s;
}

template <class T>
__global__ void copy_rows_kernel(const T* src, int64_t src_stride, T* dst, int64_t dst_stride, int64_t cols,
                                 int64_t total) {
  PYCNN_KERNEL_LOOP(k, total) {
    const int64_t r = k / cols, j = k % cols;
    dst[r * dst_stride + j] = src[r * src_stride + j];
  }
}

template <class T>
struct AsDouble {
  const T* x;
  __device__ double operator()(int64_t i) const { return static_cast<double>(x[i]); }
};

// correct[r] = 1 when the row's first argmax (a NaN counts as the maximum) equals the label. A
// label outside [0, c) never counts and is recorded as a deferred error (raised at the next host
// sync, see context.cuh).
template <class T>
__global__ void row_correct_kernel(const T* logits, const int64_t* labels, int64_t* correct, int64_t n, int64_t c,
                                   DeferredError* err) {
  PYCNN_KERNEL_LOOP(r, n) {
    const T* row = logits + r * c;
    int64_t best = 0;
    for (int64_t j = 1; j < c; ++j) {
      const T v = row[j], b = row[best];
      if (v > b || (v != v && b == b)) best = j;
    }
    const int64_t lbl = labels[r];
    if (lbl < 0 || lbl >= c) report_bad_label(err, kDeferredCountCorrect, lbl, r, c);
    correct[r] = best == lbl ? 1 : 0;
  }
}

template <class T, class F>
__global__ void nonfinite_flag_kernel(const T* x, int64_t n, F* flag) {
  PYCNN_KERNEL_LOOP(i, n) {  // i: element of the flattened tensor
    const T v = x[i];
    if (!isfinite(v)) *flag = F(1);
  }
}

template <class T>
__global__ void keep_or_undo_kernel(T* t, T* backup, int64_t n, const float* flag) {
  const bool undo = *flag != 0.0f;
  PYCNN_KERNEL_LOOP(i, n) {  // i: element of the flattened tensor
    if (undo)
      t[i] = backup[i];
    else
      backup[i] = t[i];
  }
}

}  // namespace

template <class T>
void add(const T* a, const T* b, T* out, int64_t n) {
  launch_over(out, n, add_kernel<T>, a, b, out, n);
}

template <class T>
void add_(T* dst, const T* src, int64_t n, T alpha) {
  launch_over(dst, n, add_inplace_kernel<T>, dst, src, n, alpha);
}

template <class T>
void scale_(T* t, int64_t n, T s) {
  launch_over(t, n, scale_kernel<T>, t, n, s);
}

template <class T>
void copy_rows(const T* src, int64_t src_stride, T* dst, int64_t dst_stride, int64_t rows, int64_t cols) {
  const int64_t total = rows * cols;
  launch_over(dst, total, copy_rows_kernel<T>, src, src_stride, dst, dst_stride, cols, total);
}

template <class T>
void sum_all(const T* x, T* out, int64_t n) {
  Exec ex(out);
  sum_to_scalar<double, T>(ex, AsDouble<T>{x}, n, out, 1.0);
}

template <class T>
void count_correct(const T* logits, const int64_t* labels, int64_t* out, int64_t n, int64_t c) {
  Exec ex(out);
  int64_t* correct = device_workspace<int64_t>(ex, static_cast<size_t>(n > 0 ? n : 1));
  // c == 0 too: every label is then out of range, and the kernel records it.
  if (n > 0) ex.launch(n, row_correct_kernel<T>, logits, labels, correct, n, c, ex.deferred_error());
  const int64_t rows = c > 0 ? n : 0;
  final_sum_kernel<int64_t, int64_t><<<1, kReduceThreads, kReduceThreads * sizeof(int64_t), ex.stream()>>>(
      correct, rows, out, int64_t(1));
  PYCNN_CUDA_CHECK_LAUNCH();
}

template <class T>
void isfinite_all(const T* x, int64_t n, bool* result) {
  *result = true;
  if (n <= 0) return;
  Exec ex(x);
  refuse_during_capture(ex.device(), "isfinite_all");  // before anything is recorded
  int* flag = device_workspace<int>(ex, 1);
  PYCNN_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), ex.stream()));
  ex.launch(n, nonfinite_flag_kernel<T, int>, x, n, flag);
  int host = 0;
  PYCNN_CUDA_CHECK(cudaMemcpyAsync(&host, flag, sizeof(int), cudaMemcpyDeviceToHost, ex.stream()));
  host_wait(ex.device());  // counted; raises a deferred error (e.g. a bad CUDA label) recorded before
  *result = host == 0;
}

template <class T>
void mark_nonfinite(const T* x, int64_t n, float* flag) {
  if (n <= 0) return;
  Exec ex(flag);
  ex.launch(n, nonfinite_flag_kernel<T, float>, x, n, flag);  // no sync: the flag stays on the device
}

template <class T>
void keep_or_undo(T* t, T* backup, int64_t n, const float* flag) {
  launch_over(t, n, keep_or_undo_kernel<T>, t, backup, n, flag);
}

PYCNN_INSTANTIATE_KERNELS_WITH_INT64(PYCNN_TENSOR_OPS_KERNELS_WITH_INT64)
PYCNN_INSTANTIATE_KERNELS(PYCNN_TENSOR_OPS_KERNELS_FLOAT)

}  // namespace pycnn::cuda
