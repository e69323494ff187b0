// Weight gradient of an ungrouped convolution on the CPU, vectorised over output channels: for
// layers with many channels and taps (VGG's and ResNet's 3x3 layers), where im2col's column
// matrix (C*kh*kw rows by N*L columns) is larger than the caches and the GEMM it feeds runs at
// 60-70% of the FMA peak.
//
//   dw[o, k] = sum_n sum_(oh, ow) dy[n, o, oh, ow] * xph[n, off[k] + oh*Ws + ow]
//
// with xph the zero-padded polyphase planes of conv2d_direct.h (a stride becomes stride-1 reads;
// tap k = (c, i, j) reads at off[k]) and dy transposed to (N, L, Opad): one vector load gives
// a run of output channels, one broadcast gives the tap's input value, and a register tile holds
// OV vectors of channels by KT taps. Only real output positions take part (no wide columns), and
// the padding zeros are the ones im2col multiplies: the products are exactly im2col's, so
// non-finite values propagate the same way. The channels of dy are padded with zeros to whole
// vectors; those lanes are dropped.
//
// Threads own disjoint blocks of taps; each dw element is summed over n, then (oh, ow), in
// order, whatever the thread count: results repeat bit for bit.
#pragma once

#include "conv2d.h"

namespace pycnn::cpu::channels {

// Where conv2d's weight gradient takes this path (measured: see conv2d_channels.cpp).
bool applies_weight_grad(const Conv2dShape& s);

// dw (O, C, kh, kw, overwritten) = the weight gradient of conv(x, w) for dy (N, O, OH, OW).
template <class T>
void conv2d_weight_grad(const T* dy, const T* x, T* dw, const Conv2dShape& s);

}  // namespace pycnn::cpu::channels
