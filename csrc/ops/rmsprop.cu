// CUDA kernel of rmsprop.h: one thread per element, rmsprop_update (the CPU loop's code); the step
// counter is advanced by a one-thread kernel queued after it (optim_group.h).
#include "../cuda/context.cuh"
#include "rmsprop.h"

namespace pycnn::cuda {
namespace {

template <bool kCentered, bool kMomentum, class T>
__global__ void rmsprop_kernel(T* param, const T* grad, T* square_avg, T* grad_avg, T* momentum_buffer, int64_t n,
                               RMSpropScalars<T> s, const float* found_inf) {
  if (found_inf && *found_inf != 0.0f) return;
  PYCNN_KERNEL_LOOP(i, n) {  // i: element of the flattened parameter
    T unused_avg = T(0), unused_buf = T(0);
    T& ga = kCentered ? grad_avg[i] : unused_avg;
    T& buf = kMomentum ? momentum_buffer[i] : unused_buf;
    param[i] = rmsprop_update<kCentered, kMomentum>(param[i], grad[i], square_avg[i], ga, buf, s);
  }
}

template <bool kCentered, bool kMomentum, class T>
void launch(const Exec& ex, T* param, const T* grad, T* square_avg, T* grad_avg, T* momentum_buffer, int64_t n,
            const RMSpropScalars<T>& s, const float* found_inf) {
  ex.launch(n, rmsprop_kernel<kCentered, kMomentum, T>, param, grad, square_avg, grad_avg, momentum_buffer, n, s,
            found_inf);
}

}  // namespace

template <class T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* grad_avg, T* momentum_buffer, double* step, int64_t n,
                  const RMSpropHyper& h, const float* found_inf) {
  Exec ex(step);
  const RMSpropScalars<T> s = rmsprop_scalars<T>(h);
  if (grad_avg && momentum_buffer) launch<true, true>(ex, param, grad, square_avg, grad_avg, momentum_buffer, n, s,
                                                      found_inf);
  else if (grad_avg) launch<true, false>(ex, param, grad, square_avg, grad_avg, momentum_buffer, n, s, found_inf);
  else if (momentum_buffer) launch<false, true>(ex, param, grad, square_avg, grad_avg, momentum_buffer, n, s,
                                                found_inf);
  else launch<false, false>(ex, param, grad, square_avg, grad_avg, momentum_buffer, n, s, found_inf);
  advance_step(step, found_inf);
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_RMSPROP_KERNELS)

}  // namespace pycnn::cuda
