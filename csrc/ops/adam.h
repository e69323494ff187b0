// Fused Adam / AdamW step for a whole parameter group, with torch.optim.Adam's exact update rule
// (torch.optim.AdamW is the decoupled form). For each param p with gradient g and step counter s:
//   t = s + 1;  g = -g if maximize
//   if weight_decay != 0: p = p * (1 - lr*weight_decay)   (decoupled, AdamW)
//                         g = g + weight_decay * p        (else, Adam's L2 term)
//   m = lerp(m, g, 1 - beta1);   v = v * beta2 + (1 - beta2) * g * g
//   if amsgrad: v_max = max(v_max, v); v used below is v_max
//   p = p + (-lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps);   s = t
// The bias corrections are computed in double from the step counter ON the device (optim_group.h),
// so nothing waits for the host and a CUDA graph replays the step with the right t every time.
// params, exp_avgs, exp_avg_sqs, max_exp_avg_sqs and steps are updated IN PLACE.
#pragma once

#include <vector>

#include "../tensor.h"

namespace pycnn {

struct AdamHyper {
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad, maximize, decoupled_weight_decay;
};

// max_exp_avg_sqs: one per param when amsgrad, else empty. found_inf: see optim_group.h.
void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
               const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
               const std::vector<Tensor>& max_exp_avg_sqs, const std::vector<Tensor>& steps, const AdamHyper& h,
               const Tensor* found_inf = nullptr);

// One tensor of the group; max_exp_avg_sq is null unless amsgrad; step and found_inf (may be null)
// live in the memory of the kernel's device.
namespace cpu {
template <class T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, double* step, int64_t n,
               const AdamHyper& h, const float* found_inf);
}  // namespace cpu

namespace cuda {
template <class T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, double* step, int64_t n,
               const AdamHyper& h, const float* found_inf);
}  // namespace cuda

}  // namespace pycnn
