// CPU-only build: every CUDA entry point explains how to get a CUDA build.
#include "runtime.h"

namespace pycnn {
bool cuda_compiled() { return false; }
}

namespace pycnn::cuda_runtime {

namespace {
[[noreturn]] void no_cuda(const char* what) { throw_no_cuda(what); }
bool g_tf32 = false;
}  // namespace

bool is_available() { return false; }
int device_count() { return 0; }
std::string device_name(int) { no_cuda("cuda.get_device_name"); }
std::string status_message() { return "this build of pycnn was compiled without CUDA"; }
std::string version() { return ""; }
void set_cublas_paths(const std::vector<std::string>&) {}
std::string cublas_soname() { return ""; }
std::string cublas_path() { return ""; }
void check_device(int) { no_cuda("to(cuda)"); }
void synchronize(int) {}
void* device_alloc(size_t, int) { no_cuda("cuda allocation"); }
void device_free(void*, size_t, int) {}
void memset_zero(void*, size_t, int) { no_cuda("cuda memset"); }
void copy(void*, Device, const void*, Device, size_t) { no_cuda("cuda copy"); }
std::map<std::string, int64_t> memory_stats(int) { no_cuda("cuda.memory_stats"); }
void reset_peak_memory_stats(int) { no_cuda("cuda.reset_peak_memory_stats"); }
void empty_cache(int) {}
void set_allow_tf32(bool allow) { g_tf32 = allow; }
bool allow_tf32() { return g_tf32; }

}  // namespace pycnn::cuda_runtime

// ---- CUDA graphs: nothing to capture without CUDA
namespace pycnn::cuda_runtime {

struct Graph::Impl {};

int64_t host_sync_count() { no_cuda("cuda.host_sync_count"); }

Graph::Graph(int) { no_cuda("CUDAGraph"); }
Graph::~Graph() = default;
void Graph::capture_begin() { no_cuda("CUDAGraph.capture_begin"); }
void Graph::capture_end() { no_cuda("CUDAGraph.capture_end"); }
void Graph::replay() { no_cuda("CUDAGraph.replay"); }
void Graph::reset() {}
bool Graph::capturing() const { return false; }
bool Graph::captured() const { return false; }
int Graph::device() const { return 0; }
int64_t Graph::pool_bytes() const { return 0; }

}  // namespace pycnn::cuda_runtime
