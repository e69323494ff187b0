// cuBLAS loaded with dlopen (cublas_lib.cuh): the search paths, the symbol table, the reason when
// nothing loads.
#include <dlfcn.h>

#include <atomic>
#include <mutex>

#include "../common.h"
#include "cublas_lib.cuh"
#include "runtime.h"

namespace pycnn::cuda {
namespace {

struct Loaded {
  std::vector<std::string> paths;  // from set_cublas_paths, in the order to try
  bool tried = false;
  std::string from, why;
  CublasApi api;
};
std::mutex g_mu;
Loaded g_lib;
std::atomic<bool> g_ready{false};  // cuBLAS loaded: set once g_lib.api is filled, never cleared

template <class F>
bool sym(void* h, const char* name, F* out, std::string* missing) {
  *out = reinterpret_cast<F>(dlsym(h, name));
  if (!*out) *missing = name;
  return *out != nullptr;
}

bool fill(void* h, CublasApi* a, std::string* missing) {
  return sym(h, "cublasCreate_v2", &a->create, missing) && sym(h, "cublasDestroy_v2", &a->destroy, missing) &&
         sym(h, "cublasSetStream_v2", &a->set_stream, missing) &&
         sym(h, "cublasSetWorkspace_v2", &a->set_workspace, missing) &&
         sym(h, "cublasSetMathMode", &a->set_math_mode, missing) && sym(h, "cublasSgemm_v2", &a->sgemm, missing) &&
         sym(h, "cublasDgemm_v2", &a->dgemm, missing) &&
         sym(h, "cublasSgemmStridedBatched", &a->sgemm_strided_batched, missing) &&
         sym(h, "cublasDgemmStridedBatched", &a->dgemm_strided_batched, missing);
}

}  // namespace

bool load_cublas(std::string* loaded_from, std::string* why) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_lib.tried) {
    g_lib.tried = true;
    std::string tried;
    for (const std::string& p : g_lib.paths) {
      void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        const char* err = dlerror();
        tried += cat(tried.empty() ? "" : "; ", err ? err : p);
        continue;
      }
      std::string missing;
      CublasApi api;
      if (!fill(h, &api, &missing)) {
        tried += cat(tried.empty() ? "" : "; ", p, " lacks ", missing);
        dlclose(h);
        continue;
      }
      g_lib.api = api;
      g_lib.from = p;
      g_ready.store(true, std::memory_order_release);
      break;
    }
    if (!g_ready.load())
      g_lib.why = cat("cuBLAS not found: pip install 'pycnn[cuda]' (tried ",
                      tried.empty() ? std::string("no path") : tried, ")");
  }
  if (loaded_from) *loaded_from = g_lib.from;
  if (why) *why = g_lib.why;
  return g_ready.load();
}

const CublasApi& cublas_api() {
  if (g_ready.load(std::memory_order_acquire)) return g_lib.api;  // every GEMM: no lock once loaded
  std::lock_guard<std::mutex> lock(g_mu);
  throw DeviceError(g_lib.tried ? g_lib.why : std::string("cuBLAS is not loaded yet"));
}

}  // namespace pycnn::cuda

namespace pycnn::cuda_runtime {

void set_cublas_paths(const std::vector<std::string>& paths) {
  std::lock_guard<std::mutex> lock(cuda::g_mu);
  cuda::g_lib.paths = paths;
}

std::string cublas_soname() { return cat("libcublas.so.", CUBLAS_VER_MAJOR); }

std::string cublas_path() {
  std::lock_guard<std::mutex> lock(cuda::g_mu);
  return cuda::g_lib.from;
}

}  // namespace pycnn::cuda_runtime
