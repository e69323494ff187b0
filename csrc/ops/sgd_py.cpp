#include <optional>

#include "../bindings/registry.h"
#include "sgd.h"

PYCNN_BINDINGS(40, sgd) {
  m.def(
      "sgd_step",
      [](const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& bufs,
         double lr, double momentum, double dampening, double weight_decay, bool nesterov, bool first_step,
         const std::optional<Tensor>& found_inf) {
        sgd_step(params, grads, bufs, lr, momentum, dampening, weight_decay, nesterov, first_step,
                 found_inf ? &*found_inf : nullptr);
      },
      py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("lr"), py::arg("momentum") = 0.0,
      py::arg("dampening") = 0.0, py::arg("weight_decay") = 0.0, py::arg("nesterov") = false,
      py::arg("first_step") = false, py::kw_only(), py::arg("found_inf") = py::none(), nogil(),
      "in-place SGD step of one parameter group; found_inf: a float32 one-element flag on the params' device, "
      "non-zero skips the step (read by the kernels, no host sync)");
}
