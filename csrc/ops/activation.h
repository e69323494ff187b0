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
template <class T>
PYCNN_HD inline T act_forward(Act a, T x, T alpha) {
  using std::exp; using std::log1p; using std::tanh;
  switch (a) {
    case Act::ReLU: return x < T(0) ? T(0) : x;  // NaN passes through, as in PyTorch
    case Act::LeakyReLU: return x > T(0) ? x : alpha * x;
    case Act::ELU: return x > T(0) ? x : alpha * (exp(x) - T(1));
    case Act::Sigmoid: return x >= T(0) ? T(1) / (T(1) + exp(-x)) : exp(x) / (T(1) + exp(x));
    case Act::Tanh: return tanh(x);
    case Act::Softplus: return alpha * x > T(20) ? x : log1p(exp(alpha * x)) / alpha;
  }
  return x;
}

template <class T>
PYCNN_HD inline T act_backward(Act a, T x, T g, T alpha) {
  using std::exp; using std::tanh;
  switch (a) {
    case Act::ReLU: return x > T(0) ? g : T(0);
    case Act::LeakyReLU: return x > T(0) ? g : alpha * g;
    case Act::ELU: return x > T(0) ? g : g * alpha * exp(x);
    case Act::Sigmoid: { const T s = act_forward(Act::Sigmoid, x, alpha); return g * s * (T(1) - s); }
    case Act::Tanh: { const T t = tanh(x); return g * (T(1) - t * t); }
    case Act::Softplus: {
      const T z = alpha * x;
      return z > T(20) ? g : g * act_forward(Act::Sigmoid, z, alpha);
    }
  }
  return g;
}

Tensor activation_forward(const Tensor& x, Act a, double alpha);
Tensor activation_backward(const Tensor& dy, const Tensor& x, Act a, double alpha);

// PReLU: x (N, C, ...) or any shape when weight has one element; weight (1,) or (C,).
Tensor prelu_forward(const Tensor& x, const Tensor& weight);
std::pair<Tensor, Tensor> prelu_backward(const Tensor& dy, const Tensor& x, const Tensor& weight);

namespace cpu {
template <class T> void activation_forward(const T* x, T* y, int64_t n, Act a, T alpha);
template <class T> void activation_backward(const T* dy, const T* x, T* dx, int64_t n, Act a, T alpha);
// inner = product of the sizes after the channel dim; channels = 1 for a shared slope
template <class T> void prelu_forward(const T* x, const T* w, T* y, int64_t outer, int64_t channels, int64_t inner);
template <class T>
void prelu_backward(const T* dy, const T* x, const T* w, T* dx, T* dw, int64_t outer, int64_t channels, int64_t inner);
}  // namespace cpu

namespace cuda {
template <class T> void activation_forward(const T* x, T* y, int64_t n, Act a, T alpha);
template <class T> void activation_backward(const T* dy, const T* x, T* dx, int64_t n, Act a, T alpha);
template <class T> void prelu_forward(const T* x, const T* w, T* y, int64_t outer, int64_t channels, int64_t inner);
template <class T>
void prelu_backward(const T* dy, const T* x, const T* w, T* dx, T* dw, int64_t outer, int64_t channels, int64_t inner);
}  // namespace cuda

}  // namespace pycnn
