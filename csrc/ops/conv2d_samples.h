// Convolution on the CPU with samples in the vector lanes: for layers with few channels and taps
// (LeNet's 6->16 5x5), whose planes' rows are shorter than a vector and whose gather form of
// conv2d_direct.h spends up to half its products on dy's zero border.
//
// A group of S samples (S = one vector of T: 16 floats with AVX-512) is one vector per element, in
// each sample's zero-padded input plane (Hp x Wp, the padding included) and output positions p:
//   xt[(c*Hp*Wp + r*Wp + q)*S + l] = x[n0 + l, c, r - pt, q - pl]   (zero in the padding)
//   dyt[(o*L + p)*S + l] = dy[n0 + l, o, p],   tap k = (c, i, j) at tap[k] = c*Hp*Wp + i*dh*Wp + j*dw,
//   position p = (oh, ow) at pos[p] = oh*sh*Wp + ow*sw
//   forward  y[o, p]    = b[o] + sum_k w[o, k] * xt[tap[k] + pos[p]]          (k in order)
//   input g  g[c][pos[p] + i*dh*Wp + j*dw] += sum_o w[o, c, i, j] * dyt[o, p]  (taps in order; dx: g's interior)
//   weight   dw[o, k]   = sum over lanes of sum_p dyt[o, p] * xt[tap[k] + pos[p]]
// Every product is one of im2col's (the padding zeros included) or col2im's (no padding zero): inf
// and NaN propagate as they do there. The forward sums in the direct path's order (the same bits).
// The weight gradient sums each lane over the positions, then the groups in blocks fixed by the
// shape (at most 8, in order), then the lanes pairwise; the other passes keep the groups apart.
// Lanes past the batch are never stored (zero where they are summed). Any stride, padding, dilation and groups; each
// element's order is fixed by the shape and the CPU's vector width, so the bits do not depend on
// the thread count.
#pragma once

#include "conv2d.h"

namespace pycnn::cpu::samples {

// Where conv2d's forward / input gradient / weight gradient take this path (measured: see conv2d_samples.cpp).
bool applies_forward(const Conv2dShape& s);
bool applies_input_grad(const Conv2dShape& s);
bool applies_weight_grad(const Conv2dShape& s);

// y (N, O, OH, OW) = conv(x, w) + b (b may be null).
template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, const Conv2dShape& s);

// dx (N, C, H, W, overwritten) = the input gradient of conv(x, w) for dy (N, O, OH, OW).
template <class T>
void conv2d_input_grad(const T* dy, const T* w, T* dx, const Conv2dShape& s);

// dw (O, C/groups, kh, kw, overwritten) = the weight gradient of conv(x, w) for dy.
template <class T>
void conv2d_weight_grad(const T* dy, const T* x, T* dw, const Conv2dShape& s);

}  // namespace pycnn::cpu::samples
