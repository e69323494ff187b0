// Fused RMSprop step for a whole parameter group, with torch.optim.RMSprop's exact update rule.
// For each param p with gradient g and step counter s:
//   g = -g if maximize;  g = g + weight_decay * p (when weight_decay != 0)
//   sq = sq * alpha + (1 - alpha) * g * g
//   centered: ga = lerp(ga, g, 1 - alpha); avg = sqrt(sq - ga * ga) + eps   else avg = sqrt(sq) + eps
//   momentum > 0: buf = buf * momentum + g / avg; p = p - lr * buf         else p = p - lr * g / avg
//   s = s + 1 (the rule does not use it; kept as torch does, and for found_inf's "nothing changes")
// params, square_avgs, grad_avgs, momentum_buffers and steps are updated IN PLACE.
#pragma once

#include <cmath>
#include <vector>

#include "../tensor.h"
#include "optim_group.h"

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

// The scalars of a step, rounded once from double to T as PyTorch passes Python floats.
template <class T>
struct RMSpropScalars {
  T alpha, one_minus_alpha, eps, momentum, neg_lr;
  T sign;  // -1 when maximizing (exact negation), else 1
  T l2;    // weight_decay (used when use_l2)
  bool use_l2, lerp_small;
};

template <class T>
PYCNN_HD inline RMSpropScalars<T> rmsprop_scalars(const RMSpropHyper& h) {
  RMSpropScalars<T> s;
  s.alpha = T(h.alpha);
  s.one_minus_alpha = T(1.0 - h.alpha);
  s.eps = T(h.eps);
  s.momentum = T(h.momentum);
  s.neg_lr = T(-h.lr);
  s.sign = h.maximize ? T(-1) : T(1);
  s.l2 = T(h.weight_decay);
  s.use_l2 = h.weight_decay != 0.0;
  s.lerp_small = s.one_minus_alpha < T(0.5) && s.one_minus_alpha > T(-0.5);
  return s;
}

// One element, torch.optim.RMSprop's single-tensor operations in their order (mul, addcmul; lerp,
// addcmul(-1), sqrt; add eps; mul, addcdiv or addcdiv); returns the new param. grad_avg is touched
// only when kCentered, momentum_buffer only when kMomentum. Shared by the CPU loop and CUDA kernel.
template <bool kCentered, bool kMomentum, class T>
PYCNN_HD inline T rmsprop_update(T p, T grad, T& square_avg, T& grad_avg, T& momentum_buffer,
                                 const RMSpropScalars<T>& s) {
  using std::sqrt;
  T g = grad * s.sign;
  g = s.use_l2 ? g + s.l2 * p : g;
  T sq = square_avg * s.alpha;
  sq = sq + s.one_minus_alpha * g * g;
  square_avg = sq;
  T avg;
  if constexpr (kCentered) {
    const T ga = torch_lerp(grad_avg, g, s.one_minus_alpha, s.lerp_small);
    grad_avg = ga;
    avg = sqrt(sq + T(-1) * ga * ga);  // NaN when rounding makes it negative, as in torch
  } else {
    avg = sqrt(sq);
  }
  avg = avg + s.eps;
  if constexpr (kMomentum) {
    T b = momentum_buffer * s.momentum;
    b = b + g / avg;
    momentum_buffer = b;
    return p + s.neg_lr * b;
  } else {
    return p + s.neg_lr * g / avg;
  }
}

// One tensor of the group; grad_avg / momentum_buffer are null when unused; step and found_inf
// (may be null) live in the memory of the kernel's device.
// The kernel, CPU (rmsprop.cpp) and CUDA (rmsprop.cu) alike (see PYCNN_DECLARE_KERNELS in common.h).
#define PYCNN_RMSPROP_KERNELS(X, T)                                                                                    \
  X(rmsprop_step, (T* param, const T* grad, T* square_avg, T* grad_avg, T* momentum_buffer, double* step, int64_t n,   \
                   const RMSpropHyper& h, const float* found_inf))
namespace cpu { PYCNN_DECLARE_KERNELS(PYCNN_RMSPROP_KERNELS) }  // namespace cpu
namespace cuda { PYCNN_DECLARE_KERNELS(PYCNN_RMSPROP_KERNELS) }  // namespace cuda

}  // namespace pycnn
