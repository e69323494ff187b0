#include "workspace.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "tensor.h"

namespace pycnn {
namespace {

// One arena per device of this thread: [0] the CPU, [1 + i] cuda:i.
struct Arenas {
  std::vector<std::shared_ptr<Storage>> slots;
  std::vector<char> frozen;  // per slot: a CUDA graph capture is running on this thread
  static size_t index(Device d) { return d.is_cpu() ? 0 : 1 + static_cast<size_t>(d.index); }
  std::shared_ptr<Storage>& at(Device d) {
    const size_t i = index(d);
    if (slots.size() <= i) slots.resize(i + 1);
    return slots[i];
  }
  bool is_frozen(Device d) const {
    const size_t i = index(d);
    return i < frozen.size() && frozen[i];
  }
};

Arenas& arenas() {
  thread_local Arenas a;
  return a;
}

constexpr size_t kRound = size_t(1) << 16;  // grow in 64 KiB steps

}  // namespace

void* workspace(Device device, size_t nbytes) {
  std::shared_ptr<Storage>& slot = arenas().at(device);
  if (nbytes == 0) return slot ? slot->data() : nullptr;
  if (slot && slot->nbytes() >= nbytes) return slot->data();
  if (arenas().is_frozen(device))
    throw DeviceError(cat("workspace: an op needs ", nbytes, " bytes of scratch on ", device.str(),
                          " but the arena holds ", slot ? slot->nbytes() : 0,
                          " and cannot grow during CUDA graph capture; run the captured step once "
                          "(warm-up) before capture_begin so that the arena is sized"));
  // Grow by at least half again so a slowly rising demand does not reallocate every call.
  const size_t old = slot ? slot->nbytes() : 0;
  size_t want = std::max(nbytes, old + old / 2);
  want = (want + kRound - 1) / kRound * kRound;
  slot.reset();  // free the old block first: the peak is the new size, not old + new
  try {
    slot = std::make_shared<Storage>(want, device);
  } catch (const OutOfMemory&) {
    if (want == nbytes) throw;
    slot = std::make_shared<Storage>(nbytes, device);  // retry with exactly what was asked
  }
  return slot->data();
}

size_t workspace_size(Device device) {
  const std::shared_ptr<Storage>& slot = arenas().at(device);
  return slot ? slot->nbytes() : 0;
}

void release_workspace(Device device) { arenas().at(device).reset(); }

std::shared_ptr<Storage> workspace_storage(Device device) { return arenas().at(device); }

void set_workspace_frozen(Device device, bool frozen) {
  Arenas& a = arenas();
  const size_t i = Arenas::index(device);
  if (a.frozen.size() <= i) a.frozen.resize(i + 1, 0);
  a.frozen[i] = frozen ? 1 : 0;
}

}  // namespace pycnn
