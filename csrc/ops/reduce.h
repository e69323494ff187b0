// Reductions over one dim: sum, mean, max, min, argmax, argmin (torch's semantics: max/min
// propagate NaN, argmax/argmin give the first index of the extreme, NaN counting as the extreme).
//
// Layout: x (contiguous) is viewed as (outer, n, inner) around the reduced dim, the output as
// (outer, inner) (keepdim puts a size-1 dim back). Each output element is reduced by one CPU
// thread in index order, or by one CUDA block (threads over a fixed stride of k, then a fixed
// tree): no atomics, results repeat bit for bit. Float sums accumulate in double.
#pragma once

#include "../tensor.h"

namespace pycnn {

enum class ReduceOp : int { Sum, Mean, Max, Min, Argmax, Argmin };
const char* reduce_name(ReduceOp op);

struct ReduceShape {
  int64_t outer, n, inner;
};

// THE check: defined, dim in range, a dtype the op accepts, a non-empty dim for max/min/arg*.
// Returns the normalised dim.
int64_t check_reduce(const Tensor& x, int64_t dim, ReduceOp op);

// Sum/Mean: the values (sum of bool or int64: int64); Max/Min: the values; Argmax/Argmin: int64 indices.
Tensor reduce(const Tensor& x, int64_t dim, ReduceOp op, bool keepdim);
// max/min along dim with their indices: {values, indices}.
std::pair<Tensor, Tensor> reduce_with_indices(const Tensor& x, int64_t dim, bool is_max, bool keepdim);

// Sum accumulates in double for floats and int64 for integers; mean divides by n.
namespace cpu {
template <class T, class Out> void reduce_sum(const T* x, Out* out, ReduceShape s, bool mean);
// values or indices may be null.
template <class T> void reduce_extreme(const T* x, T* values, int64_t* indices, ReduceShape s, bool is_max);
}  // namespace cpu
namespace cuda {
template <class T, class Out> void reduce_sum(const T* x, Out* out, ReduceShape s, bool mean);
template <class T> void reduce_extreme(const T* x, T* values, int64_t* indices, ReduceShape s, bool is_max);
}  // namespace cuda

// True when v should replace the current extreme `best` (a NaN beats any number; ties keep the first).
template <class T>
PYCNN_HD inline bool beats(T v, T best, bool is_max) {
  if (v != v) return best == best;
  return is_max ? v > best : v < best;
}

}  // namespace pycnn
