#include "conv2d_direct.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif

#include "../parallel.h"
#include "../workspace.h"
#include "tensor_ops.h"

namespace pycnn::cpu::direct {

// ============================================================================ kernels, per ISA
namespace {

template <class V, class T>
[[gnu::always_inline]] inline void load(V& v, const T* p) {
  std::memcpy(&v, p, sizeof(V));
}

// Largest power of two <= acc / rows, at least 1: vectors per row of a tile of `acc` accumulators.
constexpr int vectors_per_row(int acc, int rows) {
  int nv = 1;
  while (nv * 2 * rows <= acc) nv *= 2;
  return nv;
}

// out[m*ldo + p] = init[m] + sum_k wt[m*K + k] * src[off[k] + p] for m < MB, p < P: tiles of MB
// rows x NV vectors of Bytes, the tail by halving NV; P a multiple of one vector. Only p < valid
// is stored (the compact forward writes the output itself, rows ldo = valid apart).
template <class T, int MB, int NV, int Bytes>
[[gnu::always_inline]] inline void taps_rows(const T* __restrict wt, int64_t K, const int64_t* __restrict off,
                                             const T* __restrict src, const T* init, T* __restrict out, int64_t ldo,
                                             int64_t p0, int64_t P, int64_t valid) {
  using V = Vec<T, Bytes>;
  constexpr int L = Bytes / int(sizeof(T));
  for (; p0 + NV * L <= P; p0 += NV * L) {
    V acc[MB][NV];
    for (int m = 0; m < MB; ++m)
      for (int v = 0; v < NV; ++v) acc[m][v] = V{} + (init ? init[m] : T(0));
    for (int64_t k = 0; k < K; ++k) {
      V x[NV];
      for (int v = 0; v < NV; ++v) load(x[v], src + off[k] + p0 + v * L);
      for (int m = 0; m < MB; ++m) {
        const T wv = wt[m * K + k];
        for (int v = 0; v < NV; ++v) acc[m][v] += wv * x[v];
      }
    }
    for (int m = 0; m < MB; ++m)
      for (int v = 0; v < NV; ++v) {
        const int64_t at = p0 + v * L;
        if (at + L <= valid)
          std::memcpy(out + m * ldo + at, &acc[m][v], sizeof(V));
        else if (at < valid)
          std::memcpy(out + m * ldo + at, &acc[m][v], static_cast<size_t>(valid - at) * sizeof(T));
      }
  }
  if constexpr (NV > 1)
    if (p0 < P) taps_rows<T, MB, NV / 2, Bytes>(wt, K, off, src, init, out, ldo, p0, P, valid);
}

// All M rows: blocks of MB, the rest by halving blocks (each tile keeps about ACC accumulators).
template <class T, int MB, int ACC, int Bytes>
[[gnu::always_inline]] inline void taps_all(const T* wt, int64_t M, int64_t K, const int64_t* off, const T* src,
                                            const T* init, T* out, int64_t ldo, int64_t P, int64_t valid) {
  constexpr int NV = vectors_per_row(ACC, MB);
  int64_t m = 0;
  for (; m + MB <= M; m += MB)
    taps_rows<T, MB, NV, Bytes>(wt + m * K, K, off, src, init ? init + m : nullptr, out + m * ldo, ldo, 0, P, valid);
  if constexpr (MB > 1)
    if (m < M)
      taps_all<T, MB / 2, ACC, Bytes>(wt + m * K, M - m, K, off, src, init ? init + m : nullptr, out + m * ldo, ldo, P,
                                      valid);
}

// dw[m*ldw + k] = sum_n sum_p dy[n*dys + m*ldy + p] * src[n*xs + off[k] + p], m < MB, k < KB;
// P a multiple of the vector (Bytes).
template <class T, int MB, int KB, int Bytes>
[[gnu::always_inline]] inline void grad_tile(const T* __restrict dy, int64_t ldy, int64_t dys, const T* __restrict src,
                                             int64_t xs, const int64_t* __restrict off, int64_t N, int64_t P,
                                             T* __restrict dw, int64_t ldw, bool first) {
  using V = Vec<T, Bytes>;
  constexpr int L = Bytes / int(sizeof(T));
  V acc[MB][KB] = {};
  int64_t o[KB];
  for (int k = 0; k < KB; ++k) o[k] = off[k];
  for (int64_t n = 0; n < N; ++n) {
    const T* __restrict d0 = dy + n * dys;
    const T* __restrict s0 = src + n * xs;
    for (int64_t p = 0; p < P; p += L) {
      V d[MB];
      for (int m = 0; m < MB; ++m) load(d[m], d0 + m * ldy + p);
      for (int k = 0; k < KB; ++k) {
        V x;
        load(x, s0 + o[k] + p);
        for (int m = 0; m < MB; ++m) acc[m][k] += d[m] * x;
      }
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int k = 0; k < KB; ++k) {
      const T sum = lane_sum<T, Bytes>(acc[m][k]);
      dw[m * ldw + k] = first ? sum : dw[m * ldw + k] + sum;
    }
}

// K taps for MB rows: blocks of KB, the rest by halving blocks.
template <class T, int MB, int KB, int Bytes>
[[gnu::always_inline]] inline void grad_rows(const T* dy, int64_t ldy, int64_t dys, const T* src, int64_t xs,
                                             const int64_t* off, int64_t K, int64_t N, int64_t P, T* dw, int64_t ldw,
                                             bool first) {
  int64_t k = 0;
  for (; k + KB <= K; k += KB) grad_tile<T, MB, KB, Bytes>(dy, ldy, dys, src, xs, off + k, N, P, dw + k, ldw, first);
  if constexpr (KB > 1)
    if (k < K) grad_rows<T, MB, KB / 2, Bytes>(dy, ldy, dys, src, xs, off + k, K - k, N, P, dw + k, ldw, first);
}

template <class T, int MB, int KB, int Bytes>
[[gnu::always_inline]] inline void grad_all(const T* dy, int64_t ldy, int64_t dys, const T* src, int64_t xs,
                                            const int64_t* off, int64_t M, int64_t K, int64_t N, int64_t P, T* dw,
                                            int64_t ldw, bool first) {
  int64_t m = 0;
  for (; m + MB <= M; m += MB)
    grad_rows<T, MB, KB, Bytes>(dy + m * ldy, ldy, dys, src, xs, off, K, N, P, dw + m * ldw, ldw, first);
  if constexpr (MB > 1)
    if (m < M)
      grad_all<T, MB / 2, KB, Bytes>(dy + m * ldy, ldy, dys, src, xs, off, M - m, K, N, P, dw + m * ldw, ldw, first);
}

}  // namespace

// One copy of each kernel per x86-64 level, each with the register tile that fits its registers
// (32 x 512-bit, 16 x 256-bit, 16 x 128-bit); the loader picks the best the CPU runs.
// Tile: forward rows, accumulators; vector bytes; gradient rows x taps (1 vector each); vector bytes.
#define PYCNN_DIRECT_KERNELS(ATTR, FM, FA, FB, GM, GK, GB, T)                                                          \
  ATTR void taps(const T* wt, int64_t M, int64_t K, const int64_t* off, const T* src, const T* init, T* out,         \
                 int64_t ldo, int64_t P, int64_t valid) {                                                            \
    taps_all<T, FM, FA, FB>(wt, M, K, off, src, init, out, ldo, P, valid);                                           \
  }                                                                                                                  \
  ATTR void grad(const T* dy, int64_t ldy, int64_t dys, const T* src, int64_t xs, const int64_t* off, int64_t M,    \
                 int64_t K, int64_t N, int64_t P, T* dw, int64_t ldw, bool first) {                                  \
    grad_all<T, GM, GK, GB>(dy, ldy, dys, src, xs, off, M, K, N, P, dw, ldw, first);                \
  }
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define PYCNN_DIRECT_LEVELS(T)                                                      \
  PYCNN_DIRECT_KERNELS([[gnu::target("arch=x86-64-v4")]], 4, 16, 64, 4, 4, 64, T)     \
  PYCNN_DIRECT_KERNELS([[gnu::target("arch=x86-64-v3")]], 4, 8, 32, 3, 3, 32, T)      \
  PYCNN_DIRECT_KERNELS([[gnu::target("default")]], 4, 8, 16, 2, 3, 16, T)
#else
#define PYCNN_DIRECT_LEVELS(T) PYCNN_DIRECT_KERNELS(, 4, 8, 16, 2, 3, 16, T)
#endif
PYCNN_DIRECT_LEVELS(float)
PYCNN_DIRECT_LEVELS(double)

// ============================================================================ layout
namespace {
template <class T>
void copy_rows_scalar(const T* __restrict src, int64_t ls, T* __restrict dst, int64_t ld, int64_t rows, int64_t lo,
                      int64_t hi, int64_t len) {
  for (int64_t r = 0; r < rows; ++r) {
    T* __restrict d = dst + r * ld;
    std::fill(d, d + lo, T(0));
    if (hi > lo) std::memcpy(d + lo, src + r * ls + lo, static_cast<size_t>(hi - lo) * sizeof(T));
    std::fill(d + std::max(hi, lo), d + len, T(0));
  }
}

// Lanes q + l (l < W) with a <= q + l < b, as a bit mask.
inline uint32_t lane_bits(int64_t q, int64_t a, int64_t b, int64_t W) {
  const int64_t x = std::clamp<int64_t>(a - q, 0, W), y = std::clamp<int64_t>(b - q, 0, W);
  return ((uint32_t(1) << y) - 1u) & ~((uint32_t(1) << x) - 1u);
}

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
// One masked load and store per 16 floats of a row: lanes in [lo, hi) copied, the others up to len
// zeroed (a masked load reads nothing outside [lo, hi)). LeNet's rows are 10 to 32 elements.
[[gnu::target("arch=x86-64-v4")]] void rows_isa(const float* src, int64_t ls, float* dst, int64_t ld, int64_t rows,
                                               int64_t lo, int64_t hi, int64_t len) {
  for (int64_t q = 0; q < len; q += 16) {
    const __mmask16 in = __mmask16(lane_bits(q, lo, hi, 16)), out = __mmask16(lane_bits(q, 0, len, 16));
    for (int64_t r = 0; r < rows; ++r)
      _mm512_mask_storeu_ps(dst + r * ld + q, out, _mm512_maskz_loadu_ps(in, src + r * ls + q));
  }
}
#define PYCNN_ROWS_DEFAULT [[gnu::target("default")]]
#else
#define PYCNN_ROWS_DEFAULT
#endif
PYCNN_ROWS_DEFAULT void rows_isa(const float* src, int64_t ls, float* dst, int64_t ld, int64_t rows, int64_t lo,
                                 int64_t hi, int64_t len) {
  copy_rows_scalar(src, ls, dst, ld, rows, lo, hi, len);
}
}  // namespace

// The entry points gather_plane calls (no target attribute: one function for every caller).
void copy_rows(const float* src, int64_t ls, float* dst, int64_t ld, int64_t rows, int64_t lo, int64_t hi,
               int64_t len) {
  rows_isa(src, ls, dst, ld, rows, lo, hi, len);
}
void copy_rows(const double* src, int64_t ls, double* dst, int64_t ld, int64_t rows, int64_t lo, int64_t hi,
               int64_t len) {  // float64 is the reference dtype: the library copy
  copy_rows_scalar(src, ls, dst, ld, rows, lo, hi, len);
}

namespace {

// Rows r0..r0+7, columns c0..c0+7 of src -> columns / rows of dst: an 8 x 8 float tile transposed
// in registers (three rounds of two-vector shuffles; 256-bit vectors, two 128-bit halves on the
// baseline x86-64 copy).
using V8 = Vec<float, 32>;
using I8 = int32_t __attribute__((vector_size(32)));
[[gnu::always_inline]] inline void tile8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  V8 r[8], t[8], u[8];
  for (int i = 0; i < 8; ++i) std::memcpy(&r[i], src + i * lds, sizeof(V8));
  for (int i = 0; i < 8; i += 2) {  // t: pairs of rows interleaved
    t[i] = __builtin_shuffle(r[i], r[i + 1], I8{0, 8, 1, 9, 4, 12, 5, 13});
    t[i + 1] = __builtin_shuffle(r[i], r[i + 1], I8{2, 10, 3, 11, 6, 14, 7, 15});
  }
  for (int i = 0; i < 8; i += 4)  // u: four rows per 128-bit half
    for (int h = 0; h < 2; ++h) {
      u[i + 2 * h] = __builtin_shuffle(t[i + h], t[i + h + 2], I8{0, 1, 8, 9, 4, 5, 12, 13});
      u[i + 2 * h + 1] = __builtin_shuffle(t[i + h], t[i + h + 2], I8{2, 3, 10, 11, 6, 7, 14, 15});
    }
  for (int j = 0; j < 4; ++j) {  // columns j and j + 4: the halves of u[j] and u[j + 4]
    const V8 lo = __builtin_shuffle(u[j], u[j + 4], I8{0, 1, 2, 3, 8, 9, 10, 11});
    const V8 hi = __builtin_shuffle(u[j], u[j + 4], I8{4, 5, 6, 7, 12, 13, 14, 15});
    std::memcpy(dst + j * ldd, &lo, sizeof(V8));
    std::memcpy(dst + (j + 4) * ldd, &hi, sizeof(V8));
  }
}

template <class T>
[[gnu::always_inline]] inline void transpose_impl(const T* __restrict src, int64_t lds, T* __restrict dst, int64_t ldd,
                                                  int64_t rows, int64_t cols) {
  int64_t r0 = 0;
  if constexpr (sizeof(T) == 4)
    for (; r0 + 8 <= rows; r0 += 8) {
      int64_t c0 = 0;
      for (; c0 + 8 <= cols; c0 += 8) tile8(src + r0 * lds + c0, lds, dst + c0 * ldd + r0, ldd);
      for (int64_t c = c0; c < cols; ++c)
        for (int64_t r = r0; r < r0 + 8; ++r) dst[c * ldd + r] = src[r * lds + c];
    }
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t r = r0; r < rows; ++r) dst[c * ldd + r] = src[r * lds + c];
}
PYCNN_SIMD_CLONES void transpose_float(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t rows,
                                       int64_t cols) {
  transpose_impl(src, lds, dst, ldd, rows, cols);
}

// d[q] = row[2q] for q < n, reading row[0, 2n - 2] only: 8 outputs from the 15 floats
// row[2q, 2q + 14] (two loads, the second one float further on, so that it ends at row[2q + 14]);
// the last 8 overlap the previous ones.
[[gnu::always_inline]] inline void even8(const float* row, float* d) {
  V8 a, b;
  std::memcpy(&a, row, sizeof(V8));
  std::memcpy(&b, row + 7, sizeof(V8));
  const V8 e = __builtin_shuffle(a, b, I8{0, 2, 4, 6, 9, 11, 13, 15});
  std::memcpy(d, &e, sizeof(V8));
}
PYCNN_SIMD_CLONES void even_rows_float(const float* src, int64_t ls, float* dst, int64_t ld, int64_t rows, int64_t lo,
                                       int64_t hi, int64_t len) {
  const int64_t n = hi - lo;
  for (int64_t r = 0; r < rows; ++r) {
    const float* __restrict row = src + r * ls + 2 * lo;
    float* __restrict d = dst + r * ld;
    std::fill(d, d + std::max<int64_t>(lo, 0), 0.0f);
    if (n >= 8) {
      for (int64_t q = 0; q + 8 <= n; q += 8) even8(row + 2 * q, d + lo + q);
      if (n % 8) even8(row + 2 * (n - 8), d + lo + n - 8);
    } else {
      for (int64_t q = 0; q < n; ++q) d[lo + q] = row[2 * q];
    }
    std::fill(d + std::max(hi, lo), d + len, 0.0f);
  }
}

PYCNN_SIMD_CLONES void add_even_float(float* __restrict row, const float* __restrict src, int64_t n, int64_t room) {
  int64_t q = 0;
  for (; q + 8 <= n && 2 * q + 16 <= room; q += 8) {
    V8 v, a, b;
    std::memcpy(&v, src + q, sizeof(V8));
    std::memcpy(&a, row + 2 * q, sizeof(V8));
    std::memcpy(&b, row + 2 * q + 8, sizeof(V8));
    a += __builtin_shuffle(v, V8{}, I8{0, 8, 1, 8, 2, 8, 3, 8});
    b += __builtin_shuffle(v, V8{}, I8{4, 8, 5, 8, 6, 8, 7, 8});
    std::memcpy(row + 2 * q, &a, sizeof(V8));
    std::memcpy(row + 2 * q + 8, &b, sizeof(V8));
  }
  for (; q < n; ++q) row[2 * q] += src[q];
}

}  // namespace

void add_to_even_columns(float* row, const float* src, int64_t n, int64_t room) { add_even_float(row, src, n, room); }
void add_to_even_columns(double* row, const double* src, int64_t n, int64_t) {
  for (int64_t q = 0; q < n; ++q) row[2 * q] += src[q];
}

void transpose(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t rows, int64_t cols) {
  transpose_float(src, lds, dst, ldd, rows, cols);
}
void transpose(const double* src, int64_t lds, double* dst, int64_t ldd, int64_t rows, int64_t cols) {
  transpose_impl(src, lds, dst, ldd, rows, cols);  // float64, the reference dtype: the plain loop
}
void even_rows(const float* src, int64_t ls, float* dst, int64_t ld, int64_t rows, int64_t lo, int64_t hi, int64_t len) {
  even_rows_float(src, ls, dst, ld, rows, lo, hi, len);
}
void even_rows(const double* src, int64_t ls, double* dst, int64_t ld, int64_t rows, int64_t lo, int64_t hi,
               int64_t len) {
  for (int64_t r = 0; r < rows; ++r) {
    double* d = dst + r * ld;
    for (int64_t q = 0; q < len; ++q) d[q] = q >= lo && q < hi ? src[r * ls + 2 * q] : 0.0;
  }
}

// ============================================================================ dispatch rule
// Measured against im2col on Zen 4, 2 threads, float32 (min of 3 runs of medians, 14 shapes from
// LeNet's layers to 28->64 3x3): the forward wins at every kernel but 1x1 (0.39-0.76x); the input
// gradient from batch 2 on (0.45-0.97x; 1.55x at batch 1); the weight gradient once a tap block
// has enough channels (CK >= 96: 0.45-0.86x; CK 25-27: 1.3-1.4x; batch 1: 3.7-5.3x, the taps
// split over threads with no work to share). With the weight gradient's passes over cached samples
// (2026-12-06, 18 shapes): LeNet's conv1 (1->6 5x5) 0.63-0.86x from batch 32 (1.0-1.2x below),
// grouped and depthwise layers with <= 8 channels per group 0.63-0.84x at batch 16-32, 3->16 3x3
// still 1.1x; conv2d_channels.h takes the ungrouped layers with 16 or more channels first.
namespace {
bool small_taps(const Conv2dShape& s) { return s.kh * s.kw > 1 && s.CK <= 256 && s.Og <= 64; }
}  // namespace
bool applies(const Conv2dShape& s) { return small_taps(s); }
bool applies_input_grad(const Conv2dShape& s) { return small_taps(s) && s.N >= 2; }
bool applies_weight_grad(const Conv2dShape& s) {
  return small_taps(s) && ((s.N >= 2 && s.CK >= 96) || (s.N >= 32 && s.Og <= 8));
}

// ============================================================================ forward
template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, const Conv2dShape& s) {
  const InputPlanes g(s, sizeof(T), compact_forward(s, sizeof(T)));
  // Compact rows: every computed position is an output, written straight into y. Wide rows: into a
  // buffer, then the kept columns are copied out.
  const int64_t per_thread = g.sample + (g.compact ? 0 : s.O * g.P);
  const int threads = threads_for(s, s.N);
  T* ws = static_cast<T*>(workspace(Device{}, static_cast<size_t>(threads * per_thread) * sizeof(T)));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t n = 0; n < s.N; ++n) {
    T* planes = ws + thread_id() * per_thread;
    T* yn = y + n * s.O * s.L;
    T* out = g.compact ? yn : planes + g.sample;  // (O, L) or (O, P)
    const int64_t ldo = g.compact ? s.L : g.P;
    g.fill(x + n * s.C * s.H * s.W, planes, s);
    for (int64_t gr = 0; gr < s.groups; ++gr)
      taps(w + gr * s.Og * s.CK, s.Og, s.CK, g.off.data(), planes + gr * s.Cg * g.phases * g.plane,
           b ? b + gr * s.Og : nullptr, out + gr * s.Og * ldo, ldo, g.P, ldo);
    if (!g.compact)
      for (int64_t o = 0; o < s.O; ++o)
        for (int64_t oh = 0; oh < s.OH; ++oh)
          std::memcpy(yn + o * s.L + oh * s.OW, out + o * g.P + oh * g.Ws, s.OW * sizeof(T));
  }
}

// ============================================================================ input gradient
namespace {

// One phase (a, b) of dx: dx rows h = u*sh + a - pt for u in [U0, U0 + Uc), columns likewise.
struct Phase {
  int64_t a, b, U0, Uc, V0, Vc;
  int64_t P;                 // wide positions Uc*Wd, padded
  int64_t K;                 // Og * taps of this phase
  std::vector<int64_t> off;  // K: (o, tap) -> offset into the group's padded dy
};

// First index u >= 0 with u*st + a - pad >= 0, and how many stay below size.
void phase_range(int64_t a, int64_t st, int64_t pad, int64_t size, int64_t& u0, int64_t& count) {
  u0 = pad >= a ? (pad - a + st - 1) / st : 0;
  const int64_t last = size - 1 + pad - a;
  count = last < 0 ? 0 : std::max<int64_t>(0, last / st - u0 + 1);
}

}  // namespace

template <class T>
bool conv2d_input_grad(const T* dy, const T* w, T* dx, const Conv2dShape& s) {
  if (any_nonfinite(w, s.O * s.CK)) return false;
  const int64_t top = (s.kh - 1) * s.dh / s.sh, left = (s.kw - 1) * s.dw / s.sw;
  std::vector<Phase> ph;
  int64_t Hd = s.OH + top, Wd = s.OW + left;
  for (int64_t a = 0; a < s.sh; ++a)
    for (int64_t b = 0; b < s.sw; ++b) {
      Phase f{a, b, 0, 0, 0, 0, 0, 0, {}};
      phase_range(a, s.sh, s.pt, s.H, f.U0, f.Uc);
      phase_range(b, s.sw, s.pl, s.W, f.V0, f.Vc);
      if (f.Uc == 0 || f.Vc == 0) continue;
      Hd = std::max(Hd, f.U0 + f.Uc + top);
      Wd = std::max(Wd, f.V0 + f.Vc + left);
      ph.push_back(std::move(f));
    }
  const int64_t dplane0 = Hd * Wd;
  int64_t dplane = dplane0, Pmax = 0;
  for (Phase& f : ph) {
    f.P = round_up(f.Uc * Wd, kPadBytes / static_cast<int64_t>(sizeof(T)));
    Pmax = std::max(Pmax, f.P);
    dplane = std::max(dplane, f.P + (f.U0 + top) * Wd + f.V0 + left);
  }
  dplane = round_up(dplane, 16);
  // Taps and transposed weights per phase (same for every group, relative to its base).
  std::vector<std::vector<T>> wts(ph.size());
  for (size_t q = 0; q < ph.size(); ++q) {
    Phase& f = ph[q];
    for (int64_t o = 0; o < s.Og; ++o)
      for (int64_t i = 0; i < s.kh; ++i)
        for (int64_t j = 0; j < s.kw; ++j) {
          if (i * s.dh % s.sh != f.a || j * s.dw % s.sw != f.b) continue;
          f.off.push_back(o * dplane + (f.U0 - i * s.dh / s.sh + top) * Wd + f.V0 - j * s.dw / s.sw + left);
        }
    f.K = static_cast<int64_t>(f.off.size());
    std::vector<T>& wt = wts[q];
    wt.resize(static_cast<size_t>(s.groups * s.Cg * f.K));
    for (int64_t gr = 0; gr < s.groups; ++gr)
      for (int64_t c = 0; c < s.Cg; ++c) {
        T* row = wt.data() + (gr * s.Cg + c) * f.K;
        for (int64_t o = 0, k = 0; o < s.Og; ++o)
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j) {
              if (i * s.dh % s.sh != f.a || j * s.dw % s.sw != f.b) continue;
              row[k++] = w[((gr * s.Og + o) * s.Cg + c) * s.kh * s.kw + i * s.kw + j];
            }
      }
  }
  const int threads = threads_for(s, s.N);
  const int64_t HW = s.H * s.W, lanes = kPadBytes / static_cast<int64_t>(sizeof(T));
  if (s.sh == 1 && s.sw == 1 && ph.size() == 1 && 10 * round_up(HW, lanes) <= 9 * ph[0].P) {
    // Stride 1: one phase, its positions in dx's order (U0 = pt, Uc = H, V0 = pl, Vc = W). Compact
    // planes, one per (channel o, kernel column j), rows W long, plane (o, j)[r][v] = the padded dy at
    // row r, column V0 - j*dw + left + v: every computed position is an element of dx, written there
    // directly (LeNet conv2's dx on 14x14: 208 computed positions instead of 256).
    const Phase& f = ph[0];
    const int64_t P = round_up(HW, lanes), rows = f.U0 + top + f.Uc;
    const int64_t cplane = round_up(std::max(rows * s.W, P + (f.U0 + top) * s.W), 16);
    std::vector<int64_t> off;  // taps (o, i, j) in wts' order
    for (int64_t o = 0; o < s.Og; ++o)
      for (int64_t i = 0; i < s.kh; ++i)
        for (int64_t j = 0; j < s.kw; ++j) off.push_back((o * s.kw + j) * cplane + (f.U0 - i * s.dh + top) * s.W);
    const int64_t per_thread = s.O * s.kw * cplane;
    T* ws = static_cast<T*>(workspace(Device{}, static_cast<size_t>(threads * per_thread) * sizeof(T)));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t n = 0; n < s.N; ++n) {
      T* planes = ws + thread_id() * per_thread;  // (O, kw, cplane)
      for (int64_t o = 0; o < s.O; ++o)
        for (int64_t j = 0; j < s.kw; ++j)
          gather_plane(dy + (n * s.O + o) * s.L, s.OH, s.OW, -top, 1, f.V0 - j * s.dw, 1,
                       planes + (o * s.kw + j) * cplane, rows, s.W, cplane);
      for (int64_t gr = 0; gr < s.groups; ++gr)
        taps(wts[0].data() + gr * s.Cg * f.K, s.Cg, f.K, off.data(), planes + gr * s.Og * s.kw * cplane, nullptr,
             dx + (n * s.C + gr * s.Cg) * HW, HW, P, HW);
    }
    return true;
  }
  const int64_t per_thread = s.O * dplane + s.C * Pmax;
  T* ws = static_cast<T*>(workspace(Device{}, static_cast<size_t>(threads * per_thread) * sizeof(T)));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t n = 0; n < s.N; ++n) {
    T* dyp = ws + thread_id() * per_thread;  // (O, dplane): dy at row top, column left
    T* wide = dyp + s.O * dplane;            // (C, P) of one phase
    for (int64_t o = 0; o < s.O; ++o)
      gather_plane(dy + (n * s.O + o) * s.L, s.OH, s.OW, -top, 1, -left, 1, dyp + o * dplane, Hd, Wd, dplane);
    T* dxn = dx + n * s.C * HW;
    for (size_t q = 0; q < ph.size(); ++q) {
      const Phase& f = ph[q];
      for (int64_t gr = 0; gr < s.groups; ++gr)
        taps(wts[q].data() + gr * s.Cg * f.K, s.Cg, f.K, f.off.data(), dyp + gr * s.Og * dplane, nullptr,
             wide + gr * s.Cg * f.P, f.P, f.P, f.P);
      for (int64_t c = 0; c < s.C; ++c)
        for (int64_t u = 0; u < f.Uc; ++u) {
          T* __restrict row = dxn + c * HW + ((f.U0 + u) * s.sh + f.a - s.pt) * s.W + f.V0 * s.sw + f.b - s.pl;
          const T* __restrict src = wide + c * f.P + u * Wd;
          if (s.sw == 1) {
            std::memcpy(row, src, f.Vc * sizeof(T));
          } else {
            for (int64_t v = 0; v < f.Vc; ++v) row[v * s.sw] = src[v];
          }
        }
    }
  }
  return true;
}

// ============================================================================ weight gradient
namespace {
constexpr int64_t kPassBytes = int64_t(1) << 18;  // the samples of one pass (planes, wide dy): stay in L2
constexpr int64_t kMaxParts = 8;                  // partial sums over fixed blocks of samples
constexpr int64_t kMinParts = 4;                  // enough blocks for the threads (splitting the taps refills the planes)
}  // namespace

// The batch is cut into at most kMaxParts blocks of samples (a function of the shape only); a
// block's sum is built pass by pass (each pass fills the planes and wide dy of a few samples, then
// every tile runs over them while they are in cache), and the blocks' sums are added in block
// order: each dw element's order is fixed by the shape. The work items are (block, block of taps):
// the taps are split only to give every thread work when the blocks are fewer than the threads.
template <class T>
bool conv2d_weight_grad(const T* dy, const T* x, T* dw, const Conv2dShape& s) {
  const InputPlanes g(s, sizeof(T));
  const int64_t dys = s.O * g.P;  // dy in wide rows: (n, O, P), zero in the dropped columns
  const int64_t per_sample = g.sample + dys, WN = s.O * s.CK;
  const int64_t nb = std::clamp<int64_t>(kPassBytes / (per_sample * static_cast<int64_t>(sizeof(T))), 1, s.N);
  const int64_t cut = std::min({kMaxParts, s.N, std::max<int64_t>(kMinParts, (s.N + nb - 1) / nb)});
  const int64_t per_part = (s.N + cut - 1) / cut, parts = (s.N + per_part - 1) / per_part;  // none left empty
  const int64_t want = std::max<int64_t>(1, (num_threads() + parts - 1) / parts);
  const int64_t ktile = 4, kblock = std::max<int64_t>(ktile, (s.CK + want * ktile - 1) / (want * ktile) * ktile);
  const int64_t kblocks = (s.CK + kblock - 1) / kblock, items = parts * kblocks;
  const int threads = threads_for(s, items);
  T* ws = static_cast<T*>(workspace(Device{}, static_cast<size_t>(threads * nb * per_sample + parts * WN) * sizeof(T)));
  T* sums = ws + threads * nb * per_sample;  // (parts, O, CK)
  bool bad = false;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1) reduction(|| : bad)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t pt = it / kblocks, k0 = (it % kblocks) * kblock, kc = std::min(kblock, s.CK - k0);
    T* planes = ws + thread_id() * nb * per_sample;
    T* dyw = planes + nb * g.sample;
    const int64_t n_end = std::min(s.N, (pt + 1) * per_part);
    for (int64_t n0 = pt * per_part; n0 < n_end && !bad; n0 += nb) {
      const int64_t m = std::min(nb, n_end - n0);
      for (int64_t n = 0; n < m; ++n) {
        T* pn = planes + n * g.sample;
        g.fill(x + (n0 + n) * s.C * s.H * s.W, pn, s);
        bad = bad || any_nonfinite(pn, g.sample);
        for (int64_t o = 0; o < s.O; ++o)
          gather_plane(dy + ((n0 + n) * s.O + o) * s.L, s.OH, s.OW, 0, 1, 0, 1, dyw + n * dys + o * g.P, s.OH, g.Ws,
                       g.P);
      }
      for (int64_t gr = 0; gr < s.groups && !bad; ++gr)
        grad(dyw + gr * s.Og * g.P, g.P, dys, planes + gr * s.Cg * g.phases * g.plane, g.sample, g.off.data() + k0,
             s.Og, kc, m, g.P, sums + pt * WN + gr * s.Og * s.CK + k0, s.CK, n0 == pt * per_part);
    }
  }
  if (bad) return false;
  for (int64_t e = 0; e < WN; ++e) {
    T acc = sums[e];
    for (int64_t pt = 1; pt < parts; ++pt) acc += sums[pt * WN + e];
    dw[e] = acc;
  }
  return true;
}

template void conv2d_forward<float>(const float*, const float*, const float*, float*, const Conv2dShape&);
template void conv2d_forward<double>(const double*, const double*, const double*, double*, const Conv2dShape&);
template bool conv2d_input_grad<float>(const float*, const float*, float*, const Conv2dShape&);
template bool conv2d_input_grad<double>(const double*, const double*, double*, const Conv2dShape&);
template bool conv2d_weight_grad<float>(const float*, const float*, float*, const Conv2dShape&);
template bool conv2d_weight_grad<double>(const double*, const double*, double*, const Conv2dShape&);

}  // namespace pycnn::cpu::direct
