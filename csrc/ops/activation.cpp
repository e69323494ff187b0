#include "activation.h"

#include <type_traits>

namespace pycnn {

const char* act_name(Act a) {
  static const char* names[] = {"relu", "leaky_relu", "elu", "sigmoid", "tanh", "softplus"};
  return names[static_cast<int>(a)];
}

Tensor activation_forward(const Tensor& x_, Act a, double alpha) {
  check_defined(x_, act_name(a), "input");
  const Tensor x = x_.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float(x.dtype(), act_name(a), [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(x.device(), activation_forward<T>, x.data<T>(), y.data<T>(), x.numel(), a, T(alpha));
  });
  return y;
}

Tensor activation_backward(const Tensor& dy_, const Tensor& x_, Act a, double alpha) {
  const char* op = act_name(a);
  check_grad_matches(dy_, x_, op, "input", "saved input");
  return float_op_like(dy_, x_, op, [&](auto t, const Tensor& dy, const Tensor& x, const Tensor& dx) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(x.device(), activation_backward<T>, dy.data<T>(), x.data<T>(), dx.data<T>(), x.numel(), a,
                    T(alpha));
  });
}

namespace {
// (outer, channels, inner) view of x for a slope per channel along dim 1.
void prelu_layout(const Tensor& x, const Tensor& w, int64_t& outer, int64_t& channels, int64_t& inner) {
  PYCNN_CHECK(w.dim() == 1, ValueError, "prelu: expected weight of shape (1,) or (C,), got ", shape_str(w.shape()));
  channels = w.size(0);
  if (channels == 1) {
    outer = 1;
    inner = x.numel();
    return;
  }
  PYCNN_CHECK(x.dim() >= 2 && x.size(1) == channels, ValueError, "prelu: weight has ", channels,
              " slopes, so the input needs ", channels, " channels in dim 1, got shape ", shape_str(x.shape()));
  outer = x.size(0);
  inner = x.numel() / std::max<int64_t>(outer * channels, 1);
}
}  // namespace

Tensor prelu_forward(const Tensor& x_, const Tensor& w_) {
  check_operands(x_, w_, "prelu", "input", "weight");
  const Tensor x = x_.contiguous(), w = w_.contiguous();
  int64_t outer, channels, inner;
  prelu_layout(x, w, outer, channels, inner);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float(x.dtype(), "prelu", [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(x.device(), prelu_forward<T>, x.data<T>(), w.data<T>(), y.data<T>(), outer, channels, inner);
  });
  return y;
}

std::pair<Tensor, Tensor> prelu_backward(const Tensor& dy_, const Tensor& x_, const Tensor& w_) {
  check_defined(dy_, "prelu", "grad_output");
  check_same_device(dy_, x_, "prelu", "grad_output", "input");
  check_same_device(x_, w_, "prelu", "input", "weight");
  check_same_dtype(dy_, x_, "prelu", "grad_output", "input");
  check_same_dtype(x_, w_, "prelu", "input", "weight");
  check_shape(dy_, x_.shape(), "prelu", "grad_output");
  const Tensor dy = dy_.contiguous(), x = x_.contiguous(), w = w_.contiguous();
  int64_t outer, channels, inner;
  prelu_layout(x, w, outer, channels, inner);
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor dw = Tensor::empty(w.shape(), w.dtype(), w.device());
  dispatch_float(x.dtype(), "prelu", [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(x.device(), prelu_backward<T>, dy.data<T>(), x.data<T>(), w.data<T>(), dx.data<T>(),
                    dw.data<T>(), outer, channels, inner);
  });
  return {dx, dw};
}

namespace cpu {

// The switch on the activation sits outside the element loop (one loop per kind), so each loop
// body is a fixed formula the compiler can vectorise.
template <class T, class F>
void for_each_kind(Act a, F&& run) {
  switch (a) {
    case Act::ReLU: return run(std::integral_constant<Act, Act::ReLU>{});
    case Act::LeakyReLU: return run(std::integral_constant<Act, Act::LeakyReLU>{});
    case Act::ELU: return run(std::integral_constant<Act, Act::ELU>{});
    case Act::Sigmoid: return run(std::integral_constant<Act, Act::Sigmoid>{});
    case Act::Tanh: return run(std::integral_constant<Act, Act::Tanh>{});
    case Act::Softplus: return run(std::integral_constant<Act, Act::Softplus>{});
  }
}

template <Act A, class T>
void map_forward(const T* __restrict x, T* __restrict y, int64_t n, T alpha) {
#pragma omp parallel for simd if (parallel : n > kParallelGrain)  // a bare if() would turn off simd too
  for (int64_t i = 0; i < n; ++i) y[i] = act_fwd<A>(x[i], alpha);
}

template <Act A, class T>
void map_backward(const T* __restrict dy, const T* __restrict x, T* __restrict dx, int64_t n, T alpha) {
#pragma omp parallel for simd if (parallel : n > kParallelGrain)  // a bare if() would turn off simd too
  for (int64_t i = 0; i < n; ++i) dx[i] = act_bwd<A>(x[i], dy[i], alpha);
}

template <class T>
void activation_forward(const T* x, T* y, int64_t n, Act a, T alpha) {
  for_each_kind<T>(a, [&](auto kind) { map_forward<decltype(kind)::value>(x, y, n, alpha); });
}

template <class T>
void activation_backward(const T* dy, const T* x, T* dx, int64_t n, Act a, T alpha) {
  for_each_kind<T>(a, [&](auto kind) { map_backward<decltype(kind)::value>(dy, x, dx, n, alpha); });
}

template <class T>
void prelu_forward(const T* x, const T* w, T* y, int64_t outer, int64_t channels, int64_t inner) {
#pragma omp parallel for collapse(2) if (outer * channels * inner > kParallelGrain)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t base = (o * channels + c) * inner;
      for (int64_t i = 0; i < inner; ++i) y[base + i] = x[base + i] > T(0) ? x[base + i] : w[c] * x[base + i];
    }
}

// dw is a reduction: one thread per channel, summing in a fixed order, so results repeat.
template <class T>
void prelu_backward(const T* dy, const T* x, const T* w, T* dx, T* dw, int64_t outer, int64_t channels,
                    int64_t inner) {
#pragma omp parallel for if (outer * channels * inner > kParallelGrain)
  for (int64_t c = 0; c < channels; ++c) {
    T acc = 0;
    for (int64_t o = 0; o < outer; ++o) {
      const int64_t base = (o * channels + c) * inner;
      for (int64_t i = 0; i < inner; ++i) {
        const T xi = x[base + i], g = dy[base + i];
        dx[base + i] = xi > T(0) ? g : w[c] * g;
        if (xi <= T(0)) acc += xi * g;
      }
    }
    dw[c] = acc;
  }
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_ACTIVATION_KERNELS)

}  // namespace cpu
}  // namespace pycnn
