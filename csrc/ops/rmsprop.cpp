#include "rmsprop.h"

namespace pycnn {

constexpr const char* kOp = "rmsprop";

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
  require_if(h.centered, kOp, "grad_avgs", grad_avgs, "centered=False", required);
  require_if(use_buf, kOp, "momentum_buffers", momentum_buffers, "momentum=0", required);
  check_optimizer_group(kOp, params, grads, required, steps, found_inf);

  const float* skip = found_inf_data(found_inf);
  for_each_param(kOp, params, grads, [&](auto t, size_t i, const Tensor& p, const Tensor& g) {
    using T = decltype(t);
    T* grad_avg = h.centered ? grad_avgs[i].data<T>() : nullptr;
    T* buf = use_buf ? momentum_buffers[i].data<T>() : nullptr;
    PYCNN_ON_DEVICE(p.device(), rmsprop_step<T>, p.data<T>(), g.data<T>(), square_avgs[i].data<T>(), grad_avg, buf,
                    steps[i].data<double>(), p.numel(), h, skip);
  });
}

namespace cpu {

template <bool kCentered, bool kMomentum, class T>
void rmsprop_loop(T* param, const T* grad, T* square_avg, T* grad_avg, T* momentum_buffer, int64_t n,
                  const RMSpropScalars<T> s) {
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    T unused_avg = T(0), unused_buf = T(0);
    T& ga = kCentered ? grad_avg[i] : unused_avg;
    T& buf = kMomentum ? momentum_buffer[i] : unused_buf;
    param[i] = rmsprop_update<kCentered, kMomentum>(param[i], grad[i], square_avg[i], ga, buf, s);
  }
}

template <class T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* grad_avg, T* momentum_buffer, double* step, int64_t n,
                  const RMSpropHyper& h, const float* found_inf) {
  if (skip_step(found_inf)) return;
  const RMSpropScalars<T> s = rmsprop_scalars<T>(h);
  if (grad_avg && momentum_buffer) rmsprop_loop<true, true>(param, grad, square_avg, grad_avg, momentum_buffer, n, s);
  else if (grad_avg) rmsprop_loop<true, false>(param, grad, square_avg, grad_avg, momentum_buffer, n, s);
  else if (momentum_buffer) rmsprop_loop<false, true>(param, grad, square_avg, grad_avg, momentum_buffer, n, s);
  else rmsprop_loop<false, false>(param, grad, square_avg, grad_avg, momentum_buffer, n, s);
  *step += 1.0;
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_RMSPROP_KERNELS)

}  // namespace cpu
}  // namespace pycnn
