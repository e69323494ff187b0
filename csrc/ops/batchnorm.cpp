#include "batchnorm.h"

#include <cmath>
#include <vector>

namespace pycnn {

namespace {
constexpr const char* kOp = "batch_norm";

struct Layout {
  int64_t outer, channels, inner;
};

Layout check_input(const Tensor& x, const char* what) {
  check_defined(x, kOp, what);
  PYCNN_CHECK(x.dim() >= 2, ValueError, kOp, ": expected ", what, " of at least 2 dimensions (N, C, ...), got shape ",
              shape_str(x.shape()), "; add a batch dimension (x.reshape(1, -1)) or use a layer norm");
  Layout l{x.size(0), x.size(1), 1};
  for (int64_t d = 2; d < x.dim(); ++d) l.inner *= x.size(d);
  return l;
}

// A per-channel tensor: (C,), same dtype and device as x. `required` false lets it be absent.
void check_channel(const Tensor& p, const Tensor& x, const char* arg, bool required, bool in_place = false) {
  if (!p.defined()) {
    PYCNN_CHECK(!required, ValueError, kOp, ": ", arg, " is missing");
    return;
  }
  check_same_device(x, p, kOp, "input", arg);
  check_same_dtype(x, p, kOp, "input", arg);
  PYCNN_CHECK(p.dim() == 1 && p.size(0) == x.size(1), ValueError, kOp, ": expected ", arg, " of shape ",
              shape_str({x.size(1)}), " (one value per channel) for input of shape ", shape_str(x.shape()), ", got ",
              shape_str(p.shape()));
  PYCNN_CHECK(!in_place || p.is_contiguous(), ValueError, kOp, ": ", arg,
              " must be contiguous (it is updated in place); pass a contiguous copy");
}

void check_eps(double eps) {
  PYCNN_CHECK(eps >= 0.0, ValueError, kOp, ": eps must be >= 0 (it keeps 1/sqrt(var + eps) finite), got ", eps);
}

template <class T> const T* ptr(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }
template <class T> T* mut(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }
Tensor contig(const Tensor& t) { return t.defined() ? t.contiguous() : t; }
}  // namespace

std::tuple<Tensor, Tensor, Tensor> batch_norm_forward_train(const Tensor& x_, const Tensor& gamma_,
                                                            const Tensor& beta_, const Tensor& running_mean,
                                                            const Tensor& running_var, double momentum, double eps) {
  const Layout l = check_input(x_, "input");
  check_channel(gamma_, x_, "weight (gamma)", false);
  check_channel(beta_, x_, "bias (beta)", false);
  check_channel(running_mean, x_, "running_mean", false, true);
  check_channel(running_var, x_, "running_var", false, true);
  PYCNN_CHECK(running_mean.defined() == running_var.defined(), ValueError, kOp,
              ": give both running_mean and running_var, or neither");
  check_eps(eps);
  PYCNN_CHECK(l.outer * l.inner > 1, ValueError, kOp,
              ": expected more than 1 value per channel when training, got input of shape ", shape_str(x_.shape()),
              "; use a batch of more than one sample (or eval mode)");
  const Tensor x = x_.contiguous(), gamma = contig(gamma_), beta = contig(beta_);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor save_mean = Tensor::empty({l.channels}, x.dtype(), x.device());
  Tensor save_invstd = Tensor::empty({l.channels}, x.dtype(), x.device());
  dispatch_float(x.dtype(), kOp, [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(x.device(), batch_norm_forward_train<T>, x.data<T>(), ptr<T>(gamma), ptr<T>(beta),
                    mut<T>(running_mean), mut<T>(running_var), y.data<T>(), save_mean.data<T>(),
                    save_invstd.data<T>(), l.outer, l.channels, l.inner, momentum, eps);
  });
  return {y, save_mean, save_invstd};
}

Tensor batch_norm_forward_eval(const Tensor& x_, const Tensor& gamma_, const Tensor& beta_, const Tensor& rm_,
                               const Tensor& rv_, double eps) {
  const Layout l = check_input(x_, "input");
  check_channel(gamma_, x_, "weight (gamma)", false);
  check_channel(beta_, x_, "bias (beta)", false);
  check_channel(rm_, x_, "running_mean", true);
  check_channel(rv_, x_, "running_var", true);
  check_eps(eps);
  const Tensor x = x_.contiguous(), gamma = contig(gamma_), beta = contig(beta_), rm = rm_.contiguous(),
               rv = rv_.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float(x.dtype(), kOp, [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(x.device(), batch_norm_forward_eval<T>, x.data<T>(), ptr<T>(gamma), ptr<T>(beta), rm.data<T>(),
                    rv.data<T>(), y.data<T>(), l.outer, l.channels, l.inner, eps);
  });
  return y;
}

std::tuple<Tensor, Tensor, Tensor> batch_norm_backward(const Tensor& dy_, const Tensor& x_, const Tensor& gamma_,
                                                       const Tensor& mean_, const Tensor& invstd_) {
  const Layout l = check_input(x_, "input");
  check_grad_matches(dy_, x_, kOp, "input");
  check_channel(gamma_, x_, "weight (gamma)", false);
  check_channel(mean_, x_, "save_mean", true);
  check_channel(invstd_, x_, "save_invstd", true);
  const Tensor dy = dy_.contiguous(), x = x_.contiguous(), gamma = contig(gamma_), mean = mean_.contiguous(),
               invstd = invstd_.contiguous();
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor dgamma = Tensor::empty({l.channels}, x.dtype(), x.device());
  Tensor dbeta = Tensor::empty({l.channels}, x.dtype(), x.device());
  dispatch_float(x.dtype(), kOp, [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(x.device(), batch_norm_backward<T>, dy.data<T>(), x.data<T>(), ptr<T>(gamma), mean.data<T>(),
                    invstd.data<T>(), dx.data<T>(), dgamma.data<T>(), dbeta.data<T>(), l.outer, l.channels, l.inner);
  });
  return {dx, dgamma, dbeta};
}

namespace cpu {

// Per-channel sums of f(c, value index in the plane, pointer offset) in double: partials per
// (channel, sample) in parallel, then each channel adds its partials in sample order.
template <class F>
void channel_sums(int64_t outer, int64_t channels, int64_t inner, std::vector<double>& out, F&& f) {
  std::vector<double> part(static_cast<size_t>(outer * channels));
  const bool par = outer * channels * inner > kParallelGrain;
#pragma omp parallel for collapse(2) if (par)
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t o = 0; o < outer; ++o) {
      const int64_t base = (o * channels + c) * inner;
      double s = 0;
      for (int64_t i = 0; i < inner; ++i) s += f(c, base + i);
      part[c * outer + o] = s;
    }
  out.assign(static_cast<size_t>(channels), 0.0);
#pragma omp parallel for if (par)
  for (int64_t c = 0; c < channels; ++c) {
    double s = 0;
    for (int64_t o = 0; o < outer; ++o) s += part[c * outer + o];
    out[c] = s;
  }
}

template <class T>
void batch_norm_forward_train(const T* x, const T* gamma, const T* beta, T* running_mean, T* running_var, T* y,
                              T* save_mean, T* save_invstd, int64_t outer, int64_t channels, int64_t inner,
                              double momentum, double eps) {
  const int64_t n = outer * inner;
  const double dn = static_cast<double>(n);
  std::vector<double> mean, sq;
  channel_sums(outer, channels, inner, mean, [&](int64_t, int64_t k) { return static_cast<double>(x[k]); });
  for (auto& m : mean) m /= dn;
  // two-pass variance: sum of squared deviations from the mean
  channel_sums(outer, channels, inner, sq, [&](int64_t c, int64_t k) {
    const double d = static_cast<double>(x[k]) - mean[c];
    return d * d;
  });
  std::vector<double> invstd(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    invstd[c] = 1.0 / std::sqrt(sq[c] / dn + eps);
    save_mean[c] = static_cast<T>(mean[c]);
    save_invstd[c] = static_cast<T>(invstd[c]);
    if (running_mean) {
      running_mean[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_mean[c]) + momentum * mean[c]);
      const double unbiased = sq[c] / static_cast<double>(n - 1);
      running_var[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[c]) + momentum * unbiased);
    }
  }
#pragma omp parallel for collapse(2) if (outer * channels * inner > kParallelGrain)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t base = (o * channels + c) * inner;
      const double a = invstd[c] * (gamma ? static_cast<double>(gamma[c]) : 1.0);
      const double b = beta ? static_cast<double>(beta[c]) : 0.0, m = mean[c];
      for (int64_t i = 0; i < inner; ++i) y[base + i] = static_cast<T>((static_cast<double>(x[base + i]) - m) * a + b);
    }
}

template <class T>
void batch_norm_forward_eval(const T* x, const T* gamma, const T* beta, const T* running_mean, const T* running_var,
                             T* y, int64_t outer, int64_t channels, int64_t inner, double eps) {
#pragma omp parallel for collapse(2) if (outer * channels * inner > kParallelGrain)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t base = (o * channels + c) * inner;
      const double a = (gamma ? static_cast<double>(gamma[c]) : 1.0) /
                       std::sqrt(static_cast<double>(running_var[c]) + eps);
      const double b = beta ? static_cast<double>(beta[c]) : 0.0, m = static_cast<double>(running_mean[c]);
      for (int64_t i = 0; i < inner; ++i) y[base + i] = static_cast<T>((static_cast<double>(x[base + i]) - m) * a + b);
    }
}

template <class T>
void batch_norm_backward(const T* dy, const T* x, const T* gamma, const T* mean, const T* invstd, T* dx, T* dgamma,
                         T* dbeta, int64_t outer, int64_t channels, int64_t inner) {
  const double dn = static_cast<double>(outer * inner);
  std::vector<double> sum_dy, sum_dy_xmu;
  channel_sums(outer, channels, inner, sum_dy, [&](int64_t, int64_t k) { return static_cast<double>(dy[k]); });
  channel_sums(outer, channels, inner, sum_dy_xmu, [&](int64_t c, int64_t k) {
    return static_cast<double>(dy[k]) * (static_cast<double>(x[k]) - static_cast<double>(mean[c]));
  });
  for (int64_t c = 0; c < channels; ++c) {
    dbeta[c] = static_cast<T>(sum_dy[c]);
    dgamma[c] = static_cast<T>(sum_dy_xmu[c] * static_cast<double>(invstd[c]));
  }
  if (dn == 0) return;
  // dx = gamma*invstd * (dy - mean(dy) - xhat * mean(dy*xhat)), xhat = (x - mean)*invstd
#pragma omp parallel for collapse(2) if (outer * channels * inner > kParallelGrain)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t base = (o * channels + c) * inner;
      const double is = static_cast<double>(invstd[c]), m = static_cast<double>(mean[c]);
      const double g = (gamma ? static_cast<double>(gamma[c]) : 1.0) * is;
      const double mean_dy = sum_dy[c] / dn;
      const double k = sum_dy_xmu[c] * is * is / dn;  // mean(dy*xhat) * invstd
      for (int64_t i = 0; i < inner; ++i) {
        const double xm = static_cast<double>(x[base + i]) - m;
        dx[base + i] = static_cast<T>(g * (static_cast<double>(dy[base + i]) - mean_dy - xm * k));
      }
    }
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_BATCHNORM_KERNELS)

}  // namespace cpu
}  // namespace pycnn
