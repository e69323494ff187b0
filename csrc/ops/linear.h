// Fully connected layer: y = x @ w^T + b with x (N, in), w (out, in), b (out,) or absent.
// The products go through the GEMM door (blas::gemm on the CPU, cuBLAS on CUDA); the bias add
// and the bias gradient (a sum over N in a fixed order per output feature) are our own loops,
// so every result repeats bit for bit.
#pragma once

#include <optional>
#include <tuple>

#include "../tensor.h"

namespace pycnn {

struct LinearDims {
  int64_t N = 0, in = 0, out = 0;  // batch, in_features, out_features
};

// The one check: x 2-D (N, in), w 2-D (out, in), b (out,) when given, grad_output (N, out) when
// given; one float dtype and one device. Throws ValueError / TypeError / DeviceError naming `op`.
LinearDims linear_shape(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor* grad_output, const char* op);

Tensor linear_forward(const Tensor& x, const Tensor& w, const std::optional<Tensor>& b);
// (dx, dw, db); an entry is empty (None in Python) where it was not asked for.
std::tuple<std::optional<Tensor>, std::optional<Tensor>, std::optional<Tensor>> linear_backward(
    const Tensor& grad_output, const Tensor& x, const Tensor& w, bool need_dx, bool need_dw, bool need_db);

// Kernels on contiguous row-major buffers. b, dx, dw, db may be null (absent / not asked for).
// The kernels, CPU (linear.cpp) and CUDA (linear.cu) alike (see PYCNN_DECLARE_KERNELS in common.h).
#define PYCNN_LINEAR_KERNELS(X, T)                                                                                     \
  X(linear_forward, (const T* x, const T* w, const T* b, T* y, LinearDims d))                                          \
  X(linear_backward, (const T* dy, const T* x, const T* w, T* dx, T* dw, T* db, LinearDims d))
namespace cpu { PYCNN_DECLARE_KERNELS(PYCNN_LINEAR_KERNELS) }  // namespace cpu
namespace cuda { PYCNN_DECLARE_KERNELS(PYCNN_LINEAR_KERNELS) }  // namespace cuda

}  // namespace pycnn
