// Elementwise ops with NumPy/PyTorch broadcasting, one kernel family per arity with an op enum.
//
// Layout: the operands (out, a, b) share one broadcast shape, and each has its own strides over
// it, in elements (0 along a broadcast dim). Views (slices, transposes, expands) are therefore
// read and written where they lie, with no contiguous copy first. The host merges dims that are
// contiguous for every operand (`Strided`), so the common case is one flat loop.
// Dtypes meet at the promoted dtype (`result_type`, torch's rules: bool < int64 < float, a 0-d
// tensor or a Python scalar only raises the category); an operand of another dtype is cast first.
// Every output element is computed independently: results repeat bit for bit.
#pragma once

#include <cmath>
#include <type_traits>

#include "../tensor.h"

namespace pycnn {

enum class BinaryOp : int {
  Add, Sub, Mul, Div, Pow, Maximum, Minimum,  // arithmetic: out dtype = computing dtype
  FloorDiv, Remainder,                        // Python's // and % (floor rounding), int64 stays int64
  Eq, Ne, Lt, Le, Gt, Ge,                     // comparisons: out bool
  And, Or, Xor,                               // bitwise (logical on bool): bool and int64 only
  Second                                      // out = b: fill and copy
};
enum class UnaryOp : int { Neg, Abs, Exp, Log, Sqrt, Clamp, Not };
enum class ScalarKind : int { Bool, Int, Float };  // the Python type of a scalar operand

const char* binary_name(BinaryOp op);
const char* unary_name(UnaryOp op);
inline bool is_comparison(BinaryOp op) { return op >= BinaryOp::Eq && op <= BinaryOp::Ge; }

DType result_type(const Tensor& a, const Tensor& b);
DType result_type(const Tensor& a, ScalarKind s);
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);  // ValueError naming both shapes

// THE check of this op family: defined, same device, broadcastable, the op allowed for the dtype.
// Returns the dtype the op computes in.
DType check_binary(const Tensor& a, const Tensor& b, BinaryOp op);

Tensor binary(const Tensor& a, const Tensor& b, BinaryOp op);
// `s` is a Python scalar of kind `kind`; `scalar_first` computes s op a (as in 2 - t).
Tensor binary_scalar(const Tensor& a, double s, ScalarKind kind, BinaryOp op, bool scalar_first);
// In place: a = a op b, b broadcast to a's shape; the result dtype must be a's dtype (as torch).
void binary_(const Tensor& a, const Tensor& b, BinaryOp op);
void binary_scalar_(const Tensor& a, double s, ScalarKind kind, BinaryOp op);

// Clamp bounds: has_lo / has_hi say which exist.
struct UnaryParams {
  double lo = 0, hi = 0;
  bool has_lo = false, has_hi = false;
};
Tensor unary(const Tensor& x, UnaryOp op, UnaryParams p = {});  // exp/log/sqrt of an integer tensor: float32
void unary_(const Tensor& x, UnaryOp op, UnaryParams p = {});   // in place; x keeps its dtype

// dst[...] = src[...] with src broadcast to dst's shape and cast to dst's dtype; dst may be any
// view (it is written where it lies). The copy behind contiguous(), to_dtype and setitem.
void copy_into(const Tensor& dst, const Tensor& src);

// ---- kernel interface
constexpr int kMaxDims = 16;  // after merging contiguous dims (torch allows 25)
struct Strided {
  int nd = 0;
  int64_t size[kMaxDims];
  int64_t stride[3][kMaxDims];  // [0] out, [1] a, [2] b
};

// Offsets of element i (row-major order over the shape) in each of the three operands.
PYCNN_HD inline void strided_offsets(const Strided& L, int64_t i, int64_t off[3]) {
  off[0] = off[1] = off[2] = 0;
  for (int d = L.nd - 1; d >= 0; --d) {
    const int64_t c = i % L.size[d];
    i /= L.size[d];
    off[0] += c * L.stride[0][d];
    off[1] += c * L.stride[1][d];
    off[2] += c * L.stride[2][d];
  }
}

// A tensor operand, or a scalar when p is null.
template <class T>
struct Operand {
  const T* p;
  T v;
  PYCNN_HD T at(int64_t off) const { return p ? p[off] : v; }
};

#if defined(__CUDA_ARCH__)
#define PYCNN_MATH(f) ::f
#else
#define PYCNN_MATH(f) std::f
#endif

// Python's // and % (the quotient rounds toward -inf, the remainder takes the divisor's sign), as
// torch's div_floor / remainder; an int64 divisor of 0 gives 0 here (the Python layer refuses it).
template <class T>
PYCNN_HD inline T floor_div(T a, T b) {
  if constexpr (std::is_same_v<T, bool>) return T(0);
  else if constexpr (std::is_integral_v<T>) {
    if (b == 0) return T(0);
    if (b == -1) return T(0) - a;  // INT64_MIN / -1 would trap
    const T q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? T(q - 1) : q;
  } else {
    if (b == T(0)) return a / b;
    const T mod = PYCNN_MATH(fmod)(a, b);
    T div = (a - mod) / b;
    if (mod != T(0) && ((b < T(0)) != (mod < T(0)))) div -= T(1);
    if (div == T(0)) return PYCNN_MATH(copysign)(T(0), a / b);
    T fl = PYCNN_MATH(floor)(div);
    if (div - fl > T(0.5)) fl += T(1);
    return fl;
  }
}

template <class T>
PYCNN_HD inline T remainder(T a, T b) {
  if constexpr (std::is_same_v<T, bool>) return T(0);
  else if constexpr (std::is_integral_v<T>) {
    if (b == 0 || b == -1) return T(0);
    const T r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? T(r + b) : r;
  } else {
    T r = PYCNN_MATH(fmod)(a, b);
    if (r != T(0) && ((b < T(0)) != (r < T(0)))) r += b;
    return r;
  }
}

template <class T>
PYCNN_HD inline T int_pow(T a, T e) {
  if (e < 0) return a == 1 ? T(1) : a == -1 ? ((e % 2) ? T(-1) : T(1)) : T(0);
  T r = 1;
  while (e) {
    if (e & 1) r *= a;
    a *= a;
    e >>= 1;
  }
  return r;
}

// The value of one binary op. Ops refused for a dtype by check_binary return T(0) here (never run).
template <BinaryOp Op, class T>
PYCNN_HD inline auto binary_value(T a, T b) {
  constexpr bool integral = std::is_integral_v<T>;
  if constexpr (Op == BinaryOp::Add) return T(a + b);
  else if constexpr (Op == BinaryOp::Sub) return T(a - b);
  else if constexpr (Op == BinaryOp::Mul) return T(a * b);
  else if constexpr (Op == BinaryOp::Div) { if constexpr (integral) return T(0); else return T(a / b); }
  else if constexpr (Op == BinaryOp::Pow) {
    if constexpr (std::is_same_v<T, bool>) return T(0);
    else if constexpr (integral) return int_pow(a, b);
    else return T(PYCNN_MATH(pow)(a, b));
  }
  else if constexpr (Op == BinaryOp::Maximum) return (a != a || a > b) ? a : b;  // NaN wins, as torch
  else if constexpr (Op == BinaryOp::Minimum) return (a != a || a < b) ? a : b;
  else if constexpr (Op == BinaryOp::FloorDiv) return floor_div(a, b);
  else if constexpr (Op == BinaryOp::Remainder) return remainder(a, b);
  else if constexpr (Op == BinaryOp::Eq) return a == b;
  else if constexpr (Op == BinaryOp::Ne) return a != b;
  else if constexpr (Op == BinaryOp::Lt) return a < b;
  else if constexpr (Op == BinaryOp::Le) return a <= b;
  else if constexpr (Op == BinaryOp::Gt) return a > b;
  else if constexpr (Op == BinaryOp::Ge) return a >= b;
  else if constexpr (Op == BinaryOp::And) { if constexpr (integral) return T(a & b); else return T(0); }
  else if constexpr (Op == BinaryOp::Or) { if constexpr (integral) return T(a | b); else return T(0); }
  else if constexpr (Op == BinaryOp::Xor) { if constexpr (integral) return T(a ^ b); else return T(0); }
  else return b;  // Second
}

template <UnaryOp Op, class T>
PYCNN_HD inline T unary_value(T x, const UnaryParams& p) {
  constexpr bool integral = std::is_integral_v<T>;
  if constexpr (Op == UnaryOp::Neg) return T(-x);
  else if constexpr (Op == UnaryOp::Abs) return x < T(0) ? T(-x) : x;
  else if constexpr (Op == UnaryOp::Exp) { if constexpr (integral) return T(0); else return PYCNN_MATH(exp)(x); }
  else if constexpr (Op == UnaryOp::Log) { if constexpr (integral) return T(0); else return PYCNN_MATH(log)(x); }
  else if constexpr (Op == UnaryOp::Sqrt) { if constexpr (integral) return T(0); else return PYCNN_MATH(sqrt)(x); }
  else if constexpr (Op == UnaryOp::Clamp) {
    if (x != x) return x;  // NaN stays NaN, as torch
    if (p.has_lo && x < T(p.lo)) x = T(p.lo);
    if (p.has_hi && x > T(p.hi)) x = T(p.hi);
    return x;
  }
  else if constexpr (std::is_same_v<T, bool>) return !x;  // Not
  else if constexpr (integral) return T(~x);
  else return T(0);
}

// Calls f(std::integral_constant<BinaryOp, op>{}) for the runtime op (one instantiation per op).
template <class F>
void dispatch_binary_op(BinaryOp op, F&& f) {
  using B = BinaryOp;
  switch (op) {
#define PYCNN_CASE(X) case B::X: f(std::integral_constant<B, B::X>{}); return;
    PYCNN_CASE(Add) PYCNN_CASE(Sub) PYCNN_CASE(Mul) PYCNN_CASE(Div) PYCNN_CASE(Pow) PYCNN_CASE(Maximum)
    PYCNN_CASE(Minimum) PYCNN_CASE(FloorDiv) PYCNN_CASE(Remainder) PYCNN_CASE(Eq) PYCNN_CASE(Ne) PYCNN_CASE(Lt)
    PYCNN_CASE(Le) PYCNN_CASE(Gt) PYCNN_CASE(Ge)
    PYCNN_CASE(And) PYCNN_CASE(Or) PYCNN_CASE(Xor) PYCNN_CASE(Second)
#undef PYCNN_CASE
  }
}

template <class F>
void dispatch_unary_op(UnaryOp op, F&& f) {
  using U = UnaryOp;
  switch (op) {
#define PYCNN_CASE(X) case U::X: f(std::integral_constant<U, U::X>{}); return;
    PYCNN_CASE(Neg) PYCNN_CASE(Abs) PYCNN_CASE(Exp) PYCNN_CASE(Log) PYCNN_CASE(Sqrt) PYCNN_CASE(Clamp) PYCNN_CASE(Not)
#undef PYCNN_CASE
  }
}

// Element-type switch over every dtype.
template <class F>
decltype(auto) dispatch_any(DType t, F&& f) {
  if (t == DType::Bool) return f(bool{});
  return dispatch_numeric(t, "internal: unknown dtype ", f);
}

// The kernels, CPU (elementwise.cpp) and CUDA (elementwise.cu) alike, for every dtype (see
// PYCNN_DECLARE_KERNELS in common.h). n = product of L.size; out is bool* for comparisons, T* otherwise.
// cast<From, To> converts between any two dtypes (PYCNN_INSTANTIATE_ELEMENTWISE_KERNELS instantiates all).
#define PYCNN_ELEMENTWISE_KERNELS(X, T)                                                                                \
  X(binary, (BinaryOp op, const Strided& L, void* out, Operand<T> a, Operand<T> b, int64_t n))                         \
  X(unary, (UnaryOp op, const Strided& L, T* out, const T* x, UnaryParams p, int64_t n))
#define PYCNN_DECLARE_ELEMENTWISE_KERNELS                                                                              \
  PYCNN_DECLARE_KERNELS(PYCNN_ELEMENTWISE_KERNELS)                                                                     \
  template <class From, class To> void cast(const Strided& L, To* out, const From* x, int64_t n);
namespace cpu { PYCNN_DECLARE_ELEMENTWISE_KERNELS }  // namespace cpu
namespace cuda { PYCNN_DECLARE_ELEMENTWISE_KERNELS }  // namespace cuda

#define PYCNN_INSTANTIATE_CASTS_FROM_(From)                                                                           \
  template void cast<From, float>(const Strided&, float*, const From*, int64_t);                                       \
  template void cast<From, double>(const Strided&, double*, const From*, int64_t);                                     \
  template void cast<From, int64_t>(const Strided&, int64_t*, const From*, int64_t);                                   \
  template void cast<From, bool>(const Strided&, bool*, const From*, int64_t);
#define PYCNN_INSTANTIATE_ELEMENTWISE_KERNELS                                                                          \
  PYCNN_INSTANTIATE_KERNELS_ANY_DTYPE(PYCNN_ELEMENTWISE_KERNELS)                                                       \
  PYCNN_INSTANTIATE_CASTS_FROM_(float) PYCNN_INSTANTIATE_CASTS_FROM_(double)                                           \
  PYCNN_INSTANTIATE_CASTS_FROM_(int64_t) PYCNN_INSTANTIATE_CASTS_FROM_(bool)

}  // namespace pycnn
