#include "random.h"

#include <atomic>

namespace pycnn::rng {
namespace {
std::atomic<uint64_t> g_seed{0};
std::atomic<uint64_t> g_offset{0};
}  // namespace

void manual_seed(uint64_t s) {
  g_seed = s;
  g_offset = 0;
}
uint64_t seed() { return g_seed; }
uint64_t offset() { return g_offset; }
void set_offset(uint64_t o) { g_offset = o; }
uint64_t advance(uint64_t n) { return g_offset.fetch_add(n); }

}  // namespace pycnn::rng
