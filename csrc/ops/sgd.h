// Fused SGD step for a whole parameter group, with torch.optim.SGD's exact update rule:
//   g = grad + weight_decay * param
//   if momentum != 0: buf = g (first step) else momentum*buf + (1 - dampening)*g
//                     g = g + momentum*buf (nesterov) else buf
//   param -= lr * g
// params and momentum buffers are updated IN PLACE (they must be contiguous).
// found_inf (optional): a one-element float32 tensor on the params' device, read INSIDE the kernels
// (no host sync, capturable in a CUDA graph): non-zero skips the whole step, so params and momentum
// buffers keep their values (a mixed-precision loss scaler's flag; _core.nonfinite_flag makes one).
#pragma once

#include <vector>

#include "../tensor.h"
#include "optim_group.h"

namespace pycnn {

// momentum_buffers: one per param when momentum != 0, else empty (ignored).
void sgd_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
              const std::vector<Tensor>& momentum_buffers, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool first_step, const Tensor* found_inf = nullptr);

// Element i, torch.optim.SGD's single-tensor operations in their order: updates param[i] and, when
// buf is not null (momentum != 0), buf[i]. Straight-line code shared by the CPU loop and the CUDA kernel.
template <class T>
PYCNN_HD inline void sgd_update(T* param, const T* grad, T* buf, int64_t i, T lr, T momentum, T one_minus_dampening,
                                T weight_decay, bool nesterov, bool first_step) {
  T g = grad[i];
  if (weight_decay != T(0)) g = g + weight_decay * param[i];
  if (buf) {
    const T b = first_step ? g : buf[i] * momentum + one_minus_dampening * g;
    buf[i] = b;
    g = nesterov ? g + momentum * b : b;
  }
  param[i] = param[i] + (-lr) * g;
}

// One tensor of the group; buf is null when momentum == 0; one_minus_dampening = 1 - dampening
// rounded once from double, as PyTorch passes it; skip is null (never skip) or the found_inf flag,
// in the memory of the kernel's device.
// The kernels, CPU (sgd.cpp) and CUDA (sgd.cu) alike (see PYCNN_DECLARE_KERNELS in common.h).
#define PYCNN_SGD_KERNELS(X, T)                                                                                        \
  X(sgd_step, (T* param, const T* grad, T* buf, int64_t n, T lr, T momentum, T one_minus_dampening, T weight_decay,    \
               bool nesterov, bool first_step, const float* skip))
namespace cpu { PYCNN_DECLARE_KERNELS(PYCNN_SGD_KERNELS) }  // namespace cpu
namespace cuda { PYCNN_DECLARE_KERNELS(PYCNN_SGD_KERNELS) }  // namespace cuda

}  // namespace pycnn
