// Row-major GEMM through column-major cuBLAS: a row-major X (r x c, ld) is the column-major X^T,
// so C = op(A) op(B) in row-major is C^T = op(B)^T op(A)^T in column-major: call cuBLAS with the
// operands swapped, m = N, n = M, the transposes kept as they are.
#include <climits>

#include "../common.h"
#include "blas.cuh"
#include "context.cuh"
#include "cublas_lib.cuh"
#include "runtime.h"

namespace pycnn::cuda {
namespace {

int as_int(int64_t v, const char* what) {
  PYCNN_CHECK(v >= 0 && v <= INT_MAX, ValueError, "cuda gemm: ", what, " = ", v,
              " does not fit cuBLAS's 32-bit sizes");
  return static_cast<int>(v);
}

// C[i, j] = beta * C[i, j] (beta == 0 writes zeros, ignoring NaNs in C): the K == 0 case.
template <class T>
__global__ void scale_rows_kernel(T* C, int64_t ldc, int64_t stride_c, int64_t M, int64_t N, int64_t batch,
                                  T beta) {
  const int64_t total = batch * M * N;
  PYCNN_KERNEL_LOOP(k, total) {
    const int64_t b = k / (M * N), r = (k / N) % M, c = k % N;
    T* p = C + b * stride_c + r * ldc + c;
    *p = beta == T(0) ? T(0) : beta * *p;
  }
}

// Math mode per call: strict FP32 unless TF32 is allowed (float64 ignores it).
void set_math_mode(cublasHandle_t h) {
  PYCNN_CUBLAS_CHECK(
      cublas_api().set_math_mode(h, cuda_runtime::allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}

inline cublasOperation_t op(bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }

cublasStatus_t gemm_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                         const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                         float* C, int ldc) {
  return cublas_api().sgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
cublasStatus_t gemm_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                         const double* alpha, const double* A, int lda, const double* B, int ldb,
                         const double* beta, double* C, int ldc) {
  return cublas_api().dgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
cublasStatus_t gemm_batched_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                 const float* alpha, const float* A, int lda, long long sa, const float* B, int ldb,
                                 long long sb, const float* beta, float* C, int ldc, long long sc, int batch) {
  return cublas_api().sgemm_strided_batched(h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
}
cublasStatus_t gemm_batched_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                 const double* alpha, const double* A, int lda, long long sa, const double* B,
                                 int ldb, long long sb, const double* beta, double* C, int ldc, long long sc,
                                 int batch) {
  return cublas_api().dgemm_strided_batched(h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
}

}  // namespace

template <class T>
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                          int64_t lda, int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b, T beta, T* C,
                          int64_t ldc, int64_t stride_c, int64_t batch) {
  if (M == 0 || N == 0 || batch == 0) return;
  Exec ex(C);
  if (K == 0) {
    ex.launch(batch * M * N, scale_rows_kernel<T>, C, ldc, stride_c, M, N, batch, beta);
    return;
  }
  std::lock_guard<std::mutex> lock(ex.ctx().cublas_mutex());
  cublasHandle_t h = ex.ctx().cublas();
  set_math_mode(h);
  // Column-major view: C^T (N x M) = op(B)^T (N x K) * op(A)^T (K x M).
  PYCNN_CUBLAS_CHECK(gemm_batched_call(h, op(trans_b), op(trans_a), as_int(N, "N"), as_int(M, "M"), as_int(K, "K"),
                                       &alpha, B, as_int(ldb, "ldb"), stride_b, A, as_int(lda, "lda"), stride_a,
                                       &beta, C, as_int(ldc, "ldc"), stride_c, as_int(batch, "batch")));
}

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  Exec ex(C);
  if (K == 0) {
    ex.launch(M * N, scale_rows_kernel<T>, C, ldc, int64_t(0), M, N, int64_t(1), beta);
    return;
  }
  std::lock_guard<std::mutex> lock(ex.ctx().cublas_mutex());
  cublasHandle_t h = ex.ctx().cublas();
  set_math_mode(h);
  PYCNN_CUBLAS_CHECK(gemm_call(h, op(trans_b), op(trans_a), as_int(N, "N"), as_int(M, "M"), as_int(K, "K"), &alpha,
                               B, as_int(ldb, "ldb"), A, as_int(lda, "lda"), &beta, C, as_int(ldc, "ldc")));
}

#define PYCNN_INSTANTIATE(T)                                                                                     \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, int64_t, T, T*,  \
                        int64_t);                                                                                \
  template void gemm_strided_batched<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, int64_t,   \
                                        const T*, int64_t, int64_t, T, T*, int64_t, int64_t, int64_t);
PYCNN_INSTANTIATE(float)
PYCNN_INSTANTIATE(double)
#undef PYCNN_INSTANTIATE

}  // namespace pycnn::cuda
