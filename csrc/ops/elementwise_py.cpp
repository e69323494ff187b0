#include "../bindings/registry.h"
#include "elementwise.h"

PYCNN_BINDINGS(41, elementwise) {
  py::enum_<BinaryOp>(m, "BinaryOp")
      .value("add", BinaryOp::Add).value("sub", BinaryOp::Sub).value("mul", BinaryOp::Mul)
      .value("div", BinaryOp::Div).value("pow", BinaryOp::Pow).value("maximum", BinaryOp::Maximum)
      .value("minimum", BinaryOp::Minimum).value("floor_divide", BinaryOp::FloorDiv)
      .value("remainder", BinaryOp::Remainder).value("eq", BinaryOp::Eq).value("ne", BinaryOp::Ne)
      .value("lt", BinaryOp::Lt).value("le", BinaryOp::Le).value("gt", BinaryOp::Gt).value("ge", BinaryOp::Ge)
      .value("bitwise_and", BinaryOp::And).value("bitwise_or", BinaryOp::Or).value("bitwise_xor", BinaryOp::Xor)
      .value("copy", BinaryOp::Second);
  py::enum_<UnaryOp>(m, "UnaryOp")
      .value("neg", UnaryOp::Neg).value("abs", UnaryOp::Abs).value("exp", UnaryOp::Exp).value("log", UnaryOp::Log)
      .value("sqrt", UnaryOp::Sqrt).value("clamp", UnaryOp::Clamp).value("bitwise_not", UnaryOp::Not);
  py::enum_<ScalarKind>(m, "ScalarKind")
      .value("bool", ScalarKind::Bool).value("int", ScalarKind::Int).value("float", ScalarKind::Float);

  m.def("binary", &binary, py::arg("a"), py::arg("b"), py::arg("op"), nogil());
  m.def("binary_scalar", &binary_scalar, py::arg("a"), py::arg("s"), py::arg("kind"), py::arg("op"),
        py::arg("scalar_first") = false, nogil());
  m.def("binary_", &binary_, py::arg("a"), py::arg("b"), py::arg("op"), nogil());
  m.def("binary_scalar_", &binary_scalar_, py::arg("a"), py::arg("s"), py::arg("kind"), py::arg("op"), nogil());
  auto params = [](py::object lo, py::object hi) {
    UnaryParams p;
    if (!lo.is_none()) { p.has_lo = true; p.lo = lo.cast<double>(); }
    if (!hi.is_none()) { p.has_hi = true; p.hi = hi.cast<double>(); }
    return p;
  };
  m.def("unary", [params](const Tensor& x, UnaryOp op, py::object lo, py::object hi) {
    const UnaryParams p = params(lo, hi);
    py::gil_scoped_release nogil;
    return unary(x, op, p);
  }, py::arg("x"), py::arg("op"), py::arg("min") = py::none(), py::arg("max") = py::none());
  m.def("unary_", [params](const Tensor& x, UnaryOp op, py::object lo, py::object hi) {
    const UnaryParams p = params(lo, hi);
    py::gil_scoped_release nogil;
    unary_(x, op, p);
  }, py::arg("x"), py::arg("op"), py::arg("min") = py::none(), py::arg("max") = py::none());
  m.def("copy_into", &copy_into, py::arg("dst"), py::arg("src"), nogil());
  m.def("result_type", py::overload_cast<const Tensor&, const Tensor&>(&result_type), py::arg("a"), py::arg("b"));
  m.def("broadcast_shapes", [](const Shape& a, const Shape& b) {
    return py::tuple(py::cast(broadcast_shapes(a, b, "broadcast_shapes")));
  }, py::arg("a"), py::arg("b"));
}
