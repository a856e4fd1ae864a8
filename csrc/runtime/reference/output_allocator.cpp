#include "runtime/reference/output_allocator.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace mps_ext::runtime::reference {
namespace {
constexpr size_t kPage = size_t{4} << 10;
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kHugeMinBytes = size_t{32} << 20;  // glibc's largest mmap threshold
constexpr size_t kCacheMinBytes = size_t{256} << 10;  // smaller blocks recycle well in glibc's bins
constexpr size_t kCacheMaxBlocks = 32;

size_t cache_limit_bytes() {
  static const size_t limit = [] {
    const char* env = std::getenv("MPS_EXT_OUTPUT_CACHE_BYTES");
    if (!env || !*env) return size_t{128} << 20;
    char* end = nullptr;
    long long v = std::strtoll(env, &end, 10);
    TORCH_CHECK(end && *end == '\0' && v >= 0, "MPS_EXT_OUTPUT_CACHE_BYTES must be a non-negative integer, but got '",
                env, "'");
    return static_cast<size_t>(v);
  }();
  return limit;
}

// Blocks are rounded to whole pages (huge pages from 32 MiB) so results of
// nearly the same size share blocks; a block is reused for its exact size.
size_t block_bytes(size_t nbytes) {
  size_t unit = nbytes >= kHugeMinBytes ? kHugePage : kPage;
  return (nbytes + unit - 1) / unit * unit;
}

void* new_block(size_t bytes) {
  void* p = nullptr;
  size_t align = bytes >= kHugeMinBytes ? kHugePage : kPage;
  if (posix_memalign(&p, align, bytes) != 0) return nullptr;
#if defined(__linux__)
  if (bytes >= kHugeMinBytes) madvise(p, bytes, MADV_HUGEPAGE);  // advisory: ignored where THP is off
#endif
  return p;
}

struct BlockCache {
  std::mutex mutex;
  std::unordered_map<void*, size_t> live;        // block -> its size, for the deleter
  std::deque<std::pair<void*, size_t>> idle;     // freed blocks, oldest first
  size_t idle_bytes = 0;
  int64_t hits = 0, misses = 0;
};

BlockCache& cache() {
  static auto* c = new BlockCache();  // leaked: tensors may be freed during static destruction
  return *c;
}

void release_block(void* p) {
  BlockCache& c = cache();
  std::deque<std::pair<void*, size_t>> evicted;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.live.find(p);
    size_t bytes = it == c.live.end() ? 0 : it->second;  // (never unknown; a deleter must not throw)
    if (it != c.live.end()) c.live.erase(it);
    if (bytes == 0 || bytes > cache_limit_bytes()) {  // too big to keep: it would evict all else
      evicted.emplace_back(p, bytes);
    } else {
      c.idle.emplace_back(p, bytes);
      c.idle_bytes += bytes;
    }
    while (!c.idle.empty() && (c.idle_bytes > cache_limit_bytes() || c.idle.size() > kCacheMaxBlocks)) {
      evicted.push_back(c.idle.front());
      c.idle_bytes -= c.idle.front().second;
      c.idle.pop_front();
    }
  }
  for (auto& [block, bytes] : evicted) std::free(block);
}

// The data pointer is the block itself (a "simple" data pointer, as ATen's
// CPU allocator gives, so copy-on-write clones work on results).
struct CachingAllocator final : c10::Allocator {
  c10::DataPtr allocate(size_t nbytes) override {
    if (nbytes < kCacheMinBytes) return c10::GetCPUAllocator()->allocate(nbytes);
    size_t bytes = block_bytes(nbytes);
    BlockCache& c = cache();
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(c.mutex);
      // The most recently freed block of this size: the likeliest still in cache.
      for (auto it = c.idle.rbegin(); it != c.idle.rend(); ++it) {
        if (it->second != bytes) continue;
        p = it->first;
        c.idle_bytes -= bytes;
        c.idle.erase(std::next(it).base());
        break;
      }
      p ? ++c.hits : ++c.misses;
    }
    if (!p) p = new_block(bytes);
    if (!p) return c10::GetCPUAllocator()->allocate(nbytes);  // fall back, never fail here
    {
      std::lock_guard<std::mutex> lock(c.mutex);
      c.live.emplace(p, bytes);
    }
    return {p, p, &release_block, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }  // blocks differ by size: no raw API
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
};
}  // namespace

at::Tensor empty_output(at::IntArrayRef sizes, at::ScalarType dtype) {
  size_t nbytes = c10::multiply_integers(sizes) * c10::elementSize(dtype);
  if (nbytes >= kCacheMinBytes && (cache_limit_bytes() > 0 || nbytes >= kHugeMinBytes)) {
    static CachingAllocator allocator;  // storages keep a pointer: lives forever
    return at::detail::empty_generic(sizes, &allocator, c10::DispatchKeySet(c10::DispatchKey::CPU), dtype,
                                     std::nullopt);
  }
  return at::detail::empty_cpu(sizes, dtype, /*pin_memory=*/false, std::nullopt);  // no dispatcher round trip
}

bool allocated_for_cpu_result(const c10::DataPtr& p) {
  return p.get_deleter() == &release_block || p.get_deleter() == c10::GetCPUAllocator()->raw_deleter();
}

OutputCacheInfo output_cache_info() {
  BlockCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return {c.hits, c.misses, static_cast<int64_t>(c.idle_bytes), static_cast<int64_t>(cache_limit_bytes())};
}

void output_cache_clear() {
  BlockCache& c = cache();
  std::deque<std::pair<void*, size_t>> idle;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    idle.swap(c.idle);
    c.idle_bytes = 0;
    c.hits = c.misses = 0;
  }
  for (auto& [block, bytes] : idle) std::free(block);
}

}  // namespace mps_ext::runtime::reference
