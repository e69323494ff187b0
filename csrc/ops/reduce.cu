// CUDA kernels of reduce.h: one block per output element r = o * inner + i; thread t reads
// x[(o * n + k) * inner + i] for k = t, t + blockDim, ... in order, then a fixed tree in shared
// memory combines the threads (ties and NaN resolved as on the CPU, so indices match it).
#include <type_traits>

#include "../cuda/context.cuh"
#include "reduce.h"

namespace pycnn::cuda {
namespace {

template <class T, class Acc, class Out>
__global__ void sum_kernel(const T* x, Out* out, ReduceShape s, bool mean) {
  Acc* sh = shared_buffer<Acc>();
  PYCNN_ROW_LOOP(r, s.outer * s.inner) {
    const int64_t o = r / s.inner, i = r % s.inner;
    const T* p = x + o * s.n * s.inner + i;
    Acc acc = Acc(0);
    for (int64_t k = threadIdx.x; k < s.n; k += blockDim.x) acc += static_cast<Acc>(p[k * s.inner]);
    acc = block_reduce_sum(acc, sh);
    if (threadIdx.x == 0) {
      if constexpr (std::is_floating_point_v<T>) out[r] = static_cast<Out>(mean ? acc / static_cast<double>(s.n) : acc);
      else out[r] = static_cast<Out>(acc);
    }
  }
}

template <class T>
__global__ void extreme_kernel(const T* x, T* values, int64_t* indices, ReduceShape s, bool is_max) {
  T* shv = shared_buffer<T>();
  int64_t* shi = reinterpret_cast<int64_t*>(shv + blockDim.x);
  const int t = threadIdx.x;
  PYCNN_ROW_LOOP(r, s.outer * s.inner) {
    const int64_t o = r / s.inner, i = r % s.inner;
    const T* p = x + o * s.n * s.inner + i;
    int64_t at = -1;  // -1: this thread saw no element
    T best = T(0);
    for (int64_t k = t; k < s.n; k += blockDim.x) {
      const T v = p[k * s.inner];
      if (at < 0 || beats(v, best, is_max)) {
        best = v;
        at = k;
      }
    }
    shv[t] = best;
    shi[t] = at;
    __syncthreads();
    for (int h = blockDim.x / 2; h > 0; h >>= 1) {
      if (t < h) {
        const int64_t ia = shi[t], ib = shi[t + h];
        const T va = shv[t], vb = shv[t + h];
        // b wins when a is empty, or b beats a, or b equals a (neither beats) at a smaller index
        const bool take_b = ib >= 0 && (ia < 0 || beats(vb, va, is_max) || (!beats(va, vb, is_max) && ib < ia));
        if (take_b) {
          shv[t] = vb;
          shi[t] = ib;
        }
      }
      __syncthreads();
    }
    if (t == 0) {
      if (values) values[r] = shv[0];
      if (indices) indices[r] = shi[0];
    }
    __syncthreads();
  }
}

}  // namespace

template <class T>
void reduce_sum(const T* x, ReduceSumOut<T>* out, ReduceShape s, bool mean) {
  using Out = ReduceSumOut<T>;
  using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
  Exec ex(out);
  const int threads = reduce_threads(s.n);
  ex.launch_rows(s.outer * s.inner, threads, threads * sizeof(Acc), sum_kernel<T, Acc, Out>, x, out, s, mean);
}

template <class T>
void reduce_extreme(const T* x, T* values, int64_t* indices, ReduceShape s, bool is_max) {
  Exec ex(indices ? static_cast<const void*>(indices) : static_cast<const void*>(values));
  const int threads = reduce_threads(s.n);
  ex.launch_rows(s.outer * s.inner, threads, threads * (sizeof(T) + sizeof(int64_t)), extreme_kernel<T>, x, values,
                 indices, s, is_max);
}

PYCNN_INSTANTIATE_KERNELS_ANY_DTYPE(PYCNN_REDUCE_SUM_KERNELS)
PYCNN_INSTANTIATE_KERNELS_WITH_INT64(PYCNN_REDUCE_EXTREME_KERNELS)

}  // namespace pycnn::cuda
