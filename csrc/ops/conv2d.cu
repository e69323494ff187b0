// CUDA kernels of conv2d.h: im2col (one thread per column-matrix entry), col2im as a gather (one
// thread per input element, adding the entries that read it in row-major (i, j) order, exactly
// as the CPU loop does; no atomics), and the GEMMs through cuBLAS (cuda::gemm_strided_batched,
// one batch entry per group). Samples are processed in chunks laid out side by side,
// (C*kh*kw, nb*L), as on the CPU, so one GEMM per group covers a whole chunk.
#include <algorithm>

#include "../cuda/blas.cuh"
#include "../cuda/context.cuh"
#include "conv2d.h"

namespace pycnn::cuda {
namespace {

constexpr size_t kMaxWorkspace = size_t(256) << 20;  // bytes of scratch one conv2d call may hold

// Samples per chunk: as many as fit in kMaxWorkspace (column matrix + one (O, nb*L) buffer).
int64_t chunk_samples(const Conv2dShape& s, size_t es) {
  const int64_t per_sample = (s.C * s.kh * s.kw + s.O) * s.L * static_cast<int64_t>(es);
  const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(kMaxWorkspace) / std::max<int64_t>(per_sample, 1));
  return std::clamp<int64_t>(cap, 1, std::max<int64_t>(s.N, 1));
}

// cols[n*ss + r*rs + l] for n < nb, r < C*kh*kw, l < OH*OW; padding reads as zero.
template <class T>
__global__ void im2col_kernel(const T* x, T* cols, Conv2dShape s, int64_t nb, int64_t ss, int64_t rs, int64_t total) {
  const int64_t R = s.C * s.kh * s.kw, L = s.L;
  PYCNN_KERNEL_LOOP(k, total) {
    const int64_t l = k % L, r = (k / L) % R, n = k / (L * R);
    const int64_t j = r % s.kw, i = (r / s.kw) % s.kh, c = r / (s.kw * s.kh);
    const int64_t ow = l % s.OW, oh = l / s.OW;
    const int64_t ih = oh * s.sh + i * s.dh - s.pt, iw = ow * s.sw + j * s.dw - s.pl;
    T v = T(0);
    if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) v = x[((n * s.C + c) * s.H + ih) * s.W + iw];
    cols[n * ss + r * rs + l] = v;
  }
}

// dx[n, c, h, w] = sum over (i, j) in row-major order of the column entry that read it.
template <class T>
__global__ void col2im_kernel(const T* cols, T* dx, Conv2dShape s, int64_t ss, int64_t rs, int64_t total) {
  PYCNN_KERNEL_LOOP(k, total) {
    const int64_t w = k % s.W, h = (k / s.W) % s.H, c = (k / (s.W * s.H)) % s.C, n = k / (s.W * s.H * s.C);
    T acc = T(0);
    for (int64_t i = 0; i < s.kh; ++i) {
      const int64_t th = h + s.pt - i * s.dh;  // = oh * sh
      if (th < 0 || th % s.sh != 0) continue;
      const int64_t oh = th / s.sh;
      if (oh >= s.OH) continue;
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t tw = w + s.pl - j * s.dw;
        if (tw < 0 || tw % s.sw != 0) continue;
        const int64_t ow = tw / s.sw;
        if (ow >= s.OW) continue;
        acc += cols[n * ss + ((c * s.kh + i) * s.kw + j) * rs + oh * s.OW + ow];
      }
    }
    dx[k] = acc;
  }
}

// y[n, o, l] = tmp[o, n*L + l] + b[o] for the nb samples of a chunk.
template <class T>
__global__ void unpack_bias_kernel(const T* tmp, const T* b, T* y, int64_t nb, int64_t O, int64_t L, int64_t total) {
  PYCNN_KERNEL_LOOP(k, total) {
    const int64_t l = k % L, o = (k / L) % O, n = k / (L * O);
    y[k] = tmp[o * nb * L + n * L + l] + (b ? b[o] : T(0));
  }
}

// tmp[o, n*L + l] = dy[n, o, l]: a chunk's gradient as one (O, nb*L) matrix.
template <class T>
__global__ void pack_kernel(const T* dy, T* tmp, int64_t nb, int64_t O, int64_t L, int64_t total) {
  PYCNN_KERNEL_LOOP(k, total) {
    const int64_t l = k % L, o = (k / L) % O, n = k / (L * O);
    tmp[o * nb * L + n * L + l] = dy[k];
  }
}

// db[o] = sum over n, l of dy[n, o, l]: one block per o, fixed-order tree.
template <class T>
__global__ void bias_grad_kernel(const T* dy, T* db, int64_t N, int64_t O, int64_t L) {
  T* sh = shared_buffer<T>();
  const int64_t per = N * L;
  PYCNN_ROW_LOOP(o, O) {
    T acc = T(0);
    for (int64_t j = threadIdx.x; j < per; j += blockDim.x) acc += dy[((j / L) * O + o) * L + j % L];
    const T total = block_reduce_sum(acc, sh);
    if (threadIdx.x == 0) db[o] = total;
  }
}

template <class T>
void launch_im2col(const Exec& ex, const T* x, T* cols, const Conv2dShape& s, int64_t nb, int64_t ss, int64_t rs) {
  const int64_t total = nb * s.C * s.kh * s.kw * s.L;
  ex.launch(total, im2col_kernel<T>, x, cols, s, nb, ss, rs, total);
}

template <class T>
void launch_col2im(const Exec& ex, const T* cols, T* dx, const Conv2dShape& s, int64_t nb, int64_t ss, int64_t rs) {
  const int64_t total = nb * s.C * s.H * s.W;
  ex.launch(total, col2im_kernel<T>, cols, dx, s, ss, rs, total);
}

}  // namespace

template <class T>
void im2col(const T* x, T* cols, const Conv2dShape& s, int64_t nb, int64_t sample_stride, int64_t row_stride) {
  if (nb * s.C * s.kh * s.kw * s.L <= 0) return;
  Exec ex(cols);
  launch_im2col(ex, x, cols, s, nb, sample_stride, row_stride);
}

template <class T>
void col2im(const T* cols, T* dx, const Conv2dShape& s, int64_t nb, int64_t sample_stride, int64_t row_stride) {
  if (nb * s.C * s.H * s.W <= 0) return;
  Exec ex(dx);
  launch_col2im(ex, cols, dx, s, nb, sample_stride, row_stride);
}

template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, const Conv2dShape& s) {
  const int64_t N = s.N, C = s.C, O = s.O, L = s.L, G = s.groups, Og = s.Og, CK = s.CK;
  const int64_t HW = s.H * s.W, R = C * s.kh * s.kw;
  if (N == 0 || O * L == 0) return;
  Exec ex(y);
  const int64_t B = chunk_samples(s, sizeof(T));
  T* cols = device_workspace<T>(ex, static_cast<size_t>((R + O) * B * L));
  T* tmp = cols + R * B * L;  // (O, nb*L)
  for (int64_t n0 = 0; n0 < N; n0 += B) {
    const int64_t nb = std::min(B, N - n0), BL = nb * L;
    launch_im2col(ex, x + n0 * C * HW, cols, s, nb, L, BL);
    // tmp_g (Og, BL) = W_g (Og, CK) @ cols_g (CK, BL), for every group g
    gemm_strided_batched<T>(false, false, Og, BL, CK, T(1), w, CK, Og * CK, cols, BL, CK * BL, T(0), tmp, BL,
                            Og * BL, G);
    const int64_t total = nb * O * L;
    ex.launch(total, unpack_bias_kernel<T>, tmp, b, y + n0 * O * L, nb, O, L, total);
  }
}

template <class T>
void conv2d_backward(const T* dy, const T* x, const T* w, T* dx, T* dw, T* db, const Conv2dShape& s) {
  const int64_t N = s.N, C = s.C, O = s.O, L = s.L, G = s.groups, Og = s.Og, CK = s.CK;
  const int64_t HW = s.H * s.W, R = C * s.kh * s.kw;
  T* any = db ? db : (dw ? dw : dx);
  if (!any) return;
  Exec ex(any);
  if (db && O > 0) {
    const int threads = reduce_threads(N * L);
    ex.launch_rows(O, threads, threads * sizeof(T), bias_grad_kernel<T>, dy, db, N, O, L);
  }
  if (!dx && !dw) return;
  if (N == 0 || L == 0) {
    if (dw && O * CK > 0) PYCNN_CUDA_CHECK(cudaMemsetAsync(dw, 0, static_cast<size_t>(O * CK) * sizeof(T), ex.stream()));
    if (dx && N * C * HW > 0)
      PYCNN_CUDA_CHECK(cudaMemsetAsync(dx, 0, static_cast<size_t>(N * C * HW) * sizeof(T), ex.stream()));
    return;
  }
  const int64_t B = chunk_samples(s, sizeof(T));
  // cols: the chunk's column matrix for dW, then overwritten by dcols = W^T @ dY for dX.
  T* cols = device_workspace<T>(ex, static_cast<size_t>((R + O) * B * L));
  T* tmp = cols + R * B * L;
  for (int64_t n0 = 0; n0 < N; n0 += B) {
    const int64_t nb = std::min(B, N - n0), BL = nb * L;
    const T* dyc = dy + n0 * O * L;  // (O, nb*L) view of the chunk's gradient
    if (nb > 1) {
      const int64_t total = nb * O * L;
      ex.launch(total, pack_kernel<T>, dyc, tmp, nb, O, L, total);
      dyc = tmp;
    }
    if (dw) {
      launch_im2col(ex, x + n0 * C * HW, cols, s, nb, L, BL);
      // dW_g (Og, CK) (+)= dY_g (Og, BL) @ cols_g^T (BL, CK)
      gemm_strided_batched<T>(false, true, Og, CK, BL, T(1), dyc, BL, Og * BL, cols, BL, CK * BL,
                              n0 == 0 ? T(0) : T(1), dw, CK, Og * CK, G);
    }
    if (dx) {
      // dcols_g (CK, BL) = W_g^T (CK, Og) @ dY_g (Og, BL)
      gemm_strided_batched<T>(true, false, CK, BL, Og, T(1), w, CK, Og * CK, dyc, BL, Og * BL, T(0), cols, BL,
                              CK * BL, G);
      launch_col2im(ex, cols, dx + n0 * C * HW, s, nb, L, BL);
    }
  }
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_CONV2D_KERNELS)

}  // namespace pycnn::cuda
