// Each area's binding file registers itself with PYCNN_BINDINGS(order, name) { ... }, so adding
// an op never means editing a central list. `order` sorts registration (types before functions).
// The body is a function of namespace pycnn::bindings: pycnn's names, `py` and `nogil` need no using.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "../tensor.h"

namespace pycnn::bindings {

namespace py = pybind11;
using BindFn = void (*)(py::module_&);
struct Registrar {
  Registrar(int order, const char* name, BindFn fn);
};
void run_all(py::module_& m);

// Runs the op with the GIL released: kernels never touch Python objects.
using nogil = py::call_guard<py::gil_scoped_release>;

}  // namespace pycnn::bindings

#define PYCNN_BINDINGS(order, name)                                                    \
  namespace pycnn::bindings {                                                          \
  void bind_##name(py::module_& m);                                                    \
  static const Registrar registrar_##name(order, #name, bind_##name);                  \
  }                                                                                    \
  void pycnn::bindings::bind_##name(pybind11::module_& m)
