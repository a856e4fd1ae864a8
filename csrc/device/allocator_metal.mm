// The mpsgraph device's memory on Apple silicon: shared-storage MTLBuffers
// (unified memory), so the data pointer PyTorch sees is [buffer contents] and
// the CPU fallback reads and writes the GPU's bytes without copies. A map from
// data pointer to buffer lets the mpsgraph runtime bind the buffer behind any
// device tensor (set_private_use1_buffer_resolver).
//
// Ordering: the device has its own command queue; the mpsgraph runtime
// currently encodes onto PyTorch's MPS stream. synchronize() waits for both,
// and runs before every host access (copies, the CPU fallback, item()).
#import <Metal/Metal.h>

#import <ATen/mps/MPSDevice.h>
#import <ATen/mps/MPSStream.h>

#include <c10/core/Allocator.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <map>
#include <mutex>

#include "device/device.h"
#include "runtime/mpsgraph/executable.h"

namespace mps_ext::device {
namespace {
std::atomic<int64_t> g_allocated{0};

struct Buffers {
  std::mutex mutex;
  std::map<const char*, id<MTLBuffer>> by_start;  // [buffer contents] -> buffer (strong)
};

Buffers& buffers() {
  static Buffers* b = new Buffers();  // leaked: outlives static destructors
  return *b;
}

id<MTLDevice> mtl_device() { return at::mps::MPSDevice::getInstance()->device(); }

id<MTLCommandQueue> queue() {
  static id<MTLCommandQueue> q = [mtl_device() newCommandQueue];  // macOS 10.11
  return q;
}

void free_buffer(void* contents) {
  Buffers& b = buffers();
  std::lock_guard<std::mutex> lock(b.mutex);
  auto it = b.by_start.find(static_cast<const char*>(contents));
  TORCH_INTERNAL_ASSERT(it != b.by_start.end(), "mpsgraph: freeing an unknown buffer");
  g_allocated.fetch_sub(static_cast<int64_t>([it->second length]), std::memory_order_relaxed);  // macOS 10.11
  b.by_start.erase(it);  // releases the MTLBuffer
}

// The buffer holding `data` (its start or an interior pointer) and the offset.
void* resolve(const void* data, size_t* offset) {
  Buffers& b = buffers();
  std::lock_guard<std::mutex> lock(b.mutex);
  const char* p = static_cast<const char*>(data);
  auto it = b.by_start.upper_bound(p);
  TORCH_CHECK(it != b.by_start.begin(), "mpsgraph: pointer is not in an mpsgraph buffer");
  --it;
  size_t off = static_cast<size_t>(p - it->first);
  TORCH_CHECK(off < [it->second length], "mpsgraph: pointer is not in an mpsgraph buffer");  // macOS 10.11
  *offset = off;
  return (__bridge void*)it->second;
}

struct MetalAllocator final : c10::Allocator {
  c10::DataPtr allocate(size_t n) override {
    c10::Device dev(kDeviceType, 0);
    if (n == 0) return {nullptr, dev};
    id<MTLBuffer> buf = [mtl_device() newBufferWithLength:n options:MTLResourceStorageModeShared];  // macOS 10.11
    TORCH_CHECK(buf != nil, "mpsgraph: out of memory allocating ", n, " bytes");
    void* contents = [buf contents];  // macOS 10.11
    {
      Buffers& b = buffers();
      std::lock_guard<std::mutex> lock(b.mutex);
      b.by_start[static_cast<const char*>(contents)] = buf;
    }
    g_allocated.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
    return {contents, contents, &free_buffer, dev};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &free_buffer; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    synchronize();
    if (count) std::memcpy(dest, src, count);
  }
};

const bool g_resolver_registered = [] {
  runtime::mpsgraph::set_private_use1_buffer_resolver(&resolve);
  return true;
}();
}  // namespace

c10::Allocator* allocator() {
  static MetalAllocator a;
  return &a;
}

int64_t memory_allocated() { return g_allocated.load(std::memory_order_relaxed); }

void synchronize() {
  // Graphs the mpsgraph runtime encoded onto PyTorch's MPS stream.
  at::mps::getCurrentMPSStream()->synchronize(at::mps::SyncType::COMMIT_AND_WAIT);
  // Then the device's own queue: a command buffer completes after every
  // buffer committed to the same queue before it.
  @autoreleasepool {
    id<MTLCommandBuffer> cb = [queue() commandBuffer];  // macOS 10.11
    [cb commit];                                        // macOS 10.11
    [cb waitUntilCompleted];                            // macOS 10.11
  }
}

}  // namespace mps_ext::device
