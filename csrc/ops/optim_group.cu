// CUDA side of optim_group.h: the step counter's increment, one thread.
#include "../cuda/context.cuh"
#include "optim_group.h"

namespace pycnn::cuda {
namespace {

__global__ void advance_step_kernel(double* step, const float* found_inf) {
  if (found_inf && *found_inf != 0.0f) return;
  *step += 1.0;  // a single thread: the update kernel before it on the stream has read the old value
}

}  // namespace

void advance_step(double* step, const float* found_inf) {
  Exec ex(step);
  ex.launch(1, advance_step_kernel, step, found_inf);
}

}  // namespace pycnn::cuda
