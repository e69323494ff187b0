// CUDA kernel of adam.h: one thread per element, torch.optim.Adam's operations in the CPU's order.
// Each thread derives the bias corrections from the device-side step counter (t = *step + 1); the
// counter is advanced by a second one-thread kernel queued after it, so every thread reads the same t.
#include "../cuda/context.cuh"
#include "adam.h"
#include "optim_group.h"

namespace pycnn::cuda {
namespace {

template <class T>
__global__ void adam_kernel(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
                            const double* step, int64_t n, AdamHyper h, const float* found_inf) {
  if (found_inf && *found_inf != 0.0f) return;
  const double t = *step + 1.0;
  const T neg_step_size = T(-(h.lr / (1.0 - pow(h.beta1, t))));
  const T bias_correction2_sqrt = T(sqrt(1.0 - pow(h.beta2, t)));
  const T w1 = T(1.0 - h.beta1), beta2 = T(h.beta2), one_minus_beta2 = T(1.0 - h.beta2), eps = T(h.eps);
  const T weight_decay = T(h.weight_decay), decay = T(1.0 - h.lr * h.weight_decay);
  PYCNN_KERNEL_LOOP(i, n) {  // i: element of the flattened parameter
    T g = h.maximize ? -grad[i] : grad[i];
    T p = param[i];
    if (h.weight_decay != 0.0) {
      if (h.decoupled_weight_decay) p = p * decay;
      else g = g + weight_decay * p;
    }
    T m = exp_avg[i];
    m = fabs(w1) < T(0.5) ? m + w1 * (g - m) : g - (g - m) * (T(1) - w1);  // torch.lerp
    T v = exp_avg_sq[i] * beta2;
    v = v + one_minus_beta2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    if (max_exp_avg_sq) {
      const T old = max_exp_avg_sq[i];
      v = (isnan(old) || isnan(v)) ? old + v : (old > v ? old : v);  // torch.maximum keeps NaN
      max_exp_avg_sq[i] = v;
    }
    const T denom = sqrt(v) / bias_correction2_sqrt + eps;
    param[i] = p + neg_step_size * m / denom;
  }
}

}  // namespace

template <class T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, double* step, int64_t n,
               const AdamHyper& h, const float* found_inf) {
  Exec ex(step);
  ex.launch(n, adam_kernel<T>, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, static_cast<const double*>(step),
            n, h, found_inf);
  advance_step(step, found_inf);
}

#define PYCNN_INSTANTIATE(T) \
  template void adam_step<T>(T*, const T*, T*, T*, T*, double*, int64_t, const AdamHyper&, const float*);
PYCNN_INSTANTIATE(float)
PYCNN_INSTANTIATE(double)
#undef PYCNN_INSTANTIATE

}  // namespace pycnn::cuda
