// CUDA kernels of batchnorm.h: per-channel statistics with one block per channel (sums in double
// over a fixed partition of the channel's values, then a fixed-shape tree: bit-identical run to
// run, no atomics), then one thread per element for y and dx. Two-pass variance as on the CPU.
#include "../cuda/context.cuh"
#include "batchnorm.h"

namespace pycnn::cuda {
namespace {

// Flat index of value j (in (sample, position) order) of channel c.
__device__ inline int64_t channel_index(int64_t j, int64_t c, int64_t channels, int64_t inner) {
  return ((j / inner) * channels + c) * inner + j % inner;
}

// stats[c] = mean, stats[channels + c] = invstd (double); save_* and running stats in T.
template <class T>
__global__ void bn_stats_kernel(const T* x, T* running_mean, T* running_var, T* save_mean, T* save_invstd,
                                double* stats, int64_t outer, int64_t channels, int64_t inner, double momentum,
                                double eps) {
  double* sh = shared_buffer<double>();
  const int64_t n = outer * inner;
  const double dn = static_cast<double>(n);
  PYCNN_ROW_LOOP(c, channels) {
    double s = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += static_cast<double>(x[channel_index(j, c, channels, inner)]);
    const double mean = block_reduce_sum(s, sh) / dn;
    double q = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const double d = static_cast<double>(x[channel_index(j, c, channels, inner)]) - mean;
      q += d * d;
    }
    const double sq = block_reduce_sum(q, sh);
    if (threadIdx.x == 0) {
      const double invstd = 1.0 / sqrt(sq / dn + eps);
      save_mean[c] = static_cast<T>(mean);
      save_invstd[c] = static_cast<T>(invstd);
      if (running_mean) {
        running_mean[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_mean[c]) + momentum * mean);
        const double unbiased = sq / static_cast<double>(n - 1);
        running_var[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[c]) + momentum * unbiased);
      }
      stats[c] = mean;
      stats[channels + c] = invstd;
    }
  }
}

template <class T>
__global__ void bn_apply_kernel(const T* x, const T* gamma, const T* beta, const double* stats, T* y,
                                int64_t channels, int64_t inner, int64_t total) {
  PYCNN_KERNEL_LOOP(k, total) {
    const int64_t c = (k / inner) % channels;
    const double a = stats[channels + c] * (gamma ? static_cast<double>(gamma[c]) : 1.0);
    const double b = beta ? static_cast<double>(beta[c]) : 0.0;
    y[k] = static_cast<T>((static_cast<double>(x[k]) - stats[c]) * a + b);
  }
}

template <class T>
__global__ void bn_eval_kernel(const T* x, const T* gamma, const T* beta, const T* running_mean, const T* running_var,
                               T* y, int64_t channels, int64_t inner, double eps, int64_t total) {
  PYCNN_KERNEL_LOOP(k, total) {
    const int64_t c = (k / inner) % channels;
    const double a = (gamma ? static_cast<double>(gamma[c]) : 1.0) / sqrt(static_cast<double>(running_var[c]) + eps);
    const double b = beta ? static_cast<double>(beta[c]) : 0.0, m = static_cast<double>(running_mean[c]);
    y[k] = static_cast<T>((static_cast<double>(x[k]) - m) * a + b);
  }
}

// sums[c] = sum dy, sums[channels + c] = sum dy * (x - mean); dbeta, dgamma in T.
template <class T>
__global__ void bn_grad_stats_kernel(const T* dy, const T* x, const T* mean, const T* invstd, T* dgamma, T* dbeta,
                                     double* sums, int64_t outer, int64_t channels, int64_t inner) {
  double* sh = shared_buffer<double>();
  const int64_t n = outer * inner;
  PYCNN_ROW_LOOP(c, channels) {
    const double m = static_cast<double>(mean[c]);
    double a = 0, b = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const int64_t k = channel_index(j, c, channels, inner);
      const double g = static_cast<double>(dy[k]);
      a += g;
      b += g * (static_cast<double>(x[k]) - m);
    }
    const double sum_dy = block_reduce_sum(a, sh);
    const double sum_dy_xmu = block_reduce_sum(b, sh);
    if (threadIdx.x == 0) {
      dbeta[c] = static_cast<T>(sum_dy);
      dgamma[c] = static_cast<T>(sum_dy_xmu * static_cast<double>(invstd[c]));
      sums[c] = sum_dy;
      sums[channels + c] = sum_dy_xmu;
    }
  }
}

// dx = gamma*invstd * (dy - mean(dy) - (x - mean) * mean(dy*xhat)*invstd)
template <class T>
__global__ void bn_dx_kernel(const T* dy, const T* x, const T* gamma, const T* mean, const T* invstd,
                             const double* sums, T* dx, int64_t channels, int64_t inner, double dn, int64_t total) {
  PYCNN_KERNEL_LOOP(k, total) {
    const int64_t c = (k / inner) % channels;
    const double is = static_cast<double>(invstd[c]), m = static_cast<double>(mean[c]);
    const double g = (gamma ? static_cast<double>(gamma[c]) : 1.0) * is;
    const double mean_dy = sums[c] / dn;
    const double kk = sums[channels + c] * is * is / dn;
    const double xm = static_cast<double>(x[k]) - m;
    dx[k] = static_cast<T>(g * (static_cast<double>(dy[k]) - mean_dy - xm * kk));
  }
}

}  // namespace

template <class T>
void batch_norm_forward_train(const T* x, const T* gamma, const T* beta, T* running_mean, T* running_var, T* y,
                              T* save_mean, T* save_invstd, int64_t outer, int64_t channels, int64_t inner,
                              double momentum, double eps) {
  if (channels <= 0) return;
  Exec ex(save_mean);
  double* stats = device_workspace<double>(ex, static_cast<size_t>(2 * channels));
  const int threads = reduce_threads(outer * inner);
  ex.launch_rows(channels, threads, threads * sizeof(double), bn_stats_kernel<T>, x, running_mean, running_var,
                 save_mean, save_invstd, stats, outer, channels, inner, momentum, eps);
  const int64_t total = outer * channels * inner;
  ex.launch(total, bn_apply_kernel<T>, x, gamma, beta, static_cast<const double*>(stats), y, channels, inner, total);
}

template <class T>
void batch_norm_forward_eval(const T* x, const T* gamma, const T* beta, const T* running_mean, const T* running_var,
                             T* y, int64_t outer, int64_t channels, int64_t inner, double eps) {
  const int64_t total = outer * channels * inner;
  launch_over(y, total, bn_eval_kernel<T>, x, gamma, beta, running_mean, running_var, y, channels, inner, eps, total);
}

template <class T>
void batch_norm_backward(const T* dy, const T* x, const T* gamma, const T* mean, const T* invstd, T* dx, T* dgamma,
                         T* dbeta, int64_t outer, int64_t channels, int64_t inner) {
  if (channels <= 0) return;
  Exec ex(dgamma);
  double* sums = device_workspace<double>(ex, static_cast<size_t>(2 * channels));
  const int threads = reduce_threads(outer * inner);
  ex.launch_rows(channels, threads, threads * sizeof(double), bn_grad_stats_kernel<T>, dy, x, mean, invstd, dgamma,
                 dbeta, sums, outer, channels, inner);
  const int64_t total = outer * channels * inner;
  if (total <= 0) return;
  ex.launch(total, bn_dx_kernel<T>, dy, x, gamma, mean, invstd, static_cast<const double*>(sums), dx, channels, inner,
            static_cast<double>(outer * inner), total);
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_BATCHNORM_KERNELS)

}  // namespace pycnn::cuda
