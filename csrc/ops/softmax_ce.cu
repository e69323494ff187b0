// CUDA kernels of softmax_ce.h: one block per row; the row maximum and the sums (exp, dot) are
// block tree reductions in double over a fixed partition, so results repeat bit for bit. The
// cross-entropy loss adds the per-row losses in one block, in a fixed order. No atomics, except
// the compare-and-swap that records a bad label as the device's deferred error (context.cuh).
#include "../cuda/context.cuh"
#include "softmax_ce.h"

namespace pycnn::cuda {
namespace {

// Row r's maximum m and sum of exp(x - m), both in double, known to every thread of the block.
template <class T>
__device__ inline void row_stats(const T* xr, int64_t c, double* sh, double& m, double& s) {
  double lm = -INFINITY;
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
    const double v = static_cast<double>(xr[j]);
    if (v > lm) lm = v;
  }
  m = block_reduce_max(lm, sh);
  double ls = 0;
  for (int64_t j = threadIdx.x; j < c; j += blockDim.x) ls += exp(static_cast<double>(xr[j]) - m);
  s = block_reduce_sum(ls, sh);
}

// One row of softmax (log_softmax when log) into yr, by the whole block; m and s as row_stats gives them.
template <class T>
__device__ inline void softmax_row(const T* xr, T* yr, int64_t c, bool log, double* sh, double& m, double& s) {
  row_stats(xr, c, sh, m, s);
  if (log) {
    const double ls = ::log(s);
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) yr[j] = static_cast<T>((static_cast<double>(xr[j]) - m) - ls);
  } else {
    const double inv = 1.0 / s;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x)
      yr[j] = static_cast<T>(exp(static_cast<double>(xr[j]) - m) * inv);
  }
}

template <class T>
__global__ void softmax_fwd_kernel(const T* x, T* y, int64_t n, int64_t c, bool log) {
  double* sh = shared_buffer<double>();
  PYCNN_ROW_LOOP(r, n) {
    double m, s;
    softmax_row(x + r * c, y + r * c, c, log, sh, m, s);
  }
}

template <class T>
__global__ void softmax_bwd_kernel(const T* dy, const T* y, T* dx, int64_t n, int64_t c) {
  double* sh = shared_buffer<double>();
  PYCNN_ROW_LOOP(r, n) {
    const T* dyr = dy + r * c;
    const T* yr = y + r * c;
    double ld = 0;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) ld += static_cast<double>(dyr[j]) * static_cast<double>(yr[j]);
    const double dot = block_reduce_sum(ld, sh);
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x)
      dx[r * c + j] = static_cast<T>(static_cast<double>(yr[j]) * (static_cast<double>(dyr[j]) - dot));
  }
}

// A label outside [0, c) never indexes memory: its row's loss (forward) and gradient row (backward)
// are NaN, and the label is recorded as a deferred error that the host raises as ValueError at its
// next wait for the device (context.cuh), so no host sync per step is needed to check labels.
template <class T>
__global__ void ce_fwd_kernel(const T* logits, const int64_t* labels, T* probs, double* row_loss, int64_t n, int64_t c,
                              DeferredError* err) {
  double* sh = shared_buffer<double>();
  PYCNN_ROW_LOOP(r, n) {
    const T* xr = logits + r * c;
    double m, s;
    softmax_row(xr, probs + r * c, c, false, sh, m, s);
    if (threadIdx.x == 0) {
      const int64_t lbl = labels[r];
      const bool ok = lbl >= 0 && lbl < c;
      if (!ok) report_bad_label(err, kDeferredCrossEntropy, lbl, r, c);
      const double z = ok ? static_cast<double>(xr[lbl]) : NAN;
      row_loss[r] = ::log(s) - (z - m);
    }
  }
}

template <class T>
__global__ void ce_bwd_kernel(const T* probs, const int64_t* labels, T* dx, int64_t c, T scale, int64_t total,
                              DeferredError* err) {
  PYCNN_KERNEL_LOOP(k, total) {
    const int64_t r = k / c, j = k % c;
    const T p = probs[k];
    const int64_t lbl = labels[r];
    const bool ok = lbl >= 0 && lbl < c;
    if (!ok && j == 0) report_bad_label(err, kDeferredCrossEntropyBackward, lbl, r, c);
    dx[k] = !ok ? T(NAN) : j == lbl ? (p - T(1)) * scale : p * scale;
  }
}

}  // namespace

template <class T>
void softmax_forward(const T* x, T* y, int64_t n, int64_t c, bool log) {
  if (c == 0 || n == 0) return;
  Exec ex(y);
  const int threads = reduce_threads(c);
  ex.launch_rows(n, threads, threads * sizeof(double), softmax_fwd_kernel<T>, x, y, n, c, log);
}

template <class T>
void softmax_backward(const T* dy, const T* y, T* dx, int64_t n, int64_t c) {
  if (c == 0 || n == 0) return;
  Exec ex(dx);
  const int threads = reduce_threads(c);
  ex.launch_rows(n, threads, threads * sizeof(double), softmax_bwd_kernel<T>, dy, y, dx, n, c);
}

template <class T>
void cross_entropy_forward(const T* logits, const int64_t* labels, T* probs, T* loss, int64_t n, int64_t c) {
  Exec ex(loss);
  // Row losses, then their mean in one block (the rows are few: one pass is enough).
  double* row_loss = device_workspace<double>(ex, static_cast<size_t>(n > 0 ? n : 1));
  if (n > 0) {  // c == 0 too: every label is then out of range (recorded), and each row loss NaN
    const int threads = reduce_threads(c);
    ex.launch_rows(n, threads, threads * sizeof(double), ce_fwd_kernel<T>, logits, labels, probs, row_loss, n, c,
                   ex.deferred_error());
  }
  final_sum_kernel<double, T><<<1, kReduceThreads, kReduceThreads * sizeof(double), ex.stream()>>>(
      row_loss, n, loss, static_cast<double>(n));
  PYCNN_CUDA_CHECK_LAUNCH();
}

template <class T>
void cross_entropy_backward(const T* probs, const int64_t* labels, T* dx, int64_t n, int64_t c, T scale) {
  const int64_t total = n * c;
  if (total <= 0) return;
  Exec ex(dx);
  ex.launch(total, ce_bwd_kernel<T>, probs, labels, dx, c, scale, total, ex.deferred_error());
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_SOFTMAX_CE_KERNELS)

}  // namespace pycnn::cuda
