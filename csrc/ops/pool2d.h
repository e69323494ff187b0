// 2-D pooling over NCHW planes: max (with argmax), average (count_include_pad=True) and adaptive
// average. Every kernel sees the input as `planes = N*C` independent H x W planes; forward and
// backward are both gathers (each output element is written by exactly one thread, summing in a
// fixed order), so results repeat bit for bit on any thread count.
#pragma once

#include <array>
#include <limits>
#include <optional>
#include <tuple>

#include "../tensor.h"

namespace pycnn {

using PoolPair = std::array<int64_t, 2>;  // (h, w)

// Geometry shared by the CPU loops and the CUDA kernels (trivially copyable, passed by value).
struct Pool2dGeom {
  int64_t planes = 0;    // N * C
  int64_t H = 0, W = 0;  // input plane
  int64_t OH = 0, OW = 0;
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0;
  bool windows = true;  // kh..pw are known (max backward called without them: false)

  PYCNN_HD int64_t in_elems() const { return planes * H * W; }
  PYCNN_HD int64_t out_elems() const { return planes * OH * OW; }
};

// The one check of max_pool2d / avg_pool2d: input_shape 4-D (N, C, H, W) with H, W >= 1,
// kernel and stride >= 1, 0 <= padding <= kernel / 2 (as PyTorch) and an output of at least 1x1:
// OH = floor((H + 2*ph - kh) / sh) + 1. Throws ValueError naming `op` otherwise.
Pool2dGeom pool2d_shape(const Shape& input_shape, PoolPair kernel, PoolPair stride, PoolPair padding, const char* op);
inline Pool2dGeom pool2d_shape(const Tensor& x, PoolPair kernel, PoolPair stride, PoolPair padding, const char* op) {
  check_defined(x, op, "input");
  return pool2d_shape(x.shape(), kernel, stride, padding, op);
}

// Adaptive average pooling: bin i of an axis of length S split in O covers
// [floor(i*S/O), ceil((i+1)*S/O)).
Pool2dGeom adaptive_pool2d_shape(const Shape& input_shape, PoolPair output_size, const char* op);

// y (N, C, OH, OW) and argmax int64 (N, C, OH, OW) = h*W + w in each input plane.
std::pair<Tensor, Tensor> max_pool2d_forward(const Tensor& x, PoolPair kernel, PoolPair stride, PoolPair padding);
// kernel/stride/padding are optional: with them (what the layer passes) the CUDA kernel is a
// gather, one thread per input element; without, one thread per plane.
Tensor max_pool2d_backward(const Tensor& grad_output, const Tensor& argmax, const Shape& input_shape,
                           const std::optional<PoolPair>& kernel = std::nullopt,
                           const std::optional<PoolPair>& stride = std::nullopt,
                           const std::optional<PoolPair>& padding = std::nullopt);
Tensor avg_pool2d_forward(const Tensor& x, PoolPair kernel, PoolPair stride, PoolPair padding);
Tensor avg_pool2d_backward(const Tensor& grad_output, const Shape& input_shape, PoolPair kernel, PoolPair stride,
                           PoolPair padding);
Tensor adaptive_avg_pool2d_forward(const Tensor& x, PoolPair output_size);
Tensor adaptive_avg_pool2d_backward(const Tensor& grad_output, const Shape& input_shape);

namespace cpu {
// One H x W plane of the 2x2, stride 2, unpadded max pool (pool2d_max2x2.cpp: vectorised copies,
// the general loop's rule); W < 2^30 (window offsets are held as int32).
void max_pool_plane_2x2(const float* x, int64_t W, int64_t OH, int64_t OW, float* y, int64_t* argmax);
void max_pool_plane_2x2(const double* x, int64_t W, int64_t OH, int64_t OW, double* y, int64_t* argmax);
// Whether 0 <= a[i] < bound for all i < n (max_pool2d_backward's check of the argmax it is given).
bool all_below(const int64_t* a, int64_t n, int64_t bound);
}  // namespace cpu

// First and one-past-last input index of adaptive bin i (PyTorch's rule).
PYCNN_HD inline int64_t adaptive_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
PYCNN_HD inline int64_t adaptive_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

// Output (oh, ow) of one plane xp of the adaptive average pool: the mean of its bin. The CPU loop
// and the CUDA kernel both call it, so they sum in the same order.
template <class T>
PYCNN_HD inline T adaptive_avg_at(const T* xp, int64_t oh, int64_t ow, const Pool2dGeom& g) {
  const int64_t h0 = adaptive_start(oh, g.H, g.OH), h1 = adaptive_end(oh, g.H, g.OH);
  const int64_t w0 = adaptive_start(ow, g.W, g.OW), w1 = adaptive_end(ow, g.W, g.OW);
  T sum = 0;
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t w = w0; w < w1; ++w) sum += xp[h * g.W + w];
  return sum / static_cast<T>((h1 - h0) * (w1 - w0));
}

// d/dx at input (h, w) of one plane from its gradient plane dyp, a gather: bin i covers index j
// iff floor(j*O/S) <= i <= ceil((j+1)*O/S) - 1.
template <class T>
PYCNN_HD inline T adaptive_avg_grad_at(const T* dyp, int64_t h, int64_t w, const Pool2dGeom& g) {
  const int64_t oh0 = adaptive_start(h, g.OH, g.H), oh1 = adaptive_end(h, g.OH, g.H);
  const int64_t ow0 = adaptive_start(w, g.OW, g.W), ow1 = adaptive_end(w, g.OW, g.W);
  T acc = 0;
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    const int64_t eh = adaptive_end(oh, g.H, g.OH) - adaptive_start(oh, g.H, g.OH);
    for (int64_t ow = ow0; ow < ow1; ++ow) {
      const int64_t ew = adaptive_end(ow, g.W, g.OW) - adaptive_start(ow, g.W, g.OW);
      acc += dyp[oh * g.OW + ow] / static_cast<T>(eh * ew);
    }
  }
  return acc;
}

// Input indices [lo, hi) of output index o's window [o*s - p, o*s - p + k), clipped to [0, in).
PYCNN_HD inline void window(int64_t o, int64_t s, int64_t p, int64_t k, int64_t in, int64_t& lo, int64_t& hi) {
  const int64_t start = o * s - p;
  lo = start > 0 ? start : 0;
  hi = start + k < in ? start + k : in;
}

// Output element k = (p*OH + oh)*OW + ow of a window pool and its clipped input window.
struct OutputWindow {
  int64_t p, oh, ow, h0, h1, w0, w1;
};
PYCNN_HD inline OutputWindow output_window(int64_t k, const Pool2dGeom& g) {
  OutputWindow o;
  o.ow = k % g.OW;
  o.oh = (k / g.OW) % g.OH;
  o.p = k / (g.OW * g.OH);
  window(o.oh, g.sh, g.ph, g.kh, g.H, o.h0, o.h1);
  window(o.ow, g.sw, g.pw, g.kw, g.W, o.w0, o.w1);
  return o;
}

// count_include_pad=True divisor of output row/column o: the window clipped to the PADDED input.
PYCNN_HD inline int64_t avg_extent(int64_t o, int64_t s, int64_t p, int64_t k, int64_t in) {
  const int64_t start = o * s - p;
  const int64_t end = start + k < in + p ? start + k : in + p;
  return end - start;
}

// The max of output o's window in plane xp, and in `at` its index h*W + w: row-major window order,
// strict > keeps the first maximum, a NaN wins; padding is -inf, so an all -inf window gives its first
// in-bounds element. The CPU loop and the CUDA kernel both call it.
template <class T>
PYCNN_HD inline T max_at(const T* xp, const OutputWindow& o, const Pool2dGeom& g, int64_t& at) {
  T best = -std::numeric_limits<T>::infinity();
  int64_t bi = o.h0 * g.W + o.w0;
  for (int64_t h = o.h0; h < o.h1; ++h)
    for (int64_t w = o.w0; w < o.w1; ++w) {
      const T v = xp[h * g.W + w];
      if (v > best || v != v) {
        best = v;
        bi = h * g.W + w;
      }
    }
  at = bi;
  return best;
}

// The count_include_pad=True mean of output o's window in plane xp (summed in row-major window
// order). The CPU loop and the CUDA kernel both call it.
template <class T>
PYCNN_HD inline T avg_at(const T* xp, const OutputWindow& o, const Pool2dGeom& g) {
  const int64_t eh = avg_extent(o.oh, g.sh, g.ph, g.kh, g.H), ew = avg_extent(o.ow, g.sw, g.pw, g.kw, g.W);
  T sum = 0;
  for (int64_t h = o.h0; h < o.h1; ++h)
    for (int64_t w = o.w0; w < o.w1; ++w) sum += xp[h * g.W + w];
  return sum / (static_cast<T>(eh) * static_cast<T>(ew));
}

// Outputs o whose window [o*s - p, o*s - p + k) covers input index i: [lo, hi] (empty when lo > hi).
PYCNN_HD inline void covering(int64_t i, int64_t s, int64_t p, int64_t k, int64_t out, int64_t& lo, int64_t& hi) {
  const int64_t a = i + p - k + 1;
  lo = a <= 0 ? 0 : (a + s - 1) / s;
  const int64_t h = (i + p) / s;
  hi = h < out - 1 ? h : out - 1;
}

// d/dx at input (h, w) of one plane of avg_pool2d from its gradient plane dyp, a gather: the sum,
// in row-major output order, of dy / divisor over the windows that cover (h, w). [oh0, oh1] =
// covering(h) (the CPU loop finds it once per input row). The CPU loop and the CUDA kernel both call it.
template <class T>
PYCNN_HD inline T avg_grad_at(const T* dyp, int64_t oh0, int64_t oh1, int64_t w, const Pool2dGeom& g) {
  int64_t ow0, ow1;
  covering(w, g.sw, g.pw, g.kw, g.OW, ow0, ow1);
  T acc = 0;
  for (int64_t oh = oh0; oh <= oh1; ++oh) {
    const int64_t eh = avg_extent(oh, g.sh, g.ph, g.kh, g.H);
    for (int64_t ow = ow0; ow <= ow1; ++ow)
      acc += dyp[oh * g.OW + ow] / (static_cast<T>(eh) * static_cast<T>(avg_extent(ow, g.sw, g.pw, g.kw, g.W)));
  }
  return acc;
}

// The kernels, CPU (pool2d.cpp) and CUDA (pool2d.cu) alike (see PYCNN_DECLARE_KERNELS in common.h).
// max_pool2d_backward: dx is written in full (no need to zero it first). The CPU caller checks argmax
// values are in [0, H*W); a kernel that cannot (CUDA) must skip out-of-range ones.
#define PYCNN_POOL2D_KERNELS(X, T)                                                                                     \
  X(max_pool2d_forward, (const T* x, T* y, int64_t* argmax, Pool2dGeom g))                                             \
  X(max_pool2d_backward, (const T* dy, const int64_t* argmax, T* dx, Pool2dGeom g))                                    \
  X(avg_pool2d_forward, (const T* x, T* y, Pool2dGeom g))                                                              \
  X(avg_pool2d_backward, (const T* dy, T* dx, Pool2dGeom g))                                                           \
  X(adaptive_avg_pool2d_forward, (const T* x, T* y, Pool2dGeom g))                                                     \
  X(adaptive_avg_pool2d_backward, (const T* dy, T* dx, Pool2dGeom g))
namespace cpu { PYCNN_DECLARE_KERNELS(PYCNN_POOL2D_KERNELS) }  // namespace cpu
namespace cuda { PYCNN_DECLARE_KERNELS(PYCNN_POOL2D_KERNELS) }  // namespace cuda

}  // namespace pycnn
