#include "../bindings/registry.h"
#include "matmul.h"

PYCNN_BINDINGS(44, matmul) {
  m.def("bmm", &bmm, py::arg("a"), py::arg("b"), nogil());
}
