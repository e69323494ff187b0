// The CUDA runtime as the CPU side of the core sees it. In a CPU-only build these are
// defined in runtime_none.cpp (they report "no CUDA"); in a CUDA build in runtime.cu.
// Nothing here needs CUDA headers, so tensor.cpp and the bindings compile the same either way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../common.h"

namespace pycnn::cuda_runtime {

bool is_available();              // a driver and at least one device
int device_count();               // 0 when unavailable
std::string device_name(int index);
std::string status_message();     // why CUDA is unavailable, or "ok"
// cuBLAS is loaded on demand (cublas_lib.cu), from these paths tried in order, when discovery
// first finds a GPU; cublas_path() is where it came from ("" until then).
void set_cublas_paths(const std::vector<std::string>& paths);
std::string cublas_soname();      // "libcublas.so.13" (the major version built against), "" in a CPU build
std::string cublas_path();
std::string version();            // CUDA runtime version compiled against, "" in a CPU build
void check_device(int index);     // DeviceError unless `index` names a usable device
void synchronize(int index);

void* device_alloc(size_t nbytes, int index);  // caching allocator; OutOfMemory with sizes on failure
void device_free(void* ptr, size_t nbytes, int index);
void memset_zero(void* ptr, size_t nbytes, int index);
void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes);  // synchronous w.r.t. host

std::map<std::string, int64_t> memory_stats(int index);  // allocated, max_allocated, reserved, device_allocs, ...
void reset_peak_memory_stats(int index);
void empty_cache(int index);

void set_allow_tf32(bool allow);
bool allow_tf32();

// Times the host has waited for a CUDA device (device->host copies, synchronize, isfinite_all,
// cache releases, ...), all devices together: a debug counter for "no sync inside a step".
int64_t host_sync_count();

// A whole-step CUDA graph on one device's stream (torch.cuda.CUDAGraph): capture_begin ...
// the ops to record ... capture_end, then replay() as often as needed. See graph.cu for the
// rules (private memory pool, frozen workspace arena, dropout's device-side RNG counter).
class Graph : NonCopyable {
 public:
  explicit Graph(int device);  // DeviceError without CUDA
  ~Graph();

  void capture_begin();
  void capture_end();  // instantiates; on failure the capture is discarded and DeviceError raised
  void replay();
  void reset();        // drops the graph and its memory pool; aborts an unfinished capture
  bool capturing() const;
  bool captured() const;
  int device() const;
  int64_t pool_bytes() const;  // device memory reserved by this graph's private pool

  struct Impl;  // graph.cu

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pycnn::cuda_runtime
