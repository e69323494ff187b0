// CUDA kernels of elementwise.h: one thread per output element of the broadcast shape (grid-stride
// loop); each thread computes its operands' offsets from the element index (strided_offsets).
#include "../cuda/context.cuh"
#include "elementwise.h"

namespace pycnn::cuda {
namespace {

// out[off0(i)] = op(a[off1(i)], b[off2(i)]), offsets from the row-major index i
template <BinaryOp Op, class T, class Out>
__global__ void binary_kernel(Strided L, Out* out, Operand<T> a, Operand<T> b, int64_t n) {
  PYCNN_KERNEL_LOOP(i, n) {
    int64_t off[3];
    strided_offsets(L, i, off);
    out[off[0]] = binary_value<Op, T>(a.at(off[1]), b.at(off[2]));
  }
}

// out[off0(i)] = op(x[off1(i)])
template <UnaryOp Op, class T>
__global__ void unary_kernel(Strided L, T* out, const T* x, UnaryParams p, int64_t n) {
  PYCNN_KERNEL_LOOP(i, n) {
    int64_t off[3];
    strided_offsets(L, i, off);
    out[off[0]] = unary_value<Op, T>(x[off[1]], p);
  }
}

// out[off0(i)] = To(x[off1(i)])
template <class From, class To>
__global__ void cast_kernel(Strided L, To* out, const From* x, int64_t n) {
  PYCNN_KERNEL_LOOP(i, n) {
    int64_t off[3];
    strided_offsets(L, i, off);
    out[off[0]] = static_cast<To>(x[off[1]]);
  }
}

}  // namespace

template <class T>
void binary(BinaryOp op, const Strided& L, void* out, Operand<T> a, Operand<T> b, int64_t n) {
  if (n <= 0) return;
  Exec ex(out);
  dispatch_binary_op(op, [&](auto c) {
    constexpr BinaryOp Op = decltype(c)::value;
    using Out = std::conditional_t<Op >= BinaryOp::Eq && Op <= BinaryOp::Ge, bool, T>;
    ex.launch(n, binary_kernel<Op, T, Out>, L, static_cast<Out*>(out), a, b, n);
  });
}

template <class T>
void unary(UnaryOp op, const Strided& L, T* out, const T* x, UnaryParams p, int64_t n) {
  if (n <= 0) return;
  Exec ex(out);
  dispatch_unary_op(op, [&](auto c) {
    constexpr UnaryOp Op = decltype(c)::value;
    ex.launch(n, unary_kernel<Op, T>, L, out, x, p, n);
  });
}

template <class From, class To>
void cast(const Strided& L, To* out, const From* x, int64_t n) {
  launch_over(out, n, cast_kernel<From, To>, L, out, x, n);
}

PYCNN_INSTANTIATE_ELEMENTWISE_KERNELS

}  // namespace pycnn::cuda
