// Mean squared error: loss = mean((x - target)^2) over every element (any shape, x and target
// alike). The sum runs in double over fixed blocks, so the loss repeats bit for bit whatever the
// number of threads.
#pragma once

#include "../tensor.h"

namespace pycnn {

Tensor mse_forward(const Tensor& x, const Tensor& target);  // shape ()
// dx = grad_scale * 2 * (x - target) / numel
Tensor mse_backward(const Tensor& x, const Tensor& target, double grad_scale);

namespace cpu {
template <class T> void mse_forward(const T* x, const T* target, T* loss, int64_t n);
template <class T> void mse_backward(const T* x, const T* target, T* dx, int64_t n, T scale);
}  // namespace cpu

namespace cuda {
template <class T> void mse_forward(const T* x, const T* target, T* loss, int64_t n);
template <class T> void mse_backward(const T* x, const T* target, T* dx, int64_t n, T scale);
}  // namespace cuda

}  // namespace pycnn
