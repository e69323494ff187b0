#include "../bindings/registry.h"
#include "sgd.h"

PYCNN_BINDINGS(40, sgd) {
  using namespace pycnn;
  using pycnn::bindings::nogil;
  namespace py = pybind11;
  m.def("sgd_step", &sgd_step, py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("lr"),
        py::arg("momentum") = 0.0, py::arg("dampening") = 0.0, py::arg("weight_decay") = 0.0,
        py::arg("nesterov") = false, py::arg("first_step") = false, nogil());
}
