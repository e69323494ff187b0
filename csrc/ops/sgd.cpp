#include "sgd.h"

namespace pycnn {

namespace {
constexpr const char* kOp = "sgd";

void check_member(const Tensor& t, const Tensor& param, size_t i, const char* what) {
  const std::string arg = cat(what, "[", i, "]"), parg = cat("params[", i, "]");
  PYCNN_CHECK(t.defined(), ValueError, kOp, ": ", arg, " is missing");
  check_same_device(param, t, kOp, parg.c_str(), arg.c_str());
  check_same_dtype(param, t, kOp, parg.c_str(), arg.c_str());
  PYCNN_CHECK(t.shape() == param.shape(), ValueError, kOp, ": expected ", arg, " of shape ", shape_str(param.shape()),
              " (the shape of ", parg, "), got ", shape_str(t.shape()));
}
}  // namespace

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

  if (found_inf) {
    PYCNN_CHECK(found_inf->defined(), ValueError, kOp, ": found_inf is missing");
    PYCNN_CHECK(found_inf->dtype() == DType::Float32 && found_inf->numel() == 1, ValueError, kOp,
                ": expected found_inf a one-element float32 tensor (from _core.nonfinite_flag), got dtype ",
                dtype_name(found_inf->dtype()), " and shape ", shape_str(found_inf->shape()));
    if (!params.empty())
      PYCNN_CHECK(found_inf->device() == params[0].device(), DeviceError, kOp, ": found_inf is on ",
                  found_inf->device().str(), " but params[0] is on ", params[0].device().str(),
                  "; the flag must live on the parameters' device (it is read by the kernels)");
  }

  // Check everything before touching anything: a bad tensor leaves the whole group unchanged.
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    const std::string parg = cat("params[", i, "]");
    PYCNN_CHECK(p.defined(), ValueError, kOp, ": ", parg, " is missing");
    PYCNN_CHECK(p.dtype() != DType::Int64, TypeError, kOp, ": ", parg,
                " is int64; parameters must be float32 or float64");
    PYCNN_CHECK(p.device() == params[0].device(), DeviceError, kOp, ": params[0] is on ", params[0].device().str(),
                " but ", parg, " is on ", p.device().str(), "; a parameter group must live on one device");
    PYCNN_CHECK(p.is_contiguous(), ValueError, kOp, ": ", parg, " of shape ", shape_str(p.shape()),
                " must be contiguous (it is updated in place)");
    check_member(grads[i], p, i, "grads");
    if (use_buf) {
      check_member(bufs[i], p, i, "momentum_buffers");
      PYCNN_CHECK(bufs[i].is_contiguous(), ValueError, kOp, ": momentum_buffers[", i,
                  "] must be contiguous (it is updated in place)");
    }
  }

  const Tensor flag = found_inf ? found_inf->contiguous() : Tensor();
  const float* skip = found_inf ? flag.data<float>() : nullptr;
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    const Tensor g = grads[i].contiguous();
    dispatch_float(p.dtype(), kOp, [&](auto t) {
      using T = decltype(t);
      T* buf = use_buf ? bufs[i].data<T>() : nullptr;
      PYCNN_ON_DEVICE(p.device(), sgd_step<T>, p.data<T>(), g.data<T>(), buf, p.numel(), T(lr), T(momentum),
                      T(1.0 - dampening), T(weight_decay), nesterov, first_step, skip);
    });
  }
}

namespace cpu {

// The same operations in the same order as torch.optim.SGD's single-tensor path.
template <class T>
void sgd_step(T* param, const T* grad, T* buf, int64_t n, T lr, T momentum, T one_minus_dampening, T weight_decay,
              bool nesterov, bool first_step, const float* skip) {
  if (skip && *skip != 0.0f) return;
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    T g = grad[i];
    if (weight_decay != T(0)) g = g + weight_decay * param[i];
    if (buf) {
      const T b = first_step ? g : buf[i] * momentum + one_minus_dampening * g;
      buf[i] = b;
      g = nesterov ? g + momentum * b : b;
    }
    param[i] = param[i] + (-lr) * g;
  }
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_SGD_KERNELS)

}  // namespace cpu
}  // namespace pycnn
