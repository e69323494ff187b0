#include "conv2d.h"

#include <algorithm>
#include <cstring>

#include "../blas.h"
#include "../workspace.h"
#include "conv2d_channels.h"
#include "conv2d_direct.h"
#include "conv2d_samples.h"
#include "conv2d_winograd.h"


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
              ": stride must be at least 1 and at most ", kMaxParam - 1, " in both dimensions, got ", pair_str(st), " (", ctx, ")");
  PYCNN_CHECK(dl[0] >= 1 && dl[1] >= 1 && dl[0] < kMaxParam && dl[1] < kMaxParam, ValueError, op,
              ": dilation must be at least 1 and at most ", kMaxParam - 1, " in both dimensions, got ", pair_str(dl), " (", ctx, ")");
  for (int k = 0; k < 4; ++k)
    PYCNN_CHECK(pd[k] >= 0 && pd[k] < kMaxParam, ValueError, op,
                ": padding must be at least 0 and at most ", kMaxParam - 1, " on every side, got (top, bottom, left, right) = (", pd[0], ", ", pd[1],
                ", ", pd[2], ", ", pd[3], ") (", ctx, ")");
  PYCNN_CHECK(p.groups >= 1, ValueError, op, ": groups must be >= 1, got ", p.groups, " (", ctx, ")");
  const int64_t N = x[0], C = x[1], H = x[2], W = x[3];
  PYCNN_CHECK(C >= 1 && H >= 1 && W >= 1, ValueError, op, ": the input needs at least one channel, row and column, got ",
              shape_str(x), " (", ctx, ")");
  PYCNN_CHECK(kh >= 1 && kw >= 1 && kh < kMaxParam && kw < kMaxParam, ValueError, op,
              ": the kernel must be at least 1x1 and at most ", kMaxParam - 1, " on a side, got ", kh, "x", kw, " (", ctx, ")");
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
  // Every factor is below 2**31, so each product of two is exact; larger products are checked.
  s.CK = s.Cg * kh * kw;
  PYCNN_CHECK(!__builtin_mul_overflow(s.OH, s.OW, &s.L) && s.L <= (int64_t(1) << 40) / std::max<int64_t>(N, 1),
              OutOfMemory, op, ": an output of shape ", shape_str({N, O, s.OH, s.OW}), " is too large to compute (",
              ctx, ")");
  return s;
}

Conv2dShape conv2d_shape(const Tensor& x, const Tensor& w, const Tensor* b, const Conv2dParams& p, const char* op) {
  check_defined(x, op, "input");
  check_defined(w, op, "weight");
  const std::string xs = shape_str(x.shape()), ws = shape_str(w.shape());
  PYCNN_CHECK(is_float(x.dtype()), TypeError, op, ": expected a float32 or float64 input, got an ",
              dtype_name(x.dtype()), " input of shape ", xs, "; convert it with x.to(pycnn.float32)");
  check_same_dtype(x, w, op, cat("input ", xs).c_str(), cat("weight ", ws).c_str());
  if (b) check_same_dtype(x, *b, op, cat("input ", xs).c_str(), cat("bias ", shape_str(b->shape())).c_str());
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
//
// Schedule. The batch is cut into items of `nb` consecutive samples (nb is a function of the
// shape only: 1 for most layers, a few when one sample has few output positions, so that a GEMM
// still gets enough columns; always 1 for 1x1 stride-1 unpadded convs, which skip im2col). One
// OpenMP loop runs over the items; each thread unfolds its item into its own slice of the
// workspace (column matrix (R, nb*L)), runs the item's GEMMs (one per group, on that thread:
// blas::gemm only splits a GEMM over threads outside a parallel region) and writes its samples
// of the output. So a call has a single parallel region and no hand-over between threads at
// every step (with 2 cores, such hand-overs cost more than a LeNet layer's whole run). With a
// single item (a batch of one) the unfolding and the GEMMs parallelise inside instead.
// Reductions (dW, db) add in an order fixed by the shape, never by the threads: results repeat
// bit for bit, and do not depend on the thread count.
namespace cpu {
namespace {

constexpr size_t kMaxWorkspace = size_t(64) << 20;  // scratch bytes one call aims to stay within
constexpr int64_t kChunkBytes = int64_t(1) << 20;   // an item's column matrix: about the L2 cache
constexpr int64_t kTargetColumns = 512;             // GEMM width nb*L worth batching samples for
constexpr int64_t kMinItems = 16;                   // keep at least this many items for load balance
constexpr int64_t kMaxBlocks = 16;                  // dW partial sums (see backward)
// From ~2M multiply-adds (LeNet's layers at batch 32 and up): LeNet conv1's fwd+bwd at b64 (several
// parallel regions an op) 0.91-1.0 -> 0.67-0.79 ms with its caller kept put, and no cost measured on a
// 2.4M-MAC forward (80-100 us either way; the VM's noise is larger than the pin's two system calls).
constexpr int64_t kPinCallerMacs = int64_t(1) << 21;

// How the batch is cut and how many threads work on it.
struct Plan {
  int64_t nb;       // samples per item
  int64_t items;    // ceil(N / nb)
  int64_t cols;     // scratch elements per thread: column matrix (R, nb*L)
  int64_t tmp;      // scratch elements per thread: (O, nb*L) GEMM output / reordered gradient, nb > 1
  bool direct;      // 1x1, stride 1, unpadded: x[n] is the column matrix (nb == 1)
  int threads;      // OpenMP threads over the items
};

Plan make_plan(const Conv2dShape& s, size_t es) {
  Plan p{};
  const int64_t R = s.rows(), L = s.L, N = std::max<int64_t>(s.N, 1);
  const int64_t by_cols = (kTargetColumns + L - 1) / L;
  const int64_t by_bytes = kChunkBytes / std::max<int64_t>(R * L * static_cast<int64_t>(es), 1);
  const int64_t by_items = std::max<int64_t>(1, N / kMinItems);
  p.direct = s.pointwise();  // no unfolding at all: one sample per item, x[n] is its column matrix
  p.nb = p.direct ? 1 : std::clamp<int64_t>(std::min({by_cols, by_bytes, by_items}), 1, N);
  p.items = (N + p.nb - 1) / p.nb;
  p.cols = p.direct ? 0 : R * p.nb * L;
  p.tmp = p.nb > 1 ? s.O * p.nb * L : 0;
  const int64_t per_thread = (p.cols + p.tmp) * static_cast<int64_t>(es);
  const int64_t fit = static_cast<int64_t>(kMaxWorkspace) / std::max<int64_t>(per_thread, 1);
  const int64_t work = s.N * (R + s.O) * L;
  p.threads = static_cast<int>(std::clamp<int64_t>(std::min<int64_t>(fit, p.items), 1, num_threads()));
  if (work < kParallelGrain || in_parallel()) p.threads = 1;
  return p;
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

// One input plane xc (H x W) -> its kh*kw rows of the column matrix, row (i, j) at dst + (i*kw + j)*rs.
template <class T>
void im2col_plane(const T* xc, T* dst0, int64_t rs, const Conv2dShape& s) {
  const int64_t H = s.H, W = s.W, kh = s.kh, kw = s.kw, OH = s.OH, OW = s.OW;
  const int64_t sh = s.sh, sw = s.sw, dh = s.dh, dw = s.dw, pt = s.pt, pl = s.pl;
  for (int64_t i = 0; i < kh; ++i) {
    int64_t oh_lo, oh_hi;  // output rows whose input row oh*sh + i*dh - pt is inside the image
    valid_range(i * dh - pt, sh, H, OH, oh_lo, oh_hi);
    for (int64_t j = 0; j < kw; ++j) {
      T* __restrict dst = dst0 + (i * kw + j) * rs;
      const int64_t off = j * dw - pl;  // input column of output column ow: ow*sw + off
      int64_t lo, hi;
      valid_range(off, sw, W, OW, lo, hi);
      for (int64_t k = 0; k < oh_lo * OW; ++k) dst[k] = T(0);
      for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
        T* __restrict d = dst + oh * OW;
        const T* __restrict row = xc + (oh * sh + i * dh - pt) * W;
        for (int64_t ow = 0; ow < lo; ++ow) d[ow] = T(0);
        if (sw == 1) {
          for (int64_t ow = lo; ow < hi; ++ow) d[ow] = row[ow + off];
        } else {
          for (int64_t ow = lo; ow < hi; ++ow) d[ow] = row[ow * sw + off];
        }
        for (int64_t ow = hi; ow < OW; ++ow) d[ow] = T(0);
      }
      for (int64_t k = oh_hi * OW; k < OH * OW; ++k) dst[k] = T(0);
    }
  }
}

// The adjoint for one plane, as a gather: the plane is owned by the calling thread; the offsets
// (i, j) are visited in row-major order and, for one offset, each input element is read by at
// most one output position. So every element ends as 0 + its column entries in (i, j) order
// (exactly what a one-thread-per-element gather computes), done a row at a time to vectorise.
template <class T>
void col2im_plane(const T* src0, int64_t rs, T* xc, const Conv2dShape& s) {
  const int64_t H = s.H, W = s.W, kh = s.kh, kw = s.kw, OH = s.OH, OW = s.OW;
  const int64_t sh = s.sh, sw = s.sw, dh = s.dh, dw = s.dw, pt = s.pt, pl = s.pl;
  for (int64_t k = 0; k < H * W; ++k) xc[k] = T(0);
  for (int64_t i = 0; i < kh; ++i) {
    int64_t oh_lo, oh_hi;
    valid_range(i * dh - pt, sh, H, OH, oh_lo, oh_hi);
    for (int64_t j = 0; j < kw; ++j) {
      const T* src = src0 + (i * kw + j) * rs;
      const int64_t off = j * dw - pl;
      int64_t lo, hi;
      valid_range(off, sw, W, OW, lo, hi);
      for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
        T* __restrict row = xc + (oh * sh + i * dh - pt) * W;
        const T* __restrict sr = src + oh * OW;
        if (sw == 1) {
          for (int64_t ow = lo; ow < hi; ++ow) row[ow + off] += sr[ow];
        } else if (sw == 2 && hi > lo) {  // within the plane: its last element is xc[H*W - 1]
          direct::add_to_even_columns(row + lo * 2 + off, sr + lo, hi - lo, xc + H * W - (row + lo * 2 + off));
        } else {
          for (int64_t ow = lo; ow < hi; ++ow) row[ow * sw + off] += sr[ow];
        }
      }
    }
  }
}

}  // namespace

// Both run their own OpenMP loop over (sample, channel) planes unless already inside a parallel
// region (then on the calling thread).
template <class T>
void im2col(const T* x, T* cols, const Conv2dShape& s, int64_t nb, int64_t ss, int64_t rs) {
  const int64_t C = s.C, HW = s.H * s.W, KK = s.kh * s.kw;
#pragma omp parallel for collapse(2) schedule(static) if (nb * s.rows() * s.L > kParallelGrain && !in_parallel())
  for (int64_t n = 0; n < nb; ++n)
    for (int64_t c = 0; c < C; ++c) im2col_plane(x + (n * C + c) * HW, cols + n * ss + c * KK * rs, rs, s);
}

template <class T>
void col2im(const T* cols, T* dx, const Conv2dShape& s, int64_t nb, int64_t ss, int64_t rs) {
  const int64_t C = s.C, HW = s.H * s.W, KK = s.kh * s.kw;
#pragma omp parallel for collapse(2) schedule(static) if (nb * s.rows() * s.L > kParallelGrain && !in_parallel())
  for (int64_t n = 0; n < nb; ++n)
    for (int64_t c = 0; c < C; ++c) col2im_plane(cols + n * ss + c * KK * rs, rs, dx + (n * C + c) * HW, s);
}

namespace {
// Long enough (multiply-adds) that keeping the caller on its CPU pays (CallerStaysPut).
bool heavy(const Conv2dShape& s) { return s.N * s.O * s.L * s.CK >= kPinCallerMacs; }
}  // namespace

template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, const Conv2dShape& s) {
  const int64_t N = s.N, C = s.C, O = s.O, L = s.L, G = s.groups, Og = s.Og, CK = s.CK;
  const int64_t HW = s.H * s.W;
  if (N == 0) return;
  const CallerStaysPut stay(heavy(s));
  if (samples::applies_forward(s)) return samples::conv2d_forward(x, w, b, y, s);  // few taps, a full batch
  if (direct::applies(s)) return direct::conv2d_forward(x, w, b, y, s);      // few taps: LeNet's layers
  if (winograd::applies(s)) return winograd::conv2d_forward(x, w, b, y, s);  // fast path: 3x3 stride 1
  if (channels::applies_forward(s)) return channels::conv2d_forward(x, w, b, y, s);  // many taps and channels
  const Plan p = make_plan(s, sizeof(T));
  T* ws = static_cast<T*>(workspace(Device{}, static_cast<size_t>(p.threads * (p.cols + p.tmp)) * sizeof(T)));
#pragma omp parallel for schedule(static) num_threads(p.threads) if (p.threads > 1)
  for (int64_t it = 0; it < p.items; ++it) {
    const int64_t n0 = it * p.nb, m = std::min(p.nb, N - n0), BL = m * L;
    T* buf = ws + thread_id() * (p.cols + p.tmp);
    const T* cols = x + n0 * C * HW;  // direct: (C, L) of sample n0
    if (!p.direct) {
      cpu::im2col<T>(x + n0 * C * HW, buf, s, m, L, BL);  // (R, m*L)
      cols = buf;
    }
    T* out = m == 1 ? y + n0 * O * L : buf + p.cols;  // (O, m*L)
    for (int64_t g = 0; g < G; ++g)
      blas::gemm<T>(false, false, Og, BL, CK, T(1), w + g * Og * CK, CK, cols + g * CK * BL, BL, T(0),
                    out + g * Og * BL, BL);
    if (m == 1 && !b) continue;
    for (int64_t n = 0; n < m; ++n)  // (O, m*L) -> NCHW, adding the bias on the way
      for (int64_t o = 0; o < O; ++o) {
        T* __restrict yo = y + ((n0 + n) * O + o) * L;
        const T bo = b ? b[o] : T(0);
        if (m == 1) {
          for (int64_t l = 0; l < L; ++l) yo[l] += bo;
        } else {
          const T* __restrict src = out + o * BL + n * L;
          for (int64_t l = 0; l < L; ++l) yo[l] = src[l] + bo;
        }
      }
  }
}

// dW = sum over samples of dY[n]_g @ cols[n]_g^T. The items are grouped into at most kMaxBlocks
// consecutive blocks (a function of the shape only); one thread runs a block's items in order,
// adding into the block's partial sum, then the partials are added in block order.
template <class T>
void conv2d_backward(const T* dy, const T* x, const T* w, T* dx, T* dw, T* db, const Conv2dShape& s) {
  const int64_t N = s.N, C = s.C, O = s.O, L = s.L, G = s.groups, Og = s.Og, CK = s.CK;
  const int64_t HW = s.H * s.W, WN = O * CK;
  const CallerStaysPut stay(heavy(s));
  if (db) {  // db[o] = sum over n, then l, of dy[n, o, l]
#pragma omp parallel for schedule(static) if (N * O * L > kParallelGrain && !in_parallel())
    for (int64_t o = 0; o < O; ++o) {
      FixedSum<T> acc;
      for (int64_t n = 0; n < N; ++n) acc.add(dy + (n * O + o) * L, L);
      db[o] = acc.total();
    }
  }
  if (dx && N > 0 && winograd::applies_input_grad(s)) {  // fast path: 3x3 stride 1
    winograd::conv2d_input_grad(dy, w, dx, s);
    dx = nullptr;
  }
  if (!dx && !dw) return;
  if (N == 0) {
    if (dw) std::fill(dw, dw + WN, T(0));
    return;
  }
  if (dx && samples::applies_input_grad(s)) {  // few channels, a wide zero border in the gather form
    samples::conv2d_input_grad(dy, w, dx, s);
    dx = nullptr;
  }
  if (dx && direct::applies_input_grad(s) && direct::conv2d_input_grad(dy, w, dx, s)) dx = nullptr;
  if (dw && samples::applies_weight_grad(s)) {  // few taps, a full batch, <= 1024 output positions
    samples::conv2d_weight_grad(dy, x, dw, s);
    dw = nullptr;
  }
  if (dw && winograd::applies_weight_grad(s) && winograd::conv2d_weight_grad(dy, x, dw, s)) dw = nullptr;
  if (dw && channels::applies_weight_grad(s)) {  // many taps and channels: no column matrix
    channels::conv2d_weight_grad(dy, x, dw, s);
    dw = nullptr;
  }
  if (dw && direct::applies_weight_grad(s) && direct::conv2d_weight_grad(dy, x, dw, s)) dw = nullptr;
  if (!dx && !dw) return;
  const Plan p = make_plan(s, sizeof(T));
  // Partial sums: as many blocks as fit in a quarter of the workspace budget (1 = straight into dw).
  const int64_t fit = static_cast<int64_t>(kMaxWorkspace / 4) / std::max<int64_t>(WN * sizeof(T), 1);
  const int64_t want = dw ? std::clamp<int64_t>(std::min<int64_t>(kMaxBlocks, fit), 1, p.items) : p.items;
  const int64_t per_block = (p.items + want - 1) / want, blocks = (p.items + per_block - 1) / per_block;
  const int64_t scratch = p.threads * (p.cols + p.tmp), parts_n = dw && blocks > 1 ? blocks * WN : 0;
  T* ws = static_cast<T*>(workspace(Device{}, static_cast<size_t>(scratch + parts_n) * sizeof(T)));
  T* parts = ws + scratch;
  const int threads = static_cast<int>(std::min<int64_t>(p.threads, blocks));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    T* buf = ws + thread_id() * (p.cols + p.tmp);
    T* part = dw ? (blocks > 1 ? parts + blk * WN : dw) : nullptr;
    const int64_t it_end = std::min(p.items, (blk + 1) * per_block);
    for (int64_t it = blk * per_block; it < it_end; ++it) {
      const int64_t n0 = it * p.nb, m = std::min(p.nb, N - n0), BL = m * L;
      const T* dyc = dy + n0 * O * L;  // (O, m*L)
      if (m > 1) {
        T* t = buf + p.cols;
        for (int64_t n = 0; n < m; ++n)
          for (int64_t o = 0; o < O; ++o) std::memcpy(t + o * BL + n * L, dyc + (n * O + o) * L, L * sizeof(T));
        dyc = t;
      }
      if (dw) {
        const T* cols = x + n0 * C * HW;
        if (!p.direct) {
          cpu::im2col<T>(x + n0 * C * HW, buf, s, m, L, BL);
          cols = buf;
        }
        const T beta = it == blk * per_block ? T(0) : T(1);
        for (int64_t g = 0; g < G; ++g)
          blas::gemm<T>(false, true, Og, CK, BL, T(1), dyc + g * Og * BL, BL, cols + g * CK * BL, BL, beta,
                        part + g * Og * CK, CK);
      }
      if (dx) {
        T* dcols = p.direct ? dx + n0 * C * HW : buf;  // (R, m*L) = W_g^T @ dY_g for every group
        for (int64_t g = 0; g < G; ++g)
          blas::gemm<T>(true, false, CK, BL, Og, T(1), w + g * Og * CK, CK, dyc + g * Og * BL, BL, T(0),
                        dcols + g * CK * BL, BL);
        if (!p.direct) cpu::col2im<T>(buf, dx + n0 * C * HW, s, m, L, BL);
      }
    }
  }
  if (parts_n) {
#pragma omp parallel for schedule(static) if (parts_n > kParallelGrain && !in_parallel())
    for (int64_t e = 0; e < WN; ++e) {
      T acc = parts[e];
      for (int64_t blk = 1; blk < blocks; ++blk) acc += parts[blk * WN + e];
      dw[e] = acc;
    }
  }
}

PYCNN_INSTANTIATE_KERNELS(PYCNN_CONV2D_KERNELS)

}  // namespace cpu
}  // namespace pycnn
