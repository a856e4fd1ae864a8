// The mpsgraph device's memory on Apple silicon: shared-storage MTLBuffers
// (unified memory), so the data pointer PyTorch sees is [buffer contents] and
// the CPU fallback reads and writes the GPU's bytes without copies. A map from
// data pointer to buffer lets the mpsgraph runtime bind the buffer behind any
// device tensor (set_private_use1_buffer_resolver). The caching allocator
// (caching_allocator.h) keeps freed buffers for reuse, each only after a
// synchronize() that began after its free, i.e. once the GPU work that may
// still use it completed.
//
// Ordering: the device has its own command queue; the mpsgraph runtime
// currently encodes onto PyTorch's MPS stream. synchronize() waits for both,
// and runs before every host access (copies, the CPU fallback, item()).
//
// Not run yet (no Mac in CI): syntax-checked by tools/check_objc.py.
#import <Metal/Metal.h>

#import <ATen/mps/MPSDevice.h>
#import <ATen/mps/MPSStream.h>

#include <c10/core/Allocator.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <map>
#include <mutex>

#include "device/caching_allocator.h"
#include "device/device.h"
#include "runtime/mpsgraph/executable.h"

namespace mps_ext::device {
namespace {
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

struct MetalMemory final : RawMemory {
  void* allocate(size_t n) override {
    id<MTLBuffer> buf = [mtl_device() newBufferWithLength:n options:MTLResourceStorageModeShared];  // macOS 10.11
    if (buf == nil) return nullptr;
    void* contents = [buf contents];  // macOS 10.11
    Buffers& b = buffers();
    std::lock_guard<std::mutex> lock(b.mutex);
    b.by_start[static_cast<const char*>(contents)] = buf;
    return contents;
  }
  void release(void* contents, size_t) override {
    Buffers& b = buffers();
    std::lock_guard<std::mutex> lock(b.mutex);
    auto it = b.by_start.find(static_cast<const char*>(contents));
    TORCH_INTERNAL_ASSERT(it != b.by_start.end(), "mpsgraph: freeing an unknown buffer");
    b.by_start.erase(it);  // releases the MTLBuffer
  }
  std::pair<size_t, size_t> memory_info() override {
    size_t total = [mtl_device() recommendedMaxWorkingSetSize];  // macOS 10.12
    size_t used = [mtl_device() currentAllocatedSize];           // macOS 10.13
    return {total > used ? total - used : 0, total};
  }
  void copy(void* dst, const void* src, size_t n) override {
    synchronize();
    std::memcpy(dst, src, n);
  }
};

const bool g_resolver_registered = [] {
  runtime::mpsgraph::set_private_use1_buffer_resolver(&resolve);
  return true;
}();
}  // namespace

CachingAllocator& caching_allocator() {
  static MetalMemory* raw = new MetalMemory();
  static CachingAllocator* a = new CachingAllocator(raw, /*asynchronous=*/true);  // leaked on purpose
  return *a;
}

void synchronize() {
  uint64_t epoch = caching_allocator().begin_sync();
  // Graphs the mpsgraph runtime encoded onto PyTorch's MPS stream.
  at::mps::getCurrentMPSStream()->synchronize(at::mps::SyncType::COMMIT_AND_WAIT);
  // Then the device's own queue: a command buffer completes after every
  // buffer committed to the same queue before it.
  @autoreleasepool {
    id<MTLCommandBuffer> cb = [queue() commandBuffer];  // macOS 10.11
    [cb commit];                                        // macOS 10.11
    [cb waitUntilCompleted];                            // macOS 10.11
  }
  caching_allocator().end_sync(epoch);  // buffers freed before this wait may be reused
}

}  // namespace mps_ext::device
