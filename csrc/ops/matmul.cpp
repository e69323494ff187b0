#include "matmul.h"

#include <algorithm>

#include "../blas.h"

namespace pycnn {

namespace {
// t (batch, rows, cols): itself when row-major or a transposed view of a row-major matrix per
// batch, else a contiguous copy.
std::pair<Tensor, GemmOperand> gemm_operand(const Tensor& t) {
  const int64_t rows = t.size(1), cols = t.size(2);
  const Shape& s = t.strides();
  const bool batch_ok = t.size(0) == 1 || s[0] == rows * cols;
  if (batch_ok && (s[2] == 1 || cols == 1) && (s[1] == cols || rows == 1))
    return {t, {false, std::max<int64_t>(cols, 1), rows * cols}};
  if (batch_ok && (s[1] == 1 || rows == 1) && (s[2] == rows || cols == 1))
    return {t, {true, std::max<int64_t>(rows, 1), rows * cols}};
  const Tensor c = t.contiguous();
  return {c, {false, std::max<int64_t>(cols, 1), rows * cols}};
}
}  // namespace

MatmulDims check_bmm(const Tensor& a, const Tensor& b) {
  const char* op = "matmul";
  check_operands(a, b, op, "self", "other");
  check_dim(a, 3, op, "self", "(batch, M, K)");
  check_dim(b, 3, op, "other", "(batch, K, N)");
  PYCNN_CHECK(a.size(0) == b.size(0) && a.size(2) == b.size(1), ValueError, op, ": shapes ", shape_str(a.shape()),
              " and ", shape_str(b.shape()), " cannot be multiplied (expected (batch, M, K) @ (batch, K, N))");
  return {a.size(0), a.size(1), b.size(2), a.size(2)};
}

Tensor bmm(const Tensor& a_, const Tensor& b_) {
  const MatmulDims d = check_bmm(a_, b_);
  return dispatch_float(a_.dtype(), "matmul", [&](auto t) {
    using T = decltype(t);
    Tensor out = Tensor::zeros({d.batch, d.M, d.N}, a_.dtype(), a_.device());
    if (d.batch * d.M * d.N == 0 || d.K == 0) return out;
    const auto [a, ga] = gemm_operand(a_);
    const auto [b, gb] = gemm_operand(b_);
    PYCNN_ON_DEVICE(out.device(), bmm<T>, a.template data<T>(), ga, b.template data<T>(), gb,
                    out.template data<T>(), d);
    return out;
  });
}

namespace cpu {
template <class T>
void bmm(const T* a, GemmOperand ga, const T* b, GemmOperand gb, T* out, MatmulDims d) {
  for (int64_t i = 0; i < d.batch; ++i)  // each GEMM splits itself over the threads
    blas::gemm<T>(ga.trans, gb.trans, d.M, d.N, d.K, T(1), a + i * ga.batch_stride, ga.ld, b + i * gb.batch_stride,
                  gb.ld, T(0), out + i * d.M * d.N, d.N);
}
PYCNN_INSTANTIATE_KERNELS(PYCNN_MATMUL_KERNELS)
}  // namespace cpu

}  // namespace pycnn
