#include "adam.h"

namespace pycnn {

constexpr const char* kOp = "adam";

void adam_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
               const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
               const std::vector<Tensor>& max_exp_avg_sqs, const std::vector<Tensor>& steps, const AdamHyper& h,
               const Tensor* found_inf) {
  // torch.optim.Adam's own checks and messages (written so that NaN fails them too)
  PYCNN_CHECK(h.lr >= 0.0, ValueError, kOp, ": Invalid learning rate: ", h.lr);
  PYCNN_CHECK(h.eps >= 0.0, ValueError, kOp, ": Invalid epsilon value: ", h.eps);
  PYCNN_CHECK(h.beta1 >= 0.0 && h.beta1 < 1.0, ValueError, kOp, ": Invalid beta parameter at index 0: ", h.beta1);
  PYCNN_CHECK(h.beta2 >= 0.0 && h.beta2 < 1.0, ValueError, kOp, ": Invalid beta parameter at index 1: ", h.beta2);
  PYCNN_CHECK(h.weight_decay >= 0.0, ValueError, kOp, ": Invalid weight_decay value: ", h.weight_decay);
  std::vector<NamedBuffers> required = {{"exp_avgs", &exp_avgs}, {"exp_avg_sqs", &exp_avg_sqs}};
  require_if(h.amsgrad, kOp, "max_exp_avg_sqs", max_exp_avg_sqs, "amsgrad=False", required);
  check_optimizer_group(kOp, params, grads, required, steps, found_inf);

  const float* skip = found_inf_data(found_inf);
  for_each_param(kOp, params, grads, [&](auto t, size_t i, const Tensor& p, const Tensor& g) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(p.device(), adam_step<T>, p.data<T>(), g.data<T>(), exp_avgs[i].data<T>(),
                    exp_avg_sqs[i].data<T>(), h.amsgrad ? max_exp_avg_sqs[i].data<T>() : nullptr,
                    steps[i].data<double>(), p.numel(), h, skip);
  });
}

namespace cpu {

template <bool kAmsgrad, class T>
void adam_loop(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t n,
               const AdamScalars<T> s) {
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    T unused = T(0);
    T& vmax = kAmsgrad ? max_exp_avg_sq[i] : unused;
    param[i] = adam_update<kAmsgrad>(param[i], grad[i], exp_avg[i], exp_avg_sq[i], vmax, s);
  }
}

template <class T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, double* step, int64_t n,
               const AdamHyper& h, const float* found_inf) {
  if (skip_step(found_inf)) return;
  const double t = *step + 1.0;
  const AdamScalars<T> s = adam_scalars<T>(h, t);
  if (max_exp_avg_sq) adam_loop<true>(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, n, s);
  else adam_loop<false>(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, n, s);
  *step = t;
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_ADAM_KERNELS)

}  // namespace cpu
}  // namespace pycnn
