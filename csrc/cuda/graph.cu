// Whole-step CUDA graphs (runtime.h's Graph): capture on the device's one stream in thread-local
// mode, instantiate, replay with cudaGraphLaunch on the same stream.
//
// What makes a replay equal to running the step again:
// - memory: the capture allocates from a private pool that stays reserved until reset() (see
//   graph.cuh), and the graph keeps the workspace arena it captured alive; the arena may not grow
//   during capture (a warm-up step sizes it), but it may grow for eager work between replays.
// - dropout: its kernels read {seed, counter} from a small device buffer when captured (ops/
//   dropout.cu); replay() draws fresh counters from the host RNG, exactly as many as the captured
//   step used, and writes them there first, so each replay gets a new mask, the one an uncaptured
//   step would have drawn. capture_end rewinds the host counter: recording a step runs nothing.
// - deferred errors (a bad class label, context.cuh): captured kernels write the device's error
//   word, a fixed address, as eager ones do; the host reads it at its first wait after a replay
//   (never during capture, where waits are refused).
// - everything else is fixed at capture: shapes, scalars such as the learning rate, and the
//   addresses of tensors created before capture (inputs, weights, momentum buffers), which the
//   caller must keep alive and update in place.
#include <mutex>
#include <thread>
#include <unordered_map>

#include "../random.h"
#include "../tensor.h"
#include "../workspace.h"
#include "context.cuh"
#include "graph.cuh"
#include "runtime.h"

namespace pycnn::cuda_runtime {

struct Graph::Impl {
  int device = 0;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  uint64_t pool = 0;
  bool capturing = false;
  std::thread::id thread;
  std::shared_ptr<Storage> arena;    // the workspace the captured kernels use
  std::shared_ptr<Storage> rng_buf;  // {seed, first counter} for captured dropout kernels
  uint64_t rng_start = 0, rng_used = 0;
};

namespace {

// The capture running on each device (dropout looks its RNG buffer up here).
struct Active {
  std::mutex mu;
  std::unordered_map<int, Graph::Impl*> by_device;
};
Active& active() {
  static Active* a = new Active;  // leaked on purpose, like the contexts
  return *a;
}

__global__ void set_rng_kernel(uint64_t* state, uint64_t seed, uint64_t start) {
  state[0] = seed;
  state[1] = start;
}

// Undoes capture_begin's bookkeeping (not the CUDA capture itself).
void leave_capture(Graph::Impl& g) {
  g.capturing = false;
  set_workspace_frozen(Device{DeviceType::CUDA, g.device}, false);
  cuda::end_capture_pool(g.device);
  {
    std::lock_guard<std::mutex> lock(active().mu);
    active().by_device.erase(g.device);
  }
  g.rng_used = rng::offset() - g.rng_start;
  rng::set_offset(g.rng_start);  // nothing ran: the captured draws happen at each replay
}

void drop(Graph::Impl& g) {
  if (g.exec) cudaGraphExecDestroy(g.exec);
  if (g.graph) cudaGraphDestroy(g.graph);
  g.exec = nullptr;
  g.graph = nullptr;
  if (g.pool) cuda::release_pool(g.device, g.pool);
  g.pool = 0;
  g.arena.reset();
  g.rng_buf.reset();
  g.rng_used = 0;
}

}  // namespace

Graph::Graph(int device) : impl_(std::make_unique<Impl>()) {
  if (!is_available()) throw_no_cuda("CUDAGraph");
  check_device(device);
  impl_->device = device;
}

Graph::~Graph() {
  try {
    reset();
  } catch (...) {
    // reset() only throws for a capture owned by another thread; nothing more can be done here
  }
}

bool Graph::capturing() const { return impl_->capturing; }
bool Graph::captured() const { return impl_->exec != nullptr; }
int Graph::device() const { return impl_->device; }
int64_t Graph::pool_bytes() const { return impl_->pool ? cuda::pool_bytes(impl_->device, impl_->pool) : 0; }

void Graph::capture_begin() {
  Impl& g = *impl_;
  PYCNN_CHECK(!g.capturing, DeviceError, "CUDAGraph.capture_begin: a capture is already running; call capture_end()");
  PYCNN_CHECK(!g.exec, DeviceError,
              "CUDAGraph.capture_begin: this graph already holds a capture; call reset() before capturing again");
  cuda::DeviceGuard guard(g.device);
  cuda::DeviceContext& ctx = cuda::context(g.device);
  ctx.cublas();  // created now: handle creation allocates and cannot be captured
  const Device dev{DeviceType::CUDA, g.device};
  g.rng_buf = std::make_shared<Storage>(2 * sizeof(uint64_t), dev);  // before the pool opens
  g.arena = workspace_storage(dev);
  g.pool = cuda::begin_capture_pool(g.device);  // throws if the device is already capturing
  set_workspace_frozen(dev, true);
  {
    std::lock_guard<std::mutex> lock(active().mu);
    active().by_device[g.device] = &g;
  }
  g.rng_start = rng::offset();
  g.capturing = true;
  g.thread = std::this_thread::get_id();
  const cudaError_t err = cudaStreamBeginCapture(ctx.stream(), cudaStreamCaptureModeThreadLocal);
  if (err != cudaSuccess) {
    cudaGetLastError();
    leave_capture(g);
    drop(g);
    throw DeviceError(cat("CUDAGraph.capture_begin: cudaStreamBeginCapture failed on cuda:", g.device, ": ",
                          cudaGetErrorString(err)));
  }
}

void Graph::capture_end() {
  Impl& g = *impl_;
  PYCNN_CHECK(g.capturing, DeviceError, "CUDAGraph.capture_end: no capture is running; call capture_begin() first");
  PYCNN_CHECK(std::this_thread::get_id() == g.thread, DeviceError,
              "CUDAGraph.capture_end: must be called from the thread that called capture_begin");
  cuda::DeviceGuard guard(g.device);
  cudaGraph_t graph = nullptr;
  cudaError_t err = cudaStreamEndCapture(cuda::context(g.device).stream(), &graph);
  leave_capture(g);
  if (err == cudaSuccess && graph) {
    g.graph = graph;
    err = cudaGraphInstantiate(&g.exec, graph, 0);
  }
  if (err != cudaSuccess || !graph) {
    cudaGetLastError();  // capture errors are not sticky: the stream works again
    if (graph && !g.graph) cudaGraphDestroy(graph);
    g.exec = nullptr;
    drop(g);
    throw DeviceError(cat("CUDAGraph.capture_end: the capture on cuda:", g.device, " failed (",
                          err == cudaSuccess ? "empty graph" : cudaGetErrorString(err),
                          "); something in the captured region could not be recorded (a host copy or wait, "
                          "another stream); the capture was discarded and the device works normally"));
  }
}

void Graph::replay() {
  Impl& g = *impl_;
  PYCNN_CHECK(!g.capturing, DeviceError, "CUDAGraph.replay: the capture is still running; call capture_end() first");
  PYCNN_CHECK(g.exec, DeviceError, "CUDAGraph.replay: nothing captured; call capture_begin() and capture_end() first");
  cuda::DeviceGuard guard(g.device);
  const cudaStream_t s = cuda::context(g.device).stream();
  if (g.rng_used > 0) {
    const uint64_t start = rng::advance(g.rng_used);
    set_rng_kernel<<<1, 1, 0, s>>>(static_cast<uint64_t*>(g.rng_buf->data()), rng::seed(), start);
    PYCNN_CUDA_CHECK_LAUNCH();
  }
  PYCNN_CUDA_CHECK(cudaGraphLaunch(g.exec, s));
}

void Graph::reset() {
  Impl& g = *impl_;
  if (g.capturing) {
    PYCNN_CHECK(std::this_thread::get_id() == g.thread, DeviceError,
                "CUDAGraph.reset: the capture was started by another thread; end it there");
    cuda::DeviceGuard guard(g.device);
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(cuda::context(g.device).stream(), &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    leave_capture(g);
  }
  if (g.exec || g.pool) {
    cuda::DeviceGuard guard(g.device);
    // A replay may still be running: let it finish before its pool's blocks are handed out again
    // and its executable graph is destroyed. (A plain wait: a deferred error stays recorded for
    // the next host read rather than being raised from reset().) Not while another graph captures
    // on the stream (this one dropped by the garbage collector mid-capture, say): a wait there
    // would invalidate that capture, and it is not needed: an in-flight executable graph is freed
    // on completion, and every later user of the pool's blocks is queued behind the replays.
    const cudaStream_t s = cuda::context(g.device).stream();
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(s, &st) != cudaSuccess) st = cudaStreamCaptureStatusNone;
    if (st == cudaStreamCaptureStatusNone) {
      cuda::count_host_sync();
      cudaStreamSynchronize(s);
    }
    cudaGetLastError();
  }
  drop(g);
}

}  // namespace pycnn::cuda_runtime

namespace pycnn::cuda {

bool capture_rng_state(int device, const uint64_t** state, uint64_t* capture_start) {
  std::lock_guard<std::mutex> lock(cuda_runtime::active().mu);
  auto it = cuda_runtime::active().by_device.find(device);
  if (it == cuda_runtime::active().by_device.end()) return false;
  const cuda_runtime::Graph::Impl& g = *it->second;
  if (!g.capturing || g.thread != std::this_thread::get_id()) return false;
  *state = static_cast<const uint64_t*>(g.rng_buf->data());
  *capture_start = g.rng_start;
  return true;
}

}  // namespace pycnn::cuda
