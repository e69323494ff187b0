// CUDA kernels of mse.h: the loss as a deterministic two-stage sum in double (fixed chunks, fixed
// trees; no atomics), the gradient one thread per element.
#include "../cuda/context.cuh"
#include "mse.h"

namespace pycnn::cuda {
namespace {

template <class T>
struct SquaredDiff {
  const T* x;
  const T* t;
  __device__ double operator()(int64_t i) const {
    const double d = static_cast<double>(x[i]) - static_cast<double>(t[i]);
    return d * d;
  }
};

template <class T>
__global__ void mse_bwd_kernel(const T* x, const T* target, T* dx, int64_t n, T scale) {
  PYCNN_KERNEL_LOOP(i, n) dx[i] = (x[i] - target[i]) * scale;
}

}  // namespace

template <class T>
void mse_forward(const T* x, const T* target, T* loss, int64_t n) {
  Exec ex(loss);
  sum_to_scalar<double, T>(ex, SquaredDiff<T>{x, target}, n, loss, static_cast<double>(n));
}

template <class T>
void mse_backward(const T* x, const T* target, T* dx, int64_t n, T scale) {
  launch_over(dx, n, mse_bwd_kernel<T>, x, target, dx, n, scale);
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_MSE_KERNELS)

}  // namespace pycnn::cuda
