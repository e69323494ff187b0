// The private extension module pycnn._core: exception mapping, then every registered area.
#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "../blas.h"
#include "../cuda/runtime.h"
#include "../random.h"
#include "registry.h"

namespace pycnn::bindings {
namespace {
struct Entry {
  int order;
  std::string name;
  BindFn fn;
};
std::vector<Entry>& entries() {
  static std::vector<Entry> e;
  return e;
}
}  // namespace

Registrar::Registrar(int order, const char* name, BindFn fn) { entries().push_back({order, name, fn}); }

void run_all(py::module_& m) {
  auto& e = entries();
  std::sort(e.begin(), e.end(), [](const Entry& a, const Entry& b) { return std::tie(a.order, a.name) < std::tie(b.order, b.name); });
  for (const auto& x : e) x.fn(m);
}

}  // namespace pycnn::bindings

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  using namespace pycnn;
  m.doc() = "pycnn's C++/CUDA core (private: use the pycnn package)";

  static py::exception<DeviceError> device_error(m, "DeviceError", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const OutOfMemory& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const DeviceError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (const std::bad_alloc&) {
      PyErr_SetString(PyExc_MemoryError, "out of memory (C++ allocation failed)");
    }
  });

  m.def("blas_preferred_core", &blas::preferred_core_type);
  m.def("load_blas", &blas::load, py::arg("path"));
  m.def("blas_core_name", &blas::core_name);
  m.def("blas_config", &blas::config);
  m.def("set_num_threads", &cpu::set_num_threads, py::arg("n"));
  m.def("get_num_threads", &cpu::num_threads);
  m.def("manual_seed", &rng::manual_seed, py::arg("seed"));
  m.def("get_rng_offset", &rng::offset);
  m.def("set_rng_offset", &rng::set_offset, py::arg("offset"));
  m.def("cuda_compiled", &cuda_compiled);
  m.def("set_cublas_paths", &cuda_runtime::set_cublas_paths, py::arg("paths"));
  m.def("cublas_soname", &cuda_runtime::cublas_soname);
  m.def("cublas_path", &cuda_runtime::cublas_path);
#ifdef _OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif

  bindings::run_all(m);
}
