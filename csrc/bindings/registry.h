// Each area's binding file registers itself with PYCNN_BINDINGS(order, name) { ... }, so adding
// an op never means editing a central list. `order` sorts registration (types before functions).
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
  static void pycnn_bind_##name(pybind11::module_& m);                                 \
  static ::pycnn::bindings::Registrar pycnn_registrar_##name(order, #name, pycnn_bind_##name); \
  static void pycnn_bind_##name(pybind11::module_& m)
