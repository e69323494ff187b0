// The CUDA runtime of a CUDA build (runtime.h): device discovery, per-device contexts (stream +
// cuBLAS handle, context.cuh), copies and memsets. The caching allocator is in allocator.cu.
// runtime_none.cpp is the CPU-only stand-in with the same entry points.
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "context.cuh"
#include "cublas_lib.cuh"
#include "graph.cuh"
#include "runtime.h"

namespace pycnn {
bool cuda_compiled() { return true; }
}  // namespace pycnn

// ================================================================================== errors
namespace pycnn::cuda {

namespace {
const char* short_file(const char* file) {
  const char* p = std::strstr(file, "csrc/");
  return p ? p : file;
}
}  // namespace

const char* cublas_status_name(cublasStatus_t st) {
  switch (st) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED (no usable GPU or driver?)";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED (out of device memory)";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: break;
  }
  return "unknown cuBLAS status";
}

void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  const std::string msg = cat(short_file(file), ":", line, ": ", expr, " failed: ", cudaGetErrorString(err), " (",
                              cudaGetErrorName(err), ")");
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky: clear it so that later launch checks do not see it
    throw OutOfMemory(msg);
  }
  throw DeviceError(msg);
}

void throw_cublas_error(cublasStatus_t st, const char* expr, const char* file, int line) {
  const std::string msg =
      cat(short_file(file), ":", line, ": ", expr, " failed: ", cublas_status_name(st), " (status ", int(st), ")");
  if (st == CUBLAS_STATUS_ALLOC_FAILED) throw OutOfMemory(msg);
  throw DeviceError(msg);
}

}  // namespace pycnn::cuda

// ================================================================================= discovery
namespace pycnn::cuda_runtime {
namespace {

struct Discovery {
  int count = 0;
  std::string message = "ok";
};

// Why cudaGetDeviceCount failed, in the user's terms. The static CUDA runtime loads the driver
// (libcuda.so.1) itself and answers "insufficient driver" both when there is none and when it is
// too old, so the driver library is looked up here to tell the two apart.
std::string driver_problem(cudaError_t err) {
  const int runtime_major = CUDART_VERSION / 1000;
  if (err == cudaErrorNoDevice) return "no GPU: the NVIDIA driver found no CUDA device";
  if (err == cudaErrorInsufficientDriver) {
    void* h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!h) return "no NVIDIA driver (libcuda.so.1 not found): install the NVIDIA driver to use a GPU";
    int v = 0;
    using get_version_t = int (*)(int*);
    auto get_version = reinterpret_cast<get_version_t>(dlsym(h, "cuDriverGetVersion"));
    const bool known = get_version && get_version(&v) == 0 && v > 0;
    dlclose(h);
    return cat("driver too old for the CUDA ", runtime_major, " runtime (the driver supports CUDA ",
               known ? cat(v / 1000, ".", (v % 1000) / 10) : std::string("?"), ", pycnn needs ", runtime_major,
               ".0 or newer): update the NVIDIA driver");
  }
  return cat("CUDA initialisation failed: ", cudaGetErrorString(err), " (", cudaGetErrorName(err), ")");
}

const Discovery& discovery() {
  static Discovery d;
  static std::once_flag once;
  std::call_once(once, [] {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    std::string why;
    if (err != cudaSuccess) {
      d.message = driver_problem(err);
      cudaGetLastError();  // clear
    } else if (n <= 0) {
      d.message = driver_problem(cudaErrorNoDevice);
    } else if (!cuda::load_cublas(nullptr, &why)) {
      d.message = why;  // a GPU, but nothing to run the GEMMs with: CUDA stays unavailable
    } else {
      d.count = n;
    }
  });
  return d;
}

std::atomic<bool> g_tf32{false};

// Pageable host memory is staged by the driver before cudaMemcpyAsync returns, so the caller may
// reuse it at once (the CUDA docs' API sync behaviour, and what torch's non_blocking copies rely
// on); pinned or managed memory is read later by DMA, so those copies are waited for.
bool is_pageable(const void* host) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, host) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attr.type == cudaMemoryTypeUnregistered;
}

}  // namespace

bool is_available() { return discovery().count > 0; }
int device_count() { return discovery().count; }
std::string status_message() { return discovery().message; }

std::string version() {
  const int v = CUDART_VERSION;  // e.g. 13000
  return cat(v / 1000, ".", (v % 1000) / 10);
}

void check_device(int index) {
  if (!is_available()) throw_no_cuda(cat("cuda:", index).c_str());
  const int n = device_count();
  PYCNN_CHECK(index >= 0 && index < n, DeviceError, "cuda:", index, ": invalid device index; this machine has ", n,
              " CUDA device", n == 1 ? "" : "s", " (cuda:0", n > 1 ? cat(" .. cuda:", n - 1) : std::string(), ")");
}

std::string device_name(int index) {
  check_device(index);
  cudaDeviceProp prop{};
  PYCNN_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return prop.name;
}

void synchronize(int index) {
  if (!is_available()) return;
  check_device(index);
  cuda::DeviceGuard g(index);
  cuda::refuse_during_capture(index, "cuda.synchronize");
  cuda::host_wait(index, /*whole_device=*/true);
}

void set_allow_tf32(bool allow) { g_tf32.store(allow); }
bool allow_tf32() { return g_tf32.load(); }

}  // namespace pycnn::cuda_runtime

// ============================================================================ device contexts
namespace pycnn::cuda {

DeviceContext::DeviceContext(int device) : device_(device) {
  DeviceGuard g(device);
  try {
    PYCNN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    // The deferred-error word, cleared in stream order before any kernel of this context runs.
    PYCNN_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&deferred_dev_), sizeof(DeferredError)));
    PYCNN_CUDA_CHECK(cudaMemsetAsync(deferred_dev_, 0, sizeof(DeferredError), stream_));
    PYCNN_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&deferred_host_), sizeof(DeferredError)));
    std::memset(deferred_host_, 0, sizeof(DeferredError));
  } catch (...) {
    release();  // the destructor does not run for a half-built object
    throw;
  }
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) == cudaSuccess && sms > 0)
    sm_count_ = sms;
  else
    cudaGetLastError();
}

DeviceContext::~DeviceContext() { release(); }

void DeviceContext::release() noexcept {
  if (cublas_) cublas_api().destroy(cublas_);
  if (cublas_ws_) cudaFree(cublas_ws_);
  if (deferred_dev_) cudaFree(deferred_dev_);
  if (deferred_host_) cudaFreeHost(deferred_host_);
  if (stream_) cudaStreamDestroy(stream_);
  cublas_ = nullptr;
  cublas_ws_ = nullptr;
  deferred_dev_ = nullptr;
  deferred_host_ = nullptr;
  stream_ = nullptr;
  cudaGetLastError();
}

cublasHandle_t DeviceContext::cublas() {
  if (!cublas_) {
    DeviceGuard g(device_);
    cublasHandle_t h = nullptr;
    const CublasApi& api = cublas_api();
    PYCNN_CUBLAS_CHECK(api.create(&h));
    cublasStatus_t st = api.set_stream(h, stream_);
    // An explicit workspace (set after the stream, which resets it): cuBLAS then never allocates
    // behind our back, inside a graph capture included, and picks the same kernels captured or not.
    if (st == CUBLAS_STATUS_SUCCESS && !cublas_ws_) {
      const cudaError_t err = cudaMalloc(&cublas_ws_, kCublasWorkspaceBytes);
      if (err != cudaSuccess) {
        api.destroy(h);
        PYCNN_CUDA_CHECK(err);
      }
    }
    if (st == CUBLAS_STATUS_SUCCESS) st = api.set_workspace(h, cublas_ws_, kCublasWorkspaceBytes);
    if (st != CUBLAS_STATUS_SUCCESS) {
      api.destroy(h);
      PYCNN_CUBLAS_CHECK(st);
    }
    cublas_ = h;
  }
  return cublas_;
}

namespace {
struct ContextTable {
  std::mutex mu;
  std::vector<std::unique_ptr<DeviceContext>> ctx;
};
// Leaked on purpose: contexts (and cached blocks) must outlive every tensor, including those
// Python destroys at interpreter exit, and never run CUDA calls during static destruction.
ContextTable& contexts() {
  static ContextTable* t = new ContextTable;
  return *t;
}
}  // namespace

DeviceContext& context(int device) {
  cuda_runtime::check_device(device);
  ContextTable& t = contexts();
  std::lock_guard<std::mutex> lock(t.mu);
  if (t.ctx.empty()) t.ctx.resize(static_cast<size_t>(cuda_runtime::device_count()));
  auto& slot = t.ctx[static_cast<size_t>(device)];
  if (!slot) slot = std::make_unique<DeviceContext>(device);
  return *slot;
}

namespace {
const char* deferred_op_name(int op) {
  switch (op) {
    case kDeferredCrossEntropy: return "cross_entropy";
    case kDeferredCrossEntropyBackward: return "cross_entropy_backward";
    case kDeferredCountCorrect: return "count_correct";
    default: break;
  }
  return "a CUDA kernel";
}
}  // namespace

void refuse_during_capture(int device, const char* what) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  PYCNN_CUDA_CHECK(cudaStreamIsCapturing(context(device).stream(), &st));
  PYCNN_CHECK(st == cudaStreamCaptureStatusNone, DeviceError, what, ": cuda:", device,
              " is capturing a CUDA graph, and a captured step cannot wait for the host or copy from/to it "
              "(.item(), .numpy(), isfinite, moving a CPU tensor to the device, synchronize); do that outside "
              "the captured region (copy new data into static input tensors before replay())");
}

void host_wait(int device, bool whole_device) {
  DeviceContext& ctx = context(device);
  DeviceGuard g(device);
  // The mirror is shared by the device's host waits: one at a time, so that each recorded error
  // is read (and raised) exactly once.
  std::lock_guard<std::mutex> lock(ctx.deferred_mutex());
  DeferredError* host = ctx.deferred_error_host();
  // Queued behind every kernel issued so far: after the wait the mirror holds their verdict. Not a
  // sync of its own (the wait below is the one counted), and no copy() call, so no recursion.
  PYCNN_CUDA_CHECK(cudaMemcpyAsync(host, ctx.deferred_error(), sizeof(DeferredError), cudaMemcpyDeviceToHost,
                                   ctx.stream()));
  count_host_sync();
  PYCNN_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
  if (whole_device) PYCNN_CUDA_CHECK(cudaDeviceSynchronize());
  const DeferredError e = *host;
  if (e.op == kDeferredNone) return;
  // Clear it (stream order: before any later kernel), then report. The device works normally on.
  std::memset(host, 0, sizeof(DeferredError));
  PYCNN_CUDA_CHECK(cudaMemsetAsync(ctx.deferred_error(), 0, sizeof(DeferredError), ctx.stream()));
  throw ValueError(cat(deferred_op_name(e.op), ": label ", e.label, " at position ", e.position,
                       " is out of range for ", e.classes, " classes (expected 0 <= label < ", e.classes,
                       "); detected on cuda:", device,
                       " at the first host sync after the op (CUDA labels are checked on the device, "
                       "without a host sync per step)"));
}

int device_of(const void* ptr) {
  if (cuda_runtime::device_count() <= 1 || ptr == nullptr) return 0;
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return attr.type == cudaMemoryTypeDevice ? attr.device : 0;
}

DeviceGuard::DeviceGuard(int device) {
  int cur = -1;
  PYCNN_CUDA_CHECK(cudaGetDevice(&cur));
  if (cur != device) {
    PYCNN_CUDA_CHECK(cudaSetDevice(device));
    prev_ = cur;
  }
}

DeviceGuard::~DeviceGuard() {
  if (prev_ >= 0) cudaSetDevice(prev_);
}

}  // namespace pycnn::cuda

// ==================================================================================== copies
namespace pycnn::cuda_runtime {

void memset_zero(void* ptr, size_t nbytes, int index) {
  if (nbytes == 0) return;
  cuda::Exec ex(index, 0);
  PYCNN_CUDA_CHECK(cudaMemsetAsync(ptr, 0, nbytes, ex.stream()));
}

void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memcpy(dst, src, nbytes);
    return;
  }
  if (dst_dev.is_cuda() && src_dev.is_cpu()) {
    // Queued behind the device's earlier work; the caller may free or reuse the host buffer as
    // soon as this returns (pageable: staged by the driver; otherwise waited for).
    cuda::Exec ex(dst_dev.index, 0);
    cuda::refuse_during_capture(dst_dev.index, "copy to the device");
    PYCNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, ex.stream()));
    if (!is_pageable(src)) cuda::host_wait(dst_dev.index);
    return;
  }
  if (dst_dev.is_cpu() && src_dev.is_cuda()) {
    cuda::Exec ex(src_dev.index, 0);
    cuda::refuse_during_capture(src_dev.index, "copy to the host");
    PYCNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, ex.stream()));
    cuda::host_wait(src_dev.index);
    return;
  }
  if (dst_dev.index == src_dev.index) {
    cuda::Exec ex(dst_dev.index, 0);
    PYCNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, ex.stream()));
    return;
  }
  // Between two devices (rare): finish the source's queued work, copy on the destination's
  // stream, and wait for it so that the source may be freed and reused right after.
  {
    cuda::Exec sx(src_dev.index, 0);
    cuda::refuse_during_capture(src_dev.index, "copy between devices");
    cuda::host_wait(src_dev.index);
  }
  cuda::Exec dx(dst_dev.index, 0);
  cuda::refuse_during_capture(dst_dev.index, "copy between devices");
  PYCNN_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_dev.index, src, src_dev.index, nbytes, dx.stream()));
  cuda::host_wait(dst_dev.index);
}

}  // namespace pycnn::cuda_runtime
