// Counter-based random numbers: element i of a draw is a pure function of (seed, offset + i),
// so CPU and CUDA give the same masks, threads need no shared state, and a run repeats bit for
// bit. Each draw advances the global offset by the number of elements it used.
#pragma once

#include <cstdint>

#include "common.h"

namespace pycnn::rng {

PYCNN_HD inline uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 24 random bits (exactly representable in float and double).
PYCNN_HD inline double uniform(uint64_t seed, uint64_t counter) {
  const uint64_t r = splitmix64(seed ^ splitmix64(counter));
  return static_cast<double>(r >> 40) * (1.0 / 16777216.0);
}

void manual_seed(uint64_t seed);
uint64_t seed();
uint64_t offset();
void set_offset(uint64_t offset);
// Reserves `n` counters for one draw and returns the first.
uint64_t advance(uint64_t n);

}  // namespace pycnn::rng
