#include "../bindings/registry.h"
#include "dropout.h"

PYCNN_BINDINGS(40, dropout) {
  m.def("dropout_forward", &dropout_forward, py::arg("x"), py::arg("p"), nogil());
  m.def("dropout_backward", &dropout_backward, py::arg("grad_output"), py::arg("mask"), nogil());
}
