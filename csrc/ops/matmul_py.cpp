#include "../bindings/registry.h"
#include "matmul.h"

PYCNN_BINDINGS(44, matmul) {
  using namespace pycnn;
  using pycnn::bindings::nogil;
  namespace py = pybind11;
  m.def("bmm", &bmm, py::arg("a"), py::arg("b"), nogil());
}
