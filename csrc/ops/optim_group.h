// What the fused optimiser steps (adam.h, rmsprop.h) share: the one check of a parameter group and
// the per-parameter step counter.
//   params[i]             float32/float64, contiguous, all on one device (updated in place)
//   grads[i]              same shape, dtype and device as params[i] (read only)
//   state buffers[k][i]   same shape, dtype and device as params[i], contiguous (updated in place)
//   steps[i]              float64, one element, on params[i]'s device: how many steps params[i]
//                         has taken. The kernels read it (the bias corrections depend on it) and
//                         add one, so a step never waits for the host and a CUDA graph can replay it.
//   found_inf             optional float32 one-element flag on the params' device; non-zero makes
//                         the kernels leave params, buffers and steps unchanged (no host sync).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "../tensor.h"

namespace pycnn {

// (name used in messages, one tensor per param); an empty list means "this buffer is not used".
using NamedBuffers = std::pair<const char*, const std::vector<Tensor>*>;

// THE check of a group: every tensor is validated before any is touched, so a refused call leaves
// the whole group unchanged. `required` buffers must have one tensor per param.
void check_optimizer_group(const char* op, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                           const std::vector<NamedBuffers>& required, const std::vector<Tensor>& steps,
                           const Tensor* found_inf);

// The found_inf flag's data pointer (in the params' device memory), or null when there is none.
const float* found_inf_data(const Tensor* found_inf);

// torch.lerp(a, b, w) with a scalar weight, in its two forms (small_w: |w| < 0.5, loop-invariant).
template <class T>
PYCNN_HD inline T torch_lerp(T a, T b, T w, bool small_w) {
  return small_w ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}

// torch.maximum: NaN when either is NaN.
template <class T>
PYCNN_HD inline T nan_max(T a, T b) {
  return (a != a || b != b) ? a + b : (a > b ? a : b);
}

namespace cpu {
inline bool skip_step(const float* found_inf) { return found_inf && *found_inf != 0.0f; }
// *step += 1 unless found_inf is set.
void advance_step(double* step, const float* found_inf);
}  // namespace cpu

namespace cuda {
// *step += 1 unless found_inf is set, queued on the step's device after the update kernel that read it.
void advance_step(double* step, const float* found_inf);
}  // namespace cuda

}  // namespace pycnn
