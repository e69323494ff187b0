// The CPU side's caching allocator. Blocks of 64 KiB and more are kept on size-class free lists
// when released and handed out again, so a training step that repeats the same shapes stops
// asking the system for memory after its first run: no page faults (and kernel page zeroing) on
// every step, and resident memory stays flat. Smaller blocks go straight to malloc, which already
// reuses them well. Idle cached memory is capped (kMaxCachedBytes); `empty_cache` returns it all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace pycnn::cpu_alloc {

void* allocate(size_t nbytes);  // 64-byte aligned; OutOfMemory naming the size on failure
void release(void* ptr, size_t nbytes);
void empty_cache();
// allocated (bytes in live blocks, as requested), cached (idle bytes on the free lists),
// system_allocs (blocks obtained from the system so far), cache_hits.
std::map<std::string, int64_t> stats();

}  // namespace pycnn::cpu_alloc
