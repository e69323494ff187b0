#include "conv2d_winograd.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "../parallel.h"
#include "../workspace.h"
#include "conv2d_direct.h"
#include "tensor_ops.h"

namespace pycnn::cpu::winograd {
namespace {

// Where it measured faster than the other paths (2 threads, Zen 4/5, float32): forward 0.80x
// im2col at 64->64 32x32 and 0.83x at 128->128 16x16, but 1.2x at 16->16 (the direct path takes
// that); with the product kernel below the input gradient takes 64->64 32x32 in 11.5 ms against
// im2col's 16.1, ties at 32 channels (5.7 / 5.3 ms) and is 3x slower than the direct path at 16.
constexpr int64_t kMinChannels = 32;
constexpr int64_t kMinChannelsInputGrad = 64;
// The weight gradient against conv2d_channels.h's (2 threads, float32, batch 8-32, in-process
// alternation): 0.60-0.87x from 96 channels in and out (8x8 to 28x28 outputs, 96 to 512 channels),
// 0.82x at 64 -> 128; with 64 output channels 0.77-0.78x at 32x32 and 56x56 outputs but 0.95-1.16x at
// 8x8 to 28x28 (and 1.01x at 128 -> 64), where the channel path's 4 vectors of outputs suit it.
constexpr int64_t kMinChannelsWeightGrad = 64;
constexpr int64_t kChunkBytes = int64_t(1) << 21;  // V + M (or Z) of one chunk: about the L2 cache
constexpr int64_t kLanes = 16;                      // chunks are whole vectors of tiles, 64 bytes of floats

// A convolution of `in` (N, C, IH, IW) with a 3x3 kernel already transformed into U (16, O, C),
// reading in[row 2*ty + r - pt][col 2*tx + q - pl] (zero outside), into out (N, O, OH, OW).
struct Geometry {
  int64_t N, C, IH, IW, O, OH, OW, pt, pl;
  int64_t TH() const { return (OH + 1) / 2; }
  int64_t TW() const { return (OW + 1) / 2; }
};

// Tiles per chunk, for 16 values a tile of each of `channels` (V's and M's or Z's): about kChunkBytes,
// whole vectors of tiles, no more than the batch's `tiles` rounded up.
int64_t chunk_tiles(int64_t channels, int64_t tiles, size_t es) {
  const int64_t per_tile = 16 * channels * static_cast<int64_t>(es);
  const int64_t fit = std::clamp<int64_t>(kChunkBytes / per_tile / kLanes * kLanes, kLanes, 1024);
  return std::min(fit, direct::round_up(tiles, kLanes));
}

// ---------------------------------------------------------------------------- the 16 products
// M_k (O, T) = U_k (O, C) @ V_k (C, T) are small (O, C <= a few hundred, T one chunk) and
// OpenBLAS reached 45-60% of the FMA peak on them: a register tile of MB rows x NV vectors of tiles,
// no packing (U is small and V's rows are contiguous), one copy per x86-64 level.
using direct::Vec;

// c[m*ldc + n] (+)= sum_k a[m*lda + k] * b[k*ldb + n], m < MB, n < NV vectors (Acc: the sum added to c).
template <class T, int MB, int NV, int Bytes, bool Acc>
[[gnu::always_inline]] inline void product_tile(const T* __restrict a, int64_t lda, int64_t K, const T* __restrict b,
                                                int64_t ldb, T* __restrict c, int64_t ldc) {
  using V = Vec<T, Bytes>;
  constexpr int L = Bytes / int(sizeof(T));
  V acc[MB][NV] = {};
  for (int64_t k = 0; k < K; ++k) {
    V bv[NV];
    for (int v = 0; v < NV; ++v) std::memcpy(&bv[v], b + k * ldb + v * L, sizeof(V));
    for (int m = 0; m < MB; ++m) {
      const T av = a[m * lda + k];
      for (int v = 0; v < NV; ++v) acc[m][v] += av * bv[v];
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int v = 0; v < NV; ++v) {
      if constexpr (Acc) {  // the K products summed on their own, then added: a two-level sum
        V cv;
        std::memcpy(&cv, c + m * ldc + v * L, sizeof(V));
        acc[m][v] += cv;
      }
      std::memcpy(c + m * ldc + v * L, &acc[m][v], sizeof(V));
    }
}

// Rows [0, M) of one column block: tiles of MB rows, the rest by halving.
template <class T, int MB, int NV, int Bytes, bool Acc>
[[gnu::always_inline]] inline void product_rows(const T* a, int64_t lda, int64_t M, int64_t K, const T* b, int64_t ldb,
                                                T* c, int64_t ldc) {
  int64_t m = 0;
  for (; m + MB <= M; m += MB) product_tile<T, MB, NV, Bytes, Acc>(a + m * lda, lda, K, b, ldb, c + m * ldc, ldc);
  if constexpr (MB > 1)
    if (m < M) product_rows<T, MB / 2, NV, Bytes, Acc>(a + m * lda, lda, M - m, K, b, ldb, c + m * ldc, ldc);
}

// Columns [0, nv vectors): blocks of NV vectors (B's block stays in L1 over the rows), the rest by halving.
template <class T, int MB, int NV, int Bytes, bool Acc = false>
[[gnu::always_inline]] inline void product(const T* a, int64_t lda, int64_t M, int64_t K, const T* b, int64_t ldb,
                                           int64_t nv, T* c, int64_t ldc) {
  constexpr int L = Bytes / int(sizeof(T));
  int64_t v = 0;
  for (; v + NV <= nv; v += NV) product_rows<T, MB, NV, Bytes, Acc>(a, lda, M, K, b + v * L, ldb, c + v * L, ldc);
  if constexpr (NV > 1)
    if (v < nv) product<T, MB, NV / 2, Bytes, Acc>(a, lda, M, K, b + v * L, ldb, nv - v, c + v * L, ldc);
}

// U_k = (G g G^T)_k for a 3x3 kernel g at stride `gs` (element (i, j) at g[i*rs + j*cs]).
template <class T>
void transform_kernel(const T* g, int64_t rs, int64_t cs, T* u, int64_t ustride) {
  T t[4][3];
  for (int j = 0; j < 3; ++j) {
    const T g0 = g[j * cs], g1 = g[rs + j * cs], g2 = g[2 * rs + j * cs];
    t[0][j] = g0;
    t[1][j] = (g0 + g1 + g2) * T(0.5);
    t[2][j] = (g0 - g1 + g2) * T(0.5);
    t[3][j] = g2;
  }
  for (int i = 0; i < 4; ++i) {
    u[(i * 4 + 0) * ustride] = t[i][0];
    u[(i * 4 + 1) * ustride] = (t[i][0] + t[i][1] + t[i][2]) * T(0.5);
    u[(i * 4 + 2) * ustride] = (t[i][0] - t[i][1] + t[i][2]) * T(0.5);
    u[(i * 4 + 3) * ustride] = t[i][2];
  }
}

// A run of tiles of one tile row inside the chunk: chunk tiles [tt, tt + seg), sample n, tile row ty,
// tile columns from tx0. The loops over them are plain loops (a lambda's body was compiled apart,
// for the baseline ISA, once its function had two callers).
struct Segment {
  int64_t tt, n, ty, tx0, seg;
};
inline Segment segment_at(const Geometry& g, int64_t t0, int64_t tt, int64_t nt) {
  const int64_t t = t0 + tt, TW = g.TW(), tx0 = t % TW;
  return {tt, t / (g.TH() * TW), (t / TW) % g.TH(), tx0, std::min(TW - tx0, nt - tt)};
}

// V[k*C*T + c*T + tt] = (B^T d B)_k for the chunk's tiles and channels c0 <= c < c1. Per channel and
// tile row: the 4 input rows (zero outside) go to `rows`, B^T runs down the columns, then B along each
// row; every loop is over contiguous or stride-2 data, so it vectorises.
template <class T>
[[gnu::always_inline]] inline void transform_input(const T* in, const Geometry& g, int64_t t0, int64_t nt, int64_t T_,
                                                   T* V, T* rows, int64_t c0, int64_t c1) {
  const int64_t plane = g.IH * g.IW, CT = g.C * T_;
  for (Segment sg{}; sg.tt < nt; sg.tt += sg.seg) {
    sg = segment_at(g, t0, sg.tt, nt);
    const int64_t tt = sg.tt, n = sg.n, ty = sg.ty, tx0 = sg.tx0, seg = sg.seg;
    const int64_t r0 = 2 * ty - g.pt, q0 = 2 * tx0 - g.pl, width = 2 * seg + 2;
    const int64_t lo = std::clamp<int64_t>(-q0, 0, width), hi = std::clamp<int64_t>(g.IW - q0, lo, width);
    T* b = rows + 4 * width;
    for (int64_t c = c0; c < c1; ++c) {
      const T* src = in + (n * g.C + c) * plane;
      // The next channel's rows, a plane further on: short runs a plane apart, which the hardware
      // prefetchers missed (their loads were a twentieth of ResNet 128->128's forward, 1 thread: 5% faster).
      for (int r = 0; r < 4 && c + 1 < c1 && hi > lo; ++r)
        if (r0 + r >= 0 && r0 + r < g.IH)
          for (int64_t b = 0; b < (hi - lo) * int64_t(sizeof(T)); b += 64)
            __builtin_prefetch(reinterpret_cast<const char*>(src + plane + (r0 + r) * g.IW + q0 + lo) + b);
      for (int r = 0; r < 4; ++r) {
        T* row = rows + r * width;
        const int64_t rr = r0 + r;
        if (rr < 0 || rr >= g.IH) {
          for (int64_t q = 0; q < width; ++q) row[q] = T(0);
          continue;
        }
        const T* __restrict in_row = src + rr * g.IW + q0;
        for (int64_t q = 0; q < lo; ++q) row[q] = T(0);
        for (int64_t q = lo; q < hi; ++q) row[q] = in_row[q];  // a loop, not std::copy: no memmove call per row
        for (int64_t q = hi; q < width; ++q) row[q] = T(0);
      }
      const T* __restrict d0 = rows; const T* __restrict d1 = rows + width;
      const T* __restrict d2 = rows + 2 * width; const T* __restrict d3 = rows + 3 * width;
      for (int64_t q = 0; q < width; ++q) {  // B^T d
        b[q] = d0[q] - d2[q];
        b[width + q] = d1[q] + d2[q];
        b[2 * width + q] = d2[q] - d1[q];
        b[3 * width + q] = d1[q] - d3[q];
      }
      for (int r = 0; r < 4; ++r) {  // (B^T d) B
        const T* __restrict br = b + r * width;
        T* __restrict v0 = V + (r * 4) * CT + c * T_ + tt;
        T* __restrict v1 = v0 + CT; T* __restrict v2 = v1 + CT; T* __restrict v3 = v2 + CT;
        for (int64_t j = 0; j < seg; ++j) {
          const T x0 = br[2 * j], x1 = br[2 * j + 1], x2 = br[2 * j + 2], x3 = br[2 * j + 3];
          v0[j] = x0 - x2;
          v1[j] = x1 + x2;
          v2[j] = x2 - x1;
          v3[j] = x1 - x3;
        }
      }
    }
  }
}

// The output tiles A^T m A (+ bias), one output channel at a time: A^T m for every tile of the
// chunk (8 rows of nt: long contiguous loops), then per tile row (A^T m) A with the tiles' two
// columns interleaved, written straight into out (through two row buffers where the right or
// bottom edge clips the tiles).
template <class T>
[[gnu::always_inline]] inline void transform_output(const T* M, const T* bias, const Geometry& g, int64_t t0,
                                                    int64_t nt, int64_t T_, T* out, T* rows) {
  const int64_t L = g.OH * g.OW, OT = g.O * T_;
  T* __restrict sm = rows;                 // (A^T m)[r][q] for r < 2, q < 4: 8 rows of T_
  T* __restrict clip = rows + 8 * T_;      // one clipped output row (2 * TW)
  for (int64_t o = 0; o < g.O; ++o) {
    const T bo = bias ? bias[o] : T(0);
    const T* m = M + o * T_;
    for (int q = 0; q < 4; ++q) {
      const T* __restrict m0 = m + q * OT; const T* __restrict m1 = m + (4 + q) * OT;
      const T* __restrict m2 = m + (8 + q) * OT; const T* __restrict m3 = m + (12 + q) * OT;
      T* __restrict s0 = sm + q * T_; T* __restrict s1 = sm + (4 + q) * T_;
      for (int64_t t = 0; t < nt; ++t) {
        s0[t] = m0[t] + m1[t] + m2[t];
        s1[t] = m1[t] - m2[t] - m3[t];
      }
    }
    for (Segment sg{}; sg.tt < nt; sg.tt += sg.seg) {
      sg = segment_at(g, t0, sg.tt, nt);
      const int64_t tt = sg.tt, n = sg.n, ty = sg.ty, tx0 = sg.tx0, seg = sg.seg;
      const int64_t oc = 2 * tx0, ncols = std::min(2 * seg, g.OW - oc), nrows = std::min<int64_t>(2, g.OH - 2 * ty);
      T* dst = out + (n * g.O + o) * L + 2 * ty * g.OW + oc;
      for (int64_t r = 0; r < nrows; ++r) {
        const T* __restrict a0 = sm + 4 * r * T_ + tt; const T* __restrict a1 = a0 + T_;
        const T* __restrict a2 = a1 + T_; const T* __restrict a3 = a2 + T_;
        T* __restrict yr = ncols == 2 * seg ? dst + r * g.OW : clip;
        for (int64_t j = 0; j < seg; ++j) {
          yr[2 * j] = a0[j] + a1[j] + a2[j] + bo;
          yr[2 * j + 1] = a1[j] - a2[j] - a3[j] + bo;
        }
        if (ncols != 2 * seg) {
          T* __restrict d = dst + r * g.OW;
          for (int64_t q = 0; q < ncols; ++q) d[q] = clip[q];
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------- weight gradient
// dU = sum over tiles of (A dy A^T) (x) (B^T d B) per (in, out) channel pair, and dw = G^T dU G:
// the transpose of the forward's U -> y map. Z[k*T*Op + tt*Op + o] = (A dy_t A^T)_k for the chunk's
// tiles and every output channel (Op: O padded to whole vectors of kLanes, the pad lanes zero). The
// tile's 2x2 of dy (zero past the output's edge) comes through `tr`, two rows of (2 * seg, Op): dy
// transposed so that each loop below runs over contiguous output channels.
template <class T>
[[gnu::always_inline]] inline void transform_grad(const T* dy, const Geometry& g, int64_t t0, int64_t nt, int64_t T_,
                                                  int64_t Op, T* Z, T* tr) {
  const int64_t L = g.OH * g.OW, TOp = T_ * Op;
  for (Segment sg{}; sg.tt < nt; sg.tt += sg.seg) {
    sg = segment_at(g, t0, sg.tt, nt);
    const int64_t tt = sg.tt, n = sg.n, ty = sg.ty, tx0 = sg.tx0, seg = sg.seg;
    const int64_t oc = 2 * tx0, ncols = std::min(2 * seg, g.OW - oc);
    T* rows[2] = {tr, tr + 2 * seg * Op};
    for (int r = 0; r < 2; ++r) {
      const int64_t row = 2 * ty + r;
      if (row < g.OH) direct::transpose(dy + n * g.O * L + row * g.OW + oc, L, rows[r], Op, g.O, ncols);
      for (int64_t q = row < g.OH ? ncols : 0; q < 2 * seg; ++q)
        std::fill(rows[r] + q * Op, rows[r] + (q + 1) * Op, T(0));
    }
    using W = Vec<T, kLanes * sizeof(T)>;  // Op is whole vectors of kLanes
    for (int64_t j = 0; j < seg; ++j) {
      const T* y0 = rows[0] + 2 * j * Op; const T* y1 = rows[1] + 2 * j * Op;
      T* z = Z + (tt + j) * Op;
      for (int64_t o = 0; o < Op; o += kLanes) {
        // A dy: rows y0, y0 + y1, y0 - y1, -y1; then (p, q) -> (p, p + q, p - q, -q) along each row.
        W y00, y01, y10, y11;
        std::memcpy(&y00, y0 + o, sizeof(W)), std::memcpy(&y01, y0 + Op + o, sizeof(W));
        std::memcpy(&y10, y1 + o, sizeof(W)), std::memcpy(&y11, y1 + Op + o, sizeof(W));
        const W p[4] = {y00, y00 + y10, y00 - y10, -y10}, q[4] = {y01, y01 + y11, y01 - y11, -y11};
        for (int a = 0; a < 4; ++a) {
          const W out[4] = {p[a], p[a] + q[a], p[a] - q[a], -q[a]};
          for (int b = 0; b < 4; ++b) std::memcpy(z + (4 * a + b) * TOp + o, &out[b], sizeof(W));
        }
      }
    }
  }
}

// dw[o, c] = G^T dU[c, o] G for c0 <= c < c1, dU[k*C*Op + c*Op + o].
template <class T>
void transform_weight_grad(const T* dU, int64_t C, int64_t O, int64_t Op, int64_t c0, int64_t c1, T* dw) {
  const int64_t COp = C * Op;
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t o = 0; o < O; ++o) {
      const T* d = dU + c * Op + o;
      T t[3][4];  // G^T D: rows D0 + (D1 + D2)/2, (D1 - D2)/2, (D1 + D2)/2 + D3
      for (int q = 0; q < 4; ++q) {
        const T d0 = d[q * COp], d1 = d[(4 + q) * COp], d2 = d[(8 + q) * COp], d3 = d[(12 + q) * COp];
        t[0][q] = d0 + (d1 + d2) * T(0.5);
        t[1][q] = (d1 - d2) * T(0.5);
        t[2][q] = (d1 + d2) * T(0.5) + d3;
      }
      T* out = dw + (o * C + c) * 9;
      for (int i = 0; i < 3; ++i) {  // (G^T D) G, the same along each row
        out[i * 3 + 0] = t[i][0] + (t[i][1] + t[i][2]) * T(0.5);
        out[i * 3 + 1] = (t[i][1] - t[i][2]) * T(0.5);
        out[i * 3 + 2] = (t[i][1] + t[i][2]) * T(0.5) + t[i][3];
      }
    }
}

}  // namespace

// One chunk of nt tiles from t0: input transform, the 16 products, output transform (chunk), and the
// weight gradient's transforms and products (grad_chunk, grad_products). One copy per x86-64 level
// (each with the register tiles of its product kernels, MB x NV and GMB x GNV, and the transforms'
// loops vectorised for its registers); V, M, Z, rows, tr: the thread's scratch.
#define PYCNN_WINOGRAD_KERNELS(ATTR, MB, NV, GMB, GNV, B, T)                                                        \
  ATTR void chunk(const T* in, const T* U, const T* bias, T* out, const Geometry& g, int64_t t0, int64_t nt, \
                  int64_t T_, T* V, T* M, T* rows) {                                                        \
    transform_input(in, g, t0, nt, T_, V, rows, 0, g.C);                                                    \
    /* columns past nt, to the next whole vector, hold stale values: their products are never read */       \
    const int64_t nv = (nt + kLanes - 1) / kLanes * kLanes * int64_t(sizeof(T)) / B;                        \
    for (int k = 0; k < 16; ++k)                                                                             \
      product<T, MB, NV, B>(U + k * g.O * g.C, g.C, g.O, g.C, V + k * g.C * T_, T_, nv, M + k * g.O * T_, T_); \
    transform_output(M, bias, g, t0, nt, T_, out, rows);                                                    \
  }                                                                                                          \
  ATTR void grad_chunk(const T* x, const T* dy, const Geometry& g, int64_t t0, int64_t nt, int64_t T_,       \
                       int64_t Op, int64_t c0, int64_t c1, T* V, T* Z, T* rows, T* tr) {                    \
    transform_grad(dy, g, t0, nt, T_, Op, Z, tr);                                                           \
    transform_input(x, g, t0, nt, T_, V, rows, c0, c1);                                                     \
  }                                                                                                          \
  /* dU[k] rows c0..c1 (C, Op) += V_k (C, nt) @ Z_k (nt, Op): the tiles summed in order, chunk after chunk */ \
  ATTR void grad_products(const T* V, const T* Z, const Geometry& g, int64_t nt, int64_t T_, int64_t Op,    \
                          int64_t c0, int64_t c1, T* dU) {                                                  \
    for (int k = 0; k < 16; ++k)                                                                             \
      product<T, GMB, GNV, B, true>(V + (k * g.C + c0) * T_, T_, c1 - c0, nt, Z + k * T_ * Op, Op,           \
                                    Op * int64_t(sizeof(T)) / B, dU + (k * g.C + c0) * Op, Op);              \
  }
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define PYCNN_WINOGRAD_LEVELS(T)                                          \
  PYCNN_WINOGRAD_KERNELS([[gnu::target("arch=x86-64-v4")]], 8, 3, 6, 4, 64, T) \
  PYCNN_WINOGRAD_KERNELS([[gnu::target("arch=x86-64-v3")]], 4, 2, 4, 2, 32, T) \
  PYCNN_WINOGRAD_KERNELS([[gnu::target("default")]], 4, 2, 4, 2, 16, T)
#else
#define PYCNN_WINOGRAD_LEVELS(T) PYCNN_WINOGRAD_KERNELS(, 4, 2, 4, 2, 16, T)
#endif
PYCNN_WINOGRAD_LEVELS(float)
PYCNN_WINOGRAD_LEVELS(double)

namespace {

template <class T>
void run(const T* in, const T* U, const T* bias, T* out, const Geometry& g) {
  const int64_t tiles = g.N * g.TH() * g.TW();
  if (tiles == 0) return;
  const int64_t T_ = chunk_tiles(g.C + g.O, tiles, sizeof(T));
  const int64_t chunks = (tiles + T_ - 1) / T_, rows = std::max(16 * (g.TW() + 2), 8 * T_ + 2 * g.TW());
  const int64_t per = 16 * (g.C + g.O) * T_ + rows;  // V, M, row buffers
  const int threads = in_parallel() ? 1 : static_cast<int>(std::min<int64_t>(num_threads(), chunks));
  T* ws = static_cast<T*>(workspace(Device{}, static_cast<size_t>(threads * per) * sizeof(T)));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    T* V = ws + static_cast<int64_t>(thread_id()) * per;
    T* M = V + 16 * g.C * T_;
    const int64_t t0 = ch * T_, nt = std::min(T_, tiles - t0);
    T* rows = M + 16 * g.O * T_;
    chunk(in, U, bias, out, g, t0, nt, T_, V, M, rows);
  }
}

}  // namespace

bool supported(const Conv2dShape& s) {
  return s.kh == 3 && s.kw == 3 && s.sh == 1 && s.sw == 1 && s.dh == 1 && s.dw == 1 && s.groups == 1 &&
         s.OH >= 2 && s.OW >= 2;
}
bool applies(const Conv2dShape& s) { return supported(s) && s.C >= kMinChannels && s.O >= kMinChannels; }
bool applies_input_grad(const Conv2dShape& s) {
  return supported(s) && s.C >= kMinChannelsInputGrad && s.O >= kMinChannelsInputGrad;
}
bool applies_weight_grad(const Conv2dShape& s) {  // not a function of the thread count: neither are the bits
  return supported(s) && s.C >= kMinChannelsWeightGrad &&
         (s.O >= 96 || (s.O >= kMinChannelsWeightGrad && s.OH * s.OW >= 1024));
}

template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, const Conv2dShape& s) {
  std::vector<T> Uv(static_cast<size_t>(16 * s.O * s.C));
  T* U = Uv.data();
  for (int64_t o = 0; o < s.O; ++o)
    for (int64_t c = 0; c < s.C; ++c) transform_kernel(w + (o * s.C + c) * 9, 3, 1, U + o * s.C + c, s.O * s.C);
  run(x, U, b, y, Geometry{s.N, s.C, s.H, s.W, s.O, s.OH, s.OW, s.pt, s.pl});
}

template <class T>
void conv2d_input_grad(const T* dy, const T* w, T* dx, const Conv2dShape& s) {
  // dx = conv(dy, w'), w'[c][o][i][j] = w[o][c][2-i][2-j], dy padded by 2 - pt on top, 2 - pl on the left.
  std::vector<T> Uv(static_cast<size_t>(16 * s.O * s.C));
  T* U = Uv.data();
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t o = 0; o < s.O; ++o)
      transform_kernel(w + (o * s.C + c) * 9 + 8, -3, -1, U + c * s.O + o, s.C * s.O);
  run(dy, U, static_cast<const T*>(nullptr), dx, Geometry{s.N, s.O, s.OH, s.OW, s.C, s.H, s.W, 2 - s.pt, 2 - s.pl});
}

template <class T>
bool conv2d_weight_grad(const T* dy, const T* x, T* dw, const Conv2dShape& s) {
  const Geometry g{s.N, s.C, s.H, s.W, s.O, s.OH, s.OW, s.pt, s.pl};
  const int64_t tiles = g.N * g.TH() * g.TW(), Op = direct::round_up(s.O, kLanes);
  const int64_t T_ = chunk_tiles(g.C + Op, tiles, sizeof(T));
  const int64_t chunks = (tiles + T_ - 1) / T_, dU = 16 * g.C * Op;
  const int64_t rows = 16 * (g.TW() + 2), tr = 4 * g.TW() * Op;
  const int64_t per = 16 * g.C * T_ + 16 * T_ * Op + rows + tr;  // V, Z, row buffers: per thread
  // Threads own blocks of input channels (their rows of V and dU) and each transforms all of dy's
  // tiles for itself (so at least 32 channels a thread): no thread waits for another, and each dU
  // element is summed over the tiles in order by one thread, so the bits do not depend on the threads.
  const int threads = direct::threads_for(s, g.C / 32);
  T* ws = static_cast<T*>(workspace(Device{}, static_cast<size_t>(dU + threads * per) * sizeof(T)));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int64_t id = thread_id(), P = team_size(), c0 = g.C * id / P, c1 = g.C * (id + 1) / P;
    T* V = ws + dU + id * per;
    T* Z = V + 16 * g.C * T_;
    T* row_buf = Z + 16 * T_ * Op;
    std::fill(row_buf + rows, row_buf + rows + tr, T(0));  // the pad lanes of dy's transposed rows stay zero
    for (int k = 0; k < 16; ++k) std::fill(ws + (k * g.C + c0) * Op, ws + (k * g.C + c1) * Op, T(0));
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const int64_t t0 = ch * T_, nt = std::min(T_, tiles - t0);
      grad_chunk(x, dy, g, t0, nt, T_, Op, c0, c1, V, Z, row_buf, row_buf + rows);
      grad_products(V, Z, g, nt, T_, Op, c0, c1, ws);
    }
    transform_weight_grad(ws, g.C, g.O, Op, c0, c1, dw);
  }
  // An inf or NaN in x or dy reaches dw through the transforms in other places than im2col's
  // products would take it (and an overflow may make one): the caller then takes another path.
  return !cpu::any_nonfinite(dw, s.O * s.C * 9);
}

template void conv2d_forward<float>(const float*, const float*, const float*, float*, const Conv2dShape&);
template void conv2d_forward<double>(const double*, const double*, const double*, double*, const Conv2dShape&);
template void conv2d_input_grad<float>(const float*, const float*, float*, const Conv2dShape&);
template void conv2d_input_grad<double>(const double*, const double*, double*, const Conv2dShape&);

template bool conv2d_weight_grad<float>(const float*, const float*, float*, const Conv2dShape&);
template bool conv2d_weight_grad<double>(const double*, const double*, double*, const Conv2dShape&);

}  // namespace pycnn::cpu::winograd
