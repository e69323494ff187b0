#include "mse.h"

#include <algorithm>
#include <vector>

namespace pycnn {

namespace {
void check_pair(const Tensor& x, const Tensor& target, const char* op) {
  check_defined(x, op, "input");
  check_defined(target, op, "target");
  check_same_device(x, target, op, "input", "target");
  check_same_dtype(x, target, op, "input", "target");
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
  const Tensor x = x_.contiguous(), t = t_.contiguous();
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float(x.dtype(), "mse_loss_backward", [&](auto tag) {
    using T = decltype(tag);
    PYCNN_ON_DEVICE(x.device(), mse_backward<T>, x.data<T>(), t.data<T>(), dx.data<T>(), x.numel(),
                    T(2.0 * grad_scale / static_cast<double>(x.numel())));
  });
  return dx;
}

namespace cpu {

constexpr int64_t kBlock = 1 << 14;  // fixed reduction blocks: the result does not depend on threads

template <class T>
void mse_forward(const T* x, const T* target, T* loss, int64_t n) {
  const int64_t nb = (n + kBlock - 1) / kBlock;
  std::vector<double> part(static_cast<size_t>(nb));
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
    double s = 0;
    for (int64_t i = lo; i < hi; ++i) {
      const double d = static_cast<double>(x[i]) - static_cast<double>(target[i]);
      s += d * d;
    }
    part[b] = s;
  }
  double total = 0;
  for (int64_t b = 0; b < nb; ++b) total += part[b];
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
