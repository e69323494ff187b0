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
// g[(gbase[p + q] + at[m])*S] += t[m][q], taps m in order.
template <class T, int MB, int NP, int Bytes>
[[gnu::always_inline]] inline void tile(const T* __restrict wt, int64_t K, const T* __restrict dyt, int64_t ldo,
                                        const int64_t* gbase, const int64_t* at, T* __restrict g) {
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
      T* at_g = g + (gbase[q] + at[m]) * S;
      V v;
      std::memcpy(&v, at_g, sizeof(V));
      v += acc[m][q];
      std::memcpy(at_g, &v, sizeof(V));
    }
}

// Positions [0, L) for MB taps: tiles of NP, the rest one position narrower at a time.
template <class T, int MB, int NP, int Bytes>
[[gnu::always_inline]] inline void positions(const T* wt, int64_t K, const T* dyt, int64_t ldo, const int64_t* gbase,
                                             int64_t L, const int64_t* at, T* g) {
  constexpr int S = Bytes / int(sizeof(T));
  int64_t p = 0;
  for (; p + NP <= L; p += NP) tile<T, MB, NP, Bytes>(wt, K, dyt + p * S, ldo, gbase + p, at, g);
  if constexpr (NP > 1)
    if (p < L) positions<T, MB, NP - 1, Bytes>(wt, K, dyt + p * S, ldo, gbase + p, L - p, at, g);
}

// Taps [0, R): blocks of MB, the rest by halving.
template <class T, int MB, int NP, int Bytes>
[[gnu::always_inline]] inline void all_taps(const T* wt, int64_t R, int64_t K, const T* dyt, int64_t ldo,
                                            const int64_t* gbase, int64_t L, const int64_t* at, T* g) {
  int64_t r = 0;
  for (; r + MB <= R; r += MB) positions<T, MB, NP, Bytes>(wt + r * K, K, dyt, ldo, gbase, L, at + r, g);
  if constexpr (MB > 1)
    if (r < R) all_taps<T, MB / 2, NP, Bytes>(wt + r * K, R - r, K, dyt, ldo, gbase, L, at + r, g);
}

}  // namespace

// One copy per x86-64 level: its vector (the samples of a group) and the tile its registers hold
// (32 x 512-bit: 4 taps x 6 positions; 16 x 256-bit or 128-bit: 2 x 5), accumulators plus the
// positions' dy vectors and one broadcast weight.
#define PYCNN_SAMPLES_KERNELS(ATTR, MB, NP, B, T)                                                               \
  ATTR int64_t group_bytes(T) { return B; }                                                                      \
  ATTR void channel_grad(const T* wt, int64_t R, int64_t K, const T* dyt, int64_t ldo, const int64_t* gbase,    \
                         int64_t L, const int64_t* at, T* g) {                                                   \
    all_taps<T, MB, NP, B>(wt, R, K, dyt, ldo, gbase, L, at, g);                                                 \
  }
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define PYCNN_SAMPLES_LEVELS(T)                                          \
  PYCNN_SAMPLES_KERNELS([[gnu::target("arch=x86-64-v4")]], 4, 6, 64, T) \
  PYCNN_SAMPLES_KERNELS([[gnu::target("arch=x86-64-v3")]], 2, 5, 32, T) \
  PYCNN_SAMPLES_KERNELS([[gnu::target("default")]], 2, 5, 16, T)
#else
#define PYCNN_SAMPLES_LEVELS(T) PYCNN_SAMPLES_KERNELS(, 2, 5, 16, T)
#endif
PYCNN_SAMPLES_LEVELS(float)
PYCNN_SAMPLES_LEVELS(double)

// ============================================================================ dispatch rule
// Against conv2d_direct.h's gather form (which conv2d.cpp tries next) on Zen 4, 2 threads, float32,
// in-process alternation: the gather form computes every dx element from all its group's taps,
// L*sh*sw / (H*W) of them useful. At <= 0.8 useful: 0.54x at LeNet's 6->16 5x5 (batch 64 and
// 256), 0.67x at 1->6 5x5 on 32x32, 0.56-0.91x on 4->8 7x7, 10->20 5x5, 16->32 3x3, 16->16
// dilated, 6->16 5x5 stride 2; at 0.87-1.0 (padded "same" layers) 0.73-1.3x, 3x3 ones slower. A
// group of samples filled to a half (batch 8 or 17 of 16 lanes) 0.89-1.04x, four output channels
// a group 1.06x.
constexpr int64_t kGroup = 16;  // samples a group at float32 with AVX-512 (the rule is the same on every CPU)

bool applies_input_grad(const Conv2dShape& s) {
  const int64_t filled = direct::round_up(s.N, kGroup);
  const int64_t plane_bytes = (s.O * s.L + (s.H + s.pt + s.pb) * (s.W + s.pl + s.pr)) * 64;
  return s.kh * s.kw > 1 && s.CK <= 256 && s.Og >= 6 && s.Og <= 64 && 4 * s.N >= 3 * filled &&
         5 * s.L * s.sh * s.sw <= 4 * s.H * s.W && plane_bytes <= (int64_t(8) << 20);
}

// ============================================================================ input gradient
template <class T>
void conv2d_input_grad(const T* dy, const T* w, T* dx, const Conv2dShape& s) {
  const int64_t S = group_bytes(T(0)) / static_cast<int64_t>(sizeof(T));
  const int64_t R = s.kh * s.kw, Hp = s.H + s.pt + s.pb, Wp = s.W + s.pl + s.pr, HW = s.H * s.W, OL = s.O * s.L;
  std::vector<T> wt(static_cast<size_t>(s.O * s.CK));  // (C, R, Og): each channel's taps, the group's o last
  for (int64_t gr = 0; gr < s.groups; ++gr)
    for (int64_t o = 0; o < s.Og; ++o)
      for (int64_t k = 0; k < s.CK; ++k) wt[(gr * s.CK + k) * s.Og + o] = w[(gr * s.Og + o) * s.CK + k];
  std::vector<int64_t> gbase(static_cast<size_t>(s.L)), at(static_cast<size_t>(R));
  for (int64_t oh = 0; oh < s.OH; ++oh)
    for (int64_t ow = 0; ow < s.OW; ++ow) gbase[oh * s.OW + ow] = oh * s.sh * Wp + ow * s.sw;
  for (int64_t i = 0; i < s.kh; ++i)
    for (int64_t j = 0; j < s.kw; ++j) at[i * s.kw + j] = i * s.dh * Wp + j * s.dw;
  const int64_t groups = (s.N + S - 1) / S, plane = Hp * Wp * S, per_thread = OL * S + plane;
  const int threads = direct::threads_for(s, groups);
  T* ws = static_cast<T*>(workspace(Device{}, static_cast<size_t>(threads * per_thread) * sizeof(T)));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t sg = 0; sg < groups; ++sg) {
    T* dyt = ws + thread_id() * per_thread;  // (O, L, S): the group's dy, one vector per element
    T* g = dyt + OL * S;                     // (Hp, Wp, S): one channel's padded input gradient
    const int64_t n0 = sg * S, nl = std::min(S, s.N - n0);
    direct::transpose(dy + n0 * OL, OL, dyt, S, nl, OL);
    if (nl < S)
      for (int64_t e = 0; e < OL; ++e) std::fill(dyt + e * S + nl, dyt + (e + 1) * S, T(0));
    for (int64_t c = 0; c < s.C; ++c) {
      std::fill(g, g + plane, T(0));
      channel_grad(wt.data() + c * R * s.Og, R, s.Og, dyt + (c / s.Cg) * s.Og * s.L * S, s.L * S, gbase.data(),
                   s.L, at.data(), g);
      for (int64_t h = 0; h < s.H; ++h)
        direct::transpose(g + ((h + s.pt) * Wp + s.pl) * S, S, dx + (n0 * s.C + c) * HW + h * s.W, s.C * HW, s.W, nl);
    }
  }
}

template void conv2d_input_grad<float>(const float*, const float*, float*, const Conv2dShape&);
template void conv2d_input_grad<double>(const double*, const double*, double*, const Conv2dShape&);

}  // namespace pycnn::cpu::samples
