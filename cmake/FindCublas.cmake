# Finds cuBLAS: first in the CUDA toolkit, then in the `nvidia-cublas` wheel of the Python used
# for the build. Sets PYCNN_CUBLAS_INCLUDE_DIR, PYCNN_CUBLAS_LIBRARY and PYCNN_CUBLAS_RPATH.
find_package(CUDAToolkit QUIET)
set(_hints "")
if(CUDAToolkit_FOUND)
  list(APPEND _hints ${CUDAToolkit_INCLUDE_DIRS} ${CUDAToolkit_LIBRARY_DIR})
endif()
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c
    "import nvidia, os; [print(os.path.join(p, s)) for p in nvidia.__path__ for s in ('cu13', 'cu12', 'cublas')]"
  OUTPUT_VARIABLE _wheel_dirs OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
string(REPLACE "\n" ";" _wheel_dirs "${_wheel_dirs}")
set(PYCNN_CUBLAS_ROOT "$ENV{CUBLAS_ROOT}" CACHE PATH "Folder holding include/cublas_v2.h and lib/libcublas.so*")
if(PYCNN_CUBLAS_ROOT)
  list(PREPEND _wheel_dirs "${PYCNN_CUBLAS_ROOT}")
endif()
set(_inc_hints ${_hints})
set(_lib_hints ${_hints})
foreach(d ${_wheel_dirs})
  list(APPEND _inc_hints "${d}/include")
  list(APPEND _lib_hints "${d}/lib")
endforeach()
find_path(PYCNN_CUBLAS_INCLUDE_DIR cublas_v2.h HINTS ${_inc_hints})
find_library(PYCNN_CUBLAS_LIBRARY NAMES cublas libcublas.so.13 libcublas.so.12 HINTS ${_lib_hints})
if(PYCNN_CUBLAS_LIBRARY)
  get_filename_component(PYCNN_CUBLAS_RPATH "${PYCNN_CUBLAS_LIBRARY}" DIRECTORY)
endif()
