#include "../bindings/registry.h"
#include "softmax_ce.h"

PYCNN_BINDINGS(40, softmax_ce) {
  m.def("softmax_forward", &softmax_forward, py::arg("x"), nogil());
  m.def("log_softmax_forward", &log_softmax_forward, py::arg("x"), nogil());
  m.def("softmax_backward", &softmax_backward, py::arg("grad_output"), py::arg("y"), nogil());
  m.def("cross_entropy_forward", &cross_entropy_forward, py::arg("logits"), py::arg("labels"), nogil());
  m.def("cross_entropy_backward", &cross_entropy_backward, py::arg("probs"), py::arg("labels"),
        py::arg("grad_scale") = 1.0, nogil());
}
