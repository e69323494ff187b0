// CUDA-side helpers shared by runtime.cu, blas.cu and ops/*.cu (never included by .cpp files):
// error-checking macros, the per-device context (one stream + one cuBLAS handle, created lazily),
// a device guard, and the launch helper for grid-stride loops.
//
// Ordering model: every kernel, copy and memset for device d goes on context(d).stream, so the
// work of one device runs in issue order; the caching allocator can hand a freed block to the
// next op without a sync, and device->host copies synchronise that one stream.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>

#include "../common.h"
#include "../workspace.h"

namespace pycnn::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t st, const char* expr, const char* file, int line);
const char* cublas_status_name(cublasStatus_t st);

}  // namespace pycnn::cuda

// DeviceError "<file>:<line>: <expr> failed: <cuda error string> (<name>)"; `text` is #expr of the caller.
#define PYCNN_STATUS_CHECK_(Status, ok, thrower, expr, text)                          \
  do {                                                                                \
    const Status pycnn_st_ = (expr);                                                  \
    if (pycnn_st_ != (ok)) thrower(pycnn_st_, text, __FILE__, __LINE__);              \
  } while (0)
#define PYCNN_CUDA_CHECK(expr) \
  PYCNN_STATUS_CHECK_(cudaError_t, cudaSuccess, ::pycnn::cuda::throw_cuda_error, expr, #expr)
#define PYCNN_CUBLAS_CHECK(expr) \
  PYCNN_STATUS_CHECK_(cublasStatus_t, CUBLAS_STATUS_SUCCESS, ::pycnn::cuda::throw_cublas_error, expr, #expr)

// After a kernel launch: configuration errors and earlier asynchronous faults.
#define PYCNN_CUDA_CHECK_LAUNCH() PYCNN_CUDA_CHECK(cudaGetLastError())

// 64-bit-safe grid-stride loop over [0, n).
#define PYCNN_KERNEL_LOOP(i, n)                                                                 \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);        \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

namespace pycnn::cuda {

// ---- deferred errors: invalid data that a kernel finds (a class label outside [0, C)) without the
// host waiting for it. The kernel records the first one in its device's DeferredError word and
// goes on (the bad row gets NaN, never an out-of-bounds access); the host reads the word at the
// next point where it waits for that device anyway (host_wait below) and raises ValueError there.
enum DeferredOp : int {
  kDeferredNone = 0,
  kDeferredCrossEntropy = 1,          // "cross_entropy"
  kDeferredCrossEntropyBackward = 2,  // "cross_entropy_backward"
  kDeferredCountCorrect = 3,          // "count_correct"
};

struct DeferredError {
  int op;            // DeferredOp; kDeferredNone while nothing is recorded
  int unused;
  int64_t label;     // the bad label
  int64_t position;  // its row
  int64_t classes;   // C
};

// Records a bad label unless an error is already recorded (the first op after the last host wait
// wins; among the bad rows of one kernel, any one). Only the winner of the compare-and-swap writes
// the other fields, so the report is one consistent (op, label, position, classes).
__device__ inline void report_bad_label(DeferredError* e, int op, int64_t label, int64_t position, int64_t classes) {
  if (*reinterpret_cast<volatile int*>(&e->op) != kDeferredNone) return;
  if (atomicCAS(&e->op, int(kDeferredNone), op) != int(kDeferredNone)) return;
  e->label = label;
  e->position = position;
  e->classes = classes;
}

// One device's stream and cuBLAS handle. RAII: the destructor releases both (ignoring errors,
// since it may run while the driver shuts down). Contexts live for the whole process.
class DeviceContext : NonCopyable {
 public:
  explicit DeviceContext(int device);
  ~DeviceContext();

  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas();  // created on first use, bound to stream()
  // Held around "set the math mode, then call cuBLAS" so that threads sharing the handle never
  // see each other's configuration.
  std::mutex& cublas_mutex() { return cublas_mu_; }
  int sm_count() const { return sm_count_; }
  // The device's deferred-error word (device memory, zero while clear) and its pinned host
  // mirror; the mutex serialises host waits that read the mirror (host_wait).
  DeferredError* deferred_error() const { return deferred_dev_; }
  DeferredError* deferred_error_host() const { return deferred_host_; }
  std::mutex& deferred_mutex() { return deferred_mu_; }

 private:
  void release() noexcept;
  static constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;  // cuBLAS's own advice for Hopper
  int device_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_ws_ = nullptr;
  int sm_count_ = 1;
  std::mutex cublas_mu_;
  DeferredError* deferred_dev_ = nullptr;
  DeferredError* deferred_host_ = nullptr;
  std::mutex deferred_mu_;
};

// The context of `device` (created on first use; DeviceError for an unusable index).
DeviceContext& context(int device);

// The host waits for `device`'s stream (and, with whole_device, for the whole device): one counted
// host sync (host_sync_count). The deferred-error word is copied to the host on the same stream
// before the wait, so reading it costs no extra sync; when an error is recorded it is cleared and
// thrown as ValueError. Used by every host wait that returns data or control to the caller
// (device->host copies, synchronize, isfinite_all); never call it while the stream is capturing.
void host_wait(int device, bool whole_device = false);
// DeviceError naming `what` when `device`'s stream is capturing a CUDA graph: host copies and waits
// cannot be captured. Called before anything is recorded, so a refused op leaves the capture clean.
void refuse_during_capture(int device, const char* what);

// Device that owns a device pointer (0 without a lookup on single-GPU machines).
int device_of(const void* ptr);

// Makes `device` current for the scope, restoring the previous one.
class DeviceGuard : NonCopyable {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();

 private:
  int prev_ = -1;
};

// What an op's CUDA kernel needs: the device of its data made current, and that device's stream.
//   Exec ex(y);  my_kernel<<<ex.blocks(n), kThreads, 0, ex.stream()>>>(...);  PYCNN_CUDA_CHECK_LAUNCH();
// or simply ex.launch(n, my_kernel<T>, args...).
constexpr int kThreads = 256;

class Exec {
 public:
  explicit Exec(const void* any_device_ptr) : Exec(device_of(any_device_ptr), 0) {}
  Exec(int device, int /*tag*/) : guard_(device), ctx_(&context(device)) {}

  cudaStream_t stream() const { return ctx_->stream(); }
  DeviceContext& ctx() const { return *ctx_; }
  int device() const { return ctx_->device(); }
  DeferredError* deferred_error() const { return ctx_->deferred_error(); }

  // Blocks for a grid-stride loop over n elements: enough to fill the GPU, capped so that the
  // grid size always fits and each thread loops when n is huge. n must be > 0.
  unsigned blocks(int64_t n, int threads = kThreads) const {
    const int64_t want = (n + threads - 1) / threads;
    const int64_t cap = static_cast<int64_t>(ctx_->sm_count()) * 32;
    return static_cast<unsigned>(want < cap ? (want > 0 ? want : 1) : cap);
  }

  // Grid-stride launch over n elements (nothing when n == 0), then the launch check.
  template <class Kernel, class... Args>
  void launch(int64_t n, Kernel kernel, Args... args) const {
    if (n <= 0) return;
    kernel<<<blocks(n), kThreads, 0, stream()>>>(args...);
    PYCNN_CUDA_CHECK_LAUNCH();
  }

  // One block per row (row reductions): `rows` blocks of `threads` threads, capped at 2^31-1
  // blocks; the kernel loops over rows with a block-stride loop.
  template <class Kernel, class... Args>
  void launch_rows(int64_t rows, int threads, size_t shmem, Kernel kernel, Args... args) const {
    if (rows <= 0) return;
    const int64_t cap = 65535LL * 32;
    const unsigned grid = static_cast<unsigned>(rows < cap ? rows : cap);
    kernel<<<grid, threads, shmem, stream()>>>(args...);
    PYCNN_CUDA_CHECK_LAUNCH();
  }

 private:
  DeviceGuard guard_;
  DeviceContext* ctx_;
};

// Grid-stride launch over n elements on the device that owns `data`; nothing at all (not even the
// device lookup, which an empty tensor's null pointer could not answer) when n <= 0.
template <class Kernel, class... Args>
void launch_over(const void* data, int64_t n, Kernel kernel, Args... args) {
  if (n <= 0) return;
  Exec ex(data);
  ex.launch(n, kernel, args...);
}

// Block-stride loop over rows for kernels launched with launch_rows.
#define PYCNN_ROW_LOOP(r, rows) for (int64_t r = blockIdx.x; r < (rows); r += gridDim.x)

// Deterministic block reduction: each thread passes its partial value (accumulated in a fixed
// order over a fixed index set), then a fixed-shape tree in shared memory: sh[t] = combine(sh[t],
// sh[t + s]). blockDim.x must be a power of two, `sh` holds blockDim.x values. Every thread gets the
// result. No atomics.
template <class T, class Combine>
__device__ inline T block_reduce(T v, T* sh, Combine combine) {
  const int t = threadIdx.x;
  sh[t] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (t < s) sh[t] = combine(sh[t], sh[t + s]);
    __syncthreads();
  }
  const T total = sh[0];
  __syncthreads();  // sh may be reused right after
  return total;
}

struct SumOf {
  template <class T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOf {  // b when b > a, else a (a NaN on the right is dropped, one on the left kept)
  template <class T> __device__ T operator()(T a, T b) const { return b > a ? b : a; }
};
template <class T>
__device__ inline T block_reduce_sum(T v, T* sh) { return block_reduce(v, sh, SumOf{}); }
template <class T>
__device__ inline T block_reduce_max(T v, T* sh) { return block_reduce(v, sh, MaxOf{}); }

// Shared memory for block reductions of T (avoids the extern-shared type clash of templates).
template <class T>
__device__ inline T* shared_buffer() {
  extern __shared__ __align__(16) unsigned char pycnn_shared_bytes[];
  return reinterpret_cast<T*>(pycnn_shared_bytes);
}

// Threads per block for row reductions: a power of two, at most 256, at least 32.
inline int reduce_threads(int64_t row_len) {
  int t = 32;
  while (t < 256 && t < row_len) t <<= 1;
  return t;
}

// Scratch on the device an Exec runs on (the calling thread's arena, see workspace.h).
template <class T>
inline T* device_workspace(const Exec& ex, size_t count) {
  return static_cast<T*>(workspace(Device{DeviceType::CUDA, ex.device()}, count * sizeof(T)));
}

// ---- deterministic sums to one scalar: fixed chunks of kReduceChunk elements (the partition does
// not depend on the GPU), one block per chunk -> partials, then one block adds the partials.
constexpr int64_t kReduceChunk = 8192;
constexpr int kReduceThreads = 256;

// part[b] = sum of f(i) for i in chunk b. F: a functor with `__device__ Acc operator()(int64_t) const`.
template <class Acc, class F>
__global__ void chunk_sum_kernel(F f, int64_t n, Acc* part) {
  Acc* sh = shared_buffer<Acc>();
  const int64_t chunks = (n + kReduceChunk - 1) / kReduceChunk;
  for (int64_t b = blockIdx.x; b < chunks; b += gridDim.x) {
    const int64_t lo = b * kReduceChunk, hi = (lo + kReduceChunk < n) ? lo + kReduceChunk : n;
    Acc s = Acc(0);
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) s += f(i);
    s = block_reduce_sum(s, sh);
    if (threadIdx.x == 0) part[b] = s;
  }
}

// out[0] = (sum of part[0..m)) / div, one block.
template <class Acc, class Out>
__global__ void final_sum_kernel(const Acc* part, int64_t m, Out* out, Acc div) {
  Acc* sh = shared_buffer<Acc>();
  Acc s = Acc(0);
  for (int64_t i = threadIdx.x; i < m; i += blockDim.x) s += part[i];
  s = block_reduce_sum(s, sh);
  if (threadIdx.x == 0) out[0] = static_cast<Out>(s / div);
}

// out[0] = Out(sum_{i<n} f(i) / div), accumulated in Acc (double for floats, int64 for counts).
template <class Acc, class Out, class F>
void sum_to_scalar(const Exec& ex, F f, int64_t n, Out* out, Acc div) {
  const int64_t chunks = n > 0 ? (n + kReduceChunk - 1) / kReduceChunk : 0;
  Acc* part = device_workspace<Acc>(ex, static_cast<size_t>(chunks > 0 ? chunks : 1));
  if (chunks > 0) {
    const int64_t cap = 65535;
    const unsigned grid = static_cast<unsigned>(chunks < cap ? chunks : cap);
    chunk_sum_kernel<Acc, F><<<grid, kReduceThreads, kReduceThreads * sizeof(Acc), ex.stream()>>>(f, n, part);
    PYCNN_CUDA_CHECK_LAUNCH();
  }
  final_sum_kernel<Acc, Out><<<1, kReduceThreads, kReduceThreads * sizeof(Acc), ex.stream()>>>(part, chunks, out, div);
  PYCNN_CUDA_CHECK_LAUNCH();
}

}  // namespace pycnn::cuda
