#include <optional>

#include "../bindings/registry.h"
#include "adam.h"

PYCNN_BINDINGS(40, adam) {
  m.def(
      "adam_step",
      [](const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& exp_avgs,
         const std::vector<Tensor>& exp_avg_sqs, const std::vector<Tensor>& max_exp_avg_sqs,
         const std::vector<Tensor>& steps, double lr, double beta1, double beta2, double eps, double weight_decay,
         bool amsgrad, bool maximize, bool decoupled_weight_decay, const std::optional<Tensor>& found_inf) {
        adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps,
                  AdamHyper{lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay},
                  found_inf ? &*found_inf : nullptr);
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"),
      py::arg("steps"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
      py::arg("weight_decay") = 0.0, py::arg("amsgrad") = false, py::arg("maximize") = false,
      py::arg("decoupled_weight_decay") = false, py::kw_only(), py::arg("found_inf") = py::none(), nogil(),
      "in-place Adam/AdamW step of one parameter group (steps: one float64 one-element counter per param, "
      "advanced on the device); found_inf: a float32 one-element flag on the params' device, non-zero skips "
      "the step (read by the kernels, no host sync)");
}
