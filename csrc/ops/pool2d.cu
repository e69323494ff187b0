// CUDA kernels of pool2d.h. Forward: one thread per output element. Backward: avg and adaptive
// avg are gathers (one thread per input element, summing its covering outputs in row-major
// order, as the CPU loops do); so is max backward when it knows the windows (one thread per input
// element adds, in output order, the gradients of the covering windows whose argmax is that
// element); without them, one thread per plane adds its outputs in order. No atomics anywhere.
#include "../cuda/context.cuh"
#include "pool2d.h"

namespace pycnn::cuda {
namespace {

// count_include_pad=True divisor of output index o: the window clipped to the PADDED input.
__device__ inline int64_t avg_extent(int64_t o, int64_t s, int64_t p, int64_t k, int64_t in) {
  const int64_t start = o * s - p;
  const int64_t end = start + k < in + p ? start + k : in + p;
  return end - start;
}

// Outputs o whose window [o*s - p, o*s - p + k) covers input index i: [lo, hi] (empty when lo > hi).
__device__ inline void covering(int64_t i, int64_t s, int64_t p, int64_t k, int64_t out, int64_t& lo, int64_t& hi) {
  const int64_t a = i + p - k + 1;
  lo = a <= 0 ? 0 : (a + s - 1) / s;
  const int64_t h = (i + p) / s;
  hi = h < out - 1 ? h : out - 1;
}

template <class T>
__global__ void max_fwd_kernel(const T* x, T* y, int64_t* argmax, Pool2dGeom g, int64_t total) {
  PYCNN_KERNEL_LOOP(k, total) {
    const int64_t ow = k % g.OW, oh = (k / g.OW) % g.OH, p = k / (g.OW * g.OH);
    const T* xp = x + p * g.H * g.W;
    const int64_t hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
    const int64_t h0 = hs > 0 ? hs : 0, h1 = hs + g.kh < g.H ? hs + g.kh : g.H;
    const int64_t w0 = ws > 0 ? ws : 0, w1 = ws + g.kw < g.W ? ws + g.kw : g.W;
    T best = -INFINITY;
    int64_t bi = h0 * g.W + w0;  // an all -inf window: the first in-bounds element
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) {
        const T v = xp[h * g.W + w];
        if (v > best || v != v) {  // ties keep the first maximum; a NaN wins
          best = v;
          bi = h * g.W + w;
        }
      }
    y[k] = best;
    argmax[k] = bi;
  }
}

// One thread per plane: dx (zeroed beforehand) += dy at argmax, outputs in order; argmax values
// outside the plane are skipped (the CPU caller raises on them, the CUDA one cannot look).
template <class T>
__global__ void max_bwd_plane_kernel(const T* dy, const int64_t* argmax, T* dx, Pool2dGeom g) {
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  PYCNN_KERNEL_LOOP(p, g.planes) {
    T* dxp = dx + p * in_plane;
    const T* dyp = dy + p * out_plane;
    const int64_t* ap = argmax + p * out_plane;
    for (int64_t o = 0; o < out_plane; ++o) {
      const int64_t a = ap[o];
      if (a >= 0 && a < in_plane) dxp[a] += dyp[o];
    }
  }
}

template <class T>
__global__ void max_bwd_gather_kernel(const T* dy, const int64_t* argmax, T* dx, Pool2dGeom g, int64_t total) {
  PYCNN_KERNEL_LOOP(k, total) {
    const int64_t w = k % g.W, h = (k / g.W) % g.H, p = k / (g.W * g.H);
    const T* dyp = dy + p * g.OH * g.OW;
    const int64_t* ap = argmax + p * g.OH * g.OW;
    const int64_t me = h * g.W + w;
    int64_t oh0, oh1, ow0, ow1;
    covering(h, g.sh, g.ph, g.kh, g.OH, oh0, oh1);
    covering(w, g.sw, g.pw, g.kw, g.OW, ow0, ow1);
    T acc = 0;
    for (int64_t oh = oh0; oh <= oh1; ++oh)
      for (int64_t ow = ow0; ow <= ow1; ++ow)
        if (ap[oh * g.OW + ow] == me) acc += dyp[oh * g.OW + ow];
    dx[k] = acc;
  }
}

template <class T>
__global__ void avg_fwd_kernel(const T* x, T* y, Pool2dGeom g, int64_t total) {
  PYCNN_KERNEL_LOOP(k, total) {
    const int64_t ow = k % g.OW, oh = (k / g.OW) % g.OH, p = k / (g.OW * g.OH);
    const T* xp = x + p * g.H * g.W;
    const int64_t hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
    const int64_t h0 = hs > 0 ? hs : 0, h1 = hs + g.kh < g.H ? hs + g.kh : g.H;
    const int64_t w0 = ws > 0 ? ws : 0, w1 = ws + g.kw < g.W ? ws + g.kw : g.W;
    const int64_t eh = avg_extent(oh, g.sh, g.ph, g.kh, g.H), ew = avg_extent(ow, g.sw, g.pw, g.kw, g.W);
    T sum = 0;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) sum += xp[h * g.W + w];
    y[k] = sum / (static_cast<T>(eh) * static_cast<T>(ew));
  }
}

template <class T>
__global__ void avg_bwd_kernel(const T* dy, T* dx, Pool2dGeom g, int64_t total) {
  PYCNN_KERNEL_LOOP(k, total) {
    const int64_t w = k % g.W, h = (k / g.W) % g.H, p = k / (g.W * g.H);
    const T* dyp = dy + p * g.OH * g.OW;
    int64_t oh0, oh1, ow0, ow1;
    covering(h, g.sh, g.ph, g.kh, g.OH, oh0, oh1);
    covering(w, g.sw, g.pw, g.kw, g.OW, ow0, ow1);
    T acc = 0;
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      const int64_t eh = avg_extent(oh, g.sh, g.ph, g.kh, g.H);
      for (int64_t ow = ow0; ow <= ow1; ++ow)
        acc += dyp[oh * g.OW + ow] / (static_cast<T>(eh) * static_cast<T>(avg_extent(ow, g.sw, g.pw, g.kw, g.W)));
    }
    dx[k] = acc;
  }
}

template <class T>
__global__ void adaptive_fwd_kernel(const T* x, T* y, Pool2dGeom g, int64_t total) {
  PYCNN_KERNEL_LOOP(k, total) {  // k = (p*OH + oh)*OW + ow
    const int64_t ow = k % g.OW, oh = (k / g.OW) % g.OH, p = k / (g.OW * g.OH);
    y[k] = adaptive_avg_at(x + p * g.H * g.W, oh, ow, g);
  }
}

template <class T>
__global__ void adaptive_bwd_kernel(const T* dy, T* dx, Pool2dGeom g, int64_t total) {
  PYCNN_KERNEL_LOOP(k, total) {  // k = (p*H + h)*W + w
    const int64_t w = k % g.W, h = (k / g.W) % g.H, p = k / (g.W * g.H);
    dx[k] = adaptive_avg_grad_at(dy + p * g.OH * g.OW, h, w, g);
  }
}

}  // namespace

template <class T>
void max_pool2d_forward(const T* x, T* y, int64_t* argmax, Pool2dGeom g) {
  const int64_t total = g.planes * g.OH * g.OW;
  if (total <= 0) return;
  Exec ex(y);
  ex.launch(total, max_fwd_kernel<T>, x, y, argmax, g, total);
}

template <class T>
void max_pool2d_backward(const T* dy, const int64_t* argmax, T* dx, Pool2dGeom g) {
  const int64_t in_total = g.planes * g.H * g.W;
  if (in_total <= 0) return;
  Exec ex(dx);
  if (g.windows) {
    ex.launch(in_total, max_bwd_gather_kernel<T>, dy, argmax, dx, g, in_total);
    return;
  }
  PYCNN_CUDA_CHECK(cudaMemsetAsync(dx, 0, static_cast<size_t>(in_total) * sizeof(T), ex.stream()));
  if (g.OH * g.OW > 0) ex.launch(g.planes, max_bwd_plane_kernel<T>, dy, argmax, dx, g);
}

template <class T>
void avg_pool2d_forward(const T* x, T* y, Pool2dGeom g) {
  const int64_t total = g.planes * g.OH * g.OW;
  if (total <= 0) return;
  Exec ex(y);
  ex.launch(total, avg_fwd_kernel<T>, x, y, g, total);
}

template <class T>
void avg_pool2d_backward(const T* dy, T* dx, Pool2dGeom g) {
  const int64_t total = g.planes * g.H * g.W;
  if (total <= 0) return;
  Exec ex(dx);
  ex.launch(total, avg_bwd_kernel<T>, dy, dx, g, total);
}

template <class T>
void adaptive_avg_pool2d_forward(const T* x, T* y, Pool2dGeom g) {
  const int64_t total = g.planes * g.OH * g.OW;
  if (total <= 0) return;
  Exec ex(y);
  ex.launch(total, adaptive_fwd_kernel<T>, x, y, g, total);
}

template <class T>
void adaptive_avg_pool2d_backward(const T* dy, T* dx, Pool2dGeom g) {
  const int64_t total = g.planes * g.H * g.W;
  if (total <= 0) return;
  Exec ex(dx);
  ex.launch(total, adaptive_bwd_kernel<T>, dy, dx, g, total);
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_POOL2D_KERNELS)

}  // namespace pycnn::cuda
