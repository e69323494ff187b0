#include <pybind11/stl.h>

#include "bindings/registry.h"
#include "cpu_alloc.h"

PYCNN_BINDINGS(5, cpu_alloc) {
  m.def("cpu_memory_stats", &pycnn::cpu_alloc::stats,
        "CPU caching allocator: allocated (live bytes), cached (idle bytes), system_allocs, cache_hits");
  m.def("cpu_empty_cache", &pycnn::cpu_alloc::empty_cache, "return the CPU allocator's idle blocks to the system");
}
