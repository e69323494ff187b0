// The CPU's measured float32 FMA peak, for the benchmarks' "% of FMA peak": every thread runs
// independent multiply-add chains (enough of them to hide the FMA latency on two units) in the
// widest vectors the CPU has (AVX-512, AVX2 or SSE2, chosen at load time like the other cloned
// loops). Nothing else calls it.
#include <algorithm>
#include <chrono>

#include "blas.h"
#include "bindings/registry.h"
#include "common.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pycnn::cpu {
namespace {

PYCNN_SIMD_CLONES float fma_chains(int64_t iters, float m, float c) {
  constexpr int kChains = 256;
  float acc[kChains];
  for (int k = 0; k < kChains; ++k) acc[k] = static_cast<float>(k) * 1e-3f;
  for (int64_t it = 0; it < iters; ++it)
    for (int k = 0; k < kChains; ++k) acc[k] = acc[k] * m + c;
  float s = 0;
  for (int k = 0; k < kChains; ++k) s += acc[k];
  return s;
}

// GFLOP/s of all threads together (2 flops per multiply-add), best of `repeats` runs.
double fma_peak_gflops(int64_t iters, int repeats) {
  PYCNN_CHECK(iters >= 1 && repeats >= 1, ValueError, "fma_peak_gflops: iters and repeats must be >= 1");
  ThreadScope threads_;
  const int threads = num_threads();
  double best = 0;
  volatile float sink = 0;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    float total = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : total)
    for (int t = 0; t < threads; ++t) total += fma_chains(iters, 0.999999f, 1e-6f);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sink = sink + total;
    best = std::max(best, 2.0 * 256 * static_cast<double>(iters) * threads / s / 1e9);
  }
  return best;
}

}  // namespace
}  // namespace pycnn::cpu

PYCNN_BINDINGS(6, fma_peak) {
  m.def("fma_peak_gflops", &pycnn::cpu::fma_peak_gflops, pybind11::arg("iters") = 4000000,
        pybind11::arg("repeats") = 5, pybind11::call_guard<pybind11::gil_scoped_release>(),
        "float32 multiply-add GFLOP/s of all threads (pc.set_num_threads) in the widest vectors the CPU has");
}
