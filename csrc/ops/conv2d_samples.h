// The input gradient of a convolution on the CPU with samples in the vector lanes: for layers with
// few channels and large kernels (LeNet's 6->16 5x5), where the gather form of conv2d_direct.h
// spends half its products on dy's zero border and a plane's rows are shorter than a vector.
//
// A group of S samples (S = 64 bytes of T: 16 floats, 8 doubles) is one vector per element:
//   dyt[(o*L + p)*S + l] = dy[n0 + l, o, p]              (zero for samples past N)
//   g[c][(oh*sh + i*dh)*Wp + ow*sw + j*dw] += sum_o w[o, c, i, j] * dyt[o, p = oh*OW + ow]
// in taps (i, j) order, into c's zero-padded plane g (Hp x Wp: the input with its padding), whose
// interior is dx[n0 + l, c]. Every product is one of col2im's (dy times a weight, no padding
// zero), so non-finite values propagate as im2col's do; each element of g is summed over the taps
// in row-major (i, j) order, each tap's value over the output channels in order: the order is fixed
// by the shape, and groups of samples are independent, so the bits do not depend on the thread
// count. Any stride, padding, dilation and groups.
#pragma once

#include "conv2d.h"

namespace pycnn::cpu::samples {

// Where conv2d's input gradient takes this path (measured: see conv2d_samples.cpp).
bool applies_input_grad(const Conv2dShape& s);

// dx (N, C, H, W, overwritten) = the input gradient of conv(x, w) for dy (N, O, OH, OW).
template <class T>
void conv2d_input_grad(const T* dy, const T* w, T* dx, const Conv2dShape& s);

}  // namespace pycnn::cpu::samples
