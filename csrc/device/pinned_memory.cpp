// pin_memory() on a host with the mpsgraph device: device memory is host
// memory (unified on Apple silicon), so "pinned" memory is ordinary page-
// aligned host memory. This allocator records its blocks so that
// is_pinned() (PrivateUse1 hooks' isPinnedPtr) answers true for them and
// their views, and false for every other host pointer.
#include <c10/core/Allocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <map>
#include <mutex>

#include "device/device.h"

namespace mps_ext::device {
namespace {
struct Registry {
  std::mutex mutex;
  std::map<const char*, size_t> blocks;  // start -> size
};

Registry& registry() {
  static Registry* r = new Registry();  // leaked: outlives static destructors
  return *r;
}

void free_pinned(void* ptr) {
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.blocks.erase(static_cast<const char*>(ptr));
  }
  c10::free_cpu(ptr);
}

struct PinnedAllocator final : c10::Allocator {
  c10::DataPtr allocate(size_t n) override {
    if (n == 0) return {nullptr, c10::Device(c10::kCPU)};
    void* p = c10::alloc_cpu(n);
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.blocks[static_cast<const char*>(p)] = n;
    return {p, p, &free_pinned, c10::Device(c10::kCPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &free_pinned; }
  void copy_data(void* dst, const void* src, std::size_t count) const override { default_copy_data(dst, src, count); }
};
}  // namespace

c10::Allocator* pinned_host_allocator() {
  static PinnedAllocator a;
  return &a;
}

bool is_pinned_host_ptr(const void* ptr) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  const char* p = static_cast<const char*>(ptr);
  auto it = r.blocks.upper_bound(p);
  if (it == r.blocks.begin()) return false;
  --it;
  return p < it->first + it->second;
}

}  // namespace mps_ext::device
