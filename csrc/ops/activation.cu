// CUDA kernels of activation.h: one thread per element through the shared formulas, and the PReLU
// slope gradient as one block per channel with a fixed-order tree reduction (no atomics).
#include "../cuda/context.cuh"
#include "activation.h"

namespace pycnn::cuda {
namespace {

template <class T>
__global__ void act_fwd_kernel(const T* x, T* y, int64_t n, Act a, T alpha) {
  PYCNN_KERNEL_LOOP(i, n) y[i] = act_forward(a, x[i], alpha);
}

template <class T>
__global__ void act_bwd_kernel(const T* dy, const T* x, T* dx, int64_t n, Act a, T alpha) {
  PYCNN_KERNEL_LOOP(i, n) dx[i] = act_backward(a, x[i], dy[i], alpha);
}

template <class T>
__global__ void prelu_fwd_kernel(const T* x, const T* w, T* y, int64_t n, int64_t channels, int64_t inner) {
  PYCNN_KERNEL_LOOP(i, n) {
    const int64_t c = (i / inner) % channels;
    const T xi = x[i];
    y[i] = xi > T(0) ? xi : w[c] * xi;
  }
}

template <class T>
__global__ void prelu_dx_kernel(const T* dy, const T* x, const T* w, T* dx, int64_t n, int64_t channels,
                                int64_t inner) {
  PYCNN_KERNEL_LOOP(i, n) {
    const int64_t c = (i / inner) % channels;
    dx[i] = x[i] > T(0) ? dy[i] : w[c] * dy[i];
  }
}

// Block c sums x*dy over the non-positive x of channel c: thread t takes elements t, t+B, ...
// of the channel's (outer, inner) index set in order, then the tree.
template <class T>
__global__ void prelu_dw_kernel(const T* dy, const T* x, T* dw, int64_t outer, int64_t channels, int64_t inner) {
  T* sh = shared_buffer<T>();
  const int64_t per_channel = outer * inner;
  PYCNN_ROW_LOOP(c, channels) {
    T acc = T(0);
    for (int64_t j = threadIdx.x; j < per_channel; j += blockDim.x) {
      const int64_t o = j / inner, i = j % inner;
      const int64_t k = (o * channels + c) * inner + i;
      const T xi = x[k];
      if (xi <= T(0)) acc += xi * dy[k];
    }
    const T total = block_reduce_sum(acc, sh);
    if (threadIdx.x == 0) dw[c] = total;
  }
}

}  // namespace

template <class T>
void activation_forward(const T* x, T* y, int64_t n, Act a, T alpha) {
  launch_over(y, n, act_fwd_kernel<T>, x, y, n, a, alpha);
}

template <class T>
void activation_backward(const T* dy, const T* x, T* dx, int64_t n, Act a, T alpha) {
  launch_over(dx, n, act_bwd_kernel<T>, dy, x, dx, n, a, alpha);
}

template <class T>
void prelu_forward(const T* x, const T* w, T* y, int64_t outer, int64_t channels, int64_t inner) {
  const int64_t n = outer * channels * inner;
  launch_over(y, n, prelu_fwd_kernel<T>, x, w, y, n, channels, inner);
}

template <class T>
void prelu_backward(const T* dy, const T* x, const T* w, T* dx, T* dw, int64_t outer, int64_t channels,
                    int64_t inner) {
  if (channels <= 0) return;
  Exec ex(dw);
  const int64_t n = outer * channels * inner;
  ex.launch(n, prelu_dx_kernel<T>, dy, x, w, dx, n, channels, inner);
  const int threads = reduce_threads(outer * inner);
  ex.launch_rows(channels, threads, threads * sizeof(T), prelu_dw_kernel<T>, dy, x, dw, outer, channels, inner);
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_ACTIVATION_KERNELS)

}  // namespace pycnn::cuda
