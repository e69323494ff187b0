#include "cpu_alloc.h"

#include <pthread.h>

#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace pycnn::cpu_alloc {
namespace {

constexpr size_t kMinCached = size_t(64) << 10;        // below this, plain malloc
constexpr size_t kMaxCachedBytes = size_t(512) << 20;  // idle bytes kept at most

// Size classes: 2^k, 1.25 * 2^k, 1.5 * 2^k, 1.75 * 2^k (at most 25% rounding waste), so that
// shapes that differ a little (the last partial batch) still reuse one another's blocks.
size_t size_class(size_t n) {
  size_t p = kMinCached;
  while (p * 2 <= n) p *= 2;
  for (size_t q = p; q < 2 * p; q += p / 4)
    if (q >= n) return q;
  return 2 * p;
}

struct Cache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free;  // size class -> idle blocks
  size_t cached = 0;
  int64_t allocated = 0, system_allocs = 0, hits = 0;
};

Cache& cache() {
  static Cache* c = [] {
    auto* p = new Cache;  // never destroyed: Storage may be released during interpreter shutdown
    // A fork() while another thread holds the lock would leave the child's allocator locked.
    pthread_atfork([] { cache().mu.lock(); }, [] { cache().mu.unlock(); }, [] { cache().mu.unlock(); });
    return p;
  }();
  return *c;
}

void* system_alloc(size_t nbytes, size_t requested) {
  void* p = std::aligned_alloc(64, nbytes);
  if (!p) throw OutOfMemory(cat("out of memory: could not allocate ", requested, " bytes on the CPU"));
  return p;
}

}  // namespace

void* allocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  if (nbytes < kMinCached) return system_alloc((nbytes + 63) / 64 * 64, nbytes);
  const size_t cls = size_class(nbytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.allocated += static_cast<int64_t>(nbytes);
    auto it = c.free.find(cls);
    if (it != c.free.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.cached -= cls;
      ++c.hits;
      return p;
    }
    ++c.system_allocs;
  }
  try {
    return system_alloc(cls, nbytes);
  } catch (...) {
    empty_cache();  // give idle blocks back and try once more before failing
    try {
      return system_alloc(cls, nbytes);
    } catch (...) {
      std::lock_guard<std::mutex> lock(c.mu);
      c.allocated -= static_cast<int64_t>(nbytes);
      throw;
    }
  }
}

void release(void* ptr, size_t nbytes) {
  if (!ptr) return;
  if (nbytes < kMinCached) {
    std::free(ptr);
    return;
  }
  const size_t cls = size_class(nbytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.allocated -= static_cast<int64_t>(nbytes);
    if (c.cached + cls <= kMaxCachedBytes) {
      c.free[cls].push_back(ptr);
      c.cached += cls;
      return;
    }
  }
  std::free(ptr);
}

void empty_cache() {
  std::vector<void*> idle;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    for (auto& [cls, blocks] : c.free) idle.insert(idle.end(), blocks.begin(), blocks.end());
    c.free.clear();
    c.cached = 0;
  }
  for (void* p : idle) std::free(p);
}

std::map<std::string, int64_t> stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return {{"allocated", c.allocated},
          {"cached", static_cast<int64_t>(c.cached)},
          {"system_allocs", c.system_allocs},
          {"cache_hits", c.hits}};
}

}  // namespace pycnn::cpu_alloc
