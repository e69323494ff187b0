// Elementwise activations: one table of formulas, f(x) and f'(x)·g, shared by the CPU loop
// (activation.cpp) and the CUDA kernel (activation.cu). Any shape; x, y, dy, dx all alike.
// PReLU, which has a learnable slope per channel, is here too.
#pragma once

#include <cmath>

#include "../tensor.h"

namespace pycnn {

enum class Act : int { ReLU = 0, LeakyReLU = 1, ELU = 2, Sigmoid = 3, Tanh = 4, Softplus = 5 };
const char* act_name(Act a);

// alpha: LeakyReLU's negative slope, ELU's alpha, Softplus's beta (threshold fixed at 20 as in PyTorch).
// The kind is a template argument so that a loop over one kind compiles to straight-line,
// vectorisable code; act_forward / act_backward below pick the kind at run time (CUDA uses those).
template <Act A, class T>
PYCNN_HD inline T act_fwd(T x, T alpha) {
  using std::exp; using std::log1p; using std::tanh;
  if constexpr (A == Act::ReLU) return x < T(0) ? T(0) : x;  // NaN passes through, as in PyTorch
  else if constexpr (A == Act::LeakyReLU) return x > T(0) ? x : alpha * x;
  else if constexpr (A == Act::ELU) return x > T(0) ? x : alpha * (exp(x) - T(1));
  else if constexpr (A == Act::Sigmoid) return x >= T(0) ? T(1) / (T(1) + exp(-x)) : exp(x) / (T(1) + exp(x));
  else if constexpr (A == Act::Tanh) return tanh(x);
  else return alpha * x > T(20) ? x : log1p(exp(alpha * x)) / alpha;  // Softplus
}

template <Act A, class T>
PYCNN_HD inline T act_bwd(T x, T g, T alpha) {
  using std::exp; using std::tanh;
  if constexpr (A == Act::ReLU) return x > T(0) ? g : T(0);
  else if constexpr (A == Act::LeakyReLU) return x > T(0) ? g : alpha * g;
  else if constexpr (A == Act::ELU) return x > T(0) ? g : g * alpha * exp(x);
  else if constexpr (A == Act::Sigmoid) { const T s = act_fwd<Act::Sigmoid>(x, alpha); return g * s * (T(1) - s); }
  else if constexpr (A == Act::Tanh) { const T t = tanh(x); return g * (T(1) - t * t); }
  else { const T z = alpha * x; return z > T(20) ? g : g * act_fwd<Act::Sigmoid>(z, alpha); }  // Softplus
}

template <class T>
PYCNN_HD inline T act_forward(Act a, T x, T alpha) {
  switch (a) {
    case Act::ReLU: return act_fwd<Act::ReLU>(x, alpha);
    case Act::LeakyReLU: return act_fwd<Act::LeakyReLU>(x, alpha);
    case Act::ELU: return act_fwd<Act::ELU>(x, alpha);
    case Act::Sigmoid: return act_fwd<Act::Sigmoid>(x, alpha);
    case Act::Tanh: return act_fwd<Act::Tanh>(x, alpha);
    case Act::Softplus: return act_fwd<Act::Softplus>(x, alpha);
  }
  return x;
}

template <class T>
PYCNN_HD inline T act_backward(Act a, T x, T g, T alpha) {
  switch (a) {
    case Act::ReLU: return act_bwd<Act::ReLU>(x, g, alpha);
    case Act::LeakyReLU: return act_bwd<Act::LeakyReLU>(x, g, alpha);
    case Act::ELU: return act_bwd<Act::ELU>(x, g, alpha);
    case Act::Sigmoid: return act_bwd<Act::Sigmoid>(x, g, alpha);
    case Act::Tanh: return act_bwd<Act::Tanh>(x, g, alpha);
    case Act::Softplus: return act_bwd<Act::Softplus>(x, g, alpha);
  }
  return g;
}

Tensor activation_forward(const Tensor& x, Act a, double alpha);
Tensor activation_backward(const Tensor& dy, const Tensor& x, Act a, double alpha);

// PReLU: x (N, C, ...) or any shape when weight has one element; weight (1,) or (C,).
Tensor prelu_forward(const Tensor& x, const Tensor& weight);
std::pair<Tensor, Tensor> prelu_backward(const Tensor& dy, const Tensor& x, const Tensor& weight);

// The kernels, CPU (activation.cpp) and CUDA (activation.cu) alike (see PYCNN_DECLARE_KERNELS in common.h).
// prelu_forward: inner = product of the sizes after the channel dim; channels = 1 for a shared slope
#define PYCNN_ACTIVATION_KERNELS(X, T)                                                                                 \
  X(activation_forward, (const T* x, T* y, int64_t n, Act a, T alpha))                                                 \
  X(activation_backward, (const T* dy, const T* x, T* dx, int64_t n, Act a, T alpha))                                  \
  X(prelu_forward, (const T* x, const T* w, T* y, int64_t outer, int64_t channels, int64_t inner))                     \
  X(prelu_backward, (const T* dy, const T* x, const T* w, T* dx, T* dw, int64_t outer, int64_t channels, int64_t inner))
namespace cpu { PYCNN_DECLARE_KERNELS(PYCNN_ACTIVATION_KERNELS) }  // namespace cpu
namespace cuda { PYCNN_DECLARE_KERNELS(PYCNN_ACTIVATION_KERNELS) }  // namespace cuda

}  // namespace pycnn
