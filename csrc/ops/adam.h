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

#include <cmath>
#include <vector>

#include "../tensor.h"
#include "optim_group.h"

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

// The scalars of step t, computed in double and rounded once to T, as PyTorch passes Python floats
// to its kernels. Options become values (sign, decay, use_l2) so the update below has no branch.
template <class T>
struct AdamScalars {
  T neg_step_size;          // -lr / (1 - beta1^t)
  T bias_correction2_sqrt;  // sqrt(1 - beta2^t)
  T w1, beta2, one_minus_beta2, eps;
  T sign;   // -1 when maximizing (exact negation), else 1
  T decay;  // AdamW's 1 - lr*weight_decay, else 1
  T l2;     // Adam's weight_decay (used when use_l2)
  bool use_l2, w1_small;
};

template <class T>
PYCNN_HD inline AdamScalars<T> adam_scalars(const AdamHyper& h, double t) {
  using std::pow; using std::sqrt;
  const bool wd = h.weight_decay != 0.0;
  AdamScalars<T> s;
  s.neg_step_size = T(-(h.lr / (1.0 - pow(h.beta1, t))));
  s.bias_correction2_sqrt = T(sqrt(1.0 - pow(h.beta2, t)));
  s.w1 = T(1.0 - h.beta1);
  s.beta2 = T(h.beta2);
  s.one_minus_beta2 = T(1.0 - h.beta2);
  s.eps = T(h.eps);
  s.sign = h.maximize ? T(-1) : T(1);
  s.decay = wd && h.decoupled_weight_decay ? T(1.0 - h.lr * h.weight_decay) : T(1);
  s.l2 = T(h.weight_decay);
  s.use_l2 = wd && !h.decoupled_weight_decay;
  s.w1_small = s.w1 < T(0.5) && s.w1 > T(-0.5);
  return s;
}

// One element, torch.optim.Adam's single-tensor operations in their order (lerp; mul, addcmul;
// maximum; sqrt, div, add; addcdiv); returns the new param. max_exp_avg_sq is touched only when
// kAmsgrad. Straight-line code shared by the CPU loop (which vectorises it) and the CUDA kernel.
template <bool kAmsgrad, class T>
PYCNN_HD inline T adam_update(T p, T grad, T& exp_avg, T& exp_avg_sq, T& max_exp_avg_sq, const AdamScalars<T>& s) {
  using std::sqrt;
  p = p * s.decay;
  T g = grad * s.sign;
  g = s.use_l2 ? g + s.l2 * p : g;
  const T m = torch_lerp(exp_avg, g, s.w1, s.w1_small);
  T v = exp_avg_sq * s.beta2;
  v = v + s.one_minus_beta2 * g * g;
  exp_avg = m;
  exp_avg_sq = v;
  if constexpr (kAmsgrad) {
    v = nan_max(max_exp_avg_sq, v);
    max_exp_avg_sq = v;
  }
  const T denom = sqrt(v) / s.bias_correction2_sqrt + s.eps;
  return p + s.neg_step_size * m / denom;
}

// One tensor of the group; max_exp_avg_sq is null unless amsgrad; step and found_inf (may be null)
// live in the memory of the kernel's device.
// The kernel, CPU (adam.cpp) and CUDA (adam.cu) alike (see PYCNN_DECLARE_KERNELS in common.h).
#define PYCNN_ADAM_KERNELS(X, T)                                                                                       \
  X(adam_step, (T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, double* step, int64_t n,        \
                const AdamHyper& h, const float* found_inf))
namespace cpu { PYCNN_DECLARE_KERNELS(PYCNN_ADAM_KERNELS) }  // namespace cpu
namespace cuda { PYCNN_DECLARE_KERNELS(PYCNN_ADAM_KERNELS) }  // namespace cuda

}  // namespace pycnn
