// Integer-array indexing along one dim: x[..., index, ...] (gather) and x[..., index, ...] = v
// (scatter), the kernels behind Tensor.__getitem__/__setitem__ with an index tensor or bool mask.
//
// Layout: x (contiguous) is viewed as (outer, n, inner) around `dim`; `index` is 1-D int64 with
// values in [-n, n) (negative counts from the end). The indices are checked on the host (a CUDA
// index is copied there first, a sync, as a bool mask costs in torch). When an index repeats in a
// scatter the last value wins, on every device: duplicates are dropped on the host, so each
// destination row is written by one thread.
#pragma once

#include "../tensor.h"

namespace pycnn {

// THE check: index 1-D int64 on x's device, dim in range, every value in range. Returns the
// normalised indices (host memory).
std::vector<int64_t> check_index(const Tensor& x, int64_t dim, const Tensor& index, const char* op);

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// x[..., index, ...] = values, values broadcast to x's shape with dim resized to len(index).
void index_put_(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& values);

// The kernel, CPU (index.cpp) and CUDA (index.cu) alike, for every dtype (see PYCNN_DECLARE_KERNELS in common.h).
// move_rows: dst[(o * dst_n + dst_rows[j]) * inner + i] = src[(o * src_n + src_rows[j]) * inner + i]
// for o < outer, j < k, i < inner; a null rows pointer means row j itself.
#define PYCNN_INDEX_KERNELS(X, T)                                                                                      \
  X(move_rows, (const T* src, int64_t src_n, const int64_t* src_rows, T* dst, int64_t dst_n, const int64_t* dst_rows,  \
                int64_t outer, int64_t k, int64_t inner))
namespace cpu { PYCNN_DECLARE_KERNELS(PYCNN_INDEX_KERNELS) }  // namespace cpu
namespace cuda { PYCNN_DECLARE_KERNELS(PYCNN_INDEX_KERNELS) }  // namespace cuda

}  // namespace pycnn
