// 2-D convolution (PyTorch's conv2d: cross-correlation, NCHW, groups, dilation, asymmetric
// padding) by im2col + GEMM.
//
// Column matrix: row r = c*kh*kw + i*kw + j (torch.nn.functional.unfold order), column l =
// oh*OW + ow of one sample. The kernels write / read it through two strides so that one kernel
// serves both layouts in use:
//   * one matrix per sample, (N, C*kh*kw, L):  sample_stride = C*kh*kw*L, row_stride = L
//   * a chunk of nb samples side by side, (C*kh*kw, nb*L):  sample_stride = L, row_stride = nb*L
// The second lets one GEMM cover several samples (y_g = W_g @ cols_g with nb*L columns).
// The CPU schedule (items of samples, one OpenMP loop, fixed-order reductions) is described in
// conv2d.cpp; scratch memory comes from workspace() (per device, per calling thread).
//
// col2im is a gather: every input element is written by exactly one thread, as the sum over the
// kernel offsets (i, j) that read it, in row-major (i, j) order, starting from zero. No scatter
// into shared memory, no atomics: backward results repeat bit for bit (and the CUDA kernel,
// one thread per input element, adds in the same order).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

#include "../tensor.h"

namespace pycnn {

struct Conv2dParams {
  int64_t stride[2] = {1, 1};
  int64_t pad[4] = {0, 0, 0, 0};  // top, bottom, left, right
  int64_t dilation[2] = {1, 1};
  int64_t groups = 1;
};

// Everything the kernels need, computed and checked once at the boundary.
struct Conv2dShape {
  int64_t N, C, H, W;        // input
  int64_t O, kh, kw;         // weight (O, C/groups, kh, kw)
  int64_t OH, OW;            // output
  int64_t groups;
  int64_t sh, sw;            // stride
  int64_t pt, pb, pl, pr;    // padding: top, bottom, left, right
  int64_t dh, dw;            // dilation
  int64_t Cg, Og;            // channels per group: in, out
  int64_t CK;                // Cg*kh*kw: rows of one group's column matrix (= columns of W_g)
  int64_t L;                 // OH*OW: output positions per sample

  int64_t rows() const { return C * kh * kw; }  // rows of the whole column matrix (groups * CK)
  // 1x1, stride 1, no padding: the input planes already are the column matrix.
  bool pointwise() const {
    return kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt == 0 && pb == 0 && pl == 0 && pr == 0;
  }
};

// THE one check of conv2d (shapes, dtypes, devices, parameters); returns the geometry.
// x (N, C, H, W), w (O, C/groups, kh, kw), b (O,) or null.
// `op` names the caller in messages ("conv2d", "conv2d_backward").
Conv2dShape conv2d_shape(const Tensor& x, const Tensor& w, const Tensor* b, const Conv2dParams& p,
                         const char* op = "conv2d");
// The parameter and size checks alone (used by conv2d_shape and im2col) for an input of shape x
// (N, C, H, W) and O kernels of kh x kw; `ctx` ("input (..) and weight (..)") ends each message.
Conv2dShape conv2d_geometry(const char* op, const Shape& x, int64_t O, int64_t kh, int64_t kw,
                            const Conv2dParams& p, const std::string& ctx);
// conv2d_backward's extra check: grad_output (N, O, OH, OW), same dtype and device as the input.
void conv2d_check_grad_output(const Tensor& dy, const Tensor& x, const Tensor& w, const Conv2dShape& s);

Tensor conv2d_forward(const Tensor& x, const Tensor& w, const std::optional<Tensor>& b, const Conv2dParams& p);
// (dx, dw, db); a gradient not asked for is nullopt and costs nothing.
std::tuple<std::optional<Tensor>, std::optional<Tensor>, std::optional<Tensor>> conv2d_backward(
    const Tensor& dy, const Tensor& x, const Tensor& w, const Conv2dParams& p, bool need_dx, bool need_dw,
    bool need_db);
// (N, C*kh*kw, OH*OW), torch.nn.functional.unfold's layout.
Tensor im2col(const Tensor& x, int64_t kh, int64_t kw, const Conv2dParams& p);

// Kernels: raw pointers to contiguous NCHW data. `x` points at the first sample of the chunk.
// The kernels, CPU (conv2d.cpp) and CUDA (conv2d.cu) alike (see PYCNN_DECLARE_KERNELS in common.h).
// im2col: nb samples of x -> cols[n*sample_stride + r*row_stride + l] (padding reads as zero).
// col2im: the adjoint: dx (nb samples, overwritten) = sum of the column entries that read each element.
// conv2d_forward: y (N, O, OH, OW) = conv(x, w) + b; b may be null. Scratch comes from workspace().
// conv2d_backward: any of dx / dw / db may be null (not wanted). dw is (O, Cg, kh, kw), db (O,).
#define PYCNN_CONV2D_KERNELS(X, T)                                                                                     \
  X(im2col, (const T* x, T* cols, const Conv2dShape& s, int64_t nb, int64_t sample_stride, int64_t row_stride))        \
  X(col2im, (const T* cols, T* dx, const Conv2dShape& s, int64_t nb, int64_t sample_stride, int64_t row_stride))       \
  X(conv2d_forward, (const T* x, const T* w, const T* b, T* y, const Conv2dShape& s))                                  \
  X(conv2d_backward, (const T* dy, const T* x, const T* w, T* dx, T* dw, T* db, const Conv2dShape& s))
namespace cpu {
PYCNN_DECLARE_KERNELS(PYCNN_CONV2D_KERNELS)
// Output indices o in [lo, hi) whose input index o*stride + off lies inside [0, size); out outputs.
inline void valid_range(int64_t off, int64_t stride, int64_t size, int64_t out, int64_t& lo, int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  hi = off >= size ? 0 : (size - 1 - off) / stride + 1;
  lo = lo < out ? lo : out;
  hi = hi < out ? hi : out;
  hi = hi > lo ? hi : lo;
}
}  // namespace cpu
namespace cuda { PYCNN_DECLARE_KERNELS(PYCNN_CONV2D_KERNELS) }  // namespace cuda

}  // namespace pycnn
