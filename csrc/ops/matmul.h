// Batched matrix product through the one GEMM door (blas.h): out[b] = a[b] @ b[b].
//
// Layout: a (B, M, K), b (B, K, N) -> out (B, M, N), row-major and contiguous. An operand that is
// a transposed view (the last two dims swapped, as `w.T` gives) is passed to the GEMM as
// transposed instead of being copied. Tensor.__matmul__ (1-D, 2-D and broadcast batch dims)
// reshapes its operands to this form in Python.
#pragma once

#include "../tensor.h"

namespace pycnn {

struct MatmulDims {
  int64_t batch, M, N, K;
};

// THE check: both defined, 3-D, same device and dtype (float32/float64), matching batch and K.
MatmulDims check_bmm(const Tensor& a, const Tensor& b);
Tensor bmm(const Tensor& a, const Tensor& b);

// One operand as the GEMM sees it: transposed or not, its leading dimension, its batch stride.
struct GemmOperand {
  bool trans;
  int64_t ld, batch_stride;
};

// The kernel, CPU (matmul.cpp) and CUDA (matmul.cu) alike (see PYCNN_DECLARE_KERNELS in common.h).
#define PYCNN_MATMUL_KERNELS(X, T)                                                                                     \
  X(bmm, (const T* a, GemmOperand ga, const T* b, GemmOperand gb, T* out, MatmulDims d))
namespace cpu { PYCNN_DECLARE_KERNELS(PYCNN_MATMUL_KERNELS) }  // namespace cpu
namespace cuda { PYCNN_DECLARE_KERNELS(PYCNN_MATMUL_KERNELS) }  // namespace cuda

}  // namespace pycnn
