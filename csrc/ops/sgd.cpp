#include "sgd.h"

namespace pycnn {

constexpr const char* kOp = "sgd";

void sgd_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
              const std::vector<Tensor>& bufs, double lr, double momentum, double dampening, double weight_decay,
              bool nesterov, bool first_step, const Tensor* found_inf) {
  // torch.optim.SGD's own checks and messages
  PYCNN_CHECK(lr >= 0.0, ValueError, kOp, ": Invalid learning rate: ", lr);
  PYCNN_CHECK(momentum >= 0.0, ValueError, kOp, ": Invalid momentum value: ", momentum);
  PYCNN_CHECK(weight_decay >= 0.0, ValueError, kOp, ": Invalid weight_decay value: ", weight_decay);
  PYCNN_CHECK(!nesterov || (momentum > 0.0 && dampening == 0.0), ValueError, kOp,
              ": Nesterov momentum requires a momentum and zero dampening (got momentum=", momentum,
              ", dampening=", dampening, ")");
  PYCNN_CHECK(grads.size() == params.size(), ValueError, kOp, ": expected one gradient per parameter, got ",
              grads.size(), " gradients for ", params.size(), " parameters");
  const bool use_buf = momentum != 0.0;
  if (use_buf)
    PYCNN_CHECK(bufs.size() == params.size(), ValueError, kOp, ": momentum=", momentum,
                " needs one momentum buffer per parameter, got ", bufs.size(), " buffers for ", params.size(),
                " parameters");
  else
    PYCNN_CHECK(bufs.empty() || bufs.size() == params.size(), ValueError, kOp,
                ": expected no momentum buffers (momentum=0) or one per parameter, got ", bufs.size(),
                " buffers for ", params.size(), " parameters");
  check_found_inf(kOp, found_inf, params);
  // Check everything before touching anything: a bad tensor leaves the whole group unchanged.
  std::vector<NamedBuffers> required;
  if (use_buf) required.push_back({"momentum_buffers", &bufs});
  check_group_members(kOp, params, grads, required, nullptr);

  const float* skip = found_inf_data(found_inf);
  for_each_param(kOp, params, grads, [&](auto t, size_t i, const Tensor& p, const Tensor& g) {
    using T = decltype(t);
    T* buf = use_buf ? bufs[i].data<T>() : nullptr;
    PYCNN_ON_DEVICE(p.device(), sgd_step<T>, p.data<T>(), g.data<T>(), buf, p.numel(), T(lr), T(momentum),
                    T(1.0 - dampening), T(weight_decay), nesterov, first_step, skip);
  });
}

namespace cpu {

template <class T>
void sgd_step(T* param, const T* grad, T* buf, int64_t n, T lr, T momentum, T one_minus_dampening, T weight_decay,
              bool nesterov, bool first_step, const float* skip) {
  if (skip_step(skip)) return;
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i)
    sgd_update(param, grad, buf, i, lr, momentum, one_minus_dampening, weight_decay, nesterov, first_step);
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_SGD_KERNELS)

}  // namespace cpu
}  // namespace pycnn
