// pycnn's CPU threads: how many its OpenMP loops use, and how they stay right beside the other
// libraries of the process (threadpoolctl, PyTorch on the same libgomp) and across fork().
// docs/reliability.md ("Fork and threads") says what a user can rely on.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pycnn::cpu {

// Below this much work (elements, or multiply-adds) a loop stays on one thread: starting the team
// costs more than it saves. Every CPU op's `#pragma omp parallel for if (...)` compares with it.
// Waking the sleeping (OMP_WAIT_POLICY=PASSIVE) worker costs 20-50 us on a 2-core VM, as much as
// one thread spends on ~250,000 ReLU elements or SGD updates (measured: 2 threads lost to 1 up to
// there; at 1 << 15 the LeNet-5 step at batch 1 took 0.65 ms, at 1 << 18 0.53 ms).
inline constexpr int64_t kParallelGrain = 1 << 18;

// Sum over i < n of term(i) in double, in fixed blocks of kSumBlock: each block in index order (the
// blocks shared out over the threads), then the block sums in block order. The partition does not
// depend on the threads, so the result repeats bit for bit on any thread count.
inline constexpr int64_t kSumBlock = 1 << 14;
template <class F>
double fixed_block_sum(int64_t n, F&& term) {
  const int64_t nb = (n + kSumBlock - 1) / kSumBlock;
  std::vector<double> part(static_cast<size_t>(nb));
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t lo = b * kSumBlock, hi = std::min(n, lo + kSumBlock);
    double s = 0;
    for (int64_t i = lo; i < hi; ++i) s += term(i);
    part[b] = s;
  }
  double total = 0;
  for (int64_t b = 0; b < nb; ++b) total += part[b];
  return total;
}

// The calling thread's index in its OpenMP team (0 outside a team, and without OpenMP): the slot of
// per-thread scratch.
inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Threads in the calling thread's team (1 outside a team, and without OpenMP).
inline int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// Whether the caller already runs inside a parallel region (then a loop must not start another).
// True without OpenMP, so that no loop asks for threads there.
inline bool in_parallel() {
#ifdef _OPENMP
  return omp_in_parallel();
#else
  return true;
#endif
}

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

// Keeps the calling thread on the CPU it runs on for the scope's life, when `heavy` (an op long
// enough that two system calls are noise) and pycnn runs more than one thread: an op with several
// parallel regions would otherwise see its caller, woken at a region's end by a worker, moved onto
// that worker's CPU for the regions after (parallel.cpp, worker placement). Restores the caller's mask.
class CallerStaysPut {
 public:
  explicit CallerStaysPut(bool heavy);
  ~CallerStaysPut();
  CallerStaysPut(const CallerStaysPut&) = delete;
  CallerStaysPut& operator=(const CallerStaysPut&) = delete;

 private:
  bool pinned_ = false;
  uint64_t saved_[16] = {};  // the caller's CPU mask (cpu_set_t: 1024 CPUs)
};

// File of the OpenMP runtime this module's loops run on ("" without OpenMP).
std::string openmp_library();
// Makes idle OpenMP threads go to sleep at once when the runtime was loaded (by another library)
// before pycnn could ask it for the passive wait policy. Idempotent.
void quiet_idle_threads();
bool quiet_idle_threads_active();

}  // namespace pycnn::cpu
