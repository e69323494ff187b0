#include "parallel.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cstring>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "bindings/registry.h"
#include "blas.h"
#include "common.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pycnn::cpu {
namespace {

int openmp_default_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();  // read while the module loads: OMP_NUM_THREADS or the core count
#else
  return 1;
#endif
}

std::atomic<int> g_threads{openmp_default_threads()};
std::atomic<bool> g_single_threaded_child{false};

// ---------------------------------------------------------------------------------------- fork
// GCC's libgomp is not fork-safe: the child inherits the forking thread's pool of worker threads
// as data, without the threads, and its first parallel loop waits for them forever. Releasing that
// pool just before the fork (OpenMP 5's omp_pause_resource_all: the workers exit, the next loop
// starts new ones) gives the child no stale pool, so it starts a fresh one and keeps its threads;
// the parent pays one pool start at its next loop. Where the release is refused (a fork from inside
// a parallel region), the child runs every loop on its one thread instead.
thread_local bool t_pool_released = false;  // prepare and child handlers run on the forking thread
std::atomic<unsigned> g_pool_generation{1};   // bumped when pools may hold new threads (fork)

void release_pool_before_fork() {
  g_pool_generation.fetch_add(1, std::memory_order_relaxed);
#ifdef _OPENMP
  t_pool_released = omp_pause_resource_all(omp_pause_soft) == 0;
#else
  t_pool_released = true;
#endif
}

void in_forked_child() {
  if (!t_pool_released) g_single_threaded_child = true;
}

const bool g_fork_handlers = pthread_atfork(release_pool_before_fork, nullptr, in_forked_child) == 0;

std::atomic<bool> g_quiet{false};

// ------------------------------------------------------------------------------ worker placement
// On a virtual machine an idle vCPU is halted and the guest scheduler counts it as preempted, so a
// worker woken by the team's master is placed on the master's own CPU, beside it, and stays there:
// after 150 ms of idle a strided 3x3 conv forward took 14.5 ms on 2 threads instead of 8.5 (one
// thread: 13.7; 2026-12-07, Zen 4 VM, 2 vCPUs), every sample of a benchmark and every step after a
// pause. The workers of the caller's team are therefore allowed every CPU of the caller's mask but
// the one the caller runs on (the scheduler still picks among them, so processes side by side do not
// pile onto one CPU). Done when the caller's CPU, the team size or the pool changes: a vDSO read per op.
// Left alone where the user binds threads (OMP_PROC_BIND / GOMP_CPU_AFFINITY) or the team is larger
// than the caller's CPUs (an oversubscribed team is best balanced by the scheduler).
struct Placement {
  int cpu = -1, team = 0;
  unsigned generation = 0;
};
thread_local Placement t_placement;  // libgomp keeps one worker pool per calling thread

void keep_workers_off_callers_cpu(int n) {
#if defined(_OPENMP) && defined(__linux__)
  if (n < 2 || omp_in_parallel() || omp_get_proc_bind() != omp_proc_bind_false) return;
  const int cpu = sched_getcpu();
  const unsigned generation = g_pool_generation.load(std::memory_order_relaxed);
  Placement& last = t_placement;
  if (cpu < 0 || (cpu == last.cpu && n == last.team && generation == last.generation)) return;
  last = {cpu, n, generation};
  cpu_set_t mask;
  if (sched_getaffinity(0, sizeof(mask), &mask) != 0 || !CPU_ISSET(cpu, &mask)) return;
  if (CPU_COUNT(&mask) >= n) CPU_CLR(cpu, &mask);  // else the caller's mask (undoing an earlier placement)
  // The caller waits for the workers by spinning, not at the closing barrier: a caller that slept
  // there would be woken by a moved worker and placed beside it, on the CPU just cleared for it.
  std::atomic<int> placed{0};
#pragma omp parallel num_threads(n)
  {
    if (omp_get_thread_num() != 0) {
      pthread_setaffinity_np(pthread_self(), sizeof(mask), &mask);
      placed.fetch_add(1, std::memory_order_release);
    } else {
      while (placed.load(std::memory_order_acquire) < omp_get_num_threads() - 1) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
    }
  }
#else
  (void)n;
#endif
}

}  // namespace

int num_threads() { return g_single_threaded_child ? 1 : g_threads.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  PYCNN_CHECK(n >= 1, ValueError, "set_num_threads: expected n >= 1, got ", n);
  g_threads = n;
}

ThreadScope::ThreadScope() {
  blas::keep_single_threaded();
#ifdef _OPENMP
  const int n = num_threads(), callers = omp_get_max_threads();
  if (callers != n) {
    callers_threads_ = callers;
    omp_set_num_threads(n);
  }
  keep_workers_off_callers_cpu(n);
#endif
}

#if defined(__linux__)
static_assert(sizeof(cpu_set_t) <= sizeof(uint64_t[16]), "CallerStaysPut::saved_ holds a cpu_set_t");
#endif

CallerStaysPut::CallerStaysPut(bool heavy) {
#if defined(_OPENMP) && defined(__linux__)
  if (!heavy || num_threads() < 2 || omp_in_parallel() || omp_get_proc_bind() != omp_proc_bind_false) return;
  cpu_set_t saved, here;
  const int cpu = sched_getcpu();
  if (cpu < 0 || sched_getaffinity(0, sizeof(saved), &saved) != 0 || !CPU_ISSET(cpu, &saved)) return;
  CPU_ZERO(&here);
  CPU_SET(cpu, &here);
  if (sched_setaffinity(0, sizeof(here), &here) != 0) return;
  std::memcpy(saved_, &saved, sizeof(saved));
  pinned_ = true;
#else
  (void)heavy;
#endif
}

CallerStaysPut::~CallerStaysPut() {
#if defined(__linux__)
  if (pinned_) sched_setaffinity(0, sizeof(cpu_set_t), reinterpret_cast<const cpu_set_t*>(saved_));
#endif
}

ThreadScope::~ThreadScope() {
#ifdef _OPENMP
  if (callers_threads_ > 0) omp_set_num_threads(callers_threads_);
#endif
}

std::string openmp_library() {
#ifdef _OPENMP
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&omp_get_max_threads), &info) && info.dli_fname) return info.dli_fname;
#endif
  return "";
}

// libgomp reads OMP_WAIT_POLICY once, when it loads; pycnn asks for PASSIVE just before, but when
// another library (PyTorch) loaded the same libgomp first, the default policy holds: every idle
// worker spins ~300,000 times (measured: 7.5 ms of CPU after each op, taken from the NumPy or
// PyTorch work between pycnn's calls). libgomp spins only 100 times, then sleeps, while it manages
// more OpenMP threads than there are CPUs (its documented GOMP_SPINCOUNT rule). A team of
// num_procs + 1 threads parked for good on a helper thread keeps that count above the CPUs: idle
// threads sleep at once, as under PASSIVE, at the cost of num_procs + 1 threads that sleep.
void quiet_idle_threads() {
#ifdef _OPENMP
  static std::once_flag once;
  std::call_once(once, [] {
    static std::mutex mu;
    static std::condition_variable cv;
    static bool parked = false;
    std::thread([] {
      const int team = omp_get_num_procs() + 1;
      int formed = 0;
#pragma omp parallel num_threads(team)
      {
        if (omp_get_thread_num() == 0) formed = omp_get_num_threads();  // a region the compiler keeps
      }
      g_quiet = formed == team;
      {
        std::lock_guard<std::mutex> lock(mu);
        parked = true;
        cv.notify_one();
      }
      // The team's workers stay in libgomp's pool only while this thread lives: sleep for good.
      std::mutex forever;
      std::unique_lock<std::mutex> lock(forever);
      std::condition_variable().wait(lock, [] { return false; });
    }).detach();
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [] { return parked; });
  });
#endif
}

bool quiet_idle_threads_active() { return g_quiet; }

}  // namespace pycnn::cpu

PYCNN_BINDINGS(6, parallel) {
  m.def("openmp_library", &cpu::openmp_library, "file of the OpenMP runtime the core's loops run on");
  m.def("quiet_idle_threads", &cpu::quiet_idle_threads, bindings::nogil());
  m.def("quiet_idle_threads_active", &cpu::quiet_idle_threads_active);
  m.def("blas_num_threads", &blas::get_num_threads, "threads of OpenBLAS's own pool (pycnn keeps it at 1)");
}
