#include "tensor.h"

#include <cstdlib>
#include <cstring>
#include <limits>

#include "cpu_alloc.h"
#include "cuda/runtime.h"
#include "ops/elementwise.h"

namespace pycnn {

std::string shape_str(const Shape& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) r += ", ";
    r += std::to_string(s[i]);  // appended, not concatenated: GCC 12's LTO warned on the temporary
  }
  return r + (s.size() == 1 ? ",)" : ")");
}

Device Device::parse(const std::string& s) {
  if (s == "cpu") return {DeviceType::CPU, 0};
  if (s == "cuda") return {DeviceType::CUDA, 0};
  if (s.rfind("cuda:", 0) == 0) {
    const std::string idx = s.substr(5);
    if (!idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos && idx.size() < 6)
      return {DeviceType::CUDA, std::stoi(idx)};
  }
  throw ValueError(cat("unknown device '", s, "': expected 'cpu', 'cuda' or 'cuda:N'"));
}

void throw_no_cuda(const char* what) {
  if (!cuda_compiled())
    throw DeviceError(cat(what, ": this pycnn build has no CUDA backend. Install a CUDA build: the "
                          "released wheels have it (`pip install \"pycnn[cuda]\"`), or build from source "
                          "with nvcc on PATH (`PYCNN_CUDA=ON pip install .`)"));
  throw DeviceError(cat(what, ": no usable CUDA device (", cuda_runtime::status_message(), ")"));
}

int64_t checked_numel(const Shape& shape, const char* what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    PYCNN_CHECK(d >= 0, ValueError, what, ": negative size in shape ", shape_str(shape));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / 8 / d)
      throw OutOfMemory(cat(what, ": a tensor of shape ", shape_str(shape), " is too large to allocate"));
    n *= d;
  }
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t s = 1;
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    st[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return st;
}

// ---------------------------------------------------------------------------------- Storage
Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cuda()) {
    data_ = cuda_runtime::device_alloc(nbytes, device.index);
    return;
  }
  data_ = cpu_alloc::allocate(nbytes);
}

Storage::Storage(void* data, size_t nbytes, Device device, std::function<void()> release)
    : data_(data), nbytes_(nbytes), device_(device), release_(std::move(release)) {}

Storage::~Storage() {
  if (release_) {
    release_();
  } else if (device_.is_cuda()) {
    cuda_runtime::device_free(data_, nbytes_, device_.index);
  } else {
    cpu_alloc::release(data_, nbytes_);
  }
}

// ----------------------------------------------------------------------------------- Tensor
Tensor::Tensor(std::shared_ptr<Storage> storage, DType dtype, Shape shape, Shape strides, int64_t offset)
    : storage_(std::move(storage)), dtype_(dtype), shape_(std::move(shape)), strides_(std::move(strides)),
      offset_(offset) {}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  const int64_t n = checked_numel(shape, "empty");
  auto st = std::make_shared<Storage>(static_cast<size_t>(n) * dtype_size(dtype), device);
  return Tensor(std::move(st), dtype, shape, contiguous_strides(shape), 0);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (device.is_cuda())
    cuda_runtime::memset_zero(t.raw(), t.nbytes(), device.index);
  else if (t.nbytes())
    std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, {});
  t.fill(value);
  return t.to(device);
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

void* Tensor::raw() const {
  return static_cast<char*>(storage_->data()) + offset_ * static_cast<int64_t>(dtype_size(dtype_));
}

bool Tensor::is_contiguous() const {
  int64_t expect = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expect) return false;
    expect *= shape_[i];
  }
  return true;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  Tensor out = empty(shape_, dtype_, device());
  copy_into(out, *this);  // the strided copy kernel, on the tensor's own device
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape_, dtype_, device());
  out.copy_from(*this);
  return out;
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      PYCNN_CHECK(infer < 0, ValueError, "reshape: only one size may be -1, got ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      PYCNN_CHECK(s[i] >= 0, ValueError, "reshape: invalid size in ", shape_str(shape));
      if (__builtin_mul_overflow(known, s[i], &known))
        throw OutOfMemory(cat("reshape: a tensor of shape ", shape_str(shape), " is too large"));
    }
  }
  if (infer >= 0) {
    PYCNN_CHECK(known > 0 && numel() % known == 0, ValueError, "reshape: cannot reshape a tensor of shape ",
                shape_str(shape_), " into ", shape_str(shape));
    s[infer] = numel() / known;
  }
  PYCNN_CHECK(checked_numel(s, "reshape") == numel(), ValueError, "reshape: cannot reshape a tensor of shape ",
              shape_str(shape_), " (", numel(), " elements) into ", shape_str(s));
  const Tensor base = contiguous();
  return Tensor(base.storage_, dtype_, s, contiguous_strides(s), base.offset_);
}

void Tensor::copy_from(const Tensor& src) {
  PYCNN_CHECK(src.shape_ == shape_ && src.dtype_ == dtype_, ValueError, "copy: expected a ", dtype_name(dtype_),
              " tensor of shape ", shape_str(shape_), ", got ", dtype_name(src.dtype_), " ", shape_str(src.shape_));
  PYCNN_CHECK(is_contiguous(), ValueError, "copy: destination must be contiguous");
  const Tensor s = src.contiguous();
  if (nbytes() == 0) return;
  if (device().is_cpu() && s.device().is_cpu()) {
    std::memcpy(raw(), s.raw(), nbytes());
  } else {
    cuda_runtime::copy(raw(), device(), s.raw(), s.device(), nbytes());
  }
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  if (device.is_cuda()) cuda_runtime::check_device(device.index);
  const Tensor src = contiguous();
  Tensor out = empty(shape_, dtype_, device);
  out.copy_from(src);
  return out;
}

Tensor Tensor::to_dtype(DType dt) const {
  if (dt == dtype_) return *this;
  Tensor out = empty(shape_, dt, device());
  copy_into(out, *this);  // casts on the tensor's own device
  return out;
}

Tensor Tensor::as_strided(const Shape& shape, const Shape& strides, int64_t offset) const {
  PYCNN_CHECK(shape.size() == strides.size(), ValueError, "as_strided: shape ", shape_str(shape), " and strides ",
              shape_str(strides), " differ in length");
  const int64_t n = checked_numel(shape, "as_strided");
  int64_t last = offset;  // the furthest element the view reaches
  PYCNN_CHECK(offset >= 0, ValueError, "as_strided: negative offset ", offset);
  for (size_t i = 0; i < shape.size(); ++i) {
    PYCNN_CHECK(strides[i] >= 0, ValueError, "as_strided: negative stride in ", shape_str(strides));
    if (shape[i] > 0) last += (shape[i] - 1) * strides[i];
  }
  const int64_t avail = static_cast<int64_t>(storage_->nbytes() / dtype_size(dtype_));
  PYCNN_CHECK(n == 0 || last < avail, ValueError, "as_strided: a view of shape ", shape_str(shape), ", strides ",
              shape_str(strides), " and offset ", offset, " reaches element ", last, " of a storage of ", avail);
  return Tensor(storage_, dtype_, shape, strides, offset);
}

void Tensor::fill(double value) {
  PYCNN_CHECK(is_contiguous(), ValueError, "fill: tensor must be contiguous");
  if (device().is_cuda()) {
    Tensor host = full(shape_, value, dtype_, {});
    copy_from(host);
    return;
  }
  const int64_t n = numel();
  switch (dtype_) {
    case DType::Float32: { auto* p = data<float>(); for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(value); break; }
    case DType::Float64: { auto* p = data<double>(); for (int64_t i = 0; i < n; ++i) p[i] = value; break; }
    case DType::Int64: { auto* p = data<int64_t>(); for (int64_t i = 0; i < n; ++i) p[i] = static_cast<int64_t>(value); break; }
    case DType::Bool: { auto* p = data<bool>(); for (int64_t i = 0; i < n; ++i) p[i] = value != 0; break; }
  }
}

double Tensor::item() const {
  PYCNN_CHECK(numel() == 1, ValueError, "item: only a tensor with one element can be converted to a number, got shape ",
              shape_str(shape_));
  const Tensor h = to(Device{}).contiguous();
  switch (dtype_) {
    case DType::Float32: return *h.data<float>();
    case DType::Float64: return *h.data<double>();
    case DType::Int64: return static_cast<double>(*h.data<int64_t>());
    case DType::Bool: return *h.data<bool>() ? 1.0 : 0.0;
  }
  return 0;
}

// ------------------------------------------------------------------------- boundary checks
void check_defined(const Tensor& t, const char* op, const char* arg) {
  PYCNN_CHECK(t.defined(), ValueError, op, ": ", arg, " is missing");
}

void check_same_device(const Tensor& a, const Tensor& b, const char* op, const char* an, const char* bn) {
  PYCNN_CHECK(a.device() == b.device(), DeviceError, op, ": ", an, " is on ", a.device().str(), " but ", bn,
              " is on ", b.device().str(), "; move both to one device with .to(device)");
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op, const char* an, const char* bn) {
  if (a.dtype() == b.dtype()) return;
  // An input against a layer's parameter: the input is what is usually off (a float64 NumPy array
  // fed to a float32 model), so converting it is the fix named first.
  const char* to = dtype_name(b.dtype());
  const std::string fix = std::strncmp(an, "input", 5) == 0
                              ? cat("convert the input: x.to(pycnn.", to, ") (a NumPy array: x.astype(np.", to,
                                    ")), or the model with model.to(pycnn.", dtype_name(a.dtype()), ")")
                              : std::string("convert one of them");
  PYCNN_CHECK(false, TypeError, op, ": ", an, " is ", dtype_name(a.dtype()), " but ", bn, " is ", to, "; ", fix);
}

void check_dim(const Tensor& t, int64_t dim, const char* op, const char* arg, const char* layout) {
  PYCNN_CHECK(t.dim() == dim, ValueError, op, ": expected ", arg, " of ", dim, " dimensions ", layout,
              ", got shape ", shape_str(t.shape()));
}

void check_shape(const Tensor& t, const Shape& expected, const char* op, const char* arg) {
  PYCNN_CHECK(t.shape() == expected, ValueError, op, ": expected ", arg, " of shape ", shape_str(expected),
              ", got ", shape_str(t.shape()));
}

void check_operands(const Tensor& a, const Tensor& b, const char* op, const char* an, const char* bn) {
  check_defined(a, op, an);
  check_defined(b, op, bn);
  check_same_device(a, b, op, an, bn);
  check_same_dtype(a, b, op, an, bn);
}

void check_grad_matches(const Tensor& dy, const Tensor& of, const char* op, const char* of_name, const char* of_arg) {
  check_defined(dy, op, "grad_output");
  if (of_arg) check_defined(of, op, of_arg);
  check_same_device(dy, of, op, "grad_output", of_name);
  check_same_dtype(dy, of, op, "grad_output", of_name);
  check_shape(dy, of.shape(), op, "grad_output");
}

}  // namespace pycnn
