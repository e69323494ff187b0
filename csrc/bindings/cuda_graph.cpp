// pycnn._core.CUDAGraph (whole-step CUDA graphs, cuda/graph.cu) and the host-sync debug counter.
// Wrapped by pycnn.cuda.CUDAGraph; in a CPU-only build constructing one raises RuntimeError.
#include "../cuda/runtime.h"
#include "registry.h"

PYCNN_BINDINGS(12, cuda_graph) {
  using cuda_runtime::Graph;
  py::class_<Graph>(m, "CUDAGraph")
      .def(py::init<int>(), py::arg("device") = 0)
      .def("capture_begin", &Graph::capture_begin, nogil())
      .def("capture_end", &Graph::capture_end, nogil())
      .def("replay", &Graph::replay, nogil())
      .def("reset", &Graph::reset, nogil())
      .def_property_readonly("capturing", &Graph::capturing)
      .def_property_readonly("captured", &Graph::captured)
      .def_property_readonly("device", &Graph::device)
      .def("pool_bytes", &Graph::pool_bytes);
  m.def("cuda_host_sync_count", &cuda_runtime::host_sync_count);
}
