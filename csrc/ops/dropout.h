// Dropout (training mode): element i of a call keeps x[i] when rng::uniform(seed, base + i) >= p,
// base = rng::advance(numel), and scales kept values by 1/(1-p). The mask depends only on
// (seed, counter), so CPU and CUDA agree and `manual_seed` repeats a run bit for bit.
#pragma once

#include "../tensor.h"

namespace pycnn {

// 0 <= p <= 1 (p == 1 drops everything). Returns (y, mask), mask = 0 or 1/(1-p) in x's dtype.
std::pair<Tensor, Tensor> dropout_forward(const Tensor& x, double p);
Tensor dropout_backward(const Tensor& dy, const Tensor& mask);  // dy * mask

// The kernels, CPU (dropout.cpp) and CUDA (dropout.cu) alike (see PYCNN_DECLARE_KERNELS in common.h).
#define PYCNN_DROPOUT_KERNELS(X, T)                                                                                    \
  X(dropout_forward, (const T* x, T* y, T* mask, int64_t n, double p, T scale, uint64_t seed, uint64_t base))          \
  X(dropout_backward, (const T* dy, const T* mask, T* dx, int64_t n))
namespace cpu { PYCNN_DECLARE_KERNELS(PYCNN_DROPOUT_KERNELS) }  // namespace cpu
namespace cuda { PYCNN_DECLARE_KERNELS(PYCNN_DROPOUT_KERNELS) }  // namespace cuda

}  // namespace pycnn
