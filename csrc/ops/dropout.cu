// CUDA kernels of dropout.h: one thread per element, the mask from the counter-based RNG
// (random.h), so CUDA draws exactly the CPU's mask for the same seed and offset.
// Inside a CUDA graph capture the seed and counters are read from the graph's device buffer
// (cuda/graph.cu), which each replay refills, so replays draw new masks instead of repeating one.
#include "../cuda/context.cuh"
#include "../cuda/graph.cuh"
#include "../random.h"
#include "dropout.h"

namespace pycnn::cuda {
namespace {

// state: null outside capture; else {seed, first counter of the replay}, and base is relative to it.
template <class T>
__global__ void dropout_fwd_kernel(const T* x, T* y, T* mask, int64_t n, double p, T scale, uint64_t seed,
                                   uint64_t base, const uint64_t* state) {
  if (state) {
    seed = state[0];
    base += state[1];
  }
  PYCNN_KERNEL_LOOP(i, n) {
    const T m = rng::uniform(seed, base + static_cast<uint64_t>(i)) >= p ? scale : T(0);
    mask[i] = m;
    y[i] = x[i] * m;
  }
}

template <class T>
__global__ void dropout_bwd_kernel(const T* dy, const T* mask, T* dx, int64_t n) {
  PYCNN_KERNEL_LOOP(i, n) dx[i] = dy[i] * mask[i];
}

}  // namespace

template <class T>
void dropout_forward(const T* x, T* y, T* mask, int64_t n, double p, T scale, uint64_t seed, uint64_t base) {
  if (n <= 0) return;
  Exec ex(y);
  const uint64_t* state = nullptr;
  uint64_t capture_start = 0;
  if (capture_rng_state(ex.device(), &state, &capture_start)) base -= capture_start;
  ex.launch(n, dropout_fwd_kernel<T>, x, y, mask, n, p, scale, seed, base, state);
}

template <class T>
void dropout_backward(const T* dy, const T* mask, T* dx, int64_t n) {
  launch_over(dx, n, dropout_bwd_kernel<T>, dy, mask, dx, n);
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_DROPOUT_KERNELS)

}  // namespace pycnn::cuda
