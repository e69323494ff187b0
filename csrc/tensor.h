// Storage: one RAII block of memory on one device. Tensor: dtype, shape, strides (in elements)
// and an offset into a shared Storage. Ops ask for contiguous inputs (`contiguous()` is free
// when the tensor already is) and trust them after the one shape check of each op.
#pragma once

#include <functional>
#include <memory>

#include "common.h"

namespace pycnn {

class Storage : NonCopyable {
 public:
  Storage(size_t nbytes, Device device);  // allocates (caching allocators: cpu_alloc.h, cuda/runtime.h)
  // Wraps memory owned by someone else (a NumPy array); `release` drops that owner.
  Storage(void* data, size_t nbytes, Device device, std::function<void()> release);
  ~Storage();

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  std::function<void()> release_;  // empty when we allocated
};

class Tensor {
 public:
  Tensor() = default;
  Tensor(std::shared_ptr<Storage> storage, DType dtype, Shape shape, Shape strides, int64_t offset);

  static Tensor empty(const Shape& shape, DType dtype, Device device = {});
  static Tensor zeros(const Shape& shape, DType dtype, Device device = {});
  static Tensor full(const Shape& shape, double value, DType dtype, Device device = {});

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device{}; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t offset() const { return offset_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t i) const { return shape_.at(i < 0 ? i + dim() : i); }
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  void* raw() const;
  template <class T> T* data() const {
    if (dtype_of<T>() != dtype_)
      throw TypeError(cat("internal: tensor of ", dtype_name(dtype_), " read as ", dtype_name(dtype_of<T>())));
    return static_cast<T*>(raw());
  }

  bool is_contiguous() const;
  Tensor contiguous() const;                 // itself when already contiguous
  Tensor clone() const;                      // always a fresh contiguous copy
  Tensor reshape(const Shape& shape) const;  // a view of a contiguous tensor; -1 infers one size
  Tensor to(Device device) const;            // itself when already there
  Tensor to_dtype(DType dtype) const;        // itself when already that dtype
  // A view of the same storage (torch's as_strided: offset counts from the storage's start).
  Tensor as_strided(const Shape& shape, const Shape& strides, int64_t offset) const;
  void copy_from(const Tensor& src);         // same shape and dtype; any devices
  void fill(double value);
  double item() const;

 private:
  std::shared_ptr<Storage> storage_;
  DType dtype_ = DType::Float32;
  Shape shape_, strides_;
  int64_t offset_ = 0;
};

Shape contiguous_strides(const Shape& shape);
int64_t checked_numel(const Shape& shape, const char* what);  // ValueError on negative, OutOfMemory on overflow

// Boundary checks shared by every op: messages name the op and the argument.
void check_defined(const Tensor& t, const char* op, const char* arg);
void check_same_device(const Tensor& a, const Tensor& b, const char* op, const char* arg_a, const char* arg_b);
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op, const char* arg_a, const char* arg_b);
void check_dim(const Tensor& t, int64_t dim, const char* op, const char* arg, const char* layout);
void check_shape(const Tensor& t, const Shape& expected, const char* op, const char* arg);
// Two operands: both defined, on one device, of one dtype (in that order of checks).
void check_operands(const Tensor& a, const Tensor& b, const char* op, const char* arg_a, const char* arg_b);
// A backward's grad_output against the tensor `of` whose shape it has: defined, same device, dtype, shape.
// With of_arg, `of` is also checked to be defined (named of_arg), right after grad_output.
void check_grad_matches(const Tensor& grad_output, const Tensor& of, const char* op, const char* of_name,
                        const char* of_arg = nullptr);

// The host frame of a float op on two tensors whose result has the shape, dtype and device of `a`
// (the caller has checked `b` against it): both made contiguous, the result allocated, then
// kernel(T{}, a, b, out) for the element type T (TypeError naming `op` for a non-float tensor).
template <class Kernel>
Tensor float_op_like(const Tensor& a_, const Tensor& b_, const char* op, Kernel&& kernel) {
  const Tensor a = a_.contiguous(), b = b_.contiguous();
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  dispatch_float(a.dtype(), op, [&](auto t) { kernel(t, a, b, out); });
  return out;
}

}  // namespace pycnn
