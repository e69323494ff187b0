// The one GEMM door. Row-major C = alpha * op(A) * op(B) + beta * C, with op(A) M x K and
// op(B) K x N. On the CPU it calls OpenBLAS (scipy-openblas32), loaded at import time by
// `blas_load` so that its kernel choice can be fixed before the library initialises;
// on CUDA, cuBLAS (see cuda/blas.cu).
#pragma once

#include <cstdint>
#include <string>

#include "parallel.h"  // cpu::num_threads, the threads the GEMM door splits large GEMMs over

namespace pycnn::blas {

// The OpenBLAS kernel family this CPU should use ("SkylakeX" with AVX-512), or "" for OpenBLAS's own
// choice. Python sets OPENBLAS_CORETYPE from it before anything loads the library.
std::string preferred_core_type();
// Loads the shared library at `path` (called once from Python with the wheel's path).
void load(const std::string& path);
bool loaded();
std::string core_name();     // OpenBLAS kernel family in use, e.g. "SkylakeX" or "Haswell"
std::string config();        // OpenBLAS build configuration string
int get_num_threads();  // OpenBLAS's own pool: kept at 1, threads come from OpenMP
void keep_single_threaded();  // back to 1 when another library (threadpoolctl) raised it

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace pycnn::blas
