#include "../bindings/registry.h"
#include "tensor_ops.h"

PYCNN_BINDINGS(40, tensor_ops) {
  m.def("add", &add, py::arg("a"), py::arg("b"), nogil());
  m.def("add_", &add_, py::arg("dst"), py::arg("src"), py::arg("alpha") = 1.0, nogil());
  m.def("scale_", &scale_, py::arg("t"), py::arg("s"), nogil());
  m.def("concat", &concat, py::arg("tensors"), py::arg("dim") = 0, nogil());
  m.def("split", &split, py::arg("x"), py::arg("sizes"), py::arg("dim") = 0, nogil());
  m.def("sum_all", &sum_all, py::arg("x"), nogil());
  m.def("count_correct", &count_correct, py::arg("logits"), py::arg("labels"), nogil());
  m.def("isfinite_all", &isfinite_all, py::arg("x"), nogil());
  m.def("nonfinite_flag", &nonfinite_flag, py::arg("tensors"), nogil(),
        "float32 () tensor on the tensors' device: 1.0 if any element is NaN/Inf, else 0.0 (no host sync)");
  m.def("keep_or_undo_", &keep_or_undo_, py::arg("tensors"), py::arg("backups"), py::arg("found_inf"), nogil(),
        "found_inf == 0: backups[i] = tensors[i] (keep the step); else tensors[i] = backups[i] (undo it); in place, "
        "decided on the device");
}
