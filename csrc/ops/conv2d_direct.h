// Direct convolution on the CPU for layers with few taps per output (C/groups*kh*kw small, few
// output channels: LeNet's 1->6 and 6->16 5x5), where im2col's copies cost as much as the GEMM
// they feed. Forward, input gradient and weight gradient; any stride, padding, dilation, groups.
//
// Every pass is a sum of shifted rows of one flat, zero-padded buffer ("wide" rows: an output row
// is as long as the buffer's row; the extra columns are computed and dropped):
//   out[m, p] = init[m] + sum_k wt[m, k] * src[off[k] + p]      forward, input gradient
//   dw[m, k]  = sum_n sum_p dyw[n, m, p] * src[n, off[k] + p]     weight gradient (dyw: dy, wide)
// A stride becomes stride-1 sums over polyphase planes of the padded input,
//   xph[c, a, b][r, q] = x[c, r*sh + a - pt, q*sw + b - pl]   (zero outside x),
// tap (c, i, j) reading plane (c, i*dh % sh, j*dw % sw) at row oh + i*dh/sh, column ow + j*dw/sw.
// The input gradient is the same sum for each phase (a, b) of dx (h + pt = u*sh + a,
// w + pl = v*sw + b) over dy padded by the kernel's reach, with the taps of that phase and the
// weights transposed: dx[c, u, v] += w[o, c, i, j] * dy[o, u - i*dh/sh, v - j*dw/sw].
//
// Vectorised over p (the kernels have one copy per x86-64 level, each with its own register tile),
// parallel over samples (forward, input gradient) or over blocks of taps (weight gradient, every
// sample summed by one thread in a fixed order): each output element is summed in an order fixed
// by the shape, so results repeat bit for bit at any thread count.
// Zero padding and the dropped wide columns take part in products, so the weight gradient needs a
// finite input and the input gradient finite weights; conv2d.cpp falls back to im2col otherwise.
#pragma once

#include "conv2d.h"

namespace pycnn::cpu::direct {

// Where conv2d's forward / input gradient / weight gradient take this path (measured: see conv2d_direct.cpp).
bool applies(const Conv2dShape& s);
bool applies_input_grad(const Conv2dShape& s);
bool applies_weight_grad(const Conv2dShape& s);

// y (N, O, OH, OW) = conv(x, w) + b (b may be null).
template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, const Conv2dShape& s);

// dx (N, C, H, W, overwritten) = the input gradient of conv(x, w) for dy (N, O, OH, OW).
// False (dx untouched) when w holds a non-finite value.
template <class T>
bool conv2d_input_grad(const T* dy, const T* w, T* dx, const Conv2dShape& s);

// dw (O, C/groups, kh, kw, overwritten) = the weight gradient for dy. False (dw untouched) when x
// holds a non-finite value.
template <class T>
bool conv2d_weight_grad(const T* dy, const T* x, T* dw, const Conv2dShape& s);

}  // namespace pycnn::cpu::direct
