#include "../bindings/registry.h"
#include "activation.h"

PYCNN_BINDINGS(10, activation) {
  py::enum_<Act>(m, "Act")
      .value("relu", Act::ReLU)
      .value("leaky_relu", Act::LeakyReLU)
      .value("elu", Act::ELU)
      .value("sigmoid", Act::Sigmoid)
      .value("tanh", Act::Tanh)
      .value("softplus", Act::Softplus);
  m.def("activation_forward", &activation_forward, py::arg("x"), py::arg("kind"), py::arg("alpha") = 0.0, nogil());
  m.def("activation_backward", &activation_backward, py::arg("grad_output"), py::arg("x"), py::arg("kind"),
        py::arg("alpha") = 0.0, nogil());
  m.def("prelu_forward", &prelu_forward, py::arg("x"), py::arg("weight"), nogil());
  m.def("prelu_backward", &prelu_backward, py::arg("grad_output"), py::arg("x"), py::arg("weight"), nogil());
}
