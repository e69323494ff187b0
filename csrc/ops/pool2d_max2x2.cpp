// The common 2x2, stride 2, unpadded max pooling on the CPU, one plane per call:
//
//   y[oh, ow] = the winner of (a, b, c, d) = x[2oh, 2ow], x[2oh, 2ow+1], x[2oh+1, 2ow], x[2oh+1, 2ow+1]
//   argmax[oh, ow] = 2oh*W + 2ow + (0, 1, W or W+1)
//
// The rule is the general loop's (pool2d.h, max_at): candidates in row-major window order, a later
// one wins if it is greater or NaN (first maximum on ties, the last NaN). A compiler writes this
// scalar loop with branches, and on real activations they mispredict about once per window
// (LeNet-5's pools at batch 256: 0.76 and 0.51 ms of a 9.6 ms step). For float32, the AVX-512 and
// AVX2 copies hold a run of outputs in one vector (16 / 8 floats): the row pairs are loaded with
// masks (no read past the row), split into even and odd columns, and the three "later one wins"
// steps are compare + blend, the same rule lane by lane. LeNet's rows are 5 to 14 outputs long: one
// masked vector per row, no scalar tail.
#include <cstdint>

#include "pool2d.h"

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define PYCNN_MAX2X2_X86 1
#endif

namespace pycnn::cpu {

namespace {

template <class T>
inline void plane_scalar(const T* __restrict x, int64_t W, int64_t OH, int64_t OW, T* __restrict y,
                         int64_t* __restrict argmax) {
  for (int64_t oh = 0; oh < OH; ++oh) {
    const T* r0 = x + 2 * oh * W;
    const T* r1 = r0 + W;
    for (int64_t ow = 0; ow < OW; ++ow) {
      const T cand[4] = {r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]};
      const int64_t off[4] = {0, 1, W, W + 1};
      int best = 0;
      for (int i = 1; i < 4; ++i)
        if (cand[i] > cand[best] || cand[i] != cand[i]) best = i;
      y[oh * OW + ow] = cand[best];
      argmax[oh * OW + ow] = 2 * oh * W + 2 * ow + off[best];
    }
  }
}

#ifdef PYCNN_MAX2X2_X86

// ---------------------------------------------------------------------------- AVX-512
// 16 outputs per step (float): 32 inputs of each row in two masked loads; the window offset is
// kept as int32 and widened to int64 with the output's base when stored.
[[gnu::target("arch=x86-64-v4")]] void plane_2x2(const float* x, int64_t W, int64_t OH, int64_t OW, float* y,
                                                        int64_t* argmax) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i lanes2 = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);  // 2*ow of the low 8 lanes
  const __m512i one = _mm512_set1_epi32(1), offW = _mm512_set1_epi32(int(W)), offW1 = _mm512_set1_epi32(int(W + 1));
  for (int64_t oh = 0; oh < OH; ++oh) {
    const float* r0 = x + 2 * oh * W;
    const float* r1 = r0 + W;
    for (int64_t ow = 0; ow < OW; ow += 16) {
      const int n = int(OW - ow < 16 ? OW - ow : 16);
      const __mmask16 out = __mmask16((1u << n) - 1u);
      const __mmask16 in0 = __mmask16(n >= 8 ? 0xffffu : (1u << (2 * n)) - 1u);
      const __mmask16 in1 = __mmask16(n > 8 ? (1u << (2 * n - 16)) - 1u : 0u);
      const __m512 p0 = _mm512_maskz_loadu_ps(in0, r0 + 2 * ow), p1 = _mm512_maskz_loadu_ps(in1, r0 + 2 * ow + 16);
      const __m512 q0 = _mm512_maskz_loadu_ps(in0, r1 + 2 * ow), q1 = _mm512_maskz_loadu_ps(in1, r1 + 2 * ow + 16);
      const __m512 a = _mm512_permutex2var_ps(p0, even, p1), b = _mm512_permutex2var_ps(p0, odd, p1);
      const __m512 c = _mm512_permutex2var_ps(q0, even, q1), d = _mm512_permutex2var_ps(q0, odd, q1);
      __m512 best = a;
      __m512i at = _mm512_setzero_si512();
      __mmask16 take = _mm512_cmp_ps_mask(b, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q);
      best = _mm512_mask_mov_ps(best, take, b), at = _mm512_mask_mov_epi32(at, take, one);
      take = _mm512_cmp_ps_mask(c, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(c, c, _CMP_UNORD_Q);
      best = _mm512_mask_mov_ps(best, take, c), at = _mm512_mask_mov_epi32(at, take, offW);
      take = _mm512_cmp_ps_mask(d, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(d, d, _CMP_UNORD_Q);
      best = _mm512_mask_mov_ps(best, take, d), at = _mm512_mask_mov_epi32(at, take, offW1);
      _mm512_mask_storeu_ps(y + oh * OW + ow, out, best);
      const __m512i base = _mm512_add_epi64(_mm512_set1_epi64(2 * oh * W + 2 * ow), lanes2);
      const __m512i lo = _mm512_add_epi64(base, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(at)));
      const __m512i hi = _mm512_add_epi64(_mm512_add_epi64(base, _mm512_set1_epi64(16)),
                                          _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(at, 1)));
      _mm512_mask_storeu_epi64(argmax + oh * OW + ow, __mmask8(out), lo);
      _mm512_mask_storeu_epi64(argmax + oh * OW + ow + 8, __mmask8(out >> 8), hi);
    }
  }
}

// ---------------------------------------------------------------------------- AVX2
// Lanes i < n all ones: the masks of vmaskmov (which neither reads nor faults past them).
[[gnu::target("arch=x86-64-v3")]] inline __m256i first_lanes32(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
[[gnu::target("arch=x86-64-v3")]] inline __m256i first_lanes64(int n) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}
// A later candidate v wins where it is greater than best or NaN: all-ones lanes.
[[gnu::target("arch=x86-64-v3")]] inline __m256 wins(__m256 v, __m256 best) {
  return _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

// (x0..x7), (x8..x15) -> (x0, x2, .., x14) / (x1, x3, .., x15): an in-lane shuffle, then a 64-bit permute.
[[gnu::target("arch=x86-64-v3")]] inline __m256 evens(__m256 lo, __m256 hi) {
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xd8));
}
[[gnu::target("arch=x86-64-v3")]] inline __m256 odds(__m256 lo, __m256 hi) {
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xdd)), 0xd8));
}

// 8 outputs per step (float); the int32 offsets are blended as float bit patterns.
[[gnu::target("arch=x86-64-v3")]] void plane_2x2(const float* x, int64_t W, int64_t OH, int64_t OW, float* y,
                                                        int64_t* argmax) {
  const __m256 one = _mm256_castsi256_ps(_mm256_set1_epi32(1)), offW = _mm256_castsi256_ps(_mm256_set1_epi32(int(W)));
  const __m256 offW1 = _mm256_castsi256_ps(_mm256_set1_epi32(int(W + 1)));
  const __m256i lanes2 = _mm256_setr_epi64x(0, 2, 4, 6);
  for (int64_t oh = 0; oh < OH; ++oh) {
    const float* r0 = x + 2 * oh * W;
    const float* r1 = r0 + W;
    for (int64_t ow = 0; ow < OW; ow += 8) {
      const int n = int(OW - ow < 8 ? OW - ow : 8);
      const __m256i in0 = first_lanes32(2 * n), in1 = first_lanes32(2 * n - 8), out = first_lanes32(n);
      const __m256 p0 = _mm256_maskload_ps(r0 + 2 * ow, in0), p1 = _mm256_maskload_ps(r0 + 2 * ow + 8, in1);
      const __m256 q0 = _mm256_maskload_ps(r1 + 2 * ow, in0), q1 = _mm256_maskload_ps(r1 + 2 * ow + 8, in1);
      const __m256 a = evens(p0, p1), b = odds(p0, p1), c = evens(q0, q1), d = odds(q0, q1);
      __m256 best = a, at = _mm256_setzero_ps();
      __m256 take = wins(b, best);
      best = _mm256_blendv_ps(best, b, take), at = _mm256_blendv_ps(at, one, take);
      take = wins(c, best);
      best = _mm256_blendv_ps(best, c, take), at = _mm256_blendv_ps(at, offW, take);
      take = wins(d, best);
      best = _mm256_blendv_ps(best, d, take), at = _mm256_blendv_ps(at, offW1, take);
      _mm256_maskstore_ps(y + oh * OW + ow, out, best);
      const __m256i ati = _mm256_castps_si256(at);
      const __m256i base = _mm256_add_epi64(_mm256_set1_epi64x(2 * oh * W + 2 * ow), lanes2);
      const __m256i lo = _mm256_add_epi64(base, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(ati)));
      const __m256i hi = _mm256_add_epi64(_mm256_add_epi64(base, _mm256_set1_epi64x(8)),
                                          _mm256_cvtepi32_epi64(_mm256_extracti128_si256(ati, 1)));
      _mm256_maskstore_epi64(reinterpret_cast<long long*>(argmax + oh * OW + ow), first_lanes64(n), lo);
      _mm256_maskstore_epi64(reinterpret_cast<long long*>(argmax + oh * OW + ow + 4), first_lanes64(n - 4), hi);
    }
  }
}

#define PYCNN_MAX2X2_DEFAULT [[gnu::target("default")]]
#else
#define PYCNN_MAX2X2_DEFAULT
#endif

// ---------------------------------------------------------------------------- any CPU
PYCNN_MAX2X2_DEFAULT void plane_2x2(const float* x, int64_t W, int64_t OH, int64_t OW, float* y, int64_t* argmax) {
  plane_scalar(x, W, OH, OW, y, argmax);
}

}  // namespace

// The entry points (one per type, no target attribute: callers in other files see one function).
void max_pool_plane_2x2(const float* x, int64_t W, int64_t OH, int64_t OW, float* y, int64_t* argmax) {
  plane_2x2(x, W, OH, OW, y, argmax);
}
void max_pool_plane_2x2(const double* x, int64_t W, int64_t OH, int64_t OW, double* y, int64_t* argmax) {
  plane_scalar(x, W, OH, OW, y, argmax);  // float64 is the reference dtype: the scalar rule
}

}  // namespace pycnn::cpu
