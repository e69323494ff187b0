#include "index.h"

#include <cstring>
#include <unordered_map>

#include "elementwise.h"

namespace pycnn {

namespace {
struct Around {
  int64_t outer = 1, n = 1, inner = 1;
};
Around around(const Shape& s, int64_t dim) {
  Around r;
  r.n = s[dim];
  for (int64_t i = 0; i < dim; ++i) r.outer *= s[i];
  for (int64_t i = dim + 1; i < static_cast<int64_t>(s.size()); ++i) r.inner *= s[i];
  return r;
}

// A 1-D int64 tensor holding `v` on `device`.
Tensor rows_tensor(const std::vector<int64_t>& v, Device device) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())}, DType::Int64, {});
  if (!v.empty()) std::memcpy(t.raw(), v.data(), v.size() * sizeof(int64_t));
  return t.to(device);
}

void run_move_rows(const Tensor& src, int64_t src_n, const Tensor* src_rows, const Tensor& dst, int64_t dst_n,
                   const Tensor* dst_rows, int64_t outer, int64_t k, int64_t inner) {
  if (outer * k * inner == 0) return;
  dispatch_any(src.dtype(), [&](auto t) {
    using T = decltype(t);
    PYCNN_ON_DEVICE(dst.device(), move_rows<T>, src.data<T>(), src_n, src_rows ? src_rows->data<int64_t>() : nullptr,
                    dst.data<T>(), dst_n, dst_rows ? dst_rows->data<int64_t>() : nullptr, outer, k, inner);
  });
}
}  // namespace

std::vector<int64_t> check_index(const Tensor& x, int64_t dim, const Tensor& index, const char* op) {
  check_defined(x, op, "input");
  check_defined(index, op, "index");
  check_same_device(x, index, op, "input", "index");
  PYCNN_CHECK(index.dtype() == DType::Int64, TypeError, op, ": expected an int64 index, got ",
              dtype_name(index.dtype()));
  PYCNN_CHECK(index.dim() == 1, ValueError, op, ": expected a 1-D index, got shape ", shape_str(index.shape()));
  const int64_t rank = x.dim();
  PYCNN_CHECK(dim >= -rank && dim < rank, ValueError, op, ": dim ", dim, " is out of range for a tensor of shape ",
              shape_str(x.shape()));
  if (dim < 0) dim += rank;
  const Tensor h = index.to(Device{}).contiguous();
  const int64_t n = x.size(dim);
  std::vector<int64_t> rows(h.data<int64_t>(), h.data<int64_t>() + h.numel());
  for (int64_t& r : rows) {
    PYCNN_CHECK(r >= -n && r < n, IndexError, op, ": index ", r, " is out of bounds for dim ", dim, " with size ", n,
                " (shape ", shape_str(x.shape()), ")");
    if (r < 0) r += n;
  }
  return rows;
}

Tensor index_select(const Tensor& x_, int64_t dim, const Tensor& index) {
  const std::vector<int64_t> rows = check_index(x_, dim, index, "index_select");
  if (dim < 0) dim += x_.dim();
  const Tensor x = x_.contiguous();
  Shape shape = x.shape();
  shape[dim] = static_cast<int64_t>(rows.size());
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  const Around a = around(x.shape(), dim);
  const Tensor src_rows = rows_tensor(rows, x.device());
  run_move_rows(x, a.n, &src_rows, out, shape[dim], nullptr, a.outer, shape[dim], a.inner);
  return out;
}

void index_put_(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& values_) {
  const std::vector<int64_t> rows = check_index(x, dim, index, "index_put_");
  check_defined(values_, "index_put_", "values");
  if (dim < 0) dim += x.dim();
  Shape shape = x.shape();
  shape[dim] = static_cast<int64_t>(rows.size());
  Tensor values = Tensor::empty(shape, x.dtype(), x.device());
  copy_into(values, values_);  // broadcast and cast, with the shape check's message
  // the last occurrence of each destination row wins
  std::unordered_map<int64_t, size_t> last;
  for (size_t j = 0; j < rows.size(); ++j) last[rows[j]] = j;
  std::vector<int64_t> src, dst;
  for (size_t j = 0; j < rows.size(); ++j)
    if (last[rows[j]] == j) {
      src.push_back(static_cast<int64_t>(j));
      dst.push_back(rows[j]);
    }
  const Tensor work = x.contiguous();  // x itself when contiguous
  const Around a = around(x.shape(), dim);
  const Tensor src_rows = rows_tensor(src, x.device()), dst_rows = rows_tensor(dst, x.device());
  const int64_t kept = static_cast<int64_t>(src.size());
  run_move_rows(values, shape[dim], &src_rows, work, a.n, &dst_rows, a.outer, kept, a.inner);
  if (!x.is_contiguous()) copy_into(x, work);
}

namespace cpu {
template <class T>
void move_rows(const T* src, int64_t src_n, const int64_t* src_rows, T* dst, int64_t dst_n, const int64_t* dst_rows,
               int64_t outer, int64_t k, int64_t inner) {
#pragma omp parallel for if (outer * k * inner > (1 << 15) && outer * k > 1)
  for (int64_t r = 0; r < outer * k; ++r) {
    const int64_t o = r / k, j = r % k;
    const T* s = src + (o * src_n + (src_rows ? src_rows[j] : j)) * inner;
    T* d = dst + (o * dst_n + (dst_rows ? dst_rows[j] : j)) * inner;
    for (int64_t i = 0; i < inner; ++i) d[i] = s[i];
  }
}

PYCNN_INSTANTIATE_KERNELS_ANY_DTYPE(PYCNN_INDEX_KERNELS)
}  // namespace cpu

}  // namespace pycnn
