// What the fused optimiser steps (sgd.h, adam.h, rmsprop.h) share: the one check of a parameter
// group (sgd.h, which has no step counters, uses its parts) and the per-parameter step counter.
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
// Its parts, for a caller that counts the lists itself: the found_inf flag (may be null), and every
// param i with grads[i], required[k][i] and steps[i] (steps may be null: no step counters).
void check_found_inf(const char* op, const Tensor* found_inf, const std::vector<Tensor>& params);
void check_group_members(const char* op, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                         const std::vector<NamedBuffers>& required, const std::vector<Tensor>* steps);
// A buffer the options may leave out: added to `required` when `used`, else `list` must be empty
// (ValueError "<op>: expected no <name> (<unused_because>), got <n>").
void require_if(bool used, const char* op, const char* name, const std::vector<Tensor>& list,
                const char* unused_because, std::vector<NamedBuffers>& required);

// Runs f(T{}, i, params[i], grad) for each param i, T its element type, grad grads[i] made contiguous.
template <class F>
void for_each_param(const char* op, const std::vector<Tensor>& params, const std::vector<Tensor>& grads, F&& f) {
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor g = grads[i].contiguous();
    dispatch_float(params[i].dtype(), op, [&](auto t) { f(t, i, params[i], g); });
  }
}

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

// The step counter's kernel, CPU (optim_group.cpp) and CUDA (optim_group.cu) alike (see
// PYCNN_DECLARE_UNTYPED_KERNELS in common.h): *step += 1 unless found_inf is set; on CUDA queued
// on the step's device after the update kernel that read it.
#define PYCNN_OPTIM_GROUP_KERNELS(X, T) X(advance_step, (double* step, const float* found_inf))
namespace cpu {
inline bool skip_step(const float* found_inf) { return found_inf && *found_inf != 0.0f; }
PYCNN_DECLARE_UNTYPED_KERNELS(PYCNN_OPTIM_GROUP_KERNELS)
}  // namespace cpu
namespace cuda { PYCNN_DECLARE_UNTYPED_KERNELS(PYCNN_OPTIM_GROUP_KERNELS) }  // namespace cuda

}  // namespace pycnn
