// cuBLAS GEMM with the row-major semantics of pycnn::blas::gemm (csrc/blas.h):
//   C = alpha * op(A) * op(B) + beta * C,  op(A) M x K, op(B) K x N, all row-major with leading
//   dimensions lda, ldb, ldc (in elements). Runs on the stream of the device that owns C.
// float32 uses TF32 tensor cores only when cuda_runtime::allow_tf32() is set.
// Included by .cu files only.
#pragma once

#include <cstdint>

namespace pycnn::cuda {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// `batch` independent GEMMs: matrix i of A starts at A + i*stride_a (likewise B, C).
template <class T>
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                          int64_t lda, int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b, T beta, T* C,
                          int64_t ldc, int64_t stride_c, int64_t batch);

}  // namespace pycnn::cuda
