#include <pybind11/stl.h>

#include "../bindings/registry.h"
#include "pool2d.h"

PYCNN_BINDINGS(30, pool2d) {
  m.def("max_pool2d_forward", &max_pool2d_forward, py::arg("x"), py::arg("kernel_size"), py::arg("stride"),
        py::arg("padding"), nogil());
  m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("grad_output"), py::arg("argmax"),
        py::arg("input_shape"), py::arg("kernel_size") = py::none(), py::arg("stride") = py::none(),
        py::arg("padding") = py::none(), nogil());
  m.def("avg_pool2d_forward", &avg_pool2d_forward, py::arg("x"), py::arg("kernel_size"), py::arg("stride"),
        py::arg("padding"), nogil());
  m.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("grad_output"), py::arg("input_shape"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), nogil());
  m.def("adaptive_avg_pool2d_forward", &adaptive_avg_pool2d_forward, py::arg("x"), py::arg("output_size"), nogil());
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward, py::arg("grad_output"),
        py::arg("input_shape"), nogil());
}
