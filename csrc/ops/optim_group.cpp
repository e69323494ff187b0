#include "optim_group.h"

namespace pycnn {

namespace {
// Each check keeps its own condition; names are formatted only when one fails (PYCNN_CHECK formats
// its message on failure only): formatting them for every tensor of every step cost about 0.3 us each.
void check_member(const char* op, const Tensor& t, const Tensor& param, size_t i, const char* what) {
  PYCNN_CHECK(t.defined(), ValueError, op, ": ", what, "[", i, "] is missing");
  if (t.device() != param.device() || t.dtype() != param.dtype()) {  // a check below fails: name both
    const std::string arg = cat(what, "[", i, "]"), parg = cat("params[", i, "]");
    check_same_device(param, t, op, parg.c_str(), arg.c_str());
    check_same_dtype(param, t, op, parg.c_str(), arg.c_str());
  }
  PYCNN_CHECK(t.shape() == param.shape(), ValueError, op, ": expected ", what, "[", i, "] of shape ",
              shape_str(param.shape()), " (the shape of params[", i, "]), got ", shape_str(t.shape()));
}

void check_count(const char* op, const char* what, size_t got, size_t params) {
  PYCNN_CHECK(got == params, ValueError, op, ": expected ", what, " to hold one tensor per parameter (", params,
              "), got ", got);
}
}  // namespace

void check_optimizer_group(const char* op, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                           const std::vector<NamedBuffers>& required, const std::vector<Tensor>& steps,
                           const Tensor* found_inf) {
  const size_t n = params.size();
  check_count(op, "grads", grads.size(), n);
  check_count(op, "steps", steps.size(), n);
  for (const auto& [name, list] : required) check_count(op, name, list->size(), n);
  check_found_inf(op, found_inf, params);
  check_group_members(op, params, grads, required, &steps);
}

void check_found_inf(const char* op, const Tensor* found_inf, const std::vector<Tensor>& params) {
  if (!found_inf) return;
  PYCNN_CHECK(found_inf->defined(), ValueError, op, ": found_inf is missing");
  PYCNN_CHECK(found_inf->dtype() == DType::Float32 && found_inf->numel() == 1, ValueError, op,
              ": expected found_inf a one-element float32 tensor (from _core.nonfinite_flag), got dtype ",
              dtype_name(found_inf->dtype()), " and shape ", shape_str(found_inf->shape()));
  if (!params.empty())
    PYCNN_CHECK(found_inf->device() == params[0].device(), DeviceError, op, ": found_inf is on ",
                found_inf->device().str(), " but params[0] is on ", params[0].device().str(),
                "; the flag must live on the parameters' device (it is read by the kernels)");
}

void require_if(bool used, const char* op, const char* name, const std::vector<Tensor>& list,
                const char* unused_because, std::vector<NamedBuffers>& required) {
  if (used) required.push_back({name, &list});
  else PYCNN_CHECK(list.empty(), ValueError, op, ": expected no ", name, " (", unused_because, "), got ", list.size());
}

void check_group_members(const char* op, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                         const std::vector<NamedBuffers>& required, const std::vector<Tensor>* steps) {
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    PYCNN_CHECK(p.defined(), ValueError, op, ": params[", i, "] is missing");
    PYCNN_CHECK(p.dtype() != DType::Int64, TypeError, op, ": params[", i,
                "] is int64; parameters must be float32 or float64");
    PYCNN_CHECK(p.device() == params[0].device(), DeviceError, op, ": params[0] is on ", params[0].device().str(),
                " but params[", i, "] is on ", p.device().str(), "; a parameter group must live on one device");
    PYCNN_CHECK(p.is_contiguous(), ValueError, op, ": params[", i, "] of shape ", shape_str(p.shape()),
                " must be contiguous (it is updated in place)");
    check_member(op, grads[i], p, i, "grads");
    for (const auto& [name, list] : required) {
      check_member(op, (*list)[i], p, i, name);
      PYCNN_CHECK((*list)[i].is_contiguous(), ValueError, op, ": ", name, "[", i,
                  "] must be contiguous (it is updated in place)");
    }
    if (!steps) continue;
    const Tensor& s = (*steps)[i];
    PYCNN_CHECK(s.defined(), ValueError, op, ": steps[", i, "] is missing");
    PYCNN_CHECK(s.dtype() == DType::Float64 && s.numel() == 1, ValueError, op, ": expected steps[", i,
                "] a one-element float64 step counter, got dtype ", dtype_name(s.dtype()), " and shape ",
                shape_str(s.shape()));
    if (s.device() == p.device()) continue;
    const std::string parg = cat("params[", i, "]"), sarg = cat("steps[", i, "]");
    check_same_device(p, s, op, parg.c_str(), sarg.c_str());
  }
}

const float* found_inf_data(const Tensor* found_inf) {
  // A one-element tensor is contiguous whatever its strides: its data pointer is the element.
  return found_inf ? found_inf->data<float>() : nullptr;
}

namespace cpu {
void advance_step(double* step, const float* found_inf) {
  if (!skip_step(found_inf)) *step += 1.0;
}
}  // namespace cpu

}  // namespace pycnn
