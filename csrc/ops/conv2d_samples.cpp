#include "conv2d_samples.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "../parallel.h"
#include "../workspace.h"
#include "conv2d_direct.h"

namespace pycnn::cpu::samples {

// ============================================================================ kernels, per ISA
namespace {

using direct::Vec;

// One tile of MB taps x NP output positions of one input channel, S = Bytes / sizeof(T) samples a
// vector: t[m][q] = sum_(o < K) wt[m*K + o] * dyt[o*ldo + (p + q)*S], then
// g[(pos[p + q] + at[m])*S] += t[m][q], taps m in order.
template <class T, int MB, int NP, int Bytes>
[[gnu::always_inline]] inline void tile(const T* __restrict wt, int64_t K, const T* __restrict dyt, int64_t ldo,
                                        const int64_t* pos, const int64_t* at, T* __restrict g) {
  using V = Vec<T, Bytes>;
  constexpr int S = Bytes / int(sizeof(T));
  V acc[MB][NP] = {};
  for (int64_t o = 0; o < K; ++o) {
    V d[NP];
    for (int q = 0; q < NP; ++q) std::memcpy(&d[q], dyt + o * ldo + q * S, sizeof(V));
    for (int m = 0; m < MB; ++m) {
      const T wv = wt[m * K + o];
      for (int q = 0; q < NP; ++q) acc[m][q] += wv * d[q];
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int q = 0; q < NP; ++q) {
      T* at_g = g + (pos[q] + at[m]) * S;
      V v;
      std::memcpy(&v, at_g, sizeof(V));
      v += acc[m][q];
      std::memcpy(at_g, &v, sizeof(V));
    }
}

// Positions [0, L) for MB taps: tiles of NP, the rest one position narrower at a time.
template <class T, int MB, int NP, int Bytes>
[[gnu::always_inline]] inline void positions(const T* wt, int64_t K, const T* dyt, int64_t ldo, const int64_t* pos,
                                             int64_t L, const int64_t* at, T* g) {
  constexpr int S = Bytes / int(sizeof(T));
  int64_t p = 0;
  for (; p + NP <= L; p += NP) tile<T, MB, NP, Bytes>(wt, K, dyt + p * S, ldo, pos + p, at, g);
  if constexpr (NP > 1)
    if (p < L) positions<T, MB, NP - 1, Bytes>(wt, K, dyt + p * S, ldo, pos + p, L - p, at, g);
}

// Taps [0, R): blocks of MB, the rest by halving.
template <class T, int MB, int NP, int Bytes>
[[gnu::always_inline]] inline void all_taps(const T* wt, int64_t R, int64_t K, const T* dyt, int64_t ldo,
                                            const int64_t* pos, int64_t L, const int64_t* at, T* g) {
  int64_t r = 0;
  for (; r + MB <= R; r += MB) positions<T, MB, NP, Bytes>(wt + r * K, K, dyt, ldo, pos, L, at + r, g);
  if constexpr (MB > 1)
    if (r < R) all_taps<T, MB / 2, NP, Bytes>(wt + r * K, R - r, K, dyt, ldo, pos, L, at + r, g);
}

// Forward, one tile of MB output channels x NP positions: y[m][q] = init[m] + sum_(k < K) w[m*K + k] *
// xt[(tap[k] + pos[q])*S] (tap k of the padded input planes at position q), stored at yt[(m*L + q)*S].
template <class T, int MB, int NP, int Bytes>
[[gnu::always_inline]] inline void out_tile(const T* __restrict w, int64_t K, const T* __restrict xt,
                                            const int64_t* __restrict tap, const int64_t* pos, const T* init,
                                            T* __restrict yt, int64_t L) {
  using V = Vec<T, Bytes>;
  constexpr int S = Bytes / int(sizeof(T));
  V acc[MB][NP];
  for (int m = 0; m < MB; ++m)
    for (int q = 0; q < NP; ++q) acc[m][q] = V{} + (init ? init[m] : T(0));
  int64_t at[NP];
  for (int q = 0; q < NP; ++q) at[q] = pos[q] * S;
  for (int64_t k = 0; k < K; ++k) {
    const T* src = xt + tap[k] * S;
    V d[NP];
    for (int q = 0; q < NP; ++q) std::memcpy(&d[q], src + at[q], sizeof(V));
    for (int m = 0; m < MB; ++m) {
      const T wv = w[m * K + k];
      for (int q = 0; q < NP; ++q) acc[m][q] += wv * d[q];
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int q = 0; q < NP; ++q) std::memcpy(yt + (m * L + q) * S, &acc[m][q], sizeof(V));
}

template <class T, int MB, int NP, int Bytes>
[[gnu::always_inline]] inline void out_positions(const T* w, int64_t K, const T* xt, const int64_t* tap,
                                                 const int64_t* pos, const T* init, T* yt, int64_t L, int64_t P) {
  constexpr int S = Bytes / int(sizeof(T));
  int64_t p = 0;
  for (; p + NP <= P; p += NP) out_tile<T, MB, NP, Bytes>(w, K, xt, tap, pos + p, init, yt + p * S, L);
  if constexpr (NP > 1)
    if (p < P) out_positions<T, MB, NP - 1, Bytes>(w, K, xt, tap, pos + p, init, yt + p * S, L, P - p);
}

template <class T, int MB, int NP, int Bytes>
[[gnu::always_inline]] inline void out_channels(const T* w, int64_t M, int64_t K, const T* xt, const int64_t* tap,
                                                const int64_t* pos, const T* init, T* yt, int64_t L) {
  constexpr int S = Bytes / int(sizeof(T));
  int64_t m = 0;
  for (; m + MB <= M; m += MB)
    out_positions<T, MB, NP, Bytes>(w + m * K, K, xt, tap, pos, init ? init + m : nullptr, yt + m * L * S, L, L);
  if constexpr (MB > 1)
    if (m < M)
      out_channels<T, MB / 2, NP, Bytes>(w + m * K, M - m, K, xt, tap, pos, init ? init + m : nullptr,
                                         yt + m * L * S, L);
}

// Weight gradient, one tile of MB output channels x KB taps, summed over the L positions of a
// group with the samples kept apart, lane by lane:
// dwv[(m*ldw + t)*S + l] (+)= sum_p dyt[m*ldo + p*S + l] * xt[(tap[t] + pos[p])*S + l].
template <class T, int MB, int KB, int Bytes>
[[gnu::always_inline]] inline void grad_tile(const T* __restrict dyt, int64_t ldo, const T* __restrict xt,
                                             const int64_t* __restrict tap, const int64_t* __restrict pos,
                                             int64_t L, T* __restrict dwv, int64_t ldw, bool first) {
  using V = Vec<T, Bytes>;
  constexpr int S = Bytes / int(sizeof(T));
  V acc[MB][KB] = {};
  const T* src[KB];
  for (int t = 0; t < KB; ++t) src[t] = xt + tap[t] * S;
  for (int64_t p = 0; p < L; ++p) {
    const int64_t at = pos[p] * S;
    V d[MB];
    for (int m = 0; m < MB; ++m) std::memcpy(&d[m], dyt + m * ldo + p * S, sizeof(V));
    for (int t = 0; t < KB; ++t) {
      V xv;
      std::memcpy(&xv, src[t] + at, sizeof(V));
      for (int m = 0; m < MB; ++m) acc[m][t] += d[m] * xv;
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int t = 0; t < KB; ++t) {
      T* dst = dwv + (m * ldw + t) * S;
      if (!first) {
        V sum;
        std::memcpy(&sum, dst, sizeof(V));
        acc[m][t] += sum;
      }
      std::memcpy(dst, &acc[m][t], sizeof(V));
    }
}

// Taps [0, K) for MB channels: blocks of KB, the rest one tap narrower at a time.
template <class T, int MB, int KB, int Bytes>
[[gnu::always_inline]] inline void grad_taps(const T* dyt, int64_t ldo, const T* xt, const int64_t* tap,
                                             const int64_t* pos, int64_t L, int64_t K, T* dwv, int64_t ldw,
                                             bool first) {
  constexpr int S = Bytes / int(sizeof(T));
  int64_t k = 0;
  for (; k + KB <= K; k += KB) grad_tile<T, MB, KB, Bytes>(dyt, ldo, xt, tap + k, pos, L, dwv + k * S, ldw, first);
  if constexpr (KB > 1)
    if (k < K) grad_taps<T, MB, KB - 1, Bytes>(dyt, ldo, xt, tap + k, pos, L, K - k, dwv + k * S, ldw, first);
}

// Output channels [0, M): blocks of MB, the rest by halving.
template <class T, int MB, int KB, int Bytes>
[[gnu::always_inline]] inline void grad_channels(const T* dyt, int64_t ldo, const T* xt, const int64_t* tap,
                                                 const int64_t* pos, int64_t L, int64_t M, int64_t K, T* dwv,
                                                 bool first) {
  constexpr int S = Bytes / int(sizeof(T));
  int64_t m = 0;
  for (; m + MB <= M; m += MB)
    grad_taps<T, MB, KB, Bytes>(dyt + m * ldo, ldo, xt, tap, pos, L, K, dwv + m * K * S, K, first);
  if constexpr (MB > 1)
    if (m < M)
      grad_channels<T, MB / 2, KB, Bytes>(dyt + m * ldo, ldo, xt, tap, pos, L, M - m, K, dwv + m * K * S, first);
}

// dw[e] = the lanes' sum of sum_(q < parts) dwv[(q*n + e)*S + lane], parts in order.
template <class T, int Bytes>
[[gnu::always_inline]] inline void reduce_parts(const T* dwv, int64_t parts, int64_t n, T* dw) {
  using V = Vec<T, Bytes>;
  constexpr int S = Bytes / int(sizeof(T));
  for (int64_t e = 0; e < n; ++e) {
    V acc;
    std::memcpy(&acc, dwv + e * S, sizeof(V));
    for (int64_t q = 1; q < parts; ++q) {
      V v;
      std::memcpy(&v, dwv + (q * n + e) * S, sizeof(V));
      acc += v;
    }
    dw[e] = direct::lane_sum<T, Bytes>(acc);
  }
}

}  // namespace

// One copy per x86-64 level: its vector (the samples of a group) and the tiles its registers hold,
// accumulators plus the loaded vectors and one broadcast: with 32 x 512-bit registers 4 taps x 6
// positions (input gradient), 8 channels x 3 positions (forward), 4 channels x 6 taps (weight
// gradient); with 16 x 256-bit or 128-bit ones 2 x 5 each.
#define PYCNN_SAMPLES_KERNELS(ATTR, MB, NP, FM, FP, GM, GK, B, T)                                              \
  ATTR int64_t group_bytes(T) { return B; }                                                                      \
  ATTR void channel_grad(const T* wt, int64_t R, int64_t K, const T* dyt, int64_t ldo, const int64_t* pos,    \
                         int64_t L, const int64_t* at, T* g) {                                                   \
    all_taps<T, MB, NP, B>(wt, R, K, dyt, ldo, pos, L, at, g);                                                 \
  }                                                                                                              \
  ATTR void group_forward(const T* w, int64_t M, int64_t K, const T* xt, const int64_t* tap, const int64_t* pos, \
                          const T* init, T* yt, int64_t L) {                                                     \
    out_channels<T, FM, FP, B>(w, M, K, xt, tap, pos, init, yt, L);                                           \
  }                                                                                                              \
  ATTR void group_weight_grad(const T* dyt, int64_t ldo, const T* xt, const int64_t* tap, const int64_t* pos, \
                              int64_t L, int64_t M, int64_t K, T* dwv, bool first) {                             \
    grad_channels<T, GM, GK, B>(dyt, ldo, xt, tap, pos, L, M, K, dwv, first);                                 \
  }                                                                                                              \
  ATTR void weight_grad_sum(const T* dwv, int64_t parts, int64_t n, T* dw) {                                     \
    reduce_parts<T, B>(dwv, parts, n, dw);                                                                       \
  }
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define PYCNN_SAMPLES_LEVELS(T)                                                     \
  PYCNN_SAMPLES_KERNELS([[gnu::target("arch=x86-64-v4")]], 4, 6, 8, 3, 4, 6, 64, T) \
  PYCNN_SAMPLES_KERNELS([[gnu::target("arch=x86-64-v3")]], 2, 5, 2, 5, 2, 5, 32, T) \
  PYCNN_SAMPLES_KERNELS([[gnu::target("default")]], 2, 5, 2, 5, 2, 5, 16, T)
#else
#define PYCNN_SAMPLES_LEVELS(T) PYCNN_SAMPLES_KERNELS(, 2, 5, 2, 5, 2, 5, 16, T)
#endif
PYCNN_SAMPLES_LEVELS(float)
PYCNN_SAMPLES_LEVELS(double)

// ============================================================================ dispatch rule
// Measured against the paths conv2d.cpp tries next (in-process alternation, Zen 4, 2 threads,
// float32, 8-16 shapes each, batch 12-256):
// - input gradient, against conv2d_direct.h's gather form, which computes every dx element from all
//   its group's taps, L*sh*sw / (H*W) of them useful. At <= 0.8 useful: 0.54x at LeNet's 6->16 5x5
//   (batch 64 and 256), 0.67x at 1->6 5x5 on 32x32, 0.56-0.91x on 4->8 7x7, 10->20 5x5, 16->32 3x3,
//   16->16 dilated, 6->16 5x5 stride 2; at 0.87-1.0 (padded "same" layers) 0.73-1.3x. Four output
//   channels a group: 1.06x.
// - forward, against the direct path (same products, same order: the same bits): 0.77-0.80x at
//   6->16 5x5 (stride 1 and 2), 0.79x at a 3->64 7x7 stride-2 stem, 0.85x at 4->8 7x7, 0.80x at an
//   unpadded 16->32 3x3, 0.98x at 10->20 5x5; padded 3x3 layers 1.0-1.09x, 1->6 5x5 no gain, grouped
//   ones with <= 8 channels a group 1.56-1.6x.
// - weight gradient, against the direct, channel and im2col paths: 0.74-0.97x on every layer with
//   <= 1024 output positions (0.87-0.92x at LeNet's conv2, 0.24-0.50x depthwise), but 1.5-1.9x at
//   48x48 to 56x56 outputs (the planes leave the caches), and one sum per lane over every position.
// - a group filled to a half (batch 8 or 17 of 16 lanes): 0.89-1.14x, so three quarters are asked.
// The rule is a function of the shape only (the same on every CPU, whatever its vector width).
namespace {
constexpr int64_t kGroup = 16;                       // samples a group at float32 with AVX-512
constexpr int64_t kMaxScratch = int64_t(4) << 20;    // bytes of a group's planes (x or dx, and dy or y)

bool fits(const Conv2dShape& s) {
  const int64_t planes = s.C * (s.H + s.pt + s.pb) * (s.W + s.pl + s.pr) + s.O * s.L;
  return s.kh * s.kw > 1 && s.CK <= 256 && s.Og <= 64 && 4 * s.N >= 3 * direct::round_up(s.N, kGroup) &&
         planes * 64 <= kMaxScratch;
}
// At most 0.8 of a gather form's products useful (unpadded layers).
bool wide_border(const Conv2dShape& s) { return 5 * s.L * s.sh * s.sw <= 4 * s.H * s.W; }
}  // namespace

bool applies_forward(const Conv2dShape& s) {
  return fits(s) && s.Og >= 8 && (s.kh * s.kw >= 25 || wide_border(s));
}
bool applies_input_grad(const Conv2dShape& s) { return fits(s) && s.Og >= 6 && wide_border(s); }
bool applies_weight_grad(const Conv2dShape& s) { return fits(s) && s.L <= 1024; }

// ============================================================================ a group's vectors
namespace {

// dyt (O, L, S) = dy of samples n0 .. n0 + nl, one vector per element; lanes past nl zero.
template <class T>
void group_grad_output(const T* dy, int64_t n0, int64_t nl, int64_t S, const Conv2dShape& s, T* dyt) {
  const int64_t OL = s.O * s.L;
  direct::transpose(dy + n0 * OL, OL, dyt, S, nl, OL);
  if (nl < S)
    for (int64_t e = 0; e < OL; ++e) std::fill(dyt + e * S + nl, dyt + (e + 1) * S, T(0));
}

// The interior of xt (C, Hp, Wp, S) = x of samples n0 .. n0 + nl; lanes past nl zeroed when
// `zero_lanes` (the weight gradient sums them), else left as they were (the forward never stores them).
template <class T>
void group_input(const T* x, int64_t n0, int64_t nl, int64_t S, const Conv2dShape& s, const direct::PaddedOffsets& f,
                 bool zero_lanes, T* xt) {
  const int64_t HW = s.H * s.W;
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t h = 0; h < s.H; ++h) {
      T* row = xt + (c * f.plane + (h + s.pt) * f.Wp + s.pl) * S;
      direct::transpose(x + (n0 * s.C + c) * HW + h * s.W, s.C * HW, row, S, nl, s.W);
      if (zero_lanes && nl < S)
        for (int64_t q = 0; q < s.W; ++q) std::fill(row + q * S + nl, row + (q + 1) * S, T(0));
    }
}

}  // namespace

// ============================================================================ input gradient
template <class T>
void conv2d_input_grad(const T* dy, const T* w, T* dx, const Conv2dShape& s) {
  const int64_t S = group_bytes(T(0)) / static_cast<int64_t>(sizeof(T));
  const direct::PaddedOffsets f(s);
  const int64_t R = s.kh * s.kw, Wp = f.Wp, HW = s.H * s.W, OL = s.O * s.L;
  std::vector<T> wt(static_cast<size_t>(s.O * s.CK));  // (C, R, Og): each channel's taps, the group's o last
  for (int64_t gr = 0; gr < s.groups; ++gr)
    for (int64_t o = 0; o < s.Og; ++o)
      for (int64_t k = 0; k < s.CK; ++k) wt[(gr * s.CK + k) * s.Og + o] = w[(gr * s.Og + o) * s.CK + k];
  const int64_t groups = (s.N + S - 1) / S, plane = f.plane * S, per_thread = OL * S + plane;
  const int threads = direct::threads_for(s, groups);
  T* ws = static_cast<T*>(workspace(Device{}, static_cast<size_t>(threads * per_thread) * sizeof(T)));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t sg = 0; sg < groups; ++sg) {
    T* dyt = ws + thread_id() * per_thread;  // (O, L, S): the group's dy, one vector per element
    T* g = dyt + OL * S;                     // (Hp, Wp, S): one channel's padded input gradient
    const int64_t n0 = sg * S, nl = std::min(S, s.N - n0);
    group_grad_output(dy, n0, nl, S, s, dyt);
    for (int64_t c = 0; c < s.C; ++c) {
      std::fill(g, g + plane, T(0));
      channel_grad(wt.data() + c * R * s.Og, R, s.Og, dyt + (c / s.Cg) * s.Og * s.L * S, s.L * S, f.pos.data(),
                   s.L, f.tap.data(), g);  // the first R taps: channel 0's, relative to its plane
      for (int64_t h = 0; h < s.H; ++h)
        direct::transpose(g + ((h + s.pt) * Wp + s.pl) * S, S, dx + (n0 * s.C + c) * HW + h * s.W, s.C * HW, s.W, nl);
    }
  }
}

// ============================================================================ forward
template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, const Conv2dShape& s) {
  const int64_t S = group_bytes(T(0)) / static_cast<int64_t>(sizeof(T));
  const direct::PaddedOffsets f(s);
  const int64_t OL = s.O * s.L, plane = f.plane;
  const int64_t groups = (s.N + S - 1) / S, per_thread = s.C * plane * S + OL * S;
  const int threads = direct::threads_for(s, groups);
  T* ws = static_cast<T*>(workspace(Device{}, static_cast<size_t>(threads * per_thread) * sizeof(T)));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    T* xt = ws + thread_id() * per_thread;  // (C, Hp, Wp, S): the group's padded input, one vector per element
    T* yt = xt + s.C * plane * S;           // (O, L, S)
    std::fill(xt, xt + s.C * plane * S, T(0));  // the border stays zero; lanes past the batch are never stored
#pragma omp for schedule(static)
    for (int64_t sg = 0; sg < groups; ++sg) {
      const int64_t n0 = sg * S, nl = std::min(S, s.N - n0);
      group_input(x, n0, nl, S, s, f, false, xt);
      for (int64_t gr = 0; gr < s.groups; ++gr)
        group_forward(w + gr * s.Og * s.CK, s.Og, s.CK, xt + gr * s.Cg * plane * S, f.tap.data(), f.pos.data(),
                      b ? b + gr * s.Og : nullptr, yt + gr * s.Og * s.L * S, s.L);
      direct::transpose(yt, S, y + n0 * OL, OL, OL, nl);
    }
  }
}

// ============================================================================ weight gradient
constexpr int64_t kMaxParts = 8;  // partial sums over fixed blocks of groups (a function of the shape)

template <class T>
void conv2d_weight_grad(const T* dy, const T* x, T* dw, const Conv2dShape& s) {
  const int64_t S = group_bytes(T(0)) / static_cast<int64_t>(sizeof(T));
  const direct::PaddedOffsets f(s);
  const int64_t OL = s.O * s.L, WN = s.O * s.CK, plane = f.plane;
  const int64_t groups = (s.N + S - 1) / S, parts = std::min(groups, kMaxParts);
  const int64_t per_part = (groups + parts - 1) / parts, used = (groups + per_part - 1) / per_part;  // none empty
  const int64_t per_thread = s.C * plane * S + OL * S;
  const int threads = direct::threads_for(s, used);
  T* ws = static_cast<T*>(workspace(Device{}, static_cast<size_t>(used * WN * S + threads * per_thread) * sizeof(T)));
  T* sums = ws;  // (used, O, CK, S): each part's sum, the samples still in the lanes
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    T* xt = ws + used * WN * S + thread_id() * per_thread;  // (C, Hp, Wp, S), as in the forward
    T* dyt = xt + s.C * plane * S;                          // (O, L, S)
    std::fill(xt, xt + s.C * plane * S, T(0));
#pragma omp for schedule(static)
    for (int64_t part = 0; part < used; ++part)
      for (int64_t sg = part * per_part; sg < std::min(groups, (part + 1) * per_part); ++sg) {
        const int64_t n0 = sg * S, nl = std::min(S, s.N - n0);
        group_input(x, n0, nl, S, s, f, true, xt);  // the lanes past the batch are summed: zero
        group_grad_output(dy, n0, nl, S, s, dyt);
        for (int64_t gr = 0; gr < s.groups; ++gr)
          group_weight_grad(dyt + gr * s.Og * s.L * S, s.L * S, xt + gr * s.Cg * plane * S, f.tap.data(), f.pos.data(),
                            s.L, s.Og, s.CK, sums + (part * WN + gr * s.Og * s.CK) * S, sg == part * per_part);
      }
  }
  weight_grad_sum(sums, used, WN, dw);
}

template void conv2d_weight_grad<float>(const float*, const float*, float*, const Conv2dShape&);
template void conv2d_weight_grad<double>(const double*, const double*, double*, const Conv2dShape&);
template void conv2d_forward<float>(const float*, const float*, const float*, float*, const Conv2dShape&);
template void conv2d_forward<double>(const double*, const double*, const double*, double*, const Conv2dShape&);
template void conv2d_input_grad<float>(const float*, const float*, float*, const Conv2dShape&);
template void conv2d_input_grad<double>(const double*, const double*, double*, const Conv2dShape&);

}  // namespace pycnn::cpu::samples
