#include "elementwise.h"

#include <array>
#include <vector>

#define PYCNN_COMMA ,  // a template argument list inside PYCNN_ON_DEVICE

namespace pycnn {

namespace {
int category(DType t) { return t == DType::Bool ? 0 : t == DType::Int64 ? 1 : 2; }
bool is_float(DType t) { return category(t) == 2; }
DType default_of(int cat) { return cat == 0 ? DType::Bool : cat == 1 ? DType::Int64 : DType::Float32; }

// The dtype an op computes in, from the promoted dtype of its operands.
DType compute_dtype(DType promoted, BinaryOp op) {
  if (op == BinaryOp::Div && !is_float(promoted)) return DType::Float32;  // true division, as torch
  if (op == BinaryOp::Pow && promoted == DType::Bool) return DType::Int64;
  return promoted;
}

// The dtype rules of torch that are not promotion: a_bool / b_bool say which operand is bool.
void check_op_dtype(DType ct, BinaryOp op, bool a_bool, bool b_bool) {
  const bool bitwise = op == BinaryOp::And || op == BinaryOp::Or || op == BinaryOp::Xor;
  PYCNN_CHECK(!bitwise || !is_float(ct), TypeError, binary_name(op), ": expected bool or int64 tensors, got ",
              dtype_name(ct), " (bitwise ops are not defined for floating point)");
  PYCNN_CHECK(!(op == BinaryOp::Sub && (a_bool || b_bool)), TypeError,
              "sub: subtraction with a bool operand is not supported; to invert a mask use ~ (logical_not)");
  PYCNN_CHECK(!(op == BinaryOp::Pow && a_bool && b_bool), TypeError, "pow: a bool raised to a bool is not supported");
  PYCNN_CHECK(!((op == BinaryOp::FloorDiv || op == BinaryOp::Remainder) && ct == DType::Bool), TypeError,
              binary_name(op), ": not supported for two bool operands; convert one with .long()");
}

// An integer raised to a negative integer is not an integer (torch refuses it too).
void check_int_pow(DType ct, BinaryOp op, double s, bool scalar_first) {
  PYCNN_CHECK(!(op == BinaryOp::Pow && !scalar_first && !is_float(ct) && s < 0), ValueError,
              "pow: an integer tensor raised to the negative power ", s,
              " is not an integer; convert it with .float()");
}

// Strides of t over the broadcast shape (0 along broadcast dims).
Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  Shape st(shape.size(), 0);
  const int64_t lead = static_cast<int64_t>(shape.size()) - t.dim();
  for (int64_t i = 0; i < t.dim(); ++i) st[lead + i] = t.size(i) == 1 ? 0 : t.strides()[i];
  return st;
}

// Drops size-1 dims and merges neighbours that are contiguous for every operand.
Strided make_strided(const Shape& shape, const std::array<Shape, 3>& st, const char* op) {
  std::vector<int64_t> size;
  std::vector<std::array<int64_t, 3>> stride;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {  // innermost first
    if (shape[d] == 1) continue;
    const std::array<int64_t, 3> s{st[0][d], st[1][d], st[2][d]};
    if (!size.empty()) {
      const auto& in = stride.back();
      const int64_t n = size.back();
      if (s[0] == in[0] * n && s[1] == in[1] * n && s[2] == in[2] * n) {
        size.back() *= shape[d];
        continue;
      }
    }
    size.push_back(shape[d]);
    stride.push_back(s);
  }
  PYCNN_CHECK(size.size() <= static_cast<size_t>(kMaxDims), ValueError, op, ": a strided layout of shape ",
              shape_str(shape), " has more than ", kMaxDims, " dims that cannot be merged; call .contiguous() first");
  Strided L;
  L.nd = static_cast<int>(size.size());
  for (int i = 0; i < L.nd; ++i) {
    const size_t k = size.size() - 1 - i;  // back to outermost first
    L.size[i] = size[k];
    for (int j = 0; j < 3; ++j) L.stride[j][i] = stride[k][j];
  }
  return L;
}

// An in-place destination must not write one memory location twice.
void check_writable(const Tensor& t, const char* op) {
  for (int64_t i = 0; i < t.dim(); ++i)
    PYCNN_CHECK(t.strides()[i] != 0 || t.size(i) <= 1, ValueError, op,
                ": the destination of shape ", shape_str(t.shape()),
                " is an expanded view (several elements share one memory location); clone() it first");
}

// src read while dst is written: a copy when it overlaps dst with another layout (x += x.T).
Tensor unaliased(const Tensor& src, const Tensor& dst) {
  const bool same_layout = src.offset() == dst.offset() && src.shape() == dst.shape() && src.strides() == dst.strides();
  return src.storage() == dst.storage() && !same_layout ? src.clone() : src;
}

// True when `src` broadcasts to exactly `dst` (the in-place and copy rule).
bool broadcasts_to(const Shape& src, const Shape& dst) {
  if (src.size() > dst.size()) return false;
  const size_t lead = dst.size() - src.size();
  for (size_t i = 0; i < src.size(); ++i)
    if (src[i] != 1 && src[i] != dst[lead + i]) return false;
  return true;
}

Tensor cast_to(const Tensor& t, DType dt) { return t.dtype() == dt ? t : t.to_dtype(dt); }

// out = a op b over out's shape; a / b null: the scalar sa / sb. a, b already of dtype ct.
void run_binary(const Tensor& out, const Tensor* a, double sa, const Tensor* b, double sb, DType ct, BinaryOp op) {
  const Shape& shape = out.shape();
  const Shape zero(shape.size(), 0);
  const Strided L = make_strided(shape, {out.strides(), a ? broadcast_strides(*a, shape) : zero,
                                         b ? broadcast_strides(*b, shape) : zero}, binary_name(op));
  if (out.numel() == 0) return;
  dispatch_any(ct, [&](auto t) {
    using T = decltype(t);
    const Operand<T> oa{a ? a->data<T>() : nullptr, static_cast<T>(sa)};
    const Operand<T> ob{b ? b->data<T>() : nullptr, static_cast<T>(sb)};
    PYCNN_ON_DEVICE(out.device(), binary<T>, op, L, out.raw(), oa, ob, out.numel());
  });
}

void run_unary(const Tensor& out, const Tensor& x, UnaryOp op, UnaryParams p) {
  const Strided L = make_strided(out.shape(), {out.strides(), x.strides(), Shape(x.dim(), 0)}, unary_name(op));
  if (out.numel() == 0) return;
  dispatch_any(out.dtype(), [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(out.device(), unary<T>, op, L, out.data<T>(), x.data<T>(), p, out.numel());
  });
}

DType unary_compute_dtype(const Tensor& x, UnaryOp op) {
  const char* name = unary_name(op);
  const DType t = x.dtype();
  PYCNN_CHECK(!(op == UnaryOp::Neg && t == DType::Bool), TypeError,
              "neg: negating a bool tensor is not supported; use ~ (logical_not) to invert a mask");
  PYCNN_CHECK(!((op == UnaryOp::Abs || op == UnaryOp::Clamp) && t == DType::Bool), TypeError, name,
              ": not supported for bool tensors");
  PYCNN_CHECK(op != UnaryOp::Not || !is_float(t), TypeError, name, ": expected a bool or int64 tensor, got ",
              dtype_name(t));
  const bool floating = op == UnaryOp::Exp || op == UnaryOp::Log || op == UnaryOp::Sqrt;
  return floating && !is_float(t) ? DType::Float32 : t;
}
}  // namespace

const char* binary_name(BinaryOp op) {
  static const char* names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum", "floor_divide", "remainder",
                                "eq", "ne", "lt", "le", "gt", "ge", "bitwise_and", "bitwise_or", "bitwise_xor",
                                "copy"};
  return names[static_cast<int>(op)];
}

const char* unary_name(UnaryOp op) {
  static const char* names[] = {"neg", "abs", "exp", "log", "sqrt", "clamp", "bitwise_not"};
  return names[static_cast<int>(op)];
}

DType result_type(const Tensor& a, const Tensor& b) {
  const int ca = category(a.dtype()), cb = category(b.dtype());
  // A 0-d tensor only decides the dtype when it raises the category (as torch).
  const bool a_dims = a.dim() > 0, b_dims = b.dim() > 0;
  if (a_dims != b_dims) {
    const Tensor& full = a_dims ? a : b;
    const Tensor& zero = a_dims ? b : a;
    return category(zero.dtype()) > category(full.dtype()) ? zero.dtype() : full.dtype();
  }
  if (ca != cb) return ca > cb ? a.dtype() : b.dtype();
  if (ca == 2) return a.dtype() == DType::Float64 || b.dtype() == DType::Float64 ? DType::Float64 : DType::Float32;
  return a.dtype();
}

DType result_type(const Tensor& a, ScalarKind s) {
  const int cs = static_cast<int>(s);
  return cs > category(a.dtype()) ? default_of(cs) : a.dtype();
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    PYCNN_CHECK(da == db || da == 1 || db == 1, ValueError, op, ": shapes ", shape_str(a), " and ", shape_str(b),
                " cannot be broadcast together (dim ", static_cast<int64_t>(i) - static_cast<int64_t>(n), ": ", da,
                " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

DType check_binary(const Tensor& a, const Tensor& b, BinaryOp op) {
  const char* name = binary_name(op);
  check_defined(a, name, "self");
  check_defined(b, name, "other");
  check_same_device(a, b, name, "self", "other");
  broadcast_shapes(a.shape(), b.shape(), name);
  const DType ct = compute_dtype(result_type(a, b), op);
  check_op_dtype(ct, op, a.dtype() == DType::Bool, b.dtype() == DType::Bool);
  return ct;
}

Tensor binary(const Tensor& a_, const Tensor& b_, BinaryOp op) {
  const DType ct = check_binary(a_, b_, op);
  const Tensor a = cast_to(a_, ct), b = cast_to(b_, ct);
  Tensor out = Tensor::empty(broadcast_shapes(a.shape(), b.shape(), binary_name(op)),
                             is_comparison(op) ? DType::Bool : ct, a.device());
  run_binary(out, &a, 0, &b, 0, ct, op);
  return out;
}

Tensor binary_scalar(const Tensor& a_, double s, ScalarKind kind, BinaryOp op, bool scalar_first) {
  check_defined(a_, binary_name(op), "self");
  const DType ct = compute_dtype(result_type(a_, kind), op);
  check_op_dtype(ct, op, a_.dtype() == DType::Bool, kind == ScalarKind::Bool);
  check_int_pow(ct, op, s, scalar_first);
  const Tensor a = cast_to(a_, ct);
  Tensor out = Tensor::empty(a.shape(), is_comparison(op) ? DType::Bool : ct, a.device());
  if (scalar_first) run_binary(out, nullptr, s, &a, 0, ct, op);
  else run_binary(out, &a, 0, nullptr, s, ct, op);
  return out;
}

void binary_(const Tensor& a, const Tensor& b_, BinaryOp op) {
  const char* name = binary_name(op);
  check_defined(a, name, "self");
  check_defined(b_, name, "other");
  PYCNN_CHECK(broadcasts_to(b_.shape(), a.shape()), ValueError, name, "_: other of shape ", shape_str(b_.shape()),
              " cannot be broadcast to the shape ", shape_str(a.shape()), " of self (it is updated in place)");
  const DType ct = check_binary(a, b_, op);
  const DType result = is_comparison(op) ? DType::Bool : ct;
  PYCNN_CHECK(category(result) <= category(a.dtype()), TypeError, name, "_: the result type ", dtype_name(result),
              " cannot be stored in place in a ", dtype_name(a.dtype()), " tensor");
  check_writable(a, name);
  PYCNN_CHECK(!is_comparison(op) || a.dtype() == DType::Bool, TypeError, name,
              "_: in-place comparison needs a bool tensor");
  const Tensor b = cast_to(unaliased(b_, a), a.dtype());
  run_binary(a, &a, 0, &b, 0, a.dtype(), op);
}

void binary_scalar_(const Tensor& a, double s, ScalarKind kind, BinaryOp op) {
  const char* name = binary_name(op);
  check_defined(a, name, "self");
  const DType ct = compute_dtype(result_type(a, kind), op);
  check_op_dtype(ct, op, a.dtype() == DType::Bool, kind == ScalarKind::Bool);
  check_int_pow(ct, op, s, false);
  PYCNN_CHECK(category(ct) <= category(a.dtype()) && !is_comparison(op), TypeError, name, "_: the result type ",
              dtype_name(is_comparison(op) ? DType::Bool : ct), " cannot be stored in place in a ",
              dtype_name(a.dtype()), " tensor");
  check_writable(a, name);
  run_binary(a, &a, 0, nullptr, s, a.dtype(), op);
}

Tensor unary(const Tensor& x_, UnaryOp op, UnaryParams p) {
  check_defined(x_, unary_name(op), "input");
  const Tensor x = cast_to(x_, unary_compute_dtype(x_, op));
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  run_unary(out, x, op, p);
  return out;
}

void unary_(const Tensor& x, UnaryOp op, UnaryParams p) {
  check_defined(x, unary_name(op), "input");
  PYCNN_CHECK(unary_compute_dtype(x, op) == x.dtype(), TypeError, unary_name(op), "_: the result type float32 cannot "
              "be stored in place in a ", dtype_name(x.dtype()), " tensor");
  check_writable(x, unary_name(op));
  run_unary(x, x, op, p);
}

void copy_into(const Tensor& dst, const Tensor& src_) {
  check_defined(dst, "copy", "destination");
  check_defined(src_, "copy", "source");
  PYCNN_CHECK(broadcasts_to(src_.shape(), dst.shape()), ValueError, "copy: source of shape ",
              shape_str(src_.shape()), " cannot be broadcast to the destination shape ", shape_str(dst.shape()));
  check_writable(dst, "copy");
  Tensor src = src_.device() == dst.device() ? unaliased(src_, dst) : src_.to(dst.device());
  const Shape& shape = dst.shape();
  const Strided L = make_strided(shape, {dst.strides(), broadcast_strides(src, shape), Shape(shape.size(), 0)}, "copy");
  if (dst.numel() == 0) return;
  dispatch_any(src.dtype(), [&](auto f) {
    using From = decltype(f);
    dispatch_any(dst.dtype(), [&](auto t) {
      using To = decltype(t);
      PYCNN_ON_DEVICE(dst.device(), cast<From PYCNN_COMMA To>, L, dst.data<To>(), src.data<From>(), dst.numel());
    });
  });
}

// --------------------------------------------------------------------------------- CPU kernels
namespace cpu {
namespace {

// f(out_offset, a_offset, b_offset) for every element; rows of the innermost dim run in parallel.
template <class F>
void for_each_strided(const Strided& L, int64_t n, F&& f) {
  if (n <= 0) return;
  if (L.nd == 0) {
    f(int64_t(0), int64_t(0), int64_t(0));
    return;
  }
  const int last = L.nd - 1;
  const int64_t inner = L.size[last], s0 = L.stride[0][last], s1 = L.stride[1][last], s2 = L.stride[2][last];
  if (L.nd == 1) {  // one run (often contiguous): split it over the threads
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t j = 0; j < n; ++j) f(j * s0, j * s1, j * s2);
    return;
  }
  const int64_t rows = n / inner;
#pragma omp parallel for if (n > kParallelGrain && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t off[3];
    strided_offsets(L, r * inner, off);
    for (int64_t j = 0; j < inner; ++j) f(off[0] + j * s0, off[1] + j * s1, off[2] + j * s2);
  }
}
}  // namespace

template <class T>
void binary(BinaryOp op, const Strided& L, void* out, Operand<T> a, Operand<T> b, int64_t n) {
  dispatch_binary_op(op, [&](auto c) {
    constexpr BinaryOp Op = decltype(c)::value;
    using Out = std::conditional_t<Op >= BinaryOp::Eq && Op <= BinaryOp::Ge, bool, T>;
    Out* o = static_cast<Out*>(out);
    const bool flat = L.nd == 1 && L.stride[0][0] == 1;
    // contiguous operands and scalars get loops without strides or branches, which vectorise
    if (flat && a.p && b.p && L.stride[1][0] == 1 && L.stride[2][0] == 1) {
      const T *pa = a.p, *pb = b.p;
      for_each_strided(L, n, [&](int64_t i, int64_t, int64_t) { o[i] = binary_value<Op, T>(pa[i], pb[i]); });
    } else if (flat && a.p && !b.p && L.stride[1][0] == 1) {
      const T* pa = a.p;
      const T vb = b.v;
      for_each_strided(L, n, [&](int64_t i, int64_t, int64_t) { o[i] = binary_value<Op, T>(pa[i], vb); });
    } else if (flat && !a.p && b.p && L.stride[2][0] == 1) {
      const T* pb = b.p;
      const T va = a.v;
      for_each_strided(L, n, [&](int64_t i, int64_t, int64_t) { o[i] = binary_value<Op, T>(va, pb[i]); });
    } else {
      for_each_strided(L, n, [&](int64_t io, int64_t ia, int64_t ib) {
        o[io] = binary_value<Op, T>(a.at(ia), b.at(ib));
      });
    }
  });
}

template <class T>
void unary(UnaryOp op, const Strided& L, T* out, const T* x, UnaryParams p, int64_t n) {
  dispatch_unary_op(op, [&](auto c) {
    constexpr UnaryOp Op = decltype(c)::value;
    for_each_strided(L, n, [&](int64_t io, int64_t ix, int64_t) { out[io] = unary_value<Op, T>(x[ix], p); });
  });
}

template <class From, class To>
void cast(const Strided& L, To* out, const From* x, int64_t n) {
  for_each_strided(L, n, [&](int64_t io, int64_t ix, int64_t) { out[io] = static_cast<To>(x[ix]); });
}

PYCNN_INSTANTIATE_ELEMENTWISE_KERNELS
}  // namespace cpu

}  // namespace pycnn
