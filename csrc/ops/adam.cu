// CUDA kernel of adam.h: one thread per element, adam_update (the CPU loop's code). Each thread
// derives the step's scalars from the device-side step counter (t = *step + 1); the counter is
// advanced by a one-thread kernel queued after it (optim_group.h), so every thread reads the same t.
#include "../cuda/context.cuh"
#include "adam.h"

namespace pycnn::cuda {
namespace {

template <bool kAmsgrad, class T>
__global__ void adam_kernel(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
                            const double* step, int64_t n, AdamHyper h, const float* found_inf) {
  if (found_inf && *found_inf != 0.0f) return;
  const AdamScalars<T> s = adam_scalars<T>(h, *step + 1.0);
  PYCNN_KERNEL_LOOP(i, n) {  // i: element of the flattened parameter
    T unused = T(0);
    T& vmax = kAmsgrad ? max_exp_avg_sq[i] : unused;
    param[i] = adam_update<kAmsgrad>(param[i], grad[i], exp_avg[i], exp_avg_sq[i], vmax, s);
  }
}

}  // namespace

template <class T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, double* step, int64_t n,
               const AdamHyper& h, const float* found_inf) {
  Exec ex(step);
  const double* t = step;
  if (max_exp_avg_sq)
    ex.launch(n, adam_kernel<true, T>, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, t, n, h, found_inf);
  else
    ex.launch(n, adam_kernel<false, T>, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, t, n, h, found_inf);
  advance_step(step, found_inf);
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_ADAM_KERNELS)

}  // namespace pycnn::cuda
