#include "pool2d.h"

#include <algorithm>

namespace pycnn {

namespace {

std::string pair_str(PoolPair p) { return cat("(", p[0], ", ", p[1], ")"); }

void check_nchw(const Shape& s, const char* op, const char* arg) {
  if (s.size() == 3)
    throw ValueError(cat(op, ": expected ", arg, " of 4 dimensions (N, C, H, W), got shape ", shape_str(s),
                         "; add a batch dimension, e.g. x.reshape(1, ", s[0], ", ", s[1], ", ", s[2], ")"));
  PYCNN_CHECK(s.size() == 4, ValueError, op, ": expected ", arg, " of 4 dimensions (N, C, H, W), got shape ",
              shape_str(s));
  checked_numel(s, op);
  PYCNN_CHECK(s[2] >= 1 && s[3] >= 1, ValueError, op, ": expected ", arg,
              " with a non-empty H x W plane, got shape ", shape_str(s));
}

// The planes of an input of shape s (N, C, H, W) and its output size (OH, OW); the window is the caller's.
Pool2dGeom planes_of(const Shape& s, int64_t OH, int64_t OW) {
  Pool2dGeom g;
  g.planes = s[0] * s[1];
  g.H = s[2];
  g.W = s[3];
  g.OH = OH;
  g.OW = OW;
  return g;
}

}  // namespace

Pool2dGeom pool2d_shape(const Shape& s, PoolPair k, PoolPair st, PoolPair p, const char* op) {
  check_nchw(s, op, "input");
  PYCNN_CHECK(k[0] >= 1 && k[1] >= 1, ValueError, op, ": kernel_size must be >= 1 in both dimensions, got kernel_size=",
              pair_str(k));
  PYCNN_CHECK(st[0] >= 1 && st[1] >= 1, ValueError, op, ": stride must be >= 1 in both dimensions, got stride=",
              pair_str(st));
  PYCNN_CHECK(p[0] >= 0 && p[1] >= 0, ValueError, op, ": padding must be >= 0, got padding=", pair_str(p));
  PYCNN_CHECK(p[0] <= k[0] / 2 && p[1] <= k[1] / 2, ValueError, op,
              ": pad should be at most half of kernel size, but got padding=", pair_str(p), " for kernel_size=",
              pair_str(k), "; use padding <= kernel_size // 2 = ", pair_str({k[0] / 2, k[1] / 2}));
  Pool2dGeom g = planes_of(s, 0, 0);
  g.kh = k[0];
  g.kw = k[1];
  g.sh = st[0];
  g.sw = st[1];
  g.ph = p[0];
  g.pw = p[1];
  // H + 2p >= k, written so that it cannot overflow (0 <= k - 2p <= k).
  const int64_t need_h = g.kh - 2 * g.ph, need_w = g.kw - 2 * g.pw;
  g.OH = g.H >= need_h ? (g.H - need_h) / g.sh + 1 : 0;
  g.OW = g.W >= need_w ? (g.W - need_w) / g.sw + 1 : 0;
  PYCNN_CHECK(g.OH >= 1 && g.OW >= 1, ValueError, op, ": output size would be ", g.OH, "x", g.OW, " for input ",
              shape_str(s), " with kernel_size=", pair_str(k), ", stride=", pair_str(st), ", padding=", pair_str(p),
              "; the input plus padding must be at least as large as the kernel (H + 2*padding >= kernel_size ",
              "in each dimension): use a larger input, a smaller kernel_size or more padding");
  return g;
}

Pool2dGeom adaptive_pool2d_shape(const Shape& s, PoolPair out, const char* op) {
  check_nchw(s, op, "input");
  PYCNN_CHECK(out[0] >= 1 && out[1] >= 1, ValueError, op, ": output_size must be >= 1 in both dimensions, got ",
              pair_str(out));
  return planes_of(s, out[0], out[1]);
}

namespace {

Shape out_shape(const Shape& in, const Pool2dGeom& g) { return {in[0], in[1], g.OH, g.OW}; }

// The frame of the avg kernels: src made contiguous, dst (dst_shape, src's dtype and device)
// written by kernel(T{}, src, dst) for src's element type T.
template <class Kernel>
Tensor gather_into(const Tensor& src_, const Shape& dst_shape, const char* op, Kernel&& kernel) {
  const Tensor src = src_.contiguous();
  return dispatch_float(src.dtype(), op, [&](auto t) {
    Tensor dst = Tensor::empty(dst_shape, src.dtype(), src.device());
    kernel(t, src, dst);
    return dst;
  });
}

void check_grad_output(const Tensor& dy, const Tensor& other, const char* op, const char* other_name) {
  check_defined(dy, op, "grad_output");
  check_defined(other, op, other_name);
  check_same_device(dy, other, op, "grad_output", other_name);
}

}  // namespace

std::pair<Tensor, Tensor> max_pool2d_forward(const Tensor& x_, PoolPair kernel, PoolPair stride, PoolPair padding) {
  const Pool2dGeom g = pool2d_shape(x_, kernel, stride, padding, "max_pool2d");
  const Tensor x = x_.contiguous();
  const Shape os = out_shape(x.shape(), g);
  return dispatch_float(x.dtype(), "max_pool2d", [&](auto t) {
    using T = decltype(t);
    Tensor y = Tensor::empty(os, x.dtype(), x.device());
    Tensor idx = Tensor::empty(os, DType::Int64, x.device());
    PYCNN_ON_DEVICE(x.device(), max_pool2d_forward<T>, x.data<T>(), y.data<T>(), idx.data<int64_t>(), g);
    return std::make_pair(y, idx);
  });
}

Tensor max_pool2d_backward(const Tensor& dy_, const Tensor& am_, const Shape& input_shape,
                           const std::optional<PoolPair>& kernel, const std::optional<PoolPair>& stride,
                           const std::optional<PoolPair>& padding) {
  const char* op = "max_pool2d_backward";
  PYCNN_CHECK((!stride && !padding) || kernel, ValueError, op, ": stride and padding need kernel_size as well");
  check_grad_output(dy_, am_, op, "argmax");
  check_nchw(input_shape, op, "input_shape");
  PYCNN_CHECK(am_.dtype() == DType::Int64, TypeError, op, ": expected argmax of dtype int64, got ",
              dtype_name(am_.dtype()), "; pass the argmax returned by max_pool2d_forward");
  PYCNN_CHECK(dy_.dim() == 4 && dy_.size(0) == input_shape[0] && dy_.size(1) == input_shape[1], ValueError, op,
              ": expected grad_output of shape (", input_shape[0], ", ", input_shape[1],
              ", OH, OW) for input_shape ", shape_str(input_shape), ", got ", shape_str(dy_.shape()));
  // argmax is what forward produced, so it fixes the output shape the gradient must have
  PYCNN_CHECK(am_.shape() == dy_.shape(), ValueError, op, ": expected grad_output of shape ", shape_str(am_.shape()),
              " (the output of the forward pass), got ", shape_str(dy_.shape()));
  Pool2dGeom g;
  if (kernel) {
    g = pool2d_shape(input_shape, *kernel, stride.value_or(*kernel), padding.value_or(PoolPair{0, 0}), op);
    PYCNN_CHECK(g.OH == dy_.size(2) && g.OW == dy_.size(3), ValueError, op, ": expected grad_output of shape ",
                shape_str({input_shape[0], input_shape[1], g.OH, g.OW}), " for input_shape ", shape_str(input_shape),
                " with kernel_size=(", g.kh, ", ", g.kw, "), stride=(", g.sh, ", ", g.sw, "), padding=(", g.ph, ", ",
                g.pw, "), got ", shape_str(dy_.shape()));
  } else {
    g = planes_of(input_shape, dy_.size(2), dy_.size(3));
    g.windows = false;
  }
  const Tensor dy = dy_.contiguous(), am = am_.contiguous();
  if (am.device().is_cpu()) {
    // One pass over the indices: a wrong argmax must raise, not write outside dx.
    const int64_t* a = am.data<int64_t>();
    const int64_t n = am.numel(), hw = g.H * g.W;
    int64_t first_bad = n;
    if (!cpu::all_below(a, n, hw))  // vectorised; the first bad index is looked for only when there is one
      for (int64_t i = 0; i < n && first_bad == n; ++i)
        if (a[i] < 0 || a[i] >= hw) first_bad = i;
    if (first_bad < n) {
      const Shape& s = am.shape();
      const int64_t i = first_bad;
      throw ValueError(cat(op, ": argmax", shape_str({i / (s[1] * s[2] * s[3]), i / (s[2] * s[3]) % s[1],
                                                        i / s[3] % s[2], i % s[3]}),
                           " = ", a[i], " is outside [0, ", hw, ") for input planes of ", g.H, "x", g.W,
                           "; pass the argmax that max_pool2d_forward returned for an input of shape ",
                           shape_str(input_shape)));
    }
  }
  return dispatch_float(dy.dtype(), op, [&](auto t) {
    using T = decltype(t);
    Tensor dx = Tensor::empty(input_shape, dy.dtype(), dy.device());
    PYCNN_ON_DEVICE(dy.device(), max_pool2d_backward<T>, dy.data<T>(), am.data<int64_t>(), dx.data<T>(), g);
    return dx;
  });
}

Tensor avg_pool2d_forward(const Tensor& x_, PoolPair kernel, PoolPair stride, PoolPair padding) {
  const Pool2dGeom g = pool2d_shape(x_, kernel, stride, padding, "avg_pool2d");
  return gather_into(x_, out_shape(x_.shape(), g), "avg_pool2d", [&](auto t, const Tensor& x, const Tensor& y) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(x.device(), avg_pool2d_forward<T>, x.data<T>(), y.data<T>(), g);
  });
}

Tensor avg_pool2d_backward(const Tensor& dy_, const Shape& input_shape, PoolPair kernel, PoolPair stride,
                           PoolPair padding) {
  const char* op = "avg_pool2d_backward";
  check_defined(dy_, op, "grad_output");
  const Pool2dGeom g = pool2d_shape(input_shape, kernel, stride, padding, op);
  check_shape(dy_, out_shape(input_shape, g), op, "grad_output");
  return gather_into(dy_, input_shape, op, [&](auto t, const Tensor& dy, const Tensor& dx) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(dy.device(), avg_pool2d_backward<T>, dy.data<T>(), dx.data<T>(), g);
  });
}

Tensor adaptive_avg_pool2d_forward(const Tensor& x_, PoolPair output_size) {
  const char* op = "adaptive_avg_pool2d";
  check_defined(x_, op, "input");
  const Pool2dGeom g = adaptive_pool2d_shape(x_.shape(), output_size, op);
  return gather_into(x_, out_shape(x_.shape(), g), op, [&](auto t, const Tensor& x, const Tensor& y) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(x.device(), adaptive_avg_pool2d_forward<T>, x.data<T>(), y.data<T>(), g);
  });
}

Tensor adaptive_avg_pool2d_backward(const Tensor& dy_, const Shape& input_shape) {
  const char* op = "adaptive_avg_pool2d_backward";
  check_defined(dy_, op, "grad_output");
  check_nchw(input_shape, op, "input_shape");
  PYCNN_CHECK(dy_.dim() == 4 && dy_.size(0) == input_shape[0] && dy_.size(1) == input_shape[1] && dy_.size(2) >= 1 &&
                  dy_.size(3) >= 1,
              ValueError, op, ": expected grad_output of shape (", input_shape[0], ", ", input_shape[1],
              ", OH, OW) with OH, OW >= 1 for input_shape ", shape_str(input_shape), ", got ",
              shape_str(dy_.shape()));
  const Pool2dGeom g = adaptive_pool2d_shape(input_shape, {dy_.size(2), dy_.size(3)}, op);
  return gather_into(dy_, input_shape, op, [&](auto t, const Tensor& dy, const Tensor& dx) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(dy.device(), adaptive_avg_pool2d_backward<T>, dy.data<T>(), dx.data<T>(), g);
  });
}

namespace cpu {

// Whether 0 <= a[i] < bound for every i < n: compares as unsigned (a negative index is huge), with an
// OR over all elements instead of an early exit, so that the loop vectorises; blocks over the threads.
PYCNN_SIMD_CLONES bool all_below_block(const int64_t* a, int64_t n, int64_t bound) {
  uint64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad |= static_cast<uint64_t>(a[i]) >= static_cast<uint64_t>(bound);
  return bad == 0;
}
bool all_below(const int64_t* a, int64_t n, int64_t bound) {
  constexpr int64_t kBlock = 1 << 16;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  int bad = 0;
#pragma omp parallel for reduction(| : bad) if (n > kParallelGrain && !in_parallel())
  for (int64_t b = 0; b < blocks; ++b)
    bad |= !all_below_block(a + b * kBlock, std::min(kBlock, n - b * kBlock), bound);
  return bad == 0;
}

// Whether a window pool is worth the threads: its work is about one step per window element.
bool window_pool_parallel(const Pool2dGeom& g) {
  return static_cast<double>(g.planes) * (g.OH * g.OW) * std::min(g.kh, g.H) * std::min(g.kw, g.W) > kParallelGrain;
}

// f(k, o) for every output k = (p*OH + oh)*OW + ow of a window pool and its window o, (plane, output
// row) pairs shared out over the threads (a row's window rows found once). Each call writes its own
// output: any schedule, same bits.
template <class F>
void for_each_window(const Pool2dGeom& g, F&& f) {
#pragma omp parallel for collapse(2) if (window_pool_parallel(g))
  for (int64_t p = 0; p < g.planes; ++p)
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      OutputWindow o{p, oh, 0, 0, 0, 0, 0};
      window(oh, g.sh, g.ph, g.kh, g.H, o.h0, o.h1);
      for (; o.ow < g.OW; ++o.ow) {
        window(o.ow, g.sw, g.pw, g.kw, g.W, o.w0, o.w1);
        f((p * g.OH + oh) * g.OW + o.ow, o);
      }
    }
}

// f(p, r, c) for every plane p and every (r, c) of its rows x cols grid (the output plane for the
// adaptive forward, the input plane for its backward), (plane, row) pairs shared out over the
// threads. Each call writes its own element: any schedule, same bits.
template <class F>
void adaptive_for_each(const Pool2dGeom& g, int64_t rows, int64_t cols, F&& f) {
#pragma omp parallel for collapse(2) if (g.planes * std::max(g.H * g.W, g.OH * g.OW) > kParallelGrain)
  for (int64_t p = 0; p < g.planes; ++p)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) f(p, r, c);
}

// Each (plane, output row) is one independent task: writes are disjoint, so any schedule gives
// the same bits.
template <class T>
void max_pool2d_forward(const T* x, T* y, int64_t* argmax, Pool2dGeom g) {
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  if (g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0 && g.W < (int64_t(1) << 30)) {
#pragma omp parallel for if (window_pool_parallel(g))
    for (int64_t p = 0; p < g.planes; ++p)
      max_pool_plane_2x2(x + p * in_plane, g.W, g.OH, g.OW, y + p * out_plane, argmax + p * out_plane);
    return;
  }
  for_each_window(g, [&](int64_t k, const OutputWindow& o) { y[k] = max_at(x + o.p * in_plane, o, g, argmax[k]); });
}

// One thread per plane; within a plane the outputs are added in order, so the sums repeat.
template <class T>
void max_pool2d_backward(const T* dy, const int64_t* argmax, T* dx, Pool2dGeom g) {
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
#pragma omp parallel for if (g.planes * (in_plane + out_plane) > kParallelGrain)
  for (int64_t p = 0; p < g.planes; ++p) {
    T* dxp = dx + p * in_plane;
    const T* dyp = dy + p * out_plane;
    const int64_t* ap = argmax + p * out_plane;
    std::fill(dxp, dxp + in_plane, T(0));
    for (int64_t o = 0; o < out_plane; ++o) dxp[ap[o]] += dyp[o];
  }
}

template <class T>
void avg_pool2d_forward(const T* x, T* y, Pool2dGeom g) {
  const int64_t in_plane = g.H * g.W;
  for_each_window(g, [&](int64_t k, const OutputWindow& o) { y[k] = avg_at(x + o.p * in_plane, o, g); });
}

// Gather: dx[h, w] = sum over the outputs whose window covers (h, w), in row-major output order,
// of dy / divisor.
template <class T>
void avg_pool2d_backward(const T* dy, T* dx, Pool2dGeom g) {
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  const bool par = static_cast<double>(g.planes) * in_plane * std::min((g.kh + g.sh - 1) / g.sh, g.OH) *
                       std::min((g.kw + g.sw - 1) / g.sw, g.OW) > kParallelGrain;
#pragma omp parallel for collapse(2) if (par)
  for (int64_t p = 0; p < g.planes; ++p)
    for (int64_t h = 0; h < g.H; ++h) {
      const T* dyp = dy + p * out_plane;
      int64_t oh0, oh1;
      covering(h, g.sh, g.ph, g.kh, g.OH, oh0, oh1);
      for (int64_t w = 0; w < g.W; ++w) dx[p * in_plane + h * g.W + w] = avg_grad_at(dyp, oh0, oh1, w, g);
    }
}

template <class T>
void adaptive_avg_pool2d_forward(const T* x, T* y, Pool2dGeom g) {
  adaptive_for_each(g, g.OH, g.OW, [&](int64_t p, int64_t oh, int64_t ow) {
    y[(p * g.OH + oh) * g.OW + ow] = adaptive_avg_at(x + p * g.H * g.W, oh, ow, g);
  });
}

template <class T>
void adaptive_avg_pool2d_backward(const T* dy, T* dx, Pool2dGeom g) {
  adaptive_for_each(g, g.H, g.W, [&](int64_t p, int64_t h, int64_t w) {
    dx[(p * g.H + h) * g.W + w] = adaptive_avg_grad_at(dy + p * g.OH * g.OW, h, w, g);
  });
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_POOL2D_KERNELS)

}  // namespace cpu
}  // namespace pycnn
