#include "../bindings/registry.h"
#include "mse.h"

PYCNN_BINDINGS(40, mse) {
  m.def("mse_forward", &mse_forward, py::arg("x"), py::arg("target"), nogil());
  m.def("mse_backward", &mse_backward, py::arg("x"), py::arg("target"), py::arg("grad_scale") = 1.0, nogil());
}
