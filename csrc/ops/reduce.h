// Reductions over one dim: sum, mean, max, min, argmax, argmin (torch's semantics: max/min
// propagate NaN, argmax/argmin give the first index of the extreme, NaN counting as the extreme).
//
// Layout: x (contiguous) is viewed as (outer, n, inner) around the reduced dim, the output as
// (outer, inner) (keepdim puts a size-1 dim back). Each output element is reduced by one CPU
// thread in index order, or by one CUDA block (threads over a fixed stride of k, then a fixed
// tree): no atomics, results repeat bit for bit. Float sums accumulate in double.
#pragma once

#include <type_traits>

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

// The element type of a sum of T: int64 for bool, else T.
template <class T>
using ReduceSumOut = std::conditional_t<std::is_same_v<T, bool>, int64_t, T>;

// The kernels, CPU (reduce.cpp) and CUDA (reduce.cu) alike (see PYCNN_DECLARE_KERNELS in common.h).
// reduce_sum (every dtype) accumulates in double for floats and int64 for integers; mean divides by n.
// reduce_extreme (float32, float64, int64): values or indices may be null.
#define PYCNN_REDUCE_SUM_KERNELS(X, T) X(reduce_sum, (const T* x, ReduceSumOut<T>* out, ReduceShape s, bool mean))
#define PYCNN_REDUCE_EXTREME_KERNELS(X, T)                                                                             \
  X(reduce_extreme, (const T* x, T* values, int64_t* indices, ReduceShape s, bool is_max))
#define PYCNN_REDUCE_KERNELS(X, T) PYCNN_REDUCE_SUM_KERNELS(X, T) PYCNN_REDUCE_EXTREME_KERNELS(X, T)
namespace cpu { PYCNN_DECLARE_KERNELS(PYCNN_REDUCE_KERNELS) }  // namespace cpu
namespace cuda { PYCNN_DECLARE_KERNELS(PYCNN_REDUCE_KERNELS) }  // namespace cuda

// True when v should replace the current extreme `best` (a NaN beats any number; ties keep the first).
template <class T>
PYCNN_HD inline bool beats(T v, T best, bool is_max) {
  if (v != v) return best == best;
  return is_max ? v > best : v < best;
}

}  // namespace pycnn
