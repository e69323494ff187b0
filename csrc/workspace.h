// Scratch memory for ops that need a temporary buffer (conv2d's column matrix, ...): one growable
// arena per device and per calling thread, so two Python threads running ops at the same time
// never share it. The arena is a Storage of bytes, so on CUDA it comes from the caching allocator.
#pragma once

#include <cstddef>
#include <memory>

#include "common.h"

namespace pycnn {

// At least `nbytes` bytes of uninitialised scratch on `device`, 64-byte aligned on the CPU. The
// pointer stays valid until the next call to `workspace` (or `release_workspace`) on this thread
// for this device: an op asks once for everything it needs and carves the block up itself.
// Throws OutOfMemory (with the size) when the arena cannot grow.
void* workspace(Device device, size_t nbytes);

// Bytes currently held by this thread's arena on `device` (0 when none).
size_t workspace_size(Device device);

// Frees this thread's arena on `device` (e.g. before empty_cache); the next call allocates again.
void release_workspace(Device device);

// ---- CUDA graph capture (cuda/graph.cu) ----
class Storage;
// This thread's arena on `device` (null when none): a captured graph keeps it alive, so the
// addresses baked into the graph stay valid even if the arena later grows for eager work.
std::shared_ptr<Storage> workspace_storage(Device device);
// While frozen, a request larger than the arena throws DeviceError instead of reallocating it
// (a capture cannot free memory it has already baked in); warm-up steps size the arena first.
void set_workspace_frozen(Device device, bool frozen);

}  // namespace pycnn
