#include "../bindings/registry.h"
#include "linear.h"

PYCNN_BINDINGS(31, linear) {
  m.def("linear_forward", &linear_forward, py::arg("x"), py::arg("w"), py::arg("b") = py::none(), nogil());
  m.def("linear_backward", &linear_backward, py::arg("grad_output"), py::arg("x"), py::arg("w"),
        py::arg("need_dx") = true, py::arg("need_dw") = true, py::arg("need_db") = true, nogil());
}
