#include "rmsprop.h"

#include <cmath>

#include "optim_group.h"

namespace pycnn {

namespace {
constexpr const char* kOp = "rmsprop";

void check_unused(const std::vector<Tensor>& list, const char* name, const char* why) {
  PYCNN_CHECK(list.empty(), ValueError, kOp, ": expected no ", name, " (", why, "), got ", list.size());
}
}  // namespace

void rmsprop_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                  const std::vector<Tensor>& square_avgs, const std::vector<Tensor>& grad_avgs,
                  const std::vector<Tensor>& momentum_buffers, const std::vector<Tensor>& steps,
                  const RMSpropHyper& h, const Tensor* found_inf) {
  // torch.optim.RMSprop's own checks and messages (written so that NaN fails them too)
  PYCNN_CHECK(h.lr >= 0.0, ValueError, kOp, ": Invalid learning rate: ", h.lr);
  PYCNN_CHECK(h.eps >= 0.0, ValueError, kOp, ": Invalid epsilon value: ", h.eps);
  PYCNN_CHECK(h.momentum >= 0.0, ValueError, kOp, ": Invalid momentum value: ", h.momentum);
  PYCNN_CHECK(h.weight_decay >= 0.0, ValueError, kOp, ": Invalid weight_decay value: ", h.weight_decay);
  PYCNN_CHECK(h.alpha >= 0.0, ValueError, kOp, ": Invalid alpha value: ", h.alpha);
  const bool use_buf = h.momentum > 0.0;
  std::vector<NamedBuffers> required = {{"square_avgs", &square_avgs}};
  if (h.centered) required.push_back({"grad_avgs", &grad_avgs});
  else check_unused(grad_avgs, "grad_avgs", "centered=False");
  if (use_buf) required.push_back({"momentum_buffers", &momentum_buffers});
  else check_unused(momentum_buffers, "momentum_buffers", "momentum=0");
  check_optimizer_group(kOp, params, grads, required, steps, found_inf);

  const float* skip = found_inf_data(found_inf);
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    const Tensor g = grads[i].contiguous();
    dispatch_float(p.dtype(), kOp, [&](auto t) {
      using T = decltype(t);
      T* grad_avg = h.centered ? grad_avgs[i].data<T>() : nullptr;
      T* buf = use_buf ? momentum_buffers[i].data<T>() : nullptr;
      PYCNN_ON_DEVICE(p.device(), rmsprop_step<T>, p.data<T>(), g.data<T>(), square_avgs[i].data<T>(), grad_avg,
                      buf, steps[i].data<double>(), p.numel(), h, skip);
    });
  }
}

namespace cpu {

constexpr int64_t kParallelGrain = 1 << 15;

// The same operations in the same order as torch.optim.RMSprop's single-tensor path; the scalars
// are rounded once from double to T, as PyTorch passes Python floats to its kernels.
template <class T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* grad_avg, T* momentum_buffer, double* step, int64_t n,
                  const RMSpropHyper& h, const float* found_inf) {
  if (skip_step(found_inf)) return;
  const T alpha = T(h.alpha), one_minus_alpha = T(1.0 - h.alpha), eps = T(h.eps);
  const T weight_decay = T(h.weight_decay), momentum = T(h.momentum), neg_lr = T(-h.lr);
  const bool use_wd = h.weight_decay != 0.0, maximize = h.maximize;
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    T g = maximize ? -grad[i] : grad[i];
    const T p = param[i];
    if (use_wd) g = g + weight_decay * p;
    T sq = square_avg[i] * alpha;
    sq = sq + one_minus_alpha * g * g;
    square_avg[i] = sq;
    T avg;
    if (grad_avg) {
      T ga = grad_avg[i];
      ga = std::abs(one_minus_alpha) < T(0.5) ? ga + one_minus_alpha * (g - ga)
                                              : g - (g - ga) * (T(1) - one_minus_alpha);  // torch.lerp
      grad_avg[i] = ga;
      avg = std::sqrt(sq + T(-1) * ga * ga);
    } else {
      avg = std::sqrt(sq);
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
  *step += 1.0;
}

#define PYCNN_INSTANTIATE(T) \
  template void rmsprop_step<T>(T*, const T*, T*, T*, T*, double*, int64_t, const RMSpropHyper&, const float*);
PYCNN_INSTANTIATE(float)
PYCNN_INSTANTIATE(double)
#undef PYCNN_INSTANTIATE

}  // namespace cpu
}  // namespace pycnn
