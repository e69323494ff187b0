// Weight gradient and forward of an ungrouped convolution on the CPU, vectorised over output
// channels: for layers with many channels and taps (strided and dilated ones; 3x3 stride-1 layers
// whose weight gradient conv2d_winograd.h does not take), where im2col's column matrix (C*kh*kw
// rows by N*L columns) is larger than the caches and the GEMM it feeds runs at 60-70% of the FMA peak.
//
//   dw[o, k] = sum_n sum_(oh, ow) dy[n, o, oh, ow] * xp[n, tap[k] + pos(oh, ow)]
//   y[n, o, p] = b[o] + sum_k w[o, k] * xp[n, tap[k] + pos(p)]     (p = oh*OW + ow)
//
// with xp each sample zero-padded (C, Hp, Wp), tap k = (c, i, j) at tap[k] = (c*Hp + i*dh)*Wp + j*dw
// and output position (oh, ow) at pos = oh*sh*Wp + ow*sw (conv2d_direct.h's PaddedOffsets: the
// stride and dilation are in the offsets), and dy transposed to (N, L, Opad): one vector load gives a run of output channels, one
// broadcast gives the tap's input value, and a register tile holds OV vectors of channels by KT taps. Only real output positions take part (no wide columns), and
// the padding zeros are the ones im2col multiplies: the products are exactly im2col's, so
// non-finite values propagate the same way. The channels of dy are padded with zeros to whole
// vectors; those lanes are dropped.
//
// The forward holds a tile of 6 positions x OV vectors of channels, broadcasting the input and
// loading the transposed weights (every computed position is an output); the output is
// transposed back to NCHW per sample. Its products are im2col's.
// Threads own disjoint blocks of taps (weight gradient) or samples (forward); each element is
// summed in an order fixed by the shape, whatever the thread count: results repeat bit for bit.
#pragma once

#include "conv2d.h"

namespace pycnn::cpu::channels {

// Where conv2d's forward / weight gradient take this path (measured: see conv2d_channels.cpp).
bool applies_forward(const Conv2dShape& s);
bool applies_weight_grad(const Conv2dShape& s);

// y (N, O, OH, OW) = conv(x, w) + b (b may be null).
template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, const Conv2dShape& s);

// dw (O, C, kh, kw, overwritten) = the weight gradient of conv(x, w) for dy (N, O, OH, OW).
template <class T>
void conv2d_weight_grad(const T* dy, const T* x, T* dw, const Conv2dShape& s);

}  // namespace pycnn::cpu::channels
