#include "blas.h"

#include <dlfcn.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <mutex>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common.h"

namespace pycnn::blas {
namespace {

// CBLAS enum values (cblas.h): RowMajor = 101, NoTrans = 111, Trans = 112.
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
using sgemm_t = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
using dgemm_t = void (*)(int, int, int, int, int, int, double, const double*, int, const double*, int, double, double*,
                         int);
using set_threads_t = void (*)(int);
using get_threads_t = int (*)();
using corename_t = char* (*)();

struct Lib {
  void* handle = nullptr;
  sgemm_t sgemm = nullptr;
  dgemm_t dgemm = nullptr;
  set_threads_t set_threads = nullptr;
  get_threads_t get_threads = nullptr;
  corename_t corename = nullptr;
  corename_t config = nullptr;
};
Lib g_lib;
std::mutex g_mu;

}  // namespace

// OpenBLAS does not recognise Zen 4/5 and falls back to its AVX2 (Haswell) kernels, half the
// FMA throughput of the AVX-512 ones these CPUs run well. When the CPU has the AVX-512 subsets
// OpenBLAS's SkylakeX kernels use, those are the ones to ask for (through OPENBLAS_CORETYPE, which
// OpenBLAS reads once, when it initialises).
std::string preferred_core_type() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
#endif
  return "";
}

namespace {

template <class F>
F sym(void* h, const char* name, bool required) {
  void* p = dlsym(h, name);
  if (!p && required) throw std::runtime_error(cat("BLAS library lacks symbol ", name));
  return reinterpret_cast<F>(p);
}

const Lib& lib() {
  if (!g_lib.handle) throw std::runtime_error("BLAS is not loaded: import pycnn (not pycnn._core) first");
  return g_lib;
}

int as_int(int64_t v, const char* what) {
  if (v > INT_MAX) throw ValueError(cat("GEMM dimension ", what, " = ", v, " exceeds the 32-bit BLAS limit"));
  return static_cast<int>(v);
}

}  // namespace

void load(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_lib.handle) return;
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) throw std::runtime_error(cat("could not load the BLAS library ", path, ": ", dlerror()));
  Lib l;
  l.handle = h;
  l.sgemm = sym<sgemm_t>(h, "scipy_cblas_sgemm", true);
  l.dgemm = sym<dgemm_t>(h, "scipy_cblas_dgemm", true);
  l.set_threads = sym<set_threads_t>(h, "scipy_openblas_set_num_threads", true);
  l.get_threads = sym<get_threads_t>(h, "scipy_openblas_get_num_threads", false);
  l.corename = sym<corename_t>(h, "scipy_openblas_get_corename", false);
  l.config = sym<corename_t>(h, "scipy_openblas_get_config", false);
  g_lib = l;
  // OpenMP owns the threads (see gemm_blocks); OpenBLAS's own pool would compete with it.
  g_lib.set_threads(1);
}

bool loaded() { return g_lib.handle != nullptr; }
std::string core_name() { return loaded() && g_lib.corename ? g_lib.corename() : ""; }
std::string config() { return loaded() && g_lib.config ? g_lib.config() : ""; }
int get_num_threads() { return loaded() && g_lib.get_threads ? g_lib.get_threads() : 1; }

void keep_single_threaded() {
  if (loaded() && g_lib.get_threads && g_lib.get_threads() != 1) g_lib.set_threads(1);
}

namespace {

// Below this many multiply-adds a GEMM runs on the calling thread: waking a second one costs more
// (measured, linear_forward 2 threads / 1: 3.1M MACs 1.21, 6.1M 1.09, 12.3M 0.83, 24.6M 0.67).
constexpr double kParallelMacs = 1 << 23;

template <class T, class F>
void gemm_blocks(F&& call, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                 int64_t ldb, T* C, int64_t ldc) {
  int threads = 1;
#ifdef _OPENMP
  if (!omp_in_parallel() && static_cast<double>(M) * N * K >= kParallelMacs) threads = cpu::num_threads();
#endif
  // Each thread computes a block of rows or of columns of C with a single-threaded BLAS call. Every
  // element of C is still one dot product over K in BLAS's fixed order, so results do not depend on
  // the thread count, and there is one thread pool (OpenMP) instead of two competing ones.
  const bool split_rows = M >= N;
  const int64_t extent = split_rows ? M : N;
  if (threads > extent / 32) threads = static_cast<int>(std::max<int64_t>(1, extent / 32));
  if (threads <= 1) {
    call(M, N, A, B, C);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num();
#else
    const int t = 0;
#endif
    const int64_t per = ((extent + threads - 1) / threads + 15) / 16 * 16;  // 16-aligned blocks
    const int64_t lo = std::min<int64_t>(extent, t * per), hi = std::min<int64_t>(extent, lo + per);
    if (hi > lo) {
      if (split_rows)
        call(hi - lo, N, ta ? A + lo : A + lo * lda, B, C + lo * ldc);
      else
        call(M, hi - lo, A, tb ? B + lo * ldb : B + lo, C + lo);
    }
  }
}

}  // namespace

template <class T, class Fn>
void gemm_via(Fn f, bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
              int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  as_int(M, "M");
  as_int(N, "N");
  const int k = as_int(K, "K"), ia = as_int(lda, "lda"), ib = as_int(ldb, "ldb"), ic = as_int(ldc, "ldc");
  gemm_blocks<T>([&](int64_t m, int64_t n, const T* a, const T* b, T* c) {
    f(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, static_cast<int>(m), static_cast<int>(n), k, alpha, a,
      ia, b, ib, beta, c, ic);
  }, ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
}

template <>
void gemm<float>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_via<float>(lib().sgemm, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <>
void gemm<double>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                  const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  gemm_via<double>(lib().dgemm, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace pycnn::blas
