// cuBLAS, loaded on demand. The core never links libcublas: importing pycnn must work where only
// the CPU is used (no driver, no GPU, no cuBLAS). cublas_v2.h supplies the types and prototypes at
// build time; the functions come from dlopen + dlsym the first time a usable GPU is found
// (runtime.cu's discovery), from the paths that pycnn._core_loader hands over (the nvidia-cublas
// wheel of the `pycnn[cuda]` extra, then a CUDA toolkit on the system).
// Included by .cu files only.
#pragma once

#include <cublas_v2.h>

#include <string>
#include <vector>

namespace pycnn::cuda {

// The handful of cuBLAS functions the core calls: one pointer per function, filled by load_cublas.
struct CublasApi {
  decltype(&::cublasCreate_v2) create = nullptr;
  decltype(&::cublasDestroy_v2) destroy = nullptr;
  decltype(&::cublasSetStream_v2) set_stream = nullptr;
  decltype(&::cublasSetWorkspace_v2) set_workspace = nullptr;
  decltype(&::cublasSetMathMode) set_math_mode = nullptr;
  decltype(&::cublasSgemm_v2) sgemm = nullptr;
  decltype(&::cublasDgemm_v2) dgemm = nullptr;
  decltype(&::cublasSgemmStridedBatched) sgemm_strided_batched = nullptr;
  decltype(&::cublasDgemmStridedBatched) dgemm_strided_batched = nullptr;
};

// The loaded table (DeviceError when cuBLAS is not loaded: callers run only after discovery
// found a GPU, which loads it).
const CublasApi& cublas_api();

// Tries the candidate paths in order (once per process; later calls return the first result).
// On success returns true and sets *loaded_from; else false with *why naming what was tried.
bool load_cublas(std::string* loaded_from, std::string* why);

}  // namespace pycnn::cuda
