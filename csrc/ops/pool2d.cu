// CUDA kernels of pool2d.h. Forward: one thread per output element. Backward: avg and adaptive
// avg are gathers (one thread per input element, summing its covering outputs in row-major
// order, as the CPU loops do); so is max backward when it knows the windows (one thread per input
// element adds, in output order, the gradients of the covering windows whose argmax is that
// element); without them, one thread per plane adds its outputs in order. No atomics anywhere.
#include "../cuda/context.cuh"
#include "pool2d.h"

namespace pycnn::cuda {
namespace {

template <class T>
__global__ void max_fwd_kernel(const T* x, T* y, int64_t* argmax, Pool2dGeom g) {
  PYCNN_KERNEL_LOOP(k, g.out_elems()) {
    const OutputWindow o = output_window(k, g);
    y[k] = max_at(x + o.p * g.H * g.W, o, g, argmax[k]);
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
__global__ void max_bwd_gather_kernel(const T* dy, const int64_t* argmax, T* dx, Pool2dGeom g) {
  PYCNN_KERNEL_LOOP(k, g.in_elems()) {
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
__global__ void avg_fwd_kernel(const T* x, T* y, Pool2dGeom g) {
  PYCNN_KERNEL_LOOP(k, g.out_elems()) {
    const OutputWindow o = output_window(k, g);
    y[k] = avg_at(x + o.p * g.H * g.W, o, g);
  }
}

template <class T>
__global__ void avg_bwd_kernel(const T* dy, T* dx, Pool2dGeom g) {
  PYCNN_KERNEL_LOOP(k, g.in_elems()) {
    const int64_t w = k % g.W, h = (k / g.W) % g.H, p = k / (g.W * g.H);
    int64_t oh0, oh1;
    covering(h, g.sh, g.ph, g.kh, g.OH, oh0, oh1);
    dx[k] = avg_grad_at(dy + p * g.OH * g.OW, oh0, oh1, w, g);
  }
}

template <class T>
__global__ void adaptive_fwd_kernel(const T* x, T* y, Pool2dGeom g) {
  PYCNN_KERNEL_LOOP(k, g.out_elems()) {  // k = (p*OH + oh)*OW + ow
    const int64_t ow = k % g.OW, oh = (k / g.OW) % g.OH, p = k / (g.OW * g.OH);
    y[k] = adaptive_avg_at(x + p * g.H * g.W, oh, ow, g);
  }
}

template <class T>
__global__ void adaptive_bwd_kernel(const T* dy, T* dx, Pool2dGeom g) {
  PYCNN_KERNEL_LOOP(k, g.in_elems()) {  // k = (p*H + h)*W + w
    const int64_t w = k % g.W, h = (k / g.W) % g.H, p = k / (g.W * g.H);
    dx[k] = adaptive_avg_grad_at(dy + p * g.OH * g.OW, h, w, g);
  }
}

}  // namespace

template <class T>
void max_pool2d_forward(const T* x, T* y, int64_t* argmax, Pool2dGeom g) {
  launch_over(y, g.out_elems(), max_fwd_kernel<T>, x, y, argmax, g);
}

template <class T>
void max_pool2d_backward(const T* dy, const int64_t* argmax, T* dx, Pool2dGeom g) {
  if (g.in_elems() <= 0) return;
  Exec ex(dx);
  if (g.windows) {
    ex.launch(g.in_elems(), max_bwd_gather_kernel<T>, dy, argmax, dx, g);
    return;
  }
  PYCNN_CUDA_CHECK(cudaMemsetAsync(dx, 0, static_cast<size_t>(g.in_elems()) * sizeof(T), ex.stream()));
  if (g.OH * g.OW > 0) ex.launch(g.planes, max_bwd_plane_kernel<T>, dy, argmax, dx, g);
}

// avg and adaptive avg, forward and backward: one thread per element of the result
#define PYCNN_POOL2D_GATHER(name, kernel, elems)                                                                       \
  template <class T>                                                                                                   \
  void name(const T* src, T* dst, Pool2dGeom g) {                                                                      \
    launch_over(dst, g.elems(), kernel<T>, src, dst, g);                                                               \
  }
PYCNN_POOL2D_GATHER(avg_pool2d_forward, avg_fwd_kernel, out_elems)
PYCNN_POOL2D_GATHER(avg_pool2d_backward, avg_bwd_kernel, in_elems)
PYCNN_POOL2D_GATHER(adaptive_avg_pool2d_forward, adaptive_fwd_kernel, out_elems)
PYCNN_POOL2D_GATHER(adaptive_avg_pool2d_backward, adaptive_bwd_kernel, in_elems)
#undef PYCNN_POOL2D_GATHER

PYCNN_INSTANTIATE_KERNELS(PYCNN_POOL2D_KERNELS)

}  // namespace pycnn::cuda
