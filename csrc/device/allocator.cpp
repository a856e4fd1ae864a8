// The mpsgraph device's allocator registration, and on non-Apple builds the
// allocator itself: host memory (the reference runtime's "device memory"),
// counted so torch.mpsgraph.memory_allocated() reports live bytes.
// On Apple builds allocator_metal.mm provides allocator() with shared-storage
// MTLBuffers instead.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <atomic>
#include <cstring>

#include "device/device.h"

namespace mps_ext::device {

#ifndef MPS_EXT_WITH_MPSGRAPH
namespace {
std::atomic<int64_t> g_allocated{0};

struct Block {
  void* ptr;
  size_t size;
};

void free_block(void* ctx) {
  auto* b = static_cast<Block*>(ctx);
  c10::free_cpu(b->ptr);
  g_allocated.fetch_sub(static_cast<int64_t>(b->size), std::memory_order_relaxed);
  delete b;
}

struct HostAllocator final : c10::Allocator {
  c10::DataPtr allocate(size_t n) override {
    c10::Device dev(kDeviceType, 0);
    if (n == 0) return {nullptr, dev};
    void* p = c10::alloc_cpu(n);
    g_allocated.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
    return {p, new Block{p, n}, &free_block, dev};
  }
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }  // contexts carry the size
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    if (count) std::memcpy(dest, src, count);
  }
};
}  // namespace

c10::Allocator* allocator() {
  static HostAllocator a;
  return &a;
}

int64_t memory_allocated() { return g_allocated.load(std::memory_order_relaxed); }

void synchronize() {}  // host memory: every op has finished when it returns
#endif

REGISTER_ALLOCATOR(c10::DeviceType::PrivateUse1, allocator());

}  // namespace mps_ext::device
