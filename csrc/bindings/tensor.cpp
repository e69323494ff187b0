// pycnn.Tensor: the C++ Tensor with NumPy (buffer protocol, __array__, zero-copy from_numpy)
// and DLPack interop. No arithmetic lives here: ops are in csrc/ops.
#include <pybind11/numpy.h>

#include <cstring>

#include "../cuda/runtime.h"
#include "dlpack.h"
#include "registry.h"

namespace pycnn::bindings {
namespace {

DType dtype_from_numpy(const py::dtype& dt, const char* what) {
  const char k = dt.kind();
  if (k == 'f') return dt.itemsize() == 8 ? DType::Float64 : DType::Float32;
  if (k == 'b') return DType::Bool;
  if (k == 'i' || k == 'u') return DType::Int64;
  throw TypeError(cat(what, ": cannot make a tensor from a NumPy array of dtype ", std::string(py::str(dt)),
                      "; use float32, float64, an integer type or bool"));
}

py::dtype numpy_dtype(DType t) {
  switch (t) {
    case DType::Float32: return py::dtype::of<float>();
    case DType::Float64: return py::dtype::of<double>();
    case DType::Int64: return py::dtype::of<int64_t>();
    case DType::Bool: return py::dtype::of<bool>();
  }
  return py::dtype::of<float>();
}

DType parse_dtype(const py::object& o) {
  if (py::isinstance<DType>(o)) return o.cast<DType>();
  return dtype_from_numpy(py::dtype::from_args(o), "dtype");
}

// Shares memory with `arr` when it is C-contiguous and already float32/float64/int64.
Tensor from_numpy(const py::array& input) {
  const DType dt = dtype_from_numpy(input.dtype(), "from_numpy");
  py::array arr = input;
  const bool exact = input.dtype().is(numpy_dtype(dt));
  if (!exact || !(input.flags() & py::array::c_style) || !input.writeable())
    arr = py::array(py::module_::import("numpy").attr("ascontiguousarray")(input, numpy_dtype(dt)));
  Shape shape(arr.shape(), arr.shape() + arr.ndim());
  PyObject* owner = arr.ptr();
  Py_INCREF(owner);
  auto release = [owner]() {
    py::gil_scoped_acquire gil;
    Py_DECREF(owner);
  };
  const int64_t n = checked_numel(shape, "from_numpy");
  auto st = std::make_shared<Storage>(arr.mutable_data(), static_cast<size_t>(n) * dtype_size(dt), Device{}, release);
  return Tensor(std::move(st), dt, shape, contiguous_strides(shape), 0);
}

// A NumPy view of a CPU tensor that keeps its storage alive.
py::array to_numpy_view(const Tensor& t) {
  PYCNN_CHECK(t.device().is_cpu(), DeviceError, "numpy view: tensor is on ", t.device().str(),
              "; use .numpy() (copies) or .cpu()");
  auto* keep = new std::shared_ptr<Storage>(t.storage());
  py::capsule base(keep, [](void* p) { delete static_cast<std::shared_ptr<Storage>*>(p); });
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end()), strides;
  for (int64_t s : t.strides()) strides.push_back(s * static_cast<py::ssize_t>(dtype_size(t.dtype())));
  return py::array(numpy_dtype(t.dtype()), shape, strides, t.raw(), base);
}

std::string repr(const Tensor& t) {
  std::string s = "tensor(";
  if (t.device().is_cpu() && t.numel() <= 1000) {
    s += std::string(py::str(py::module_::import("numpy").attr("array2string")(to_numpy_view(t), py::arg("separator") = ", ",
                                                                          py::arg("prefix") = "tensor(")));
  } else {
    s += "<" + std::to_string(t.numel()) + " elements>";
  }
  s += ", shape=" + shape_str(t.shape()) + ", dtype=" + dtype_name(t.dtype());
  if (!t.device().is_cpu()) s += ", device='" + t.device().str() + "'";
  return s + ")";
}

// ---- DLPack
struct DLContext {
  Tensor t;
  std::vector<int64_t> shape, strides;
  DLManagedTensor m;
};

py::capsule to_dlpack(const Tensor& t) {
  auto* ctx = new DLContext{t, t.shape(), t.strides(), {}};
  DLTensor& d = ctx->m.dl_tensor;
  d.data = t.storage()->data();
  d.byte_offset = static_cast<uint64_t>(t.offset()) * dtype_size(t.dtype());
  d.device = {t.device().is_cuda() ? kDLCUDA : kDLCPU, t.device().is_cuda() ? t.device().index : 0};
  d.ndim = static_cast<int32_t>(t.dim());
  d.dtype = {static_cast<uint8_t>(t.dtype() == DType::Int64 ? kDLInt : t.dtype() == DType::Bool ? kDLBool : kDLFloat),
             static_cast<uint8_t>(dtype_size(t.dtype()) * 8), 1};
  d.shape = ctx->shape.data();
  d.strides = ctx->strides.data();
  ctx->m.manager_ctx = ctx;
  ctx->m.deleter = [](DLManagedTensor* self) { delete static_cast<DLContext*>(self->manager_ctx); };
  return py::capsule(&ctx->m, "dltensor", [](PyObject* cap) {
    // Still named "dltensor": nobody consumed it, so we own it.
    if (PyCapsule_IsValid(cap, "dltensor")) {
      auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
      if (m && m->deleter) m->deleter(m);
    } else {
      PyErr_Clear();
    }
  });
}

Tensor from_dlpack_capsule(py::capsule cap) {
  PYCNN_CHECK(PyCapsule_IsValid(cap.ptr(), "dltensor"), ValueError,
              "from_dlpack: expected an unconsumed 'dltensor' capsule");
  auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap.ptr(), "dltensor"));
  const DLTensor& d = m->dl_tensor;
  DType dt;
  if (d.dtype.code == kDLFloat && d.dtype.bits == 32 && d.dtype.lanes == 1) dt = DType::Float32;
  else if (d.dtype.code == kDLFloat && d.dtype.bits == 64 && d.dtype.lanes == 1) dt = DType::Float64;
  else if (d.dtype.code == kDLInt && d.dtype.bits == 64 && d.dtype.lanes == 1) dt = DType::Int64;
  else if (d.dtype.code == kDLBool && d.dtype.bits == 8 && d.dtype.lanes == 1) dt = DType::Bool;
  else throw TypeError(cat("from_dlpack: unsupported dtype (code ", int(d.dtype.code), ", ", int(d.dtype.bits),
                           " bits); pycnn holds float32, float64, int64 and bool"));
  Device dev;
  if (d.device.device_type == kDLCPU) dev = Device{};
  else if (d.device.device_type == kDLCUDA) dev = Device{DeviceType::CUDA, d.device.device_id};
  else throw DeviceError(cat("from_dlpack: unsupported device type ", int(d.device.device_type)));
  Shape shape(d.shape, d.shape + d.ndim);
  Shape strides = d.strides ? Shape(d.strides, d.strides + d.ndim) : contiguous_strides(shape);
  const int64_t n = checked_numel(shape, "from_dlpack");
  if (dev.is_cuda()) cuda_runtime::synchronize(dev.index);  // the producer's pending work, conservatively
  PyCapsule_SetName(cap.ptr(), "used_dltensor");
  auto st = std::make_shared<Storage>(static_cast<char*>(d.data) + d.byte_offset, static_cast<size_t>(n) * dtype_size(dt),
                                      dev, [m]() { if (m->deleter) m->deleter(m); });
  Tensor t(std::move(st), dt, shape, strides, 0);
  return t.is_contiguous() ? t : t.contiguous();
}

}  // namespace
}  // namespace pycnn::bindings

PYCNN_BINDINGS(0, tensor) {
  py::enum_<DType>(m, "DType")
      .value("float32", DType::Float32)
      .value("float64", DType::Float64)
      .value("int64", DType::Int64)
      .value("bool", DType::Bool)
      .def("__str__", [](DType t) { return std::string("pycnn.") + dtype_name(t); })
      .def("__repr__", [](DType t) { return std::string("pycnn.") + dtype_name(t); })
      .def_property_readonly("itemsize", [](DType t) { return dtype_size(t); })
      .def_property_readonly("numpy", [](DType t) { return numpy_dtype(t); });

  py::class_<Tensor>(m, "Tensor", py::buffer_protocol(), py::dynamic_attr())
      .def_buffer([](Tensor& t) -> py::buffer_info {
        PYCNN_CHECK(t.device().is_cpu(), DeviceError, "buffer: tensor is on ", t.device().str(), "; call .cpu() first");
        std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end()), strides;
        for (int64_t s : t.strides()) strides.push_back(s * static_cast<py::ssize_t>(dtype_size(t.dtype())));
        const char* fmt = t.dtype() == DType::Float32 ? "f" : t.dtype() == DType::Float64 ? "d"
                          : t.dtype() == DType::Bool ? "?" : "q";
        return py::buffer_info(t.raw(), static_cast<py::ssize_t>(dtype_size(t.dtype())), fmt, t.dim(), shape, strides);
      })
      .def_property_readonly("shape", [](const Tensor& t) { return py::tuple(py::cast(t.shape())); })
      .def_property_readonly("dtype", &Tensor::dtype)
      .def_property_readonly("device", [](const Tensor& t) { return t.device().str(); })
      .def_property_readonly("ndim", &Tensor::dim)
      .def_property_readonly("is_cuda", [](const Tensor& t) { return t.device().is_cuda(); })
      .def("numel", &Tensor::numel)
      .def("dim", &Tensor::dim)
      .def("size", [](const Tensor& t, py::object d) -> py::object {
        if (d.is_none()) return py::tuple(py::cast(t.shape()));
        const int64_t i = d.cast<int64_t>();
        PYCNN_CHECK(i >= -t.dim() && i < t.dim(), ValueError, "size: dim ", i, " out of range for a tensor of shape ",
                    shape_str(t.shape()));
        return py::int_(t.size(i));
      }, py::arg("dim") = py::none())
      .def("__len__", [](const Tensor& t) {
        PYCNN_CHECK(t.dim() > 0, TypeError, "len() of a 0-d tensor");
        return t.size(0);
      })
      .def("is_contiguous", &Tensor::is_contiguous)
      .def("contiguous", &Tensor::contiguous)
      .def("clone", &Tensor::clone, nogil())
      .def("item", &Tensor::item)
      .def("reshape", [](const Tensor& t, py::args a) {
        Shape s;
        if (a.size() == 1 && !py::isinstance<py::int_>(a[0])) s = a[0].cast<Shape>();
        else s = a.cast<Shape>();
        return t.reshape(s);
      })
      .def("to", [](const Tensor& t, py::object target) {
        if (py::isinstance<py::str>(target)) {
          const std::string s = target.cast<std::string>();
          py::gil_scoped_release nogil;
          return t.to(Device::parse(s));
        }
        return t.to_dtype(parse_dtype(target));
      }, py::arg("device_or_dtype"))
      .def("cpu", [](const Tensor& t) { return t.to(Device{}); }, nogil())
      .def("cuda", [](const Tensor& t, int index) { return t.to(Device{DeviceType::CUDA, index}); },
           py::arg("index") = 0, nogil())
      .def("float", [](const Tensor& t) { return t.to_dtype(DType::Float32); })
      .def("double", [](const Tensor& t) { return t.to_dtype(DType::Float64); })
      .def("long", [](const Tensor& t) { return t.to_dtype(DType::Int64); })
      .def("numpy", [](const Tensor& t) -> py::array {
        if (t.device().is_cpu()) return to_numpy_view(t);
        return to_numpy_view(t.to(Device{}));
      })
      .def("__array__", [](const Tensor& t, py::object dtype, py::object copy) -> py::array {
        const bool on_cpu = t.device().is_cpu();
        if (!copy.is_none() && !copy.cast<bool>() && !on_cpu)
          throw ValueError(cat("__array__(copy=False): tensor is on ", t.device().str(), "; a copy is needed"));
        py::array a = to_numpy_view(on_cpu ? t : t.to(Device{}));
        if (!dtype.is_none()) a = a.attr("astype")(dtype, py::arg("copy") = false);
        if (!copy.is_none() && copy.cast<bool>() && on_cpu) a = a.attr("copy")();
        return a;
      }, py::arg("dtype") = py::none(), py::arg("copy") = py::none())
      .def("__dlpack__", [](const Tensor& t, py::kwargs) {
        // pycnn's kernels run on its own stream: finish them before another library reads the memory.
        if (t.device().is_cuda()) cuda_runtime::synchronize(t.device().index);
        return to_dlpack(t.contiguous());
      })
      .def("__dlpack_device__", [](const Tensor& t) {
        return py::make_tuple(t.device().is_cuda() ? int(kDLCUDA) : int(kDLCPU), t.device().is_cuda() ? t.device().index : 0);
      })
      .def("_data_ptr", [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw()); })
      .def("__repr__", &repr)
      .def("fill_", [](Tensor& t, double v) { t.fill(v); return t; })
      .def("copy_", [](Tensor& t, const Tensor& src) { t.copy_from(src); return t; }, nogil())
      .def_property_readonly("_offset", &Tensor::offset)
      .def_property_readonly("_strides", [](const Tensor& t) { return py::tuple(py::cast(t.strides())); })
      .def("_same_storage", [](const Tensor& a, const Tensor& b) { return a.storage() == b.storage(); })
      .def("as_strided", [](const Tensor& t, const Shape& size, const Shape& stride, py::object offset) {
        return t.as_strided(size, stride, offset.is_none() ? t.offset() : offset.cast<int64_t>());
      }, py::arg("size"), py::arg("stride"), py::arg("storage_offset") = py::none());

  m.def("from_numpy", &from_numpy, py::arg("array"));
  m.def("from_dlpack_capsule", &from_dlpack_capsule, py::arg("capsule"));
  m.def("empty", [](const Shape& s, py::object dt, const std::string& dev) {
    return Tensor::empty(s, parse_dtype(dt), Device::parse(dev));
  }, py::arg("shape"), py::arg("dtype"), py::arg("device") = "cpu");
  m.def("zeros", [](const Shape& s, py::object dt, const std::string& dev) {
    return Tensor::zeros(s, parse_dtype(dt), Device::parse(dev));
  }, py::arg("shape"), py::arg("dtype"), py::arg("device") = "cpu");
  m.def("full", [](const Shape& s, double v, py::object dt, const std::string& dev) {
    return Tensor::full(s, v, parse_dtype(dt), Device::parse(dev));
  }, py::arg("shape"), py::arg("value"), py::arg("dtype"), py::arg("device") = "cpu");
  m.def("parse_device", [](const std::string& s) { return Device::parse(s).str(); });

  // CUDA runtime (all of these work in a CPU build, reporting no CUDA)
  m.def("cuda_is_available", &cuda_runtime::is_available);
  m.def("cuda_device_count", &cuda_runtime::device_count);
  m.def("cuda_device_name", &cuda_runtime::device_name, py::arg("index") = 0);
  m.def("cuda_status", &cuda_runtime::status_message);
  m.def("cuda_version", &cuda_runtime::version);
  m.def("cuda_synchronize", &cuda_runtime::synchronize, py::arg("index") = 0, nogil());
  m.def("cuda_memory_stats", &cuda_runtime::memory_stats, py::arg("index") = 0);
  m.def("cuda_reset_peak_memory_stats", &cuda_runtime::reset_peak_memory_stats, py::arg("index") = 0);
  m.def("cuda_empty_cache", &cuda_runtime::empty_cache, py::arg("index") = 0);
  m.def("set_allow_tf32", &cuda_runtime::set_allow_tf32);
  m.def("get_allow_tf32", &cuda_runtime::allow_tf32);
}
