// CUDA kernel of sgd.h: one thread per element, sgd_update (the CPU loop's code);
// every thread reads the found_inf flag (when given) and leaves its element alone when it is set.
#include "../cuda/context.cuh"
#include "sgd.h"

namespace pycnn::cuda {
namespace {

template <class T>
__global__ void sgd_kernel(T* param, const T* grad, T* buf, int64_t n, T lr, T momentum, T one_minus_dampening,
                           T weight_decay, bool nesterov, bool first_step, const float* skip) {
  if (skip && *skip != 0.0f) return;
  PYCNN_KERNEL_LOOP(i, n) {  // i: element of the flattened parameter
    sgd_update(param, grad, buf, i, lr, momentum, one_minus_dampening, weight_decay, nesterov, first_step);
  }
}

}  // namespace

template <class T>
void sgd_step(T* param, const T* grad, T* buf, int64_t n, T lr, T momentum, T one_minus_dampening, T weight_decay,
              bool nesterov, bool first_step, const float* skip) {
  launch_over(param, n, sgd_kernel<T>, param, grad, buf, n, lr, momentum, one_minus_dampening, weight_decay,
              nesterov, first_step, skip);
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_SGD_KERNELS)

}  // namespace pycnn::cuda
