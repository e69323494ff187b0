#include "mse.h"

namespace pycnn {

namespace {
void check_pair(const Tensor& x, const Tensor& target, const char* op) {
  check_operands(x, target, op, "input", "target");
  PYCNN_CHECK(x.shape() == target.shape(), ValueError, op, ": expected target of shape ", shape_str(x.shape()),
              " (the shape of the input), got ", shape_str(target.shape()),
              "; reshape one of them (no broadcasting)");
  PYCNN_CHECK(x.numel() > 0, ValueError, op, ": the input is empty (shape ", shape_str(x.shape()),
              "); the mean over no elements is undefined");
}
}  // namespace

Tensor mse_forward(const Tensor& x_, const Tensor& t_) {
  check_pair(x_, t_, "mse_loss");
  const Tensor x = x_.contiguous(), t = t_.contiguous();
  Tensor loss = Tensor::empty({}, x.dtype(), x.device());
  dispatch_float(x.dtype(), "mse_loss", [&](auto tag) {
    using T = decltype(tag);
    PYCNN_ON_DEVICE(x.device(), mse_forward<T>, x.data<T>(), t.data<T>(), loss.data<T>(), x.numel());
  });
  return loss;
}

Tensor mse_backward(const Tensor& x_, const Tensor& t_, double grad_scale) {
  check_pair(x_, t_, "mse_loss_backward");
  return float_op_like(x_, t_, "mse_loss_backward", [&](auto tag, const Tensor& x, const Tensor& t, const Tensor& dx) {
    using T = decltype(tag);
    PYCNN_ON_DEVICE(x.device(), mse_backward<T>, x.data<T>(), t.data<T>(), dx.data<T>(), x.numel(),
                    T(2.0 * grad_scale / static_cast<double>(x.numel())));
  });
}

namespace cpu {

template <class T>
void mse_forward(const T* x, const T* target, T* loss, int64_t n) {
  const double total = fixed_block_sum(n, [&](int64_t i) {
    const double d = static_cast<double>(x[i]) - static_cast<double>(target[i]);
    return d * d;
  });
  loss[0] = static_cast<T>(total / static_cast<double>(n));
}

template <class T>
void mse_backward(const T* x, const T* target, T* dx, int64_t n, T scale) {
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) dx[i] = (x[i] - target[i]) * scale;
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_MSE_KERNELS)

}  // namespace cpu
}  // namespace pycnn
