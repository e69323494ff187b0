// Fused RMSprop step for a whole parameter group, with torch.optim.RMSprop's exact update rule.
// For each param p with gradient g and step counter s:
//   g = -g if maximize;  g = g + weight_decay * p (when weight_decay != 0)
//   sq = sq * alpha + (1 - alpha) * g * g
//   centered: ga = lerp(ga, g, 1 - alpha); avg = sqrt(sq - ga * ga) + eps   else avg = sqrt(sq) + eps
//   momentum > 0: buf = buf * momentum + g / avg; p = p - lr * buf         else p = p - lr * g / avg
//   s = s + 1 (the rule does not use it; kept as torch does, and for found_inf's "nothing changes")
// params, square_avgs, grad_avgs, momentum_buffers and steps are updated IN PLACE.
#pragma once

#include <vector>

#include "../tensor.h"

namespace pycnn {

struct RMSpropHyper {
  double lr, alpha, eps, weight_decay, momentum;
  bool centered, maximize;
};

// grad_avgs: one per param when centered, else empty; momentum_buffers: one per param when
// momentum > 0, else empty. found_inf: see optim_group.h.
void rmsprop_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                  const std::vector<Tensor>& square_avgs, const std::vector<Tensor>& grad_avgs,
                  const std::vector<Tensor>& momentum_buffers, const std::vector<Tensor>& steps,
                  const RMSpropHyper& h, const Tensor* found_inf = nullptr);

// One tensor of the group; grad_avg / momentum_buffer are null when unused; step and found_inf
// (may be null) live in the memory of the kernel's device.
namespace cpu {
template <class T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* grad_avg, T* momentum_buffer, double* step, int64_t n,
                  const RMSpropHyper& h, const float* found_inf);
}  // namespace cpu

namespace cuda {
template <class T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* grad_avg, T* momentum_buffer, double* step, int64_t n,
                  const RMSpropHyper& h, const float* found_inf);
}  // namespace cuda

}  // namespace pycnn
