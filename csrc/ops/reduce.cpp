#include "reduce.h"

#include <algorithm>
#include <limits>
#include <type_traits>

namespace pycnn {

namespace {
// dispatch_numeric's message for bool (check_reduce has refused it for max/min/arg*; sums run it apart)
constexpr const char* kNoBool = "internal: reduce of ";

ReduceShape around(const Shape& s, int64_t dim) {
  ReduceShape r{1, s[dim], 1};
  for (int64_t i = 0; i < dim; ++i) r.outer *= s[i];
  for (int64_t i = dim + 1; i < static_cast<int64_t>(s.size()); ++i) r.inner *= s[i];
  return r;
}

Shape reduced_shape(const Shape& s, int64_t dim, bool keepdim) {
  Shape out = s;
  if (keepdim) out[dim] = 1;
  else out.erase(out.begin() + dim);
  return out;
}
}  // namespace

const char* reduce_name(ReduceOp op) {
  static const char* names[] = {"sum", "mean", "max", "min", "argmax", "argmin"};
  return names[static_cast<int>(op)];
}

int64_t check_reduce(const Tensor& x, int64_t dim, ReduceOp op) {
  const char* name = reduce_name(op);
  check_defined(x, name, "input");
  const int64_t rank = x.dim();
  PYCNN_CHECK(rank > 0, ValueError, name, ": cannot reduce along a dim of a 0-dimensional tensor; reshape it to (1,)");
  PYCNN_CHECK(dim >= -rank && dim < rank, ValueError, name, ": dim ", dim, " is out of range for a tensor of shape ",
              shape_str(x.shape()), " (expected a dim in [", -rank, ", ", rank - 1, "])");
  if (dim < 0) dim += rank;
  const DType t = x.dtype();
  PYCNN_CHECK(op != ReduceOp::Mean || t == DType::Float32 || t == DType::Float64, TypeError,
              "mean: expected a float32 or float64 tensor, got ", dtype_name(t), "; convert it with .float() first");
  const bool extreme = op != ReduceOp::Sum && op != ReduceOp::Mean;
  PYCNN_CHECK(!extreme || t != DType::Bool, TypeError, name, ": not supported for bool tensors; convert with .long()");
  PYCNN_CHECK(!extreme || x.size(dim) > 0, ValueError, name, ": cannot reduce over dim ", dim, " of size 0 (shape ",
              shape_str(x.shape()), "): the operation has no identity");
  return dim;
}

Tensor reduce(const Tensor& x_, int64_t dim_, ReduceOp op, bool keepdim) {
  const int64_t dim = check_reduce(x_, dim_, op);
  if (op == ReduceOp::Max || op == ReduceOp::Min)
    return reduce_with_indices(x_, dim, op == ReduceOp::Max, keepdim).first;
  const Tensor x = x_.contiguous();
  const ReduceShape s = around(x.shape(), dim);
  const Shape shape = reduced_shape(x.shape(), dim, keepdim);
  if (op == ReduceOp::Argmax || op == ReduceOp::Argmin) {
    Tensor idx = Tensor::empty(shape, DType::Int64, x.device());
    if (idx.numel() == 0) return idx;
    dispatch_numeric(x.dtype(), kNoBool, [&](auto t) {
      using T = decltype(t);
      PYCNN_ON_DEVICE(x.device(), reduce_extreme<T>, x.data<T>(), static_cast<T*>(nullptr), idx.data<int64_t>(), s,
                      op == ReduceOp::Argmax);
    });
    return idx;
  }
  const DType out_t = x.dtype() == DType::Bool ? DType::Int64 : x.dtype();
  Tensor out = Tensor::empty(shape, out_t, x.device());
  if (out.numel() == 0) return out;
  const bool mean = op == ReduceOp::Mean;
  auto run = [&](auto in) {
    using T = decltype(in);
    PYCNN_ON_DEVICE(x.device(), reduce_sum<T>, x.data<T>(), out.data<ReduceSumOut<T>>(), s, mean);
  };
  if (x.dtype() == DType::Bool) run(bool{});
  else dispatch_numeric(x.dtype(), kNoBool, run);
  return out;
}

std::pair<Tensor, Tensor> reduce_with_indices(const Tensor& x_, int64_t dim_, bool is_max, bool keepdim) {
  const int64_t dim = check_reduce(x_, dim_, is_max ? ReduceOp::Max : ReduceOp::Min);
  const Tensor x = x_.contiguous();
  const ReduceShape s = around(x.shape(), dim);
  const Shape shape = reduced_shape(x.shape(), dim, keepdim);
  Tensor values = Tensor::empty(shape, x.dtype(), x.device());
  Tensor idx = Tensor::empty(shape, DType::Int64, x.device());
  if (idx.numel() == 0) return {values, idx};
  dispatch_numeric(x.dtype(), kNoBool, [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(x.device(), reduce_extreme<T>, x.data<T>(), values.data<T>(), idx.data<int64_t>(), s, is_max);
  });
  return {values, idx};
}

// --------------------------------------------------------------------------------- CPU kernels
namespace cpu {

// Work splits into tasks of (one outer index, a block of up to kBlock inner indices); a task walks
// k in order and adds row k of its block into one accumulator per output, so memory is read
// row by row and every output's sum still runs over k = 0, 1, ... in that order.
constexpr int64_t kBlock = 256;
constexpr int kLanes = 8;  // running sums of a contiguous row (inner == 1), combined in a fixed tree

template <class T>
void reduce_sum(const T* x, ReduceSumOut<T>* out, ReduceShape s, bool mean) {
  using Out = ReduceSumOut<T>;
  using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
  const int64_t blocks = (s.inner + kBlock - 1) / kBlock, tasks = s.outer * blocks;
#pragma omp parallel for if (tasks * s.n > kParallelGrain && tasks > 1)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t o = t / blocks, i0 = (t % blocks) * kBlock, m = std::min(kBlock, s.inner - i0);
    const T* p = x + o * s.n * s.inner + i0;
    Acc acc[kBlock] = {};
    if (s.inner == 1) {
      Acc lane[kLanes] = {};
      int64_t k = 0;
      for (; k + kLanes <= s.n; k += kLanes)
        for (int l = 0; l < kLanes; ++l) lane[l] += static_cast<Acc>(p[k + l]);
      for (; k < s.n; ++k) lane[k % kLanes] += static_cast<Acc>(p[k]);
      acc[0] = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    } else {
      for (int64_t k = 0; k < s.n; ++k)
        for (int64_t j = 0; j < m; ++j) acc[j] += static_cast<Acc>(p[k * s.inner + j]);
    }
    Out* dst = out + o * s.inner + i0;
    const double count = static_cast<double>(s.n);
    for (int64_t j = 0; j < m; ++j) {
      if constexpr (std::is_floating_point_v<T>) dst[j] = static_cast<Out>(mean ? acc[j] / count : acc[j]);
      else dst[j] = static_cast<Out>(acc[j]);
    }
  }
}

template <class T>
void reduce_extreme(const T* x, T* values, int64_t* indices, ReduceShape s, bool is_max) {
  const int64_t blocks = (s.inner + kBlock - 1) / kBlock, tasks = s.outer * blocks;
#pragma omp parallel for if (tasks * s.n > kParallelGrain && tasks > 1)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t o = t / blocks, i0 = (t % blocks) * kBlock, m = std::min(kBlock, s.inner - i0);
    const T* p = x + o * s.n * s.inner + i0;
    T best[kBlock];
    int64_t at[kBlock] = {};
    for (int64_t j = 0; j < m; ++j) best[j] = p[j];
    for (int64_t k = 1; k < s.n; ++k)
      for (int64_t j = 0; j < m; ++j) {
        const T v = p[k * s.inner + j];
        if (beats(v, best[j], is_max)) {
          best[j] = v;
          at[j] = k;
        }
      }
    for (int64_t j = 0; j < m; ++j) {
      if (values) values[o * s.inner + i0 + j] = best[j];
      if (indices) indices[o * s.inner + i0 + j] = at[j];
    }
  }
}

PYCNN_INSTANTIATE_KERNELS_ANY_DTYPE(PYCNN_REDUCE_SUM_KERNELS)
PYCNN_INSTANTIATE_KERNELS_WITH_INT64(PYCNN_REDUCE_EXTREME_KERNELS)
}  // namespace cpu

}  // namespace pycnn
