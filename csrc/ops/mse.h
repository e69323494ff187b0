// Mean squared error: loss = mean((x - target)^2) over every element (any shape, x and target
// alike). The sum runs in double over fixed blocks, so the loss repeats bit for bit whatever the
// number of threads.
#pragma once

#include "../tensor.h"

namespace pycnn {

Tensor mse_forward(const Tensor& x, const Tensor& target);  // shape ()
// dx = grad_scale * 2 * (x - target) / numel
Tensor mse_backward(const Tensor& x, const Tensor& target, double grad_scale);

// The kernels, CPU (mse.cpp) and CUDA (mse.cu) alike (see PYCNN_DECLARE_KERNELS in common.h).
#define PYCNN_MSE_KERNELS(X, T)                                                                                        \
  X(mse_forward, (const T* x, const T* target, T* loss, int64_t n))                                                    \
  X(mse_backward, (const T* x, const T* target, T* dx, int64_t n, T scale))
namespace cpu { PYCNN_DECLARE_KERNELS(PYCNN_MSE_KERNELS) }  // namespace cpu
namespace cuda { PYCNN_DECLARE_KERNELS(PYCNN_MSE_KERNELS) }  // namespace cuda

}  // namespace pycnn
