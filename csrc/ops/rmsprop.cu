// CUDA kernel of rmsprop.h: one thread per element, torch.optim.RMSprop's operations in the CPU's
// order; the step counter is advanced by a one-thread kernel queued after it (optim_group.h).
#include "../cuda/context.cuh"
#include "optim_group.h"
#include "rmsprop.h"

namespace pycnn::cuda {
namespace {

template <class T>
__global__ void rmsprop_kernel(T* param, const T* grad, T* square_avg, T* grad_avg, T* momentum_buffer, int64_t n,
                               RMSpropHyper h, const float* found_inf) {
  if (found_inf && *found_inf != 0.0f) return;
  const T alpha = T(h.alpha), one_minus_alpha = T(1.0 - h.alpha), eps = T(h.eps);
  const T weight_decay = T(h.weight_decay), momentum = T(h.momentum), neg_lr = T(-h.lr);
  PYCNN_KERNEL_LOOP(i, n) {  // i: element of the flattened parameter
    T g = h.maximize ? -grad[i] : grad[i];
    const T p = param[i];
    if (h.weight_decay != 0.0) g = g + weight_decay * p;
    T sq = square_avg[i] * alpha;
    sq = sq + one_minus_alpha * g * g;
    square_avg[i] = sq;
    T avg;
    if (grad_avg) {
      T ga = grad_avg[i];
      ga = fabs(one_minus_alpha) < T(0.5) ? ga + one_minus_alpha * (g - ga)
                                          : g - (g - ga) * (T(1) - one_minus_alpha);  // torch.lerp
      grad_avg[i] = ga;
      avg = sqrt(sq + T(-1) * ga * ga);
    } else {
      avg = sqrt(sq);
    }
    avg = avg + eps;
    if (momentum_buffer) {
      T b = momentum_buffer[i] * momentum;
      b = b + g / avg;
      momentum_buffer[i] = b;
      param[i] = p + neg_lr * b;
    } else {
      param[i] = p + neg_lr * g / avg;
    }
  }
}

}  // namespace

template <class T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* grad_avg, T* momentum_buffer, double* step, int64_t n,
                  const RMSpropHyper& h, const float* found_inf) {
  Exec ex(step);
  ex.launch(n, rmsprop_kernel<T>, param, grad, square_avg, grad_avg, momentum_buffer, n, h, found_inf);
  advance_step(step, found_inf);
}

#define PYCNN_INSTANTIATE(T) \
  template void rmsprop_step<T>(T*, const T*, T*, T*, T*, double*, int64_t, const RMSpropHyper&, const float*);
PYCNN_INSTANTIATE(float)
PYCNN_INSTANTIATE(double)
#undef PYCNN_INSTANTIATE

}  // namespace pycnn::cuda
