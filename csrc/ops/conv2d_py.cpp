#include <array>
#include <optional>

#include "../bindings/registry.h"
#include "conv2d.h"

namespace {

pycnn::Conv2dParams make_params(const std::array<int64_t, 2>& stride, const std::array<int64_t, 4>& padding,
                                const std::array<int64_t, 2>& dilation, int64_t groups) {
  pycnn::Conv2dParams p;
  p.stride[0] = stride[0], p.stride[1] = stride[1];
  for (int k = 0; k < 4; ++k) p.pad[k] = padding[k];
  p.dilation[0] = dilation[0], p.dilation[1] = dilation[1];
  p.groups = groups;
  return p;
}

}  // namespace

PYCNN_BINDINGS(20, conv2d) {
  using namespace pycnn;
  using pycnn::bindings::nogil;
  namespace py = pybind11;
  using Pair = std::array<int64_t, 2>;
  using Quad = std::array<int64_t, 4>;

  m.def(
      "conv2d_forward",
      [](const Tensor& x, const Tensor& w, const std::optional<Tensor>& bias, Pair stride, Quad padding,
         Pair dilation, int64_t groups) {
        return conv2d_forward(x, w, bias, make_params(stride, padding, dilation, groups));
      },
      py::arg("x"), py::arg("w"), py::arg("b") = py::none(), py::arg("stride") = Pair{1, 1},
      py::arg("padding") = Quad{0, 0, 0, 0}, py::arg("dilation") = Pair{1, 1}, py::arg("groups") = 1, nogil(),
      "y = conv2d(x, w) + b; x (N, C, H, W), w (O, C/groups, kh, kw), b (O,) or None, padding (top, bottom, "
      "left, right)");
  m.def(
      "conv2d_backward",
      [](const Tensor& dy, const Tensor& x, const Tensor& w, Pair stride, Quad padding, Pair dilation,
         int64_t groups, bool need_dx, bool need_dw, bool need_db) {
        return conv2d_backward(dy, x, w, make_params(stride, padding, dilation, groups), need_dx, need_dw, need_db);
      },
      py::arg("grad_output"), py::arg("x"), py::arg("w"), py::arg("stride") = Pair{1, 1},
      py::arg("padding") = Quad{0, 0, 0, 0}, py::arg("dilation") = Pair{1, 1}, py::arg("groups") = 1,
      py::arg("need_dx") = true, py::arg("need_dw") = true, py::arg("need_db") = true, nogil(),
      "(dx, dw, db) of conv2d; a gradient not asked for is None");
  m.def(
      "im2col",
      [](const Tensor& x, Pair kernel_size, Pair stride, Quad padding, Pair dilation) {
        return im2col(x, kernel_size[0], kernel_size[1], make_params(stride, padding, dilation, 1));
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride") = Pair{1, 1}, py::arg("padding") = Quad{0, 0, 0, 0},
      py::arg("dilation") = Pair{1, 1}, nogil(),
      "(N, C*kh*kw, OH*OW) column matrix, torch.nn.functional.unfold's layout");
}
