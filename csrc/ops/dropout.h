// Dropout (training mode): element i of a call keeps x[i] when rng::uniform(seed, base + i) >= p,
// base = rng::advance(numel), and scales kept values by 1/(1-p). The mask depends only on
// (seed, counter), so CPU and CUDA agree and `manual_seed` repeats a run bit for bit.
#pragma once

#include "../tensor.h"

namespace pycnn {

// 0 <= p <= 1 (p == 1 drops everything). Returns (y, mask), mask = 0 or 1/(1-p) in x's dtype.
std::pair<Tensor, Tensor> dropout_forward(const Tensor& x, double p);
Tensor dropout_backward(const Tensor& dy, const Tensor& mask);  // dy * mask

namespace cpu {
template <class T>
void dropout_forward(const T* x, T* y, T* mask, int64_t n, double p, T scale, uint64_t seed, uint64_t base);
template <class T> void dropout_backward(const T* dy, const T* mask, T* dx, int64_t n);
}  // namespace cpu

namespace cuda {
template <class T>
void dropout_forward(const T* x, T* y, T* mask, int64_t n, double p, T scale, uint64_t seed, uint64_t base);
template <class T> void dropout_backward(const T* dy, const T* mask, T* dx, int64_t n);
}  // namespace cuda

}  // namespace pycnn
