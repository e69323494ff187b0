// CUDA kernel of index.h: one thread per moved element.
#include "../cuda/context.cuh"
#include "index.h"

namespace pycnn::cuda {
namespace {

// element e = (o * k + j) * inner + i moves src row src_rows[j] to dst row dst_rows[j] of block o
template <class T>
__global__ void move_rows_kernel(const T* src, int64_t src_n, const int64_t* src_rows, T* dst, int64_t dst_n,
                                 const int64_t* dst_rows, int64_t k, int64_t inner, int64_t total) {
  PYCNN_KERNEL_LOOP(e, total) {
    const int64_t i = e % inner, r = e / inner, j = r % k, o = r / k;
    const int64_t sr = src_rows ? src_rows[j] : j, dr = dst_rows ? dst_rows[j] : j;
    dst[(o * dst_n + dr) * inner + i] = src[(o * src_n + sr) * inner + i];
  }
}

}  // namespace

template <class T>
void move_rows(const T* src, int64_t src_n, const int64_t* src_rows, T* dst, int64_t dst_n, const int64_t* dst_rows,
               int64_t outer, int64_t k, int64_t inner) {
  const int64_t total = outer * k * inner;
  launch_over(dst, total, move_rows_kernel<T>, src, src_n, src_rows, dst, dst_n, dst_rows, k, inner, total);
}

PYCNN_INSTANTIATE_KERNELS_ANY_DTYPE(PYCNN_INDEX_KERNELS)

}  // namespace pycnn::cuda
