#include "../bindings/registry.h"
#include "reduce.h"

PYCNN_BINDINGS(42, reduce) {
  py::enum_<ReduceOp>(m, "ReduceOp")
      .value("sum", ReduceOp::Sum).value("mean", ReduceOp::Mean).value("max", ReduceOp::Max)
      .value("min", ReduceOp::Min).value("argmax", ReduceOp::Argmax).value("argmin", ReduceOp::Argmin);
  m.def("reduce", &reduce, py::arg("x"), py::arg("dim"), py::arg("op"), py::arg("keepdim") = false, nogil());
  m.def("reduce_with_indices", &reduce_with_indices, py::arg("x"), py::arg("dim"), py::arg("is_max"),
        py::arg("keepdim") = false, nogil());
}
