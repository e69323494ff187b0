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

#include <algorithm>
#include <cstring>
#include <vector>

#include "../parallel.h"
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

// ---------------------------------------------------------------------------- shared with the other
// CPU conv paths (conv2d_channels.cpp, conv2d_winograd.cpp)

// A vector of Bytes / sizeof(T) lanes (GCC/Clang vector extension: the compiler picks the
// instructions of each ISA copy, splitting vectors wider than its registers).
template <class T, int Bytes>
using Vec [[gnu::vector_size(Bytes)]] = T;

// Sum of a vector's lanes, pairwise in a fixed order.
template <class T, int Bytes>
[[gnu::always_inline]] inline T lane_sum(const Vec<T, Bytes>& v) {
  constexpr int L = Bytes / int(sizeof(T));
  T a[L];
  std::memcpy(a, &v, sizeof(a));
  for (int w = L / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) a[l] += a[l + w];
  return a[0];
}

// Threads for `items` independent pieces of a conv's work: one below the parallel grain (counted
// in multiply-adds) or inside a parallel region.
inline int threads_for(const Conv2dShape& s, int64_t items) {
  const int64_t macs = s.N * s.O * s.L * s.CK;
  if (macs <= kParallelGrain || in_parallel()) return 1;
  return static_cast<int>(std::clamp<int64_t>(items, 1, num_threads()));
}

// Columns of a stride-1 view of the padded input: the output row and the kernel's reach (the
// "wide" row the direct and channel paths compute along).
inline int64_t wide_row(const Conv2dShape& s) { return s.OW + (s.kw - 1) * s.dw / s.sw; }

constexpr int64_t kPadBytes = 64;  // wide rows are padded to the widest vector (tiles take their tail a vector at a time)

inline int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// dst[r*ld + q] = src[r*ls + q] for lo <= q < hi, zero for the other q < len, r < rows (float:
// masked AVX-512 rows where the CPU has them; the rows of LeNet's layers are 10 to 32 elements long).
void copy_rows(const float* src, int64_t ls, float* dst, int64_t ld, int64_t rows, int64_t lo, int64_t hi, int64_t len);
void copy_rows(const double* src, int64_t ls, double* dst, int64_t ld, int64_t rows, int64_t lo, int64_t hi,
               int64_t len);

// dst[c*ldd + r] = src[r*lds + c] for r < rows, c < cols (float: 8 x 8 tiles in registers).
void transpose(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t rows, int64_t cols);
void transpose(const double* src, int64_t lds, double* dst, int64_t ldd, int64_t rows, int64_t cols);

// copy_rows with columns 2 apart (the rows of a stride-2 polyphase plane): dst[r*ld + q] =
// src[r*ls + 2q] for lo <= q < hi, zero for the other q < len; reads no further than src[r*ls + 2hi - 2]
// (float: 8 columns from 15 consecutive floats, the last 8 of a row overlapping).
void even_rows(const float* src, int64_t ls, float* dst, int64_t ld, int64_t rows, int64_t lo, int64_t hi, int64_t len);
void even_rows(const double* src, int64_t ls, double* dst, int64_t ld, int64_t rows, int64_t lo, int64_t hi,
               int64_t len);

// row[2q] += src[q] for q < n; row[0, room) is the caller's to write (room >= 2n - 1). float: 8 at a
// time, +0 added to the odd columns in between: exact unless one holds -0 (col2im's sums start at +0,
// and a sum from +0 never becomes -0 when rounding to nearest).
void add_to_even_columns(float* row, const float* src, int64_t n, int64_t room);
void add_to_even_columns(double* row, const double* src, int64_t n, int64_t room);

// dst[r*Q + q] = src[(r*rs + r0)*W + q*cs + c0] inside the H x W plane src, zero outside, for
// r < R, q < Q; then zero up to dst[len).
template <class T>
void gather_plane(const T* src, int64_t H, int64_t W, int64_t r0, int64_t rs, int64_t c0, int64_t cs, T* dst,
                  int64_t R, int64_t Q, int64_t len) {
  int64_t r_lo, r_hi, q_lo, q_hi;
  valid_range(r0, rs, H, R, r_lo, r_hi);
  valid_range(c0, cs, W, Q, q_lo, q_hi);
  std::fill(dst, dst + r_lo * Q, T(0));
  if (cs <= 2 && r_hi > r_lo) {  // contiguous rows, or every second column (stride-2 polyphase planes)
    const T* first = src + (r_lo * rs + r0) * W + c0;
    if (cs == 1)
      copy_rows(first, rs * W, dst + r_lo * Q, Q, r_hi - r_lo, q_lo, q_hi, Q);
    else
      even_rows(first, rs * W, dst + r_lo * Q, Q, r_hi - r_lo, q_lo, q_hi, Q);
    std::fill(dst + r_hi * Q, dst + len, T(0));
    return;
  }
  for (int64_t r = r_lo; r < r_hi; ++r) {  // larger column strides
    T* __restrict d = dst + r * Q;
    const T* __restrict row = src + (r * rs + r0) * W + c0;
    std::fill(d, d + q_lo, T(0));
    for (int64_t q = q_lo; q < q_hi; ++q) d[q] = row[q * cs];
    std::fill(d + q_hi, d + Q, T(0));
  }
  std::fill(dst + r_hi * Q, dst + len, T(0));
}

// The polyphase planes of one sample's input and the taps that read them (forward, weight grad).
// Wide (the default): one plane per (channel, row phase a, column phase b), rows as long as the
// wide row. Compact: one plane per (channel, row phase a, kernel column j), rows OW long, the
// column shift of tap j applied when the plane is filled: every computed position is an output
// (LeNet's 6->16 5x5 on 14x14: 100 positions instead of 140), at kw planes per channel instead of sw.
struct InputPlanes {
  bool compact;
  int64_t phases;  // planes per channel: sh*sw (wide) or sh*kw (compact)
  int64_t Hs, Ws;  // rows, columns of a plane (Ws: the computed output row, OW when compact)
  int64_t P;       // computed output positions, padded: OH*Ws rounded up
  int64_t plane;   // elements per plane, tail included (reads at p + off for p < P stay inside)
  int64_t sample;  // C * phases * plane
  std::vector<int64_t> off;  // CK taps (c, i, j) of one group, relative to the group's first plane

  InputPlanes(const Conv2dShape& s, size_t es, bool compact_rows = false) : compact(compact_rows) {
    phases = s.sh * (compact ? s.kw : s.sw);
    Hs = s.OH + (s.kh - 1) * s.dh / s.sh;
    Ws = compact ? s.OW : wide_row(s);
    P = round_up(s.OH * Ws, kPadBytes / static_cast<int64_t>(es));
    plane = round_up(std::max(Hs * Ws, P + (Hs - s.OH) * Ws + (compact ? 0 : (s.kw - 1) * s.dw / s.sw)), 16);
    sample = s.C * phases * plane;
    off.resize(static_cast<size_t>(s.CK));
    for (int64_t c = 0, k = 0; c < s.Cg; ++c)
      for (int64_t i = 0; i < s.kh; ++i)
        for (int64_t j = 0; j < s.kw; ++j, ++k) {
          const int64_t a = i * s.dh % s.sh, b = j * s.dw % s.sw, row = (i * s.dh / s.sh) * Ws;
          off[k] = compact ? ((c * s.sh + a) * s.kw + j) * plane + row
                           : ((c * s.sh + a) * s.sw + b) * plane + row + j * s.dw / s.sw;
        }
  }
  // Sample x (C, H, W) -> dst (C, phases, plane).
  template <class T>
  void fill(const T* x, T* dst, const Conv2dShape& s) const {
    const int64_t cols = compact ? s.kw : s.sw;
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t a = 0; a < s.sh; ++a)
        for (int64_t b = 0; b < cols; ++b)  // compact: b is the kernel column j, read from column ow*sw + j*dw - pl
          gather_plane(x + c * s.H * s.W, s.H, s.W, a - s.pt, s.sh, (compact ? b * s.dw : b) - s.pl, s.sw,
                       dst + ((c * s.sh + a) * cols + b) * plane, Hs, Ws, plane);
  }
};

// Offsets into a sample zero-padded to (C, Hp, Wp), the padding included (conv2d_channels.cpp,
// conv2d_samples.cpp): tap k = (c, i, j) of one group at tap[k] = c*Hp*Wp + i*dh*Wp + j*dw, output
// position p = (oh, ow) at pos[p] = oh*sh*Wp + ow*sw (the stride and dilation are in the offsets).
struct PaddedOffsets {
  int64_t Hp, Wp, plane;     // padded rows, columns, Hp*Wp
  std::vector<int64_t> tap;  // Cg*kh*kw
  std::vector<int64_t> pos;  // OH*OW

  explicit PaddedOffsets(const Conv2dShape& s)
      : Hp(s.H + s.pt + s.pb), Wp(s.W + s.pl + s.pr), plane(Hp * Wp), tap(static_cast<size_t>(s.CK)),
        pos(static_cast<size_t>(s.L)) {
    for (int64_t c = 0, k = 0; c < s.Cg; ++c)
      for (int64_t i = 0; i < s.kh; ++i)
        for (int64_t j = 0; j < s.kw; ++j, ++k) tap[k] = c * plane + i * s.dh * Wp + j * s.dw;
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) pos[oh * s.OW + ow] = oh * s.sh * Wp + ow * s.sw;
  }
  // Sample x (C, H, W) -> xp (C, Hp, Wp), the padding zero: every element written once.
  template <class T>
  void copy_in(const T* x, T* xp, const Conv2dShape& s) const {
    for (int64_t c = 0; c < s.C; ++c) {
      T* p = xp + c * plane;
      std::fill(p, p + s.pt * Wp + s.pl, T(0));  // top rows, then the first row's left padding
      for (int64_t h = 0; h < s.H; ++h) {
        T* row = p + (h + s.pt) * Wp + s.pl;
        std::memcpy(row, x + (c * s.H + h) * s.W, s.W * sizeof(T));
        std::fill(row + s.W, row + s.W + s.pr + (h + 1 < s.H ? s.pl : 0), T(0));  // right padding, next row's left
      }
      std::fill(p + (s.pt + s.H) * Wp, p + plane, T(0));  // bottom rows
    }
  }
};

// Whether the forward computes on compact rows: a tenth fewer positions or more than the wide
// rows (LeNet's 5x5 layers: 112 of 144 and 784 of 896), for kw/sw times the planes to fill.
inline bool compact_forward(const Conv2dShape& s, size_t es) {
  const int64_t lanes = kPadBytes / static_cast<int64_t>(es);
  return 10 * round_up(s.OH * s.OW, lanes) <= 9 * round_up(s.OH * wide_row(s), lanes);
}

}  // namespace pycnn::cpu::direct
