#include "dropout.h"

#include "../random.h"

namespace pycnn {

std::pair<Tensor, Tensor> dropout_forward(const Tensor& x_, double p) {
  check_defined(x_, "dropout", "input");
  PYCNN_CHECK(p >= 0.0 && p <= 1.0, ValueError, "dropout: probability p must be in [0, 1], got ", p,
              " (p is the fraction of elements set to zero)");
  const Tensor x = x_.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mask = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float(x.dtype(), "dropout", [&](auto t) {
    using T = decltype(t);
    const int64_t n = x.numel();
    const T scale = p < 1.0 ? static_cast<T>(1.0 / (1.0 - p)) : T(0);
    const uint64_t seed = rng::seed();
    const uint64_t base = rng::advance(static_cast<uint64_t>(n));
    PYCNN_ON_DEVICE(x.device(), dropout_forward<T>, x.data<T>(), y.data<T>(), mask.data<T>(), n, p, scale, seed, base);
  });
  return {y, mask};
}

Tensor dropout_backward(const Tensor& dy_, const Tensor& mask_) {
  const char* op = "dropout_backward";
  check_operands(dy_, mask_, op, "grad_output", "mask");
  check_shape(dy_, mask_.shape(), op, "grad_output");
  return float_op_like(dy_, mask_, op, [&](auto t, const Tensor& dy, const Tensor& mask, const Tensor& dx) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(dy.device(), dropout_backward<T>, dy.data<T>(), mask.data<T>(), dx.data<T>(), dy.numel());
  });
}

namespace cpu {

template <class T>
void dropout_forward(const T* x, T* y, T* mask, int64_t n, double p, T scale, uint64_t seed, uint64_t base) {
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const T m = rng::uniform(seed, base + static_cast<uint64_t>(i)) >= p ? scale : T(0);
    mask[i] = m;
    y[i] = x[i] * m;
  }
}

template <class T>
void dropout_backward(const T* dy, const T* mask, T* dx, int64_t n) {
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * mask[i];
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_DROPOUT_KERNELS)

}  // namespace cpu
}  // namespace pycnn
