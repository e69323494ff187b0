#include "../bindings/registry.h"
#include "index.h"

PYCNN_BINDINGS(43, index) {
  m.def("index_select", &index_select, py::arg("x"), py::arg("dim"), py::arg("index"), nogil());
  m.def("index_put_", &index_put_, py::arg("x"), py::arg("dim"), py::arg("index"), py::arg("values"), nogil());
}
