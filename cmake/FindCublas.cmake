# Finds cuBLAS's headers (cublas_v2.h): first in the CUDA toolkit, then in the `nvidia-cublas` wheel
# of the Python used for the build (the build backend in backend/ adds that wheel to the build
# requirements when the toolkit lacks them). Sets PYCNN_CUBLAS_INCLUDE_DIR.
# Only the headers: the core never links cuBLAS, it loads it with dlopen at run time
# (csrc/cuda/cublas_lib.cu), so a wheel built here imports on machines without it.
find_package(CUDAToolkit QUIET)
set(_inc_hints "")
if(CUDAToolkit_FOUND)
  list(APPEND _inc_hints ${CUDAToolkit_INCLUDE_DIRS})
endif()
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c
    "import nvidia, os; [print(os.path.join(p, s)) for p in nvidia.__path__ for s in ('cu13', 'cublas')]"
  OUTPUT_VARIABLE _wheel_dirs OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
string(REPLACE "\n" ";" _wheel_dirs "${_wheel_dirs}")
set(PYCNN_CUBLAS_ROOT "$ENV{CUBLAS_ROOT}" CACHE PATH "Folder holding include/cublas_v2.h")
if(PYCNN_CUBLAS_ROOT)
  list(PREPEND _wheel_dirs "${PYCNN_CUBLAS_ROOT}")
endif()
foreach(d ${_wheel_dirs})
  list(APPEND _inc_hints "${d}/include")
endforeach()
find_path(PYCNN_CUBLAS_INCLUDE_DIR cublas_v2.h HINTS ${_inc_hints})
