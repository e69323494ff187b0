#include <optional>

#include "../bindings/registry.h"
#include "rmsprop.h"

PYCNN_BINDINGS(40, rmsprop) {
  m.def(
      "rmsprop_step",
      [](const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& square_avgs,
         const std::vector<Tensor>& grad_avgs, const std::vector<Tensor>& momentum_buffers,
         const std::vector<Tensor>& steps, double lr, double alpha, double eps, double weight_decay, double momentum,
         bool centered, bool maximize, const std::optional<Tensor>& found_inf) {
        rmsprop_step(params, grads, square_avgs, grad_avgs, momentum_buffers, steps,
                     RMSpropHyper{lr, alpha, eps, weight_decay, momentum, centered, maximize},
                     found_inf ? &*found_inf : nullptr);
      },
      py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("grad_avgs"),
      py::arg("momentum_buffers"), py::arg("steps"), py::arg("lr"), py::arg("alpha"), py::arg("eps"),
      py::arg("weight_decay") = 0.0, py::arg("momentum") = 0.0, py::arg("centered") = false,
      py::arg("maximize") = false, py::kw_only(), py::arg("found_inf") = py::none(), nogil(),
      "in-place RMSprop step of one parameter group (steps: one float64 one-element counter per param, "
      "advanced on the device); found_inf: a float32 one-element flag on the params' device, non-zero skips "
      "the step (read by the kernels, no host sync)");
}
