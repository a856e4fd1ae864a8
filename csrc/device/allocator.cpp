// The mpsgraph device's allocator registration, and on non-Apple builds its
// raw memory: host memory (the reference runtime's "device memory"). Both
// builds cache freed blocks (caching_allocator.h); allocator_metal.mm
// provides shared-storage MTLBuffers instead on Apple builds.
#include <c10/core/Allocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <unistd.h>

#include <cstring>

#include "device/caching_allocator.h"
#include "device/device.h"

namespace mps_ext::device {

#ifndef MPS_EXT_WITH_MPSGRAPH
namespace {
struct HostMemory final : RawMemory {
  void* allocate(size_t bytes) override {
    try {
      return c10::alloc_cpu(bytes);
    } catch (const c10::Error&) {
      return nullptr;  // the caching allocator frees its cache and retries
    }
  }
  void release(void* ptr, size_t) override { c10::free_cpu(ptr); }
  std::pair<size_t, size_t> memory_info() override {
    auto page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return {static_cast<size_t>(sysconf(_SC_AVPHYS_PAGES)) * page, static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * page};
  }
  void copy(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  bool host() const override { return true; }
};
}  // namespace

CachingAllocator& caching_allocator() {
  static HostMemory* raw = new HostMemory();
  // Leaked: tensors freed during static destruction still find it.
  static CachingAllocator* a = new CachingAllocator(raw, /*asynchronous=*/false);
  return *a;
}

void synchronize() {}  // host memory: every op has finished when it returns
#endif

c10::Allocator* allocator() { return &caching_allocator(); }

int64_t memory_allocated() { return caching_allocator().allocated_bytes(); }

REGISTER_ALLOCATOR(c10::DeviceType::PrivateUse1, allocator());

}  // namespace mps_ext::device
