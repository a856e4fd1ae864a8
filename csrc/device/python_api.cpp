// What the torch.mpsgraph module (mps_ext/device.py) needs from C++, as
// torch.ops.mps_ext._device_* operators (no change to the pybind module).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "device/caching_allocator.h"
#include "device/device.h"

namespace mps_ext::device {
namespace {
void op_synchronize() { synchronize(); }

void op_manual_seed(int64_t seed) {
  at::Generator g = default_generator();
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_current_seed(static_cast<uint64_t>(seed));
}

int64_t op_initial_seed() {
  at::Generator g = default_generator();
  std::lock_guard<std::mutex> lock(g.mutex());
  return static_cast<int64_t>(g.current_seed());
}

int64_t op_seed() {
  at::Generator g = default_generator();
  std::lock_guard<std::mutex> lock(g.mutex());
  return static_cast<int64_t>(g.seed());
}

at::Tensor op_get_rng_state() {
  at::Generator g = default_generator();
  std::lock_guard<std::mutex> lock(g.mutex());
  return g.get_state();
}

void op_set_rng_state(const at::Tensor& state) {
  at::Generator g = default_generator();
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_state(state);
}
// The caching allocator's GPU fence, exercised on host memory with the
// asynchronous (Metal) policy, so Linux tests pin what only a Mac runs:
// returns {freed block reused before any synchronize, reused after one,
// a block freed *during* a synchronize reused after it, active bytes while a
// freed block is pending}.
std::vector<int64_t> op_allocator_fence_check() {
  struct Host final : RawMemory {
    void* allocate(size_t n) override { return std::malloc(n); }
    void release(void* p, size_t) override { std::free(p); }
    std::pair<size_t, size_t> memory_info() override { return {0, 0}; }
    void copy(void* d, const void* s, size_t n) override { std::memcpy(d, s, n); }
  } raw;
  CachingAllocator a(&raw, /*asynchronous=*/true);
  constexpr size_t kAggregate = 0;
  c10::DataPtr first = a.allocate(1000);
  void* block = first.get();
  first.clear();  // freed while the GPU may still use it
  int64_t pending_active = a.getDeviceStats(0).active_bytes[kAggregate].current;
  c10::DataPtr second = a.allocate(1000);
  bool reused_before_sync = second.get() == block;
  a.end_sync(a.begin_sync());
  c10::DataPtr third = a.allocate(1000);
  bool reused_after_sync = third.get() == block;
  c10::DataPtr during = a.allocate(1000);
  void* during_block = during.get();
  uint64_t epoch = a.begin_sync();
  during.clear();  // freed after the wait began: work queued before it may still run
  a.end_sync(epoch);
  c10::DataPtr fourth = a.allocate(1000);
  bool freed_during_sync_reused = fourth.get() == during_block;
  second.clear();
  third.clear();
  fourth.clear();
  a.end_sync(a.begin_sync());
  a.emptyCache();
  return {reused_before_sync, reused_after_sync, freed_during_sync_reused, pending_active};
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(mps_ext, m) {
  m.def("_device_synchronize() -> ()", &op_synchronize);
  m.def("_device_allocator_fence_check() -> int[]", &op_allocator_fence_check);
  m.def("_device_manual_seed(int seed) -> ()", &op_manual_seed);
  m.def("_device_initial_seed() -> int", &op_initial_seed);
  m.def("_device_seed() -> int", &op_seed);
  m.def("_device_get_rng_state() -> Tensor", &op_get_rng_state);
  m.def("_device_set_rng_state(Tensor state) -> ()", &op_set_rng_state);
}

}  // namespace mps_ext::device
