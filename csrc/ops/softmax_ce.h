// Softmax, log-softmax and the fused softmax + cross-entropy loss over dim 1 of an (N, C) tensor.
// Every row is shifted by its maximum before exp, so logits of 1e4 give finite results; row sums
// are accumulated in double in a fixed order (one row per thread), so results repeat bit for bit.
#pragma once

#include "../tensor.h"

namespace pycnn {

Tensor softmax_forward(const Tensor& x);
Tensor log_softmax_forward(const Tensor& x);
// dx = y * (dy - sum_j dy_j y_j), y the saved softmax output.
Tensor softmax_backward(const Tensor& dy, const Tensor& y);

// logits (N, C), labels int64 (N,) -> (loss of shape (), probs (N, C)); loss = mean of -log p[n, label].
std::pair<Tensor, Tensor> cross_entropy_forward(const Tensor& logits, const Tensor& labels);
// dlogits = grad_scale * (probs - onehot(labels)) / N
Tensor cross_entropy_backward(const Tensor& probs, const Tensor& labels, double grad_scale);

// The one check of class labels against a (N, C) score tensor: int64, shape (N,), same device,
// every value in [0, C) (on CUDA the kernels check the range and report a bad label at the next
// host sync, see cuda/context.cuh). Used by count_correct too.
void check_class_labels(const Tensor& labels, const Tensor& scores, const char* op, const char* scores_name);

// The kernels, CPU (softmax_ce.cpp) and CUDA (softmax_ce.cu) alike (see PYCNN_DECLARE_KERNELS in common.h).
// cross_entropy_forward: loss: one element (the mean over the rows)
#define PYCNN_SOFTMAX_CE_KERNELS(X, T)                                                                                 \
  X(softmax_forward, (const T* x, T* y, int64_t n, int64_t c, bool log))                                               \
  X(softmax_backward, (const T* dy, const T* y, T* dx, int64_t n, int64_t c))                                          \
  X(cross_entropy_forward, (const T* logits, const int64_t* labels, T* probs, T* loss, int64_t n, int64_t c))          \
  X(cross_entropy_backward, (const T* probs, const int64_t* labels, T* dx, int64_t n, int64_t c, T scale))
namespace cpu { PYCNN_DECLARE_KERNELS(PYCNN_SOFTMAX_CE_KERNELS) }  // namespace cpu
namespace cuda { PYCNN_DECLARE_KERNELS(PYCNN_SOFTMAX_CE_KERNELS) }  // namespace cuda

}  // namespace pycnn
