// Batch normalisation over every dim but 1 of x (N, C, *). Statistics are per channel, summed in
// double in a fixed order (partial sums per (channel, sample) in parallel, then added in sample
// order), so float32 is accurate and every result repeats bit for bit whatever the thread count.
// Optional tensors (gamma, beta, and the running stats in training) are absent when undefined.
#pragma once

#include <tuple>

#include "../tensor.h"

namespace pycnn {

// Returns (y, save_mean, save_invstd), invstd = 1/sqrt(var_biased + eps). When given, running_mean
// and running_var are updated IN PLACE the PyTorch way: r = (1-momentum)*r + momentum*stat, the
// variance stat being unbiased (var * n/(n-1), n = values per channel).
std::tuple<Tensor, Tensor, Tensor> batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                                            const Tensor& running_mean, const Tensor& running_var,
                                                            double momentum, double eps);
Tensor batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                               const Tensor& running_var, double eps);
// Training-mode gradients: (dx, dgamma, dbeta), dgamma/dbeta of shape (C,) (computed even without gamma).
std::tuple<Tensor, Tensor, Tensor> batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                                       const Tensor& save_mean, const Tensor& save_invstd);

// Kernels see x as (outer, channels, inner); gamma, beta, running_mean, running_var may be null.
// The kernels, CPU (batchnorm.cpp) and CUDA (batchnorm.cu) alike (see PYCNN_DECLARE_KERNELS in common.h).
#define PYCNN_BATCHNORM_KERNELS(X, T)                                                                                  \
  X(batch_norm_forward_train, (const T* x, const T* gamma, const T* beta, T* running_mean, T* running_var, T* y,       \
                               T* save_mean, T* save_invstd, int64_t outer, int64_t channels, int64_t inner,           \
                               double momentum, double eps))                                                           \
  X(batch_norm_forward_eval, (const T* x, const T* gamma, const T* beta, const T* running_mean,                        \
                              const T* running_var, T* y, int64_t outer, int64_t channels, int64_t inner,              \
                              double eps))                                                                             \
  X(batch_norm_backward, (const T* dy, const T* x, const T* gamma, const T* mean, const T* invstd, T* dx,              \
                          T* dgamma, T* dbeta, int64_t outer, int64_t channels, int64_t inner))
namespace cpu { PYCNN_DECLARE_KERNELS(PYCNN_BATCHNORM_KERNELS) }  // namespace cpu
namespace cuda { PYCNN_DECLARE_KERNELS(PYCNN_BATCHNORM_KERNELS) }  // namespace cuda

}  // namespace pycnn
