#include "conv2d_channels.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "../parallel.h"
#include "../workspace.h"
#include "conv2d_direct.h"

namespace pycnn::cpu::channels {

// ============================================================================ kernels, per ISA
namespace {

using direct::Vec;

// The sum over nb samples (a block), added to the running sums of an OV-vector x KT-tap tile
// (two levels: the rounding error grows with the block's and the blocks' count, not their product):
// dwt[t*ldw + v*L + l] (+)= sum_(n < nb, oh, ow) dyt[n*dys + (oh*OW + ow)*ldw + v*L + l]
//                                              * src[n*xs + off[t] + oh*rs + ow*cs].
template <class T, int OV, int KT, int Bytes>
[[gnu::always_inline]] inline void tile(const T* __restrict dyt, int64_t dys, const T* __restrict src, int64_t xs,
                                        int64_t nb, const int64_t* off, int64_t OH, int64_t OW, int64_t rs, int64_t cs,
                                        T* __restrict dwt, int64_t ldw, bool first) {
  using V = Vec<T, Bytes>;
  constexpr int L = Bytes / int(sizeof(T));
  V acc[KT][OV] = {};
  for (int64_t n = 0; n < nb; ++n)
    for (int64_t oh = 0; oh < OH; ++oh) {
      const T* sp[KT];
      for (int t = 0; t < KT; ++t) sp[t] = src + n * xs + off[t] + oh * rs;
      const T* __restrict d = dyt + n * dys + oh * OW * ldw;
      for (int64_t ow = 0; ow < OW; ++ow, d += ldw) {
        V dv[OV];
        for (int v = 0; v < OV; ++v) std::memcpy(&dv[v], d + v * L, sizeof(V));
        for (int t = 0; t < KT; ++t) {
          const T xv = sp[t][ow * cs];
          for (int v = 0; v < OV; ++v) acc[t][v] += dv[v] * xv;
        }
      }
    }
  for (int t = 0; t < KT; ++t)
    for (int v = 0; v < OV; ++v) {
      if (!first) {
        V sum;
        std::memcpy(&sum, dwt + t * ldw + v * L, sizeof(V));
        acc[t][v] += sum;
      }
      std::memcpy(dwt + t * ldw + v * L, &acc[t][v], sizeof(V));
    }
}

// KT taps over all nv vectors of channels: blocks of OV, the rest by halving.
template <class T, int OV, int KT, int Bytes>
[[gnu::always_inline]] inline void tap_block(const T* dyt, int64_t dys, const T* src, int64_t xs, int64_t nb,
                                             const int64_t* off, int64_t nv, int64_t OH,
                                             int64_t OW, int64_t rs, int64_t cs, T* dwt, int64_t ldw, bool first) {
  constexpr int L = Bytes / int(sizeof(T));
  int64_t v = 0;
  for (; v + OV <= nv; v += OV)
    tile<T, OV, KT, Bytes>(dyt + v * L, dys, src, xs, nb, off, OH, OW, rs, cs, dwt + v * L, ldw, first);
  if constexpr (OV > 1)
    if (v < nv)
      tap_block<T, OV / 2, KT, Bytes>(dyt + v * L, dys, src, xs, nb, off, nv - v, OH, OW, rs, cs, dwt + v * L, ldw,
                                      first);
}

// Taps [0, K): blocks of KT, the rest by halving.
template <class T, int OV, int KT, int Bytes>
[[gnu::always_inline]] inline void taps(const T* dyt, int64_t dys, const T* src, int64_t xs, int64_t nb,
                                        const int64_t* off, int64_t K, int64_t nv,
                                        int64_t OH, int64_t OW, int64_t rs, int64_t cs, T* dwt, int64_t ldw,
                                        bool first) {
  int64_t k = 0;
  for (; k + KT <= K; k += KT)
    tap_block<T, OV, KT, Bytes>(dyt, dys, src, xs, nb, off + k, nv, OH, OW, rs, cs, dwt + k * ldw, ldw, first);
  if constexpr (KT > 1)
    if (k < K)
      taps<T, OV, KT / 2, Bytes>(dyt, dys, src, xs, nb, off + k, K - k, nv, OH, OW, rs, cs, dwt + k * ldw, ldw, first);
}

// Forward, one tile of PT positions x OV vectors of output channels:
// out[(p + t)*ldo + v*L + l] = init[v*L + l] + sum_k wt[k*ldo + v*L + l] * src[off[k] + base[p + t]].
template <class T, int PT, int OV, int Bytes>
[[gnu::always_inline]] inline void out_tile(const T* __restrict wt, int64_t ldo, const T* __restrict src,
                                            const int64_t* __restrict off, const int64_t* __restrict base, int64_t K,
                                            const T* init, T* __restrict out) {
  using V = Vec<T, Bytes>;
  constexpr int L = Bytes / int(sizeof(T));
  V acc[PT][OV];
  for (int v = 0; v < OV; ++v) {
    V b = V{};
    if (init) std::memcpy(&b, init + v * L, sizeof(V));
    for (int t = 0; t < PT; ++t) acc[t][v] = b;
  }
  int64_t at[PT];
  for (int t = 0; t < PT; ++t) at[t] = base[t];
  for (int64_t k = 0; k < K; ++k) {
    const T* s = src + off[k];
    V wv[OV];
    for (int v = 0; v < OV; ++v) std::memcpy(&wv[v], wt + k * ldo + v * L, sizeof(V));
    for (int t = 0; t < PT; ++t) {
      const T xv = s[at[t]];
      for (int v = 0; v < OV; ++v) acc[t][v] += xv * wv[v];
    }
  }
  for (int t = 0; t < PT; ++t)
    for (int v = 0; v < OV; ++v) std::memcpy(out + t * ldo + v * L, &acc[t][v], sizeof(V));
}

// Positions [0, P): tiles of PT, the rest by halving.
template <class T, int PT, int OV, int Bytes>
[[gnu::always_inline]] inline void out_positions(const T* wt, int64_t ldo, const T* src, const int64_t* off,
                                                 const int64_t* base, int64_t K, const T* init, T* out, int64_t P) {
  int64_t p = 0;
  for (; p + PT <= P; p += PT) out_tile<T, PT, OV, Bytes>(wt, ldo, src, off, base + p, K, init, out + p * ldo);
  if constexpr (PT > 1)
    if (p < P) out_positions<T, PT / 2, OV, Bytes>(wt, ldo, src, off, base + p, K, init, out + p * ldo, P - p);
}

// All nv vectors of channels: blocks of OV (their weights stay in cache over the positions), the
// rest by halving.
template <class T, int PT, int OV, int Bytes>
[[gnu::always_inline]] inline void out_all(const T* wt, int64_t ldo, const T* src, const int64_t* off,
                                           const int64_t* base, int64_t K, const T* init, T* out, int64_t P,
                                           int64_t nv) {
  constexpr int L = Bytes / int(sizeof(T));
  int64_t v = 0;
  for (; v + OV <= nv; v += OV)
    out_positions<T, PT, OV, Bytes>(wt + v * L, ldo, src, off, base, K, init ? init + v * L : nullptr, out + v * L, P);
  if constexpr (OV > 1)
    if (v < nv)
      out_all<T, PT, OV / 2, Bytes>(wt + v * L, ldo, src, off, base, K, init ? init + v * L : nullptr, out + v * L, P,
                                    nv - v);
}

}  // namespace

// One copy per x86-64 level with the tile its registers hold (32 x 512-bit: 4 vectors x 6 taps;
// 16 x 256-bit or 128-bit: 2 x 6), accumulators plus the channel vectors and one broadcast.
// Taps [0, K) of nb samples, ldw = padded channels (a multiple of every vector width).
// Forward: all ldo channels (padded) at the P output positions of one sample: tiles of 6 positions
// x OV vectors (the same register count as the gradient's tile).
#define PYCNN_CHANNELS_KERNELS(ATTR, OV, KT, B, T)                                                              \
  ATTR void sample_forward(const T* wt, int64_t ldo, const T* src, const int64_t* off, const int64_t* base,     \
                           int64_t K, const T* init, T* out, int64_t P) {                                       \
    out_all<T, KT, OV, B>(wt, ldo, src, off, base, K, init, out, P, ldo * int64_t(sizeof(T)) / B);              \
  }                                                                                                             \
  ATTR void block_grad(const T* dyt, int64_t dys, const T* src, int64_t xs, int64_t nb, const int64_t* off,  \
                       int64_t K, int64_t OH, int64_t OW, int64_t rs, int64_t cs, T* dwt, int64_t ldw,        \
                       bool first) {                                                                          \
    taps<T, OV, KT, B>(dyt, dys, src, xs, nb, off, K, ldw * int64_t(sizeof(T)) / B, OH, OW, rs, cs, dwt, ldw,    \
                       first);                                                                                \
  }
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define PYCNN_CHANNELS_LEVELS(T)                                            \
  PYCNN_CHANNELS_KERNELS([[gnu::target("arch=x86-64-v4")]], 4, 6, 64, T)   \
  PYCNN_CHANNELS_KERNELS([[gnu::target("arch=x86-64-v3")]], 2, 6, 32, T)   \
  PYCNN_CHANNELS_KERNELS([[gnu::target("default")]], 2, 6, 16, T)
#else
#define PYCNN_CHANNELS_LEVELS(T) PYCNN_CHANNELS_KERNELS(, 2, 6, 16, T)
#endif
PYCNN_CHANNELS_LEVELS(float)
PYCNN_CHANNELS_LEVELS(double)

constexpr int64_t kBlockPositions = 256;

// ============================================================================ dispatch rule
// Measured against the path it replaces (direct below 256 taps, else im2col) on Zen 4, 2 threads,
// float32, 19 shapes from LeNet's 6->16 5x5 to 512->512 3x3: 0.6-0.9x with at least 64 taps, 16
// channels padded by at most a quarter and output rows of 8 or more; 1.4x at 20 channels (padded
// to 32), 1.7x on 4x4 outputs (too few positions per row to pay a row's setup).
// The forward (after the direct and Winograd paths had their pick), against im2col on the same
// machine: 0.72-0.89x on 64->128 and 32->64 3x3 stride 2 at 32x32, 64->64 dilated and 32->64
// 5x5 (256 or more wide positions per sample); 1.16x at 128->256 stride 2 on 16x16 (72 positions)
// and 1.9x at 256->512 on 8x8 (20 positions, 4.7 MB of weights: they leave the cache between
// position tiles); 1.17x at batch 1 (one sample, one thread).
bool applies_forward(const Conv2dShape& s) {
  const int64_t padded = direct::round_up(s.O, 16), wide = direct::wide_row(s);
  return s.groups == 1 && s.kh * s.kw > 1 && s.CK >= 64 && s.CK <= 2048 && s.O >= 16 && 4 * s.O >= 3 * padded &&
         s.N >= 2 && s.OH * wide >= 128;
}
bool applies_weight_grad(const Conv2dShape& s) {
  const int64_t padded = direct::round_up(s.O, 16);
  return s.groups == 1 && s.kh * s.kw > 1 && s.CK >= 64 && s.O >= 16 && 4 * s.O >= 3 * padded && s.OW >= 8;
}

// ============================================================================ weight gradient
template <class T>
void conv2d_weight_grad(const T* dy, const T* x, T* dw, const Conv2dShape& s) {
  // x as in the forward: each sample zero-padded, read at direct::PaddedOffsets' tap and position
  // offsets (against polyphase planes: the same products in the same order).
  const direct::PaddedOffsets f(s);
  const int64_t plane = f.plane, Wp = f.Wp, HW = s.H * s.W, xs = s.C * plane;
  const int64_t ldw = direct::round_up(s.O, direct::kPadBytes / static_cast<int64_t>(sizeof(T)));
  const int64_t dys = s.L * ldw, K = s.CK;
  const int threads = direct::threads_for(s, num_threads());  // the taps are shared out below
  T* ws = static_cast<T*>(workspace(Device{}, static_cast<size_t>(s.N * (xs + dys) + K * ldw) * sizeof(T)));
  T* xp = ws;
  T* dyt = xp + s.N * xs;    // (N, L, ldw): dy with the channels last, zero past O
  T* dwt = dyt + s.N * dys;  // (K, ldw): dw transposed
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t n = 0; n < s.N; ++n) {
    f.copy_in(x + n * s.C * HW, xp + n * xs, s);
    T* tn = dyt + n * dys;
    direct::transpose(dy + n * s.O * s.L, s.L, tn, ldw, s.O, s.L);
    if (ldw > s.O)
      for (int64_t l = 0; l < s.L; ++l) std::fill(tn + l * ldw + s.O, tn + (l + 1) * ldw, T(0));
  }
  // Each thread owns a fixed range of taps (whole tiles) and runs the samples over it in order, in
  // blocks of about kBlockPositions output positions (a tile's setup and its sums' loads and stores
  // are paid once per block).
  const int64_t nb = std::clamp<int64_t>(kBlockPositions / std::max<int64_t>(s.L, 1), 1, std::max<int64_t>(s.N, 1));
  const int64_t kt = 6, blocks = (K + kt - 1) / kt;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int64_t nt = team_size(), t = thread_id();
    const int64_t k0 = std::min(K, blocks * t / nt * kt), k1 = std::min(K, blocks * (t + 1) / nt * kt);
    if (k1 > k0)
      for (int64_t n = 0; n < s.N; n += nb)
        block_grad(dyt + n * dys, dys, xp + n * xs, xs, std::min(nb, s.N - n), f.tap.data() + k0, k1 - k0, s.OH, s.OW,
                   s.sh * Wp, s.sw, dwt + k0 * ldw, ldw, n == 0);
  }
  for (int64_t o = 0; o < s.O; ++o)
    for (int64_t k = 0; k < K; ++k) dw[o * K + k] = dwt[k * ldw + o];
}

// ============================================================================ forward
template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, const Conv2dShape& s) {
  // The taps read one zero-padded copy of the sample (C, Hp, Wp) at tap[k] + pos[p]
  // (direct::PaddedOffsets): only output positions are computed. In-process alternation, Zen
  // 4, 2 threads: compact polyphase planes against wide ones 0.95x at 64->128 3x3 stride 2, 0.91x
  // dilated, 0.82x at 32->64 5x5, 1.00-1.01x at 128->256 s2 16x16 and 64->128 s2 56x56; the padded
  // copy (a sixth of the planes' fill at stride 2) against compact planes 0.92-0.94x at stride 2,
  // 0.97x dilated and at 5x5.
  const direct::PaddedOffsets f(s);
  const int64_t plane = f.plane, HW = s.H * s.W;
  const int64_t ldo = direct::round_up(s.O, direct::kPadBytes / static_cast<int64_t>(sizeof(T))), K = s.CK, P = s.L;
  std::vector<T> wt(static_cast<size_t>(K * ldo), T(0)), bias(static_cast<size_t>(ldo), T(0));  // (K, ldo): w^T
  for (int64_t o = 0; o < s.O; ++o) {
    for (int64_t k = 0; k < K; ++k) wt[k * ldo + o] = w[o * K + k];
    if (b) bias[o] = b[o];
  }
  const int64_t per_thread = s.C * plane + P * ldo;
  const int threads = direct::threads_for(s, s.N);
  T* ws = static_cast<T*>(workspace(Device{}, static_cast<size_t>(threads * per_thread) * sizeof(T)));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    T* xp = ws + thread_id() * per_thread;  // (C, Hp, Wp): the sample, its padding zero
    T* out = xp + s.C * plane;               // (P, ldo): channels last
#pragma omp for schedule(static)
    for (int64_t n = 0; n < s.N; ++n) {
      f.copy_in(x + n * s.C * HW, xp, s);
      sample_forward(wt.data(), ldo, xp, f.tap.data(), f.pos.data(), K, b ? bias.data() : nullptr, out, P);
      direct::transpose(out, ldo, y + n * s.O * s.L, s.L, s.L, s.O);  // (L, O) -> y's channel planes
    }
  }
}

template void conv2d_forward<float>(const float*, const float*, const float*, float*, const Conv2dShape&);
template void conv2d_forward<double>(const double*, const double*, const double*, double*, const Conv2dShape&);
template void conv2d_weight_grad<float>(const float*, const float*, float*, const Conv2dShape&);
template void conv2d_weight_grad<double>(const double*, const double*, double*, const Conv2dShape&);

}  // namespace pycnn::cpu::channels
