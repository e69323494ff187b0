// CUDA kernels of linear.h: the products through cuBLAS (cuda::gemm, same row-major calls as the
// CPU), the bias add one thread per element, the bias gradient one block per output feature: each
// thread adds a fixed stride of rows, then block_reduce_sum's fixed tree (bit-identical run to
// run for a given batch size, no atomics).
#include "../cuda/blas.cuh"
#include "../cuda/context.cuh"
#include "linear.h"

namespace pycnn::cuda {
namespace {

template <class T>
__global__ void add_bias_kernel(T* y, const T* b, int64_t out, int64_t total) {
  PYCNN_KERNEL_LOOP(k, total) y[k] += b[k % out];
}

template <class T>
__global__ void column_sum_kernel(const T* dy, T* db, int64_t rows, int64_t cols) {
  T* sh = shared_buffer<T>();
  PYCNN_ROW_LOOP(c, cols) {
    T acc = T(0);
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) acc += dy[r * cols + c];
    acc = block_reduce_sum(acc, sh);
    if (threadIdx.x == 0) db[c] = acc;
  }
}

}  // namespace

template <class T>
void linear_forward(const T* x, const T* w, const T* b, T* y, LinearDims d) {
  if (d.N == 0 || d.out == 0) return;
  gemm<T>(false, true, d.N, d.out, d.in, T(1), x, d.in, w, d.in, T(0), y, d.out);  // in == 0 writes zeros
  if (!b) return;
  Exec ex(y);
  const int64_t total = d.N * d.out;
  ex.launch(total, add_bias_kernel<T>, y, b, d.out, total);
}

template <class T>
void linear_backward(const T* dy, const T* x, const T* w, T* dx, T* dw, T* db, LinearDims d) {
  if (dx) gemm<T>(false, false, d.N, d.in, d.out, T(1), dy, d.out, w, d.in, T(0), dx, d.in);  // dy @ w
  if (dw) gemm<T>(true, false, d.out, d.in, d.N, T(1), dy, d.out, x, d.in, T(0), dw, d.in);   // dy^T @ x
  if (db && d.out > 0) {
    Exec ex(db);
    const int threads = reduce_threads(d.N);
    ex.launch_rows(d.out, threads, threads * sizeof(T), column_sum_kernel<T>, dy, db, d.N, d.out);
  }
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_LINEAR_KERNELS)

}  // namespace pycnn::cuda
