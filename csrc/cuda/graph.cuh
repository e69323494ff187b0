// What CUDA graph capture (graph.cu) needs from the rest of the CUDA runtime, and what ops need
// from it. Included by .cu files only.
//
// Memory: while device d captures, every allocation on d comes from the graph's private pool
// (a block from the pool's free list, else one moved over from the global cache, else cudaMalloc
// in relaxed capture mode), and every global block freed during capture joins the pool too, since
// the graph may have baked in its address. Pool blocks freed later return to their pool, never to
// the global cache, until the graph is reset: replays keep writing to the same addresses.
#pragma once

#include <cstdint>

namespace pycnn::cuda {

// Opens a private pool on `device` and routes the calling thread's allocations there until
// end_capture_pool. DeviceError when a capture is already running on the device.
uint64_t begin_capture_pool(int device);
void end_capture_pool(int device);
// Returns the pool's free blocks to the global cache and forgets the pool; its blocks still held
// by tensors go to the global cache when those are freed.
void release_pool(int device, uint64_t pool);
// Bytes owned by `pool` (live and free).
int64_t pool_bytes(int device, uint64_t pool);

// Counts one host wait on the device (device->host copy, synchronize, ...): pc.cuda.host_sync_count.
void count_host_sync();

// Dropout inside capture: the graph's device-side RNG state {seed, first counter of this replay}
// and the host counter at capture_begin. False when the calling thread is not capturing `device`.
bool capture_rng_state(int device, const uint64_t** state, uint64_t* capture_start);

}  // namespace pycnn::cuda
