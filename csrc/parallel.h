// pycnn's CPU threads: how many its OpenMP loops use, and how they stay right beside the other
// libraries of the process (threadpoolctl, PyTorch on the same libgomp) and across fork().
// docs/reliability.md ("Fork and threads") says what a user can rely on.
#pragma once

#include <string>

namespace pycnn::cpu {

// Threads of every parallel loop and of the GEMM door (which splits large GEMMs itself):
// pc.set_num_threads, else OpenMP's default when pycnn loaded (OMP_NUM_THREADS or the core count).
// 1 in a child forked while the pool could not be released (see parallel.cpp).
int num_threads();
void set_num_threads(int n);

// Every CPU op runs inside one (PYCNN_ON_DEVICE). OpenMP keeps its thread count per calling thread,
// and other libraries set it on that same thread (threadpoolctl, torch.set_num_threads), so the
// scope puts pycnn's count in force for the op and gives the caller's back afterwards. It also puts
// pycnn's OpenBLAS back to one thread when something (threadpoolctl) raised it: the GEMM door
// threads with OpenMP, and OpenBLAS threads inside OpenMP threads oversubscribe the cores.
class ThreadScope {
 public:
  ThreadScope();
  ~ThreadScope();
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int callers_threads_ = 0;  // the caller's OpenMP thread count to restore; 0 when left unchanged
};

// File of the OpenMP runtime this module's loops run on ("" without OpenMP).
std::string openmp_library();
// Makes idle OpenMP threads go to sleep at once when the runtime was loaded (by another library)
// before pycnn could ask it for the passive wait policy. Idempotent.
void quiet_idle_threads();
bool quiet_idle_threads_active();

}  // namespace pycnn::cpu
