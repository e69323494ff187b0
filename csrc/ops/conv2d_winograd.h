// Winograd F(2x2, 3x3) for 3x3, stride-1, undilated, ungrouped convolutions on the CPU: the
// forward, the input gradient (a 3x3 convolution of dy with the flipped, transposed kernel) and the
// weight gradient (the forward's map U -> y transposed, below).
// Each 2x2 output tile costs 16 products per (in, out) channel pair instead of 36; the products
// are 16 GEMMs per chunk of tiles, M_k (O, T) = U_k (O, C) @ V_k (C, T), k = 0..15, run by a
// register-tiled kernel of this file (one copy per x86-64 level), not by OpenBLAS, which reached
// 45-60% of the FMA peak on these small products.
//
// Layouts (one chunk of T tiles, scratch from workspace()):
//   U (16, O, C)   transformed kernel G g G^T, computed once per call
//   V (16, C, T)   transformed input tiles B^T d B (4x4 windows of the input, zero outside)
//   M (16, O, T)   their products; A^T m A gives the 2x2 output tile
// Tiles are numbered t = (n*TH + ty)*TW + tx over the whole batch and cut into chunks of a size
// fixed by the shape; every output element is written by exactly one chunk, with no reduction
// across threads: results repeat bit for bit whatever the thread count.
// The weight gradient runs the products the other way round, summing over tiles:
//   dU_k (C, O) = sum over chunks of V_k (C, T) @ Z_k (T, O),  Z = A dy A^T (4x4 from each 2x2 tile
//   of dy), then dw[o, c] = G^T dU[c, o] G,
// the tiles of a chunk summed on their own and then added to dU (a two-level sum: 4e-7 to 7e-7 of the
// largest element at 4-32 samples, the channel path's 3e-7 to 8e-7).
// The error against the float64 reference stays at float32 rounding level (about 2e-7 relative
// to the largest output; tests/test_conv2d_fast.py). F(4x4, 3x3) has 10-15x that error in float32
// (benchmarks/README.md) and is not used.
#pragma once

#include "conv2d.h"

namespace pycnn::cpu::winograd {

// 3x3, stride 1, dilation 1, groups 1: the shapes the kernels below accept.
bool supported(const Conv2dShape& s);
// Where conv2d's forward / input gradient take this path: supported and channel counts large
// enough that it measured faster than im2col + GEMM.
bool applies(const Conv2dShape& s);
bool applies_input_grad(const Conv2dShape& s);
bool applies_weight_grad(const Conv2dShape& s);

// y (N, O, OH, OW) = conv(x, w) + b (b may be null).
template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, const Conv2dShape& s);

// dx (N, C, H, W, overwritten) = the input gradient of conv(x, w) for dy (N, O, OH, OW).
template <class T>
void conv2d_input_grad(const T* dy, const T* w, T* dx, const Conv2dShape& s);

// dw (O, C, 3, 3, overwritten) = the weight gradient of conv(x, w) for dy. False when dw came out
// with an inf or NaN (then the caller computes it on another path, as im2col would).
template <class T>
bool conv2d_weight_grad(const T* dy, const T* x, T* dw, const Conv2dShape& s);

}  // namespace pycnn::cpu::winograd
