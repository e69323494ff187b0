#include "conv2d.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <chrono>
#include <cstdio>
#include "../blas.h"
#include "../workspace.h"

namespace pycnn {

// ============================================================================ the one check
namespace {

constexpr int64_t kMaxParam = int64_t(1) << 31;  // sizes, strides, paddings: no overflow below this

std::string pair_str(const int64_t* v) { return cat("(", v[0], ", ", v[1], ")"); }

bool is_float(DType t) { return t == DType::Float32 || t == DType::Float64; }

}  // namespace

Conv2dShape conv2d_geometry(const char* op, const Shape& x, int64_t O, int64_t kh, int64_t kw,
                            const Conv2dParams& p, const std::string& ctx) {
  const int64_t* st = p.stride;
  const int64_t* pd = p.pad;
  const int64_t* dl = p.dilation;
  PYCNN_CHECK(st[0] >= 1 && st[1] >= 1 && st[0] < kMaxParam && st[1] < kMaxParam, ValueError, op,
              ": stride must be >= 1 in both dimensions, got ", pair_str(st), " (", ctx, ")");
  PYCNN_CHECK(dl[0] >= 1 && dl[1] >= 1 && dl[0] < kMaxParam && dl[1] < kMaxParam, ValueError, op,
              ": dilation must be >= 1 in both dimensions, got ", pair_str(dl), " (", ctx, ")");
  for (int k = 0; k < 4; ++k)
    PYCNN_CHECK(pd[k] >= 0 && pd[k] < kMaxParam, ValueError, op,
                ": padding must be >= 0 on every side, got (top, bottom, left, right) = (", pd[0], ", ", pd[1],
                ", ", pd[2], ", ", pd[3], ") (", ctx, ")");
  PYCNN_CHECK(p.groups >= 1, ValueError, op, ": groups must be >= 1, got ", p.groups, " (", ctx, ")");
  const int64_t N = x[0], C = x[1], H = x[2], W = x[3];
  PYCNN_CHECK(C >= 1 && H >= 1 && W >= 1, ValueError, op, ": the input needs at least one channel, row and column, got ",
              shape_str(x), " (", ctx, ")");
  PYCNN_CHECK(kh >= 1 && kw >= 1 && kh < kMaxParam && kw < kMaxParam, ValueError, op,
              ": the kernel must be at least 1x1, got ", kh, "x", kw, " (", ctx, ")");
  PYCNN_CHECK(H < kMaxParam && W < kMaxParam, ValueError, op, ": input ", shape_str(x), " is too large");
  const int64_t ekh = dl[0] * (kh - 1) + 1, ekw = dl[1] * (kw - 1) + 1;
  const int64_t PH = H + pd[0] + pd[1], PW = W + pd[2] + pd[3];
  PYCNN_CHECK(ekh <= PH && ekw <= PW, ValueError, op, ": the ", kh, "x", kw, " kernel (dilated extent ", ekh, "x",
              ekw, ") is larger than the padded input ", PH, "x", PW, " (input ", H, "x", W, " + padding ", pd[0],
              "+", pd[1], ", ", pd[2], "+", pd[3], "); reduce the kernel or add padding (", ctx, ")");
  Conv2dShape s{};
  s.N = N, s.C = C, s.H = H, s.W = W;
  s.O = O, s.kh = kh, s.kw = kw;
  s.OH = (PH - ekh) / st[0] + 1;
  s.OW = (PW - ekw) / st[1] + 1;
  s.groups = p.groups;
  s.sh = st[0], s.sw = st[1];
  s.pt = pd[0], s.pb = pd[1], s.pl = pd[2], s.pr = pd[3];
  s.dh = dl[0], s.dw = dl[1];
  s.Cg = C / p.groups;
  s.Og = O / p.groups;
  s.CK = s.Cg * kh * kw;
  s.L = s.OH * s.OW;
  return s;
}

Conv2dShape conv2d_shape(const Tensor& x, const Tensor& w, const Tensor* b, const Conv2dParams& p, const char* op) {
  check_defined(x, op, "input");
  check_defined(w, op, "weight");
  const std::string xs = shape_str(x.shape()), ws = shape_str(w.shape());
  PYCNN_CHECK(is_float(x.dtype()), TypeError, op, ": expected a float32 or float64 input, got an ",
              dtype_name(x.dtype()), " input of shape ", xs, "; convert it with x.to(pycnn.float32)");
  PYCNN_CHECK(w.dtype() == x.dtype(), TypeError, op, ": input ", xs, " is ", dtype_name(x.dtype()), " but weight ",
              ws, " is ", dtype_name(w.dtype()), "; use one dtype for both (e.g. weight.to(pycnn.",
              dtype_name(x.dtype()), "))");
  if (b)
    PYCNN_CHECK(b->dtype() == x.dtype(), TypeError, op, ": input ", xs, " is ", dtype_name(x.dtype()), " but bias ",
                shape_str(b->shape()), " is ", dtype_name(b->dtype()), "; use one dtype for both");
  check_same_device(x, w, op, "input", "weight");
  if (b) check_same_device(x, *b, op, "input", "bias");
  PYCNN_CHECK(x.dim() == 4, ValueError, op, ": expected input of shape (N, C, H, W), got ", xs,
              x.dim() == 3 ? "; for a single image add a batch dimension: x.reshape(1, C, H, W)" : "");
  PYCNN_CHECK(w.dim() == 4, ValueError, op, ": expected weight of shape (O, C/groups, kh, kw), got ", ws,
              " (input ", xs, ")");
  const int64_t C = x.size(1), O = w.size(0), G = p.groups;
  const std::string ctx = cat("input ", xs, ", weight ", ws, ", groups=", G);
  PYCNN_CHECK(G >= 1, ValueError, op, ": groups must be >= 1, got ", G, " (", ctx, ")");
  PYCNN_CHECK(C % G == 0, ValueError, op, ": groups=", G, " must divide the input channels, but input ", xs, " has ",
              C, " channels; choose groups among the divisors of ", C);
  PYCNN_CHECK(O >= 1, ValueError, op, ": weight ", ws, " has no filters (O = 0)");
  PYCNN_CHECK(O % G == 0, ValueError, op, ": groups=", G, " must divide the output channels, but weight ", ws,
              " has ", O, " filters; use a multiple of ", G, " filters");
  PYCNN_CHECK(w.size(1) == C / G, ValueError, op, ": expected weight of shape (O, C/groups=", C / G,
              ", kh, kw) for input with ", C, " channels and groups=", G, ", got ", ws);
  if (b)
    PYCNN_CHECK(b->dim() == 1 && b->size(0) == O, ValueError, op, ": expected bias of shape (", O,
                ",) (one per output channel of weight ", ws, "), got ", shape_str(b->shape()));
  return conv2d_geometry(op, x.shape(), O, w.size(2), w.size(3), p, ctx);
}

void conv2d_check_grad_output(const Tensor& dy, const Tensor& x, const Tensor& w, const Conv2dShape& s) {
  const char* op = "conv2d_backward";
  check_defined(dy, op, "grad_output");
  const Shape expected{s.N, s.O, s.OH, s.OW};
  PYCNN_CHECK(dy.dtype() == x.dtype(), TypeError, op, ": grad_output ", shape_str(dy.shape()), " is ",
              dtype_name(dy.dtype()), " but input ", shape_str(x.shape()), " is ", dtype_name(x.dtype()),
              "; use one dtype for both");
  check_same_device(dy, x, op, "grad_output", "input");
  PYCNN_CHECK(dy.shape() == expected, ValueError, op, ": expected grad_output of shape (N, O, OH, OW) = ",
              shape_str(expected), " for input ", shape_str(x.shape()), " and weight ", shape_str(w.shape()),
              " (stride (", s.sh, ", ", s.sw, "), padding (", s.pt, ", ", s.pb, ", ", s.pl, ", ", s.pr,
              "), dilation (", s.dh, ", ", s.dw, ")), got ", shape_str(dy.shape()),
              "; pass the gradient of this convolution's output");
}

// ============================================================================ public ops
Tensor conv2d_forward(const Tensor& x_, const Tensor& w_, const std::optional<Tensor>& b_, const Conv2dParams& p) {
  const Tensor* bp = b_ && b_->defined() ? &*b_ : nullptr;
  const Conv2dShape s = conv2d_shape(x_, w_, bp, p);
  const Tensor x = x_.contiguous(), w = w_.contiguous();
  const Tensor b = bp ? bp->contiguous() : Tensor();
  Tensor y = Tensor::empty({s.N, s.O, s.OH, s.OW}, x.dtype(), x.device());
  dispatch_float(x.dtype(), "conv2d", [&](auto t) {
    using T = decltype(t);
    const T* bias = b.defined() ? b.data<T>() : nullptr;
    PYCNN_ON_DEVICE(x.device(), conv2d_forward<T>, x.data<T>(), w.data<T>(), bias, y.data<T>(), s);
  });
  return y;
}

std::tuple<std::optional<Tensor>, std::optional<Tensor>, std::optional<Tensor>> conv2d_backward(
    const Tensor& dy_, const Tensor& x_, const Tensor& w_, const Conv2dParams& p, bool need_dx, bool need_dw,
    bool need_db) {
  const Conv2dShape s = conv2d_shape(x_, w_, nullptr, p, "conv2d_backward");
  conv2d_check_grad_output(dy_, x_, w_, s);
  std::optional<Tensor> dx, dw, db;
  if (!need_dx && !need_dw && !need_db) return {dx, dw, db};
  const Tensor dy = dy_.contiguous(), x = x_.contiguous(), w = w_.contiguous();
  if (need_dx) dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (need_dw) dw = Tensor::empty(w.shape(), w.dtype(), w.device());
  if (need_db) db = Tensor::empty({s.O}, w.dtype(), w.device());
  dispatch_float(x.dtype(), "conv2d_backward", [&](auto t) {
    using T = decltype(t);
    T* pdx = dx ? dx->data<T>() : nullptr;
    T* pdw = dw ? dw->data<T>() : nullptr;
    T* pdb = db ? db->data<T>() : nullptr;
    PYCNN_ON_DEVICE(x.device(), conv2d_backward<T>, dy.data<T>(), x.data<T>(), w.data<T>(), pdx, pdw, pdb, s);
  });
  return {dx, dw, db};
}

Tensor im2col(const Tensor& x_, int64_t kh, int64_t kw, const Conv2dParams& p_) {
  const char* op = "im2col";
  check_defined(x_, op, "input");
  PYCNN_CHECK(is_float(x_.dtype()), TypeError, op, ": expected a float32 or float64 input, got an ",
              dtype_name(x_.dtype()), " input of shape ", shape_str(x_.shape()));
  PYCNN_CHECK(x_.dim() == 4, ValueError, op, ": expected input of shape (N, C, H, W), got ", shape_str(x_.shape()));
  Conv2dParams p = p_;
  p.groups = 1;
  const Conv2dShape s =
      conv2d_geometry(op, x_.shape(), 1, kh, kw, p, cat("input ", shape_str(x_.shape()), ", kernel ", kh, "x", kw));
  const Tensor x = x_.contiguous();
  Tensor cols = Tensor::empty({s.N, s.rows(), s.L}, x.dtype(), x.device());
  dispatch_float(x.dtype(), op, [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(x.device(), im2col<T>, x.data<T>(), cols.data<T>(), s, s.N, s.rows() * s.L, s.L);
  });
  return cols;
}

// ============================================================================ CPU kernels
namespace cpu {
namespace {

constexpr int64_t kParallelGrain = 1 << 15;          // elements below which threads cost more than they save
constexpr size_t kMaxWorkspace = size_t(64) << 20;   // bytes of scratch one conv2d call may hold
constexpr int64_t kTargetColumns = 4096;             // GEMM width (nb*L) a chunk aims for

// Output columns ow in [lo, hi) whose input column ow*stride + off lies inside [0, size).
inline void valid_range(int64_t off, int64_t stride, int64_t size, int64_t out, int64_t& lo, int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  hi = off >= size ? 0 : (size - 1 - off) / stride + 1;
  lo = std::min(lo, out);
  hi = std::max(lo, std::min(hi, out));
}

// Samples per chunk: enough GEMM columns to run BLAS at speed, within kMaxWorkspace of scratch
// (the column matrix plus one output- or gradient-sized buffer).
int64_t chunk_samples(const Conv2dShape& s, size_t es) {
  const int64_t per_sample = (s.rows() + s.O) * s.L * static_cast<int64_t>(es);
  const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(kMaxWorkspace) / std::max<int64_t>(per_sample, 1));
  int64_t target = kTargetColumns;
  if (const char* e = std::getenv("PYCNN_CONV_COLUMNS")) target = std::atoll(e);  // DEV ONLY
  const int64_t want = std::max<int64_t>(1, (target + s.L - 1) / s.L);
  return std::clamp<int64_t>(std::min(want, cap), 1, std::max<int64_t>(s.N, 1));
}

// Sum of n values in a fixed order (8 interleaved partial sums, combined pairwise): vectorises,
// and repeats bit for bit whatever the thread count.
template <class T>
struct FixedSum {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  void add(const T* p, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (int k = 0; k < 8; ++k) acc[k] += p[i + k];
    for (int k = 0; i < n; ++i, ++k) acc[k] += p[i];
  }
  T total() const { return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])); }
};

}  // namespace

template <class T>
void im2col(const T* x, T* cols, const Conv2dShape& s, int64_t nb, int64_t ss, int64_t rs) {
  const int64_t C = s.C, H = s.H, W = s.W, kh = s.kh, kw = s.kw, OH = s.OH, OW = s.OW;
#pragma omp parallel for collapse(2) schedule(static) if (nb * s.rows() * s.L > kParallelGrain)
  for (int64_t n = 0; n < nb; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const T* xc = x + (n * C + c) * H * W;
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j) {
          T* dst = cols + n * ss + ((c * kh + i) * kw + j) * rs;
          const int64_t off = j * s.dw - s.pl;  // input column of output column ow: ow*sw + off
          int64_t lo, hi;
          valid_range(off, s.sw, W, OW, lo, hi);
          for (int64_t oh = 0; oh < OH; ++oh) {
            T* d = dst + oh * OW;
            const int64_t ih = oh * s.sh + i * s.dh - s.pt;
            if (ih < 0 || ih >= H) {
              std::fill(d, d + OW, T(0));
              continue;
            }
            const T* row = xc + ih * W;
            std::fill(d, d + lo, T(0));
            if (s.sw == 1) {
              for (int64_t ow = lo; ow < hi; ++ow) d[ow] = row[ow + off];
            } else {
              for (int64_t ow = lo; ow < hi; ++ow) d[ow] = row[ow * s.sw + off];
            }
            std::fill(d + hi, d + OW, T(0));
          }
        }
    }
}

// Each (sample, channel) plane belongs to one thread. Within it, the offsets (i, j) are visited
// in row-major order and, for one offset, every input element is read by at most one output
// position, so every element is 0 + its column entries in (i, j) order: a gather, done a row at a
// time so that it vectorises.
template <class T>
void col2im(const T* cols, T* dx, const Conv2dShape& s, int64_t nb, int64_t ss, int64_t rs) {
  const int64_t C = s.C, H = s.H, W = s.W, kh = s.kh, kw = s.kw, OH = s.OH, OW = s.OW;
#pragma omp parallel for collapse(2) schedule(static) if (nb * s.rows() * s.L > kParallelGrain)
  for (int64_t n = 0; n < nb; ++n)
    for (int64_t c = 0; c < C; ++c) {
      T* xc = dx + (n * C + c) * H * W;
      std::fill(xc, xc + H * W, T(0));
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j) {
          const T* src = cols + n * ss + ((c * kh + i) * kw + j) * rs;
          const int64_t off = j * s.dw - s.pl;
          int64_t lo, hi;
          valid_range(off, s.sw, W, OW, lo, hi);
          for (int64_t oh = 0; oh < OH; ++oh) {
            const int64_t ih = oh * s.sh + i * s.dh - s.pt;
            if (ih < 0 || ih >= H) continue;
            T* row = xc + ih * W;
            const T* sr = src + oh * OW;
            if (s.sw == 1) {
              for (int64_t ow = lo; ow < hi; ++ow) row[ow + off] += sr[ow];
            } else {
              for (int64_t ow = lo; ow < hi; ++ow) row[ow * s.sw + off] += sr[ow];
            }
          }
        }
    }
}

template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, const Conv2dShape& s) {
  const int64_t N = s.N, C = s.C, O = s.O, L = s.L, G = s.groups, Og = s.Og, Cg = s.Cg, CK = s.CK;
  const int64_t HW = s.H * s.W;
  if (N == 0) return;
  if (s.pointwise()) {  // y[n]_g = W_g @ x[n]_g, straight into the output
    for (int64_t n = 0; n < N; ++n)
      for (int64_t g = 0; g < G; ++g)
        blas::gemm<T>(false, false, Og, L, Cg, T(1), w + g * Og * Cg, Cg, x + (n * C + g * Cg) * HW, HW, T(0),
                      y + (n * O + g * Og) * L, L);
    if (b) {
#pragma omp parallel for collapse(2) schedule(static) if (N * O * L > kParallelGrain)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < O; ++o) {
          T* yo = y + (n * O + o) * L;
          const T bo = b[o];
          for (int64_t l = 0; l < L; ++l) yo[l] += bo;
        }
    }
    return;
  }
  const int64_t B = chunk_samples(s, sizeof(T)), R = s.rows();
  T* cols = static_cast<T*>(workspace(Device{}, static_cast<size_t>((R + (B > 1 ? O : 0)) * B * L) * sizeof(T)));
  T* tmp = cols + R * B * L;  // (O, nb*L) GEMM output of a chunk, when nb > 1
  double t_i = 0, t_g = 0, t_r = 0;  // DEV
  auto now = [] { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count(); };
  for (int64_t n0 = 0; n0 < N; n0 += B) {
    const int64_t nb = std::min(B, N - n0), BL = nb * L;
    double t0 = now();
    cpu::im2col<T>(x + n0 * C * HW, cols, s, nb, L, BL);
    double t1 = now();
    T* out = nb == 1 ? y + n0 * O * L : tmp;
    for (int64_t g = 0; g < G; ++g)
      blas::gemm<T>(false, false, Og, BL, CK, T(1), w + g * Og * CK, CK, cols + g * CK * BL, BL, T(0),
                    out + g * Og * BL, BL);
    double t2 = now();
    t_i += t1 - t0; t_g += t2 - t1;
    struct R { double& r; double t; ~R() { r += (std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count()) - t; } } rr{t_r, now()};
    // (O, nb*L) -> NCHW, adding the bias on the way.
#pragma omp parallel for collapse(2) schedule(static) if (nb * O * L > kParallelGrain)
    for (int64_t n = 0; n < nb; ++n)
      for (int64_t o = 0; o < O; ++o) {
        T* yo = y + ((n0 + n) * O + o) * L;
        const T bo = b ? b[o] : T(0);
        if (nb == 1) {
          if (b)
            for (int64_t l = 0; l < L; ++l) yo[l] += bo;
        } else {
          const T* src = tmp + o * BL + n * L;
          for (int64_t l = 0; l < L; ++l) yo[l] = src[l] + bo;
        }
      }
  }
  if (std::getenv("PYCNN_CONV_PROFILE")) std::fprintf(stderr, "fwd B=%ld im2col %.3f gemm %.3f reorder %.3f\n", (long)B, t_i, t_g, t_r);
}

template <class T>
void conv2d_backward(const T* dy, const T* x, const T* w, T* dx, T* dw, T* db, const Conv2dShape& s) {
  const int64_t N = s.N, C = s.C, O = s.O, L = s.L, G = s.groups, Og = s.Og, Cg = s.Cg, CK = s.CK;
  const int64_t HW = s.H * s.W;
  if (db) {  // db[o] = sum over n, then l, of dy[n, o, l]
#pragma omp parallel for schedule(static) if (N * O * L > kParallelGrain)
    for (int64_t o = 0; o < O; ++o) {
      FixedSum<T> acc;
      for (int64_t n = 0; n < N; ++n) acc.add(dy + (n * O + o) * L, L);
      db[o] = acc.total();
    }
  }
  if (!dx && !dw) return;
  if (N == 0) {
    if (dw) std::fill(dw, dw + O * CK, T(0));
    return;
  }
  if (s.pointwise()) {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t g = 0; g < G; ++g) {
        const T* dyg = dy + (n * O + g * Og) * L;
        if (dw)
          blas::gemm<T>(false, true, Og, Cg, L, T(1), dyg, L, x + (n * C + g * Cg) * HW, HW, n == 0 ? T(0) : T(1),
                        dw + g * Og * Cg, Cg);
        if (dx)
          blas::gemm<T>(true, false, Cg, L, Og, T(1), w + g * Og * Cg, Cg, dyg, L, T(0), dx + (n * C + g * Cg) * HW,
                        HW);
      }
    return;
  }
  const int64_t B = chunk_samples(s, sizeof(T)), R = s.rows();
  // cols: the chunk's column matrix for dW, then overwritten by dcols = W^T @ dY for dX.
  T* cols = static_cast<T*>(workspace(Device{}, static_cast<size_t>((R + (B > 1 ? O : 0)) * B * L) * sizeof(T)));
  T* tmp = cols + R * B * L;
  for (int64_t n0 = 0; n0 < N; n0 += B) {
    const int64_t nb = std::min(B, N - n0), BL = nb * L;
    const T* dyc = dy + n0 * O * L;  // (O, nb*L) view of the chunk's gradient
    if (nb > 1) {
#pragma omp parallel for collapse(2) schedule(static) if (nb * O * L > kParallelGrain)
      for (int64_t n = 0; n < nb; ++n)
        for (int64_t o = 0; o < O; ++o) std::memcpy(tmp + o * BL + n * L, dyc + (n * O + o) * L, L * sizeof(T));
      dyc = tmp;
    }
    if (dw) {
      cpu::im2col<T>(x + n0 * C * HW, cols, s, nb, L, BL);
      for (int64_t g = 0; g < G; ++g)
        blas::gemm<T>(false, true, Og, CK, BL, T(1), dyc + g * Og * BL, BL, cols + g * CK * BL, BL,
                      n0 == 0 ? T(0) : T(1), dw + g * Og * CK, CK);
    }
    if (dx) {
      for (int64_t g = 0; g < G; ++g)
        blas::gemm<T>(true, false, CK, BL, Og, T(1), w + g * Og * CK, CK, dyc + g * Og * BL, BL, T(0),
                      cols + g * CK * BL, BL);
      cpu::col2im<T>(cols, dx + n0 * C * HW, s, nb, L, BL);
    }
  }
}

#define PYCNN_INSTANTIATE(T)                                                                              \
  template void im2col<T>(const T*, T*, const Conv2dShape&, int64_t, int64_t, int64_t);                  \
  template void col2im<T>(const T*, T*, const Conv2dShape&, int64_t, int64_t, int64_t);                  \
  template void conv2d_forward<T>(const T*, const T*, const T*, T*, const Conv2dShape&);                  \
  template void conv2d_backward<T>(const T*, const T*, const T*, T*, T*, T*, const Conv2dShape&);
PYCNN_INSTANTIATE(float)
PYCNN_INSTANTIATE(double)
#undef PYCNN_INSTANTIATE

}  // namespace cpu
}  // namespace pycnn
