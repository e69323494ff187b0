#include <optional>

#include "../bindings/registry.h"
#include "batchnorm.h"

namespace {
pycnn::Tensor opt(const std::optional<pycnn::Tensor>& t) { return t ? *t : pycnn::Tensor(); }
}  // namespace

PYCNN_BINDINGS(40, batchnorm) {
  using OT = std::optional<Tensor>;
  m.def(
      "batch_norm_forward_train",
      [](const Tensor& x, const OT& gamma, const OT& beta, const OT& rm, const OT& rv, double momentum, double eps) {
        return batch_norm_forward_train(x, opt(gamma), opt(beta), opt(rm), opt(rv), momentum, eps);
      },
      py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("running_mean"), py::arg("running_var"),
      py::arg("momentum"), py::arg("eps"), nogil());
  m.def(
      "batch_norm_forward_eval",
      [](const Tensor& x, const OT& gamma, const OT& beta, const OT& rm, const OT& rv, double eps) {
        return batch_norm_forward_eval(x, opt(gamma), opt(beta), opt(rm), opt(rv), eps);
      },
      py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("running_mean"), py::arg("running_var"),
      py::arg("eps"), nogil());
  m.def(
      "batch_norm_backward",
      [](const Tensor& dy, const Tensor& x, const OT& gamma, const OT& save_mean, const OT& save_invstd) {
        return batch_norm_backward(dy, x, opt(gamma), opt(save_mean), opt(save_invstd));
      },
      py::arg("grad_output"), py::arg("x"), py::arg("gamma"), py::arg("save_mean"), py::arg("save_invstd"), nogil());
}
