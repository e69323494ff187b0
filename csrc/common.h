// Shared vocabulary of the core: dtypes, devices, errors, and the two dispatch switches
// (element type, device) that every op goes through.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#if defined(__CUDACC__)
#define PYCNN_HD __host__ __device__
#else
#define PYCNN_HD
#endif

// A CPU loop that only vectorises with AVX2 or AVX-512 gets one copy per x86-64 level, and the
// loader picks the best the CPU runs (GCC's target_clones, an ifunc): the wheel stays baseline
// x86-64. Elsewhere it is the plain function.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define PYCNN_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PYCNN_SIMD_CLONES
#endif

namespace pycnn {

using Shape = std::vector<int64_t>;

enum class DType : int8_t { Float32 = 0, Float64 = 1, Int64 = 2, Bool = 3 };  // Bool: one byte, 0 or 1

inline size_t dtype_size(DType t) { return t == DType::Bool ? 1 : t == DType::Float32 ? 4 : 8; }
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int64: return "int64";
    case DType::Bool: return "bool";
  }
  return "?";
}
template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::Float32; }
template <> constexpr DType dtype_of<double>() { return DType::Float64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::Int64; }
template <> constexpr DType dtype_of<bool>() { return DType::Bool; }

enum class DeviceType : int8_t { CPU = 0, CUDA = 1 };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const { return type == o.type && (is_cpu() || index == o.index); }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
  static Device parse(const std::string& s);  // "cpu", "cuda", "cuda:1"
};

// ---- errors: each maps to one Python exception (see bindings/module.cpp) ----
struct ValueError : std::invalid_argument { using std::invalid_argument::invalid_argument; };
struct TypeError : std::invalid_argument { using std::invalid_argument::invalid_argument; };
struct DeviceError : std::runtime_error { using std::runtime_error::runtime_error; };
struct IndexError : std::out_of_range { using std::out_of_range::out_of_range; };  // pybind11: IndexError
struct OutOfMemory : std::runtime_error { using std::runtime_error::runtime_error; };

template <class... A>
std::string cat(A&&... a) {
  std::ostringstream s;
  (s << ... << std::forward<A>(a));
  return s.str();
}

std::string shape_str(const Shape& s);

#define PYCNN_CHECK(cond, Err, ...) \
  do {                              \
    if (!(cond)) throw ::pycnn::Err(::pycnn::cat(__VA_ARGS__)); \
  } while (0)

[[noreturn]] void throw_no_cuda(const char* what);

// Element-type switch: f(T{}) for float32/float64, TypeError for anything else.
template <class F>
decltype(auto) dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Float32: return f(float{});
    case DType::Float64: return f(double{});
    default: break;
  }
  throw TypeError(cat(op, ": expected a float32 or float64 tensor, got ", dtype_name(t)));
}

// Element-type switch over float32, float64 and int64: f(T{}); for bool, TypeError(refusal + "bool").
template <class F>
decltype(auto) dispatch_numeric(DType t, const char* refusal, F&& f) {
  switch (t) {
    case DType::Float32: return f(float{});
    case DType::Float64: return f(double{});
    case DType::Int64: return f(int64_t{});
    case DType::Bool: break;
  }
  throw TypeError(cat(refusal, dtype_name(t)));
}

bool cuda_compiled();  // true when this build has the CUDA backend

// Base of a class that owns a resource or a scope and so must not be copied (nor moved).
struct NonCopyable {
  NonCopyable() = default;
  NonCopyable(const NonCopyable&) = delete;
  NonCopyable& operator=(const NonCopyable&) = delete;
};

// ---- kernel lists, written once per op (Caffe's INSTANTIATE discipline) ----
// An op header lists its kernels once, as PYCNN_<OP>_KERNELS(X, T): one X(name, (parameters)) per
// kernel, the parameters written in the element type T. Inside `namespace cpu` and `namespace cuda`
// the header says PYCNN_DECLARE_KERNELS(list): each kernel becomes `template <class T> void name(...)`.
// The op's .cpp and .cu end with PYCNN_INSTANTIATE_KERNELS(list): float and double of every kernel.
// (Comments inside a list must be /* */: a // comment would swallow the macro's next line.)
#define PYCNN_DECLARE_KERNEL_(name, params) template <class T> void name params;
#define PYCNN_INSTANTIATE_KERNEL_(name, params) template void name params;
#define PYCNN_DECLARE_KERNELS(LIST) LIST(PYCNN_DECLARE_KERNEL_, T)
#define PYCNN_INSTANTIATE_KERNELS(LIST) LIST(PYCNN_INSTANTIATE_KERNEL_, float) LIST(PYCNN_INSTANTIATE_KERNEL_, double)
// Kernels that also serve int64 tensors (WITH_INT64), or every dtype, bool included (ANY_DTYPE).
#define PYCNN_INSTANTIATE_KERNELS_WITH_INT64(LIST) \
  PYCNN_INSTANTIATE_KERNELS(LIST) LIST(PYCNN_INSTANTIATE_KERNEL_, int64_t)
#define PYCNN_INSTANTIATE_KERNELS_ANY_DTYPE(LIST) \
  PYCNN_INSTANTIATE_KERNELS_WITH_INT64(LIST) LIST(PYCNN_INSTANTIATE_KERNEL_, bool)
// A list of kernels with no element type (their parameters do not use T): plain functions.
#define PYCNN_DECLARE_UNTYPED_KERNEL_(name, params) void name params;
#define PYCNN_DECLARE_UNTYPED_KERNELS(LIST) LIST(PYCNN_DECLARE_UNTYPED_KERNEL_, void)

}  // namespace pycnn

#include "parallel.h"  // cpu::ThreadScope: every CPU op runs with pycnn's threads in force

// Device switch: the same kernel name lives in namespace cpu (ops/*.cpp) and cuda (ops/*.cu).
#ifdef PYCNN_WITH_CUDA
#define PYCNN_ON_DEVICE(dev, fn, ...)              \
  do {                                             \
    if ((dev).is_cuda()) ::pycnn::cuda::fn(__VA_ARGS__); \
    else { ::pycnn::cpu::ThreadScope threads_; ::pycnn::cpu::fn(__VA_ARGS__); } \
  } while (0)
#else
#define PYCNN_ON_DEVICE(dev, fn, ...)                        \
  do {                                                       \
    if ((dev).is_cuda()) ::pycnn::throw_no_cuda(#fn);        \
    else { ::pycnn::cpu::ThreadScope threads_; ::pycnn::cpu::fn(__VA_ARGS__); } \
  } while (0)
#endif
