#include "tensor_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "softmax_ce.h"

namespace pycnn {

namespace {
// dispatch_numeric's refusal of bool tensors
constexpr const char* kNumericOnly = "expected a float32, float64 or int64 tensor, got ";

void check_alike(const Tensor& a, const Tensor& b, const char* op, const char* an, const char* bn) {
  check_operands(a, b, op, an, bn);
  PYCNN_CHECK(a.shape() == b.shape(), ValueError, op, ": expected ", bn, " of shape ", shape_str(a.shape()),
              " (the shape of ", an, "), got ", shape_str(b.shape()), "; no broadcasting, reshape first");
}

void check_in_place(const Tensor& t, const char* op, const char* arg) {
  PYCNN_CHECK(t.is_contiguous(), ValueError, op, ": ", arg, " of shape ", shape_str(t.shape()),
              " must be contiguous (it is updated in place)");
}

int64_t normalize_dim(int64_t dim, int64_t rank, const char* op, const Shape& shape) {
  PYCNN_CHECK(rank > 0, ValueError, op,
              ": cannot work along a dim of a 0-dimensional tensor (shape ()); reshape it to (1,)");
  PYCNN_CHECK(dim >= -rank && dim < rank, ValueError, op, ": dim ", dim, " is out of range for a tensor of shape ",
              shape_str(shape), " (expected a dim in [", -rank, ", ", rank - 1, "])");
  return dim < 0 ? dim + rank : dim;
}

// "(4, *, 5)": a shape with the concatenated dim left free
std::string shape_with_free_dim(const Shape& s, int64_t dim) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i)
    r += (i ? ", " : "") + (static_cast<int64_t>(i) == dim ? std::string("*") : std::to_string(s[i]));
  return r + (s.size() == 1 ? ",)" : ")");
}

std::string sizes_str(const std::vector<int64_t>& v) {
  std::string r = "[";
  for (size_t i = 0; i < v.size(); ++i) r += (i ? ", " : "") + std::to_string(v[i]);
  return r + "]";
}

// (outer, inner): products of the sizes before and after `dim`
std::pair<int64_t, int64_t> around(const Shape& s, int64_t dim) {
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < dim; ++i) outer *= s[i];
  for (int64_t i = dim + 1; i < static_cast<int64_t>(s.size()); ++i) inner *= s[i];
  return {outer, inner};
}
}  // namespace

Tensor add(const Tensor& a_, const Tensor& b_) {
  check_alike(a_, b_, "add", "a", "b");
  const Tensor a = a_.contiguous(), b = b_.contiguous();
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  dispatch_numeric(a.dtype(), kNumericOnly, [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(a.device(), add<T>, a.data<T>(), b.data<T>(), out.data<T>(), a.numel());
  });
  return out;
}

void add_(const Tensor& dst, const Tensor& src_, double alpha) {
  check_alike(dst, src_, "add_", "dst", "src");
  check_in_place(dst, "add_", "dst");
  PYCNN_CHECK(dst.dtype() != DType::Int64 || alpha == std::floor(alpha), ValueError,
              "add_: alpha must be a whole number for int64 tensors, got ", alpha);
  const Tensor src = src_.contiguous();
  dispatch_numeric(dst.dtype(), kNumericOnly, [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(dst.device(), add_<T>, dst.data<T>(), src.data<T>(), dst.numel(), static_cast<T>(alpha));
  });
}

void scale_(const Tensor& t_, double s) {
  check_defined(t_, "scale_", "tensor");
  check_in_place(t_, "scale_", "tensor");
  dispatch_float(t_.dtype(), "scale_", [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(t_.device(), scale_<T>, t_.data<T>(), t_.numel(), static_cast<T>(s));
  });
}

Tensor concat(const std::vector<Tensor>& ts, int64_t dim_) {
  const char* op = "concat";
  PYCNN_CHECK(!ts.empty(), ValueError, op, ": expected a non-empty list of tensors");
  for (size_t k = 0; k < ts.size(); ++k) check_defined(ts[k], op, cat("tensors[", k, "]").c_str());
  const Tensor& t0 = ts[0];
  const int64_t dim = normalize_dim(dim_, t0.dim(), op, t0.shape());
  Shape out_shape = t0.shape();
  out_shape[dim] = 0;
  for (size_t k = 0; k < ts.size(); ++k) {
    const Tensor& t = ts[k];
    const std::string arg = cat("tensors[", k, "]");
    check_same_device(t0, t, op, "tensors[0]", arg.c_str());
    check_same_dtype(t0, t, op, "tensors[0]", arg.c_str());
    bool ok = t.dim() == t0.dim();
    for (int64_t i = 0; ok && i < t.dim(); ++i) ok = i == dim || t.size(i) == t0.size(i);
    PYCNN_CHECK(ok, ValueError, op, ": expected ", arg, " of shape ", shape_with_free_dim(t0.shape(), dim),
                " (the shape of tensors[0] ", shape_str(t0.shape()), " in every dim but ", dim, "), got ",
                shape_str(t.shape()));
    out_shape[dim] += t.size(dim);
  }
  Tensor out = Tensor::empty(out_shape, t0.dtype(), t0.device());
  const auto [outer, inner] = around(out_shape, dim);
  const int64_t dst_stride = out_shape[dim] * inner;
  int64_t offset = 0;
  for (const Tensor& t_ : ts) {
    const int64_t cols = t_.size(dim) * inner;
    if (cols > 0 && outer > 0) {
      const Tensor t = t_.contiguous();
      dispatch_numeric(t.dtype(), kNumericOnly, [&](auto tag) {
        using T = decltype(tag);
        PYCNN_ON_DEVICE(t.device(), copy_rows<T>, t.data<T>(), cols, out.data<T>() + offset, dst_stride, outer, cols);
      });
    }
    offset += cols;
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x_, const std::vector<int64_t>& sizes, int64_t dim_) {
  const char* op = "split";
  check_defined(x_, op, "input");
  const int64_t dim = normalize_dim(dim_, x_.dim(), op, x_.shape());
  int64_t total = 0;
  for (size_t k = 0; k < sizes.size(); ++k) {
    PYCNN_CHECK(sizes[k] >= 0, ValueError, op, ": sizes must be >= 0, got ", sizes_str(sizes));
    total += sizes[k];
  }
  PYCNN_CHECK(total == x_.size(dim), ValueError, op, ": sizes ", sizes_str(sizes), " add up to ", total, " but dim ",
              dim, " of the input of shape ", shape_str(x_.shape()), " has size ", x_.size(dim),
              "; the sizes must add up to it");
  const Tensor x = x_.contiguous();
  const auto [outer, inner] = around(x.shape(), dim);
  const int64_t src_stride = x.size(dim) * inner;
  std::vector<Tensor> outs;
  outs.reserve(sizes.size());
  int64_t offset = 0;
  for (int64_t s : sizes) {
    Shape shape = x.shape();
    shape[dim] = s;
    Tensor out = Tensor::empty(shape, x.dtype(), x.device());
    const int64_t cols = s * inner;
    if (cols > 0 && outer > 0) {
      dispatch_numeric(x.dtype(), kNumericOnly, [&](auto tag) {
        using T = decltype(tag);
        PYCNN_ON_DEVICE(x.device(), copy_rows<T>, x.data<T>() + offset, src_stride, out.data<T>(), cols, outer, cols);
      });
    }
    offset += cols;
    outs.push_back(std::move(out));
  }
  return outs;
}

Tensor sum_all(const Tensor& x_) {
  check_defined(x_, "sum_all", "input");
  const Tensor x = x_.contiguous();
  Tensor out = Tensor::empty({}, x.dtype(), x.device());
  dispatch_float(x.dtype(), "sum_all", [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(x.device(), sum_all<T>, x.data<T>(), out.data<T>(), x.numel());
  });
  return out;
}

Tensor count_correct(const Tensor& logits_, const Tensor& labels_) {
  const char* op = "count_correct";
  check_defined(logits_, op, "logits");
  PYCNN_CHECK(logits_.dim() == 2, ValueError, op, ": expected logits of 2 dimensions (N, C), got shape ",
              shape_str(logits_.shape()), "; flatten the other dimensions first (x.reshape(N, -1))");
  check_class_labels(labels_, logits_, op, "logits");
  const Tensor logits = logits_.contiguous(), labels = labels_.contiguous();
  Tensor out = Tensor::zeros({}, DType::Int64, logits.device());
  if (logits.size(0) == 0) return out;
  dispatch_float(logits.dtype(), op, [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(logits.device(), count_correct<T>, logits.data<T>(), labels.data<int64_t>(),
                    out.data<int64_t>(), logits.size(0), logits.size(1));
  });
  return out;
}

bool isfinite_all(const Tensor& x_) {
  check_defined(x_, "isfinite_all", "input");
  if (x_.dtype() == DType::Int64 || x_.numel() == 0) return true;
  const Tensor x = x_.contiguous();
  bool result = true;
  dispatch_float(x.dtype(), "isfinite_all", [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(x.device(), isfinite_all<T>, x.data<T>(), x.numel(), &result);
  });
  return result;
}

Tensor nonfinite_flag(const std::vector<Tensor>& tensors) {
  const char* op = "nonfinite_flag";
  PYCNN_CHECK(!tensors.empty(), ValueError, op, ": expected at least one tensor, got an empty list");
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].defined() && tensors[i].device() == tensors[0].device()) continue;  // the names only on failure:
    const std::string arg = cat("tensors[", i, "]");                                   // the Trainer calls this every step
    check_defined(tensors[i], op, arg.c_str());
    check_same_device(tensors[0], tensors[i], op, "tensors[0]", arg.c_str());
  }
  Tensor flag = Tensor::zeros({}, DType::Float32, tensors[0].device());
  for (const Tensor& t_ : tensors) {
    if (t_.dtype() == DType::Int64 || t_.numel() == 0) continue;
    const Tensor t = t_.contiguous();
    dispatch_float(t.dtype(), op, [&](auto z) {
      using T = decltype(z);
      PYCNN_ON_DEVICE(t.device(), mark_nonfinite<T>, t.data<T>(), t.numel(), flag.data<float>());
    });
  }
  return flag;
}

void keep_or_undo_(const std::vector<Tensor>& tensors, const std::vector<Tensor>& backups, const Tensor& found_inf) {
  const char* op = "keep_or_undo_";
  PYCNN_CHECK(tensors.size() == backups.size(), ValueError, op, ": expected one backup per tensor, got ",
              backups.size(), " backups for ", tensors.size(), " tensors");
  check_defined(found_inf, op, "found_inf");
  PYCNN_CHECK(found_inf.dtype() == DType::Float32 && found_inf.numel() == 1, ValueError, op,
              ": expected found_inf a one-element float32 tensor (from nonfinite_flag), got dtype ",
              dtype_name(found_inf.dtype()), " and shape ", shape_str(found_inf.shape()));
  for (size_t i = 0; i < tensors.size(); ++i) {  // everything checked before anything is written
    const std::string tn = cat("tensors[", i, "]"), bn = cat("backups[", i, "]");
    check_alike(tensors[i], backups[i], op, tn.c_str(), bn.c_str());
    check_same_device(found_inf, tensors[i], op, "found_inf", tn.c_str());
    check_in_place(tensors[i], op, tn.c_str());
    check_in_place(backups[i], op, bn.c_str());
  }
  const Tensor flag_t = found_inf.contiguous();
  const float* flag = flag_t.data<float>();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    dispatch_numeric(t.dtype(), kNumericOnly, [&](auto z) {
      using T = decltype(z);
      PYCNN_ON_DEVICE(t.device(), keep_or_undo<T>, t.data<T>(), backups[i].data<T>(), t.numel(), flag);
    });
  }
}

namespace cpu {

template <class T>
void add(const T* a, const T* b, T* out, int64_t n) {
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template <class T>
void add_(T* dst, const T* src, int64_t n, T alpha) {
  if (alpha == T(1)) {
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
  } else {
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) dst[i] += alpha * src[i];
  }
}

template <class T>
void scale_(T* t, int64_t n, T s) {
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) t[i] *= s;
}

template <class T>
void copy_rows(const T* src, int64_t src_stride, T* dst, int64_t dst_stride, int64_t rows, int64_t cols) {
#pragma omp parallel for if (rows * cols > kParallelGrain && rows > 1)
  for (int64_t r = 0; r < rows; ++r) std::copy(src + r * src_stride, src + r * src_stride + cols, dst + r * dst_stride);
}

template <class T>
void sum_all(const T* x, T* out, int64_t n) {
  out[0] = static_cast<T>(fixed_block_sum(n, [&](int64_t i) { return static_cast<double>(x[i]); }));
}

template <class T>
void count_correct(const T* logits, const int64_t* labels, int64_t* out, int64_t n, int64_t c) {
  int64_t count = 0;  // an integer sum: exact in any order
#pragma omp parallel for reduction(+ : count) if (n * c > kParallelGrain)
  for (int64_t r = 0; r < n; ++r) {
    const T* row = logits + r * c;
    int64_t best = 0;
    for (int64_t j = 1; j < c; ++j)  // first maximum; a NaN counts as the maximum, as in torch.argmax
      if (row[j] > row[best] || (std::isnan(row[j]) && !std::isnan(row[best]))) best = j;
    count += best == labels[r] ? 1 : 0;
  }
  out[0] = count;
}

// Whether any of x[0, n) is NaN/Inf: all exponent bits set. Integer ops only, so the loop
// vectorises (std::isfinite did not: 1.5 ns per element, the Trainer checks every gradient).
// A double's exponent lies in its upper 32 bits: tested there, the loop stays in 32-bit lanes.
template <class T>
[[gnu::always_inline]] inline bool any_nonfinite_impl(const T* x, int64_t n) {
  constexpr uint32_t kExp = sizeof(T) == 4 ? 0x7f800000u : 0x7ff00000u;
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t> bits;
    std::memcpy(&bits, x + i, sizeof bits);
    const uint32_t word = static_cast<uint32_t>(bits >> (8 * sizeof(T) - 32));
    bad |= uint32_t((word & kExp) == kExp);
  }
  return bad != 0;
}
PYCNN_SIMD_CLONES bool any_nonfinite(const float* x, int64_t n) { return any_nonfinite_impl(x, n); }
PYCNN_SIMD_CLONES bool any_nonfinite(const double* x, int64_t n) { return any_nonfinite_impl(x, n); }

template <class T>
void isfinite_all(const T* x, int64_t n, bool* result) {
  constexpr int64_t kGrain = 1 << 20;  // a memory-bound pass: threads pay off on large tensors only
  if (n <= kSumBlock) {  // one block (most gradients): no scratch
    *result = !any_nonfinite(x, n);
    return;
  }
  const int64_t nb = (n + kSumBlock - 1) / kSumBlock;
  std::vector<char> bad(static_cast<size_t>(nb));
#pragma omp parallel for if (n > kGrain)
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t lo = b * kSumBlock;
    bad[b] = any_nonfinite(x + lo, std::min(n, lo + kSumBlock) - lo);
  }
  *result = std::none_of(bad.begin(), bad.end(), [](char v) { return v != 0; });
}

template <class T>
void mark_nonfinite(const T* x, int64_t n, float* flag) {
  bool finite = true;
  isfinite_all(x, n, &finite);
  if (!finite) *flag = 1.0f;
}

template <class T>
void keep_or_undo(T* t, T* backup, int64_t n, const float* flag) {
  if (*flag != 0.0f)
    std::copy(backup, backup + n, t);
  else
    std::copy(t, t + n, backup);
}

PYCNN_INSTANTIATE_KERNELS_WITH_INT64(PYCNN_TENSOR_OPS_KERNELS_WITH_INT64)
PYCNN_INSTANTIATE_KERNELS(PYCNN_TENSOR_OPS_KERNELS_FLOAT)

}  // namespace cpu
}  // namespace pycnn
