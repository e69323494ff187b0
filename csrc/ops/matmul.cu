// CUDA side of matmul.h: one strided-batched cuBLAS call (cuda::gemm_strided_batched, row-major
// semantics as the CPU's blas::gemm).
#include "../cuda/blas.cuh"
#include "../cuda/context.cuh"
#include "matmul.h"

namespace pycnn::cuda {

template <class T>
void bmm(const T* a, GemmOperand ga, const T* b, GemmOperand gb, T* out, MatmulDims d) {
  gemm_strided_batched<T>(ga.trans, gb.trans, d.M, d.N, d.K, T(1), a, ga.ld, ga.batch_stride, b, gb.ld,
                          gb.batch_stride, T(0), out, d.N, d.M * d.N, d.batch);
}
PYCNN_INSTANTIATE_KERNELS(PYCNN_MATMUL_KERNELS)

}  // namespace pycnn::cuda
