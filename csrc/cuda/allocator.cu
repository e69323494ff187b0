// The caching allocator of a CUDA build (runtime.h's device_alloc / device_free / empty_cache /
// memory_stats), the private pools of CUDA graphs (graph.cuh) and the host-sync counter.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <iomanip>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "context.cuh"
#include "graph.cuh"
#include "runtime.h"

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
