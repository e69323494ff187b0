// The CUDA runtime of a CUDA build (runtime.h): device discovery, per-device contexts (stream +
// cuBLAS handle, context.cuh), the caching allocator, copies and memsets.
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

// ============================================================================ caching allocator
//
// Sizes are rounded up (512 B granularity up to 1 MiB, 2 MiB above) and freed blocks wait in a
// free list per rounded size; cudaMalloc runs only on a miss. All work of a device is on its one
// stream, so a block freed by the host can serve the next allocation right away: every later use
// is queued behind every earlier one. On cudaMalloc failure the cache is released and the
// allocation retried once; then OutOfMemory with the numbers.
// CUDA graphs add private pools (graph.cuh): pool 0 is the global cache, pools 1.. belong to graphs.
namespace pycnn::cuda_runtime {
namespace {

constexpr size_t kSmallGranularity = 512;
constexpr size_t kSmallLimit = size_t(1) << 20;
constexpr size_t kLargeGranularity = size_t(2) << 20;
constexpr size_t kMaxBytes = size_t(1) << 50;  // 1 PiB: anything larger cannot succeed
constexpr double kMiB = 1024.0 * 1024.0;

size_t round_size(size_t n) {
  const size_t g = n <= kSmallLimit ? kSmallGranularity : kLargeGranularity;
  return (n + g - 1) / g * g;
}

using FreeLists = std::map<size_t, std::vector<void*>>;  // rounded size -> cached blocks

struct LiveBlock {
  size_t size;
  uint64_t pool;  // 0: global; else a graph's pool (global again once that pool is released)
};

struct GraphPool {
  FreeLists free_blocks;
  int64_t owned = 0;  // bytes of every block of this pool, live or free
  int64_t free_bytes = 0;
};

struct DeviceAllocator {
  std::mutex mu;
  FreeLists free_blocks;
  std::unordered_map<void*, LiveBlock> live;
  std::unordered_map<uint64_t, GraphPool> pools;
  uint64_t next_pool = 1;
  uint64_t capture_pool = 0;  // the pool of the capture running on this device, 0 when none
  std::thread::id capture_thread;
  int64_t allocated = 0, max_allocated = 0, reserved = 0, cached = 0;
  int64_t allocs = 0, frees = 0, cache_hits = 0, device_allocs = 0, device_frees = 0, oom_retries = 0;
  int64_t num_ooms = 0;
};

struct AllocatorTable {
  std::mutex mu;
  std::vector<std::unique_ptr<DeviceAllocator>> per_device;
};

AllocatorTable& allocators() {
  static AllocatorTable* t = new AllocatorTable;  // leaked on purpose (see contexts())
  return *t;
}

DeviceAllocator& allocator(int index) {
  check_device(index);
  AllocatorTable& t = allocators();
  std::lock_guard<std::mutex> lock(t.mu);
  if (t.per_device.empty()) t.per_device.resize(static_cast<size_t>(device_count()));
  auto& slot = t.per_device[static_cast<size_t>(index)];
  if (!slot) slot = std::make_unique<DeviceAllocator>();
  return *slot;
}

std::atomic<int64_t> g_host_syncs{0};

// Frees every cached block of the global cache (caller holds a.mu). Waits for the device's queued
// work first (a plain wait: a deferred error stays recorded for the next host read, it is not
// raised from inside an allocation). Graph pools are untouched: their graphs still use those addresses.
void release_cache(DeviceAllocator& a, int index) {
  if (a.free_blocks.empty()) return;
  cuda::DeviceGuard g(index);
  cuda::count_host_sync();
  PYCNN_CUDA_CHECK(cudaStreamSynchronize(cuda::context(index).stream()));
  // Each block leaves the cache before its cudaFree, so an error midway never frees one twice.
  while (!a.free_blocks.empty()) {
    auto it = a.free_blocks.begin();
    const size_t size = it->first;
    while (!it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      a.reserved -= static_cast<int64_t>(size);
      a.cached -= static_cast<int64_t>(size);
      ++a.device_frees;
      PYCNN_CUDA_CHECK(cudaFree(p));
    }
    a.free_blocks.erase(it);
  }
}

std::string mib(double bytes) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(2);
  s << bytes / kMiB;
  return s.str();
}

[[noreturn]] void throw_oom(DeviceAllocator& a, int index, size_t requested, const char* note = "") {
  ++a.num_ooms;
  size_t free_b = 0, total_b = 0;
  std::string free_s = "unknown";
  if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
    free_s = mib(static_cast<double>(free_b)) + " MiB free of " + mib(static_cast<double>(total_b)) + " MiB";
  else
    cudaGetLastError();
  throw OutOfMemory(cat("CUDA out of memory: tried to allocate ", mib(static_cast<double>(requested)), " MiB on cuda:",
                        index, "; ", mib(static_cast<double>(a.allocated)), " MiB allocated by pycnn, ",
                        mib(static_cast<double>(a.cached)), " MiB cached, ", free_s, " on the device", note));
}

// Pops a block of `size` from `lists` (nullptr when none).
void* pop_block(FreeLists& lists, size_t size) {
  auto it = lists.find(size);
  if (it == lists.end() || it->second.empty()) return nullptr;
  void* p = it->second.back();
  it->second.pop_back();
  if (it->second.empty()) lists.erase(it);
  return p;
}

// An allocation of the running capture (caller holds a.mu): the graph's pool, then a block moved
// over from the global cache, then cudaMalloc in relaxed mode (legal in capture; never cudaFree).
void* capture_alloc(DeviceAllocator& a, int index, size_t size) {
  GraphPool& pool = a.pools.at(a.capture_pool);
  if (void* p = pop_block(pool.free_blocks, size)) {
    pool.free_bytes -= static_cast<int64_t>(size);
    ++a.cache_hits;
    return p;
  }
  if (void* p = pop_block(a.free_blocks, size)) {
    a.cached -= static_cast<int64_t>(size);
    pool.owned += static_cast<int64_t>(size);
    ++a.cache_hits;
    return p;
  }
  cuda::DeviceGuard g(index);
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  PYCNN_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, size);
  cudaThreadExchangeStreamCaptureMode(&mode);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw_oom(a, index, size, " (during CUDA graph capture, where the cache cannot be released)");
  }
  PYCNN_CUDA_CHECK(err);
  ++a.device_allocs;
  a.reserved += static_cast<int64_t>(size);
  pool.owned += static_cast<int64_t>(size);
  return p;
}

}  // namespace

void* device_alloc(size_t nbytes, int index) {
  DeviceAllocator& a = allocator(index);  // checks the device
  if (nbytes == 0) return nullptr;
  std::lock_guard<std::mutex> lock(a.mu);
  if (nbytes > kMaxBytes) throw_oom(a, index, nbytes);
  const size_t size = round_size(nbytes);
  uint64_t pool = 0;
  void* p = nullptr;
  ++a.allocs;
  if (a.capture_pool != 0) {
    // The captured stream is shared: another thread's allocation here could never be safe.
    PYCNN_CHECK(std::this_thread::get_id() == a.capture_thread, DeviceError, "cuda:", index,
                ": another thread is capturing a CUDA graph on this device; allocate from that thread, or "
                "after capture_end");
    pool = a.capture_pool;
    p = capture_alloc(a, index, size);
  } else {
    p = pop_block(a.free_blocks, size);
    if (p) {
      a.cached -= static_cast<int64_t>(size);
      ++a.cache_hits;
    } else {
      cuda::DeviceGuard g(index);
      cudaError_t err = cudaMalloc(&p, size);
      if (err == cudaErrorMemoryAllocation) {
        cudaGetLastError();  // clear the (non-sticky) error before anything else checks it
        ++a.oom_retries;
        release_cache(a, index);
        err = cudaMalloc(&p, size);
        if (err == cudaErrorMemoryAllocation) {
          cudaGetLastError();
          throw_oom(a, index, size);
        }
      }
      PYCNN_CUDA_CHECK(err);
      ++a.device_allocs;
      a.reserved += static_cast<int64_t>(size);
    }
  }
  a.live[p] = LiveBlock{size, pool};
  a.allocated += static_cast<int64_t>(size);
  a.max_allocated = std::max(a.max_allocated, a.allocated);
  return p;
}

// Called from Storage's destructor: never throws, never calls CUDA (the block goes to a cache).
void device_free(void* ptr, size_t nbytes, int index) {
  if (ptr == nullptr) return;
  try {
    DeviceAllocator& a = allocator(index);
    std::lock_guard<std::mutex> lock(a.mu);
    auto it = a.live.find(ptr);
    if (it == a.live.end()) return;  // not ours (or freed twice): never hand it out again
    const size_t size = it->second.size;
    uint64_t pool = it->second.pool;
    a.live.erase(it);
    a.allocated -= static_cast<int64_t>(size);
    ++a.frees;
    if (a.capture_pool != 0 && (pool == 0 || a.pools.find(pool) == a.pools.end())) {
      // The running capture may have baked this address in: it belongs to that graph from now on.
      // (A block of a released pool is a global block again, so it joins the capture's pool too.)
      pool = a.capture_pool;
      a.pools.at(pool).owned += static_cast<int64_t>(size);
    }
    auto pit = pool != 0 ? a.pools.find(pool) : a.pools.end();
    if (pit != a.pools.end()) {
      pit->second.free_blocks[size].push_back(ptr);
      pit->second.free_bytes += static_cast<int64_t>(size);
    } else {
      a.cached += static_cast<int64_t>(size);
      a.free_blocks[size].push_back(ptr);
    }
  } catch (...) {
    // Only reachable on bad_alloc of the free list: the block is leaked, never double-used.
  }
}

void empty_cache(int index) {
  if (!is_available()) return;
  DeviceAllocator& a = allocator(index);
  std::lock_guard<std::mutex> lock(a.mu);
  PYCNN_CHECK(a.capture_pool == 0, DeviceError, "cuda.empty_cache: cuda:", index,
              " is capturing a CUDA graph; call it after capture_end");
  release_cache(a, index);
}

std::map<std::string, int64_t> memory_stats(int index) {
  DeviceAllocator& a = allocator(index);
  std::lock_guard<std::mutex> lock(a.mu);
  int64_t pool_owned = 0, pool_free = 0;
  for (const auto& kv : a.pools) {
    pool_owned += kv.second.owned;
    pool_free += kv.second.free_bytes;
  }
  return {
      {"allocated_bytes", a.allocated},   {"max_allocated_bytes", a.max_allocated},
      {"reserved_bytes", a.reserved},     {"cached_bytes", a.cached},
      {"allocs", a.allocs},               {"frees", a.frees},
      {"cache_hits", a.cache_hits},       {"device_allocs", a.device_allocs},
      {"device_frees", a.device_frees},   {"oom_retries", a.oom_retries},
      {"num_ooms", a.num_ooms},           {"live_blocks", static_cast<int64_t>(a.live.size())},
      {"graph_pools", static_cast<int64_t>(a.pools.size())},
      {"graph_pool_bytes", pool_owned},   {"graph_pool_free_bytes", pool_free},
  };
}

void reset_peak_memory_stats(int index) {
  DeviceAllocator& a = allocator(index);
  std::lock_guard<std::mutex> lock(a.mu);
  a.max_allocated = a.allocated;
}

int64_t host_sync_count() { return g_host_syncs.load(); }

}  // namespace pycnn::cuda_runtime

// ======================================================================= graph pools (graph.cuh)
namespace pycnn::cuda {

void count_host_sync() { cuda_runtime::g_host_syncs.fetch_add(1); }

uint64_t begin_capture_pool(int device) {
  cuda_runtime::DeviceAllocator& a = cuda_runtime::allocator(device);
  std::lock_guard<std::mutex> lock(a.mu);
  PYCNN_CHECK(a.capture_pool == 0, DeviceError, "CUDAGraph.capture_begin: cuda:", device,
              " is already capturing a CUDA graph; one capture per device at a time");
  const uint64_t id = a.next_pool++;
  a.pools[id];
  a.capture_pool = id;
  a.capture_thread = std::this_thread::get_id();
  return id;
}

void end_capture_pool(int device) {
  cuda_runtime::DeviceAllocator& a = cuda_runtime::allocator(device);
  std::lock_guard<std::mutex> lock(a.mu);
  a.capture_pool = 0;
}

void release_pool(int device, uint64_t pool) {
  cuda_runtime::DeviceAllocator& a = cuda_runtime::allocator(device);
  std::lock_guard<std::mutex> lock(a.mu);
  auto it = a.pools.find(pool);
  if (it == a.pools.end()) return;
  for (auto& kv : it->second.free_blocks)
    for (void* p : kv.second) {
      a.free_blocks[kv.first].push_back(p);
      a.cached += static_cast<int64_t>(kv.first);
    }
  a.pools.erase(it);  // live blocks of the pool find no pool when freed: they go to the global cache
}

int64_t pool_bytes(int device, uint64_t pool) {
  cuda_runtime::DeviceAllocator& a = cuda_runtime::allocator(device);
  std::lock_guard<std::mutex> lock(a.mu);
  auto it = a.pools.find(pool);
  return it == a.pools.end() ? 0 : it->second.owned;
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
