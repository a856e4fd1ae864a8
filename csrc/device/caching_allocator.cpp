#include "device/caching_allocator.h"

#include <c10/util/Exception.h>

#include <algorithm>

#include "device/device.h"

namespace mps_ext::device {
namespace {
using c10::CachingAllocator::StatArray;
using c10::CachingAllocator::StatType;

constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = 128 * 1024;

size_t pool_index(bool small) {
  return static_cast<size_t>(small ? StatType::SMALL_POOL : StatType::LARGE_POOL);
}
constexpr size_t kAggregate = static_cast<size_t>(StatType::AGGREGATE);
}  // namespace

CachingAllocator::CachingAllocator(RawMemory* raw, bool asynchronous) : raw_(raw), asynchronous_(asynchronous) {}

size_t CachingAllocator::round_size(size_t bytes) {
  size_t unit = bytes <= kSmallSize ? kSmallRound : kLargeRound;
  return (bytes + unit - 1) / unit * unit;
}

inline void CachingAllocator::stat_alloc(StatArray& s, const Block& b, size_t amount) {
  s[kAggregate].increase(amount);
  s[pool_index(b.small())].increase(amount);
}

inline void CachingAllocator::stat_free(StatArray& s, const Block& b, size_t amount) {
  s[kAggregate].decrease(amount);
  s[pool_index(b.small())].decrease(amount);
}

// A cached block of at least `size` bytes, not much larger (no splitting: a
// block larger than twice the request is left for bigger requests). Of the
// blocks of the best size, the most recently freed: likeliest still in cache.
CachingAllocator::Block* CachingAllocator::take_cached(size_t size) {
  for (auto it = cached_.lower_bound(size); it != cached_.end() && it->first < 2 * size;) {
    if (it->second.empty()) {  // the request's own size stays for its blocks to come back; others go
      it = it->first == size ? std::next(it) : cached_.erase(it);
      continue;
    }
    Block* b = it->second.back();
    it->second.pop_back();
    return b;
  }
  return nullptr;
}

void CachingAllocator::cache(Block* b) { cached_[b->size].push_back(b); }

void CachingAllocator::recycle_pending() {
  auto done = std::partition(pending_.begin(), pending_.end(), [&](Block* b) { return b->fence > completed_; });
  for (auto it = done; it != pending_.end(); ++it) {
    Block* b = *it;
    stat_free(stats_.active, *b, 1);
    stat_free(stats_.active_bytes, *b, b->size);
    cache(b);
  }
  pending_.erase(done, pending_.end());
}

void CachingAllocator::release_cached() {
  for (auto& [size, blocks] : cached_) {
    for (Block* b : blocks) {
      raw_->release(b->ptr, b->size);
      stat_free(stats_.segment, *b, 1);
      stat_free(stats_.reserved_bytes, *b, b->size);
      stats_.num_device_free++;
      delete b;
    }
  }
  cached_.clear();
}

c10::DataPtr CachingAllocator::allocate(size_t bytes) {
  c10::Device dev(kDeviceType, 0);
  if (bytes == 0) return {nullptr, dev};
  const size_t size = round_size(bytes);
  std::unique_lock<std::mutex> lock(mutex_);
  if (!pending_.empty()) recycle_pending();
  Block* b = take_cached(size);
  if (b == nullptr) {
    void* p = raw_->allocate(size);
    if (p == nullptr) {
      // Out of memory: wait for the GPU so pending blocks can go back too,
      // return every cached block to the system, and try once more.
      stats_.num_alloc_retries++;
      if (asynchronous_ && !pending_.empty()) {
        lock.unlock();
        synchronize();
        lock.lock();
        recycle_pending();
      }
      release_cached();
      p = raw_->allocate(size);
    }
    if (p == nullptr) {
      stats_.num_ooms++;
      auto [free, total] = raw_->memory_info();
      TORCH_CHECK_WITH(OutOfMemoryError, false, "mpsgraph: out of memory allocating ", bytes, " bytes (",
                       stats_.allocated_bytes[kAggregate].current, " bytes allocated, ",
                       stats_.reserved_bytes[kAggregate].current, " reserved, ", free, " free of ", total, ")");
    }
    b = new Block{this, p, size, 0};
    stat_alloc(stats_.segment, *b, 1);
    stat_alloc(stats_.reserved_bytes, *b, size);
    stats_.num_device_alloc++;
  }
  b->requested = bytes;
  stat_block(*b, /*alloc=*/true);
  return {b->ptr, b, &CachingAllocator::free_block, dev};
}

inline void CachingAllocator::stat_block(const Block& b, bool alloc) {
  // Two plain sequences, not a member pointer: each update inlines (every
  // allocation and free runs this).
  if (alloc) {
    stat_alloc(stats_.allocation, b, 1);
    stat_alloc(stats_.active, b, 1);
    stat_alloc(stats_.allocated_bytes, b, b.size);
    stat_alloc(stats_.active_bytes, b, b.size);
    stat_alloc(stats_.requested_bytes, b, b.requested);
  } else {
    stat_free(stats_.allocation, b, 1);
    stat_free(stats_.active, b, 1);
    stat_free(stats_.allocated_bytes, b, b.size);
    stat_free(stats_.active_bytes, b, b.size);
    stat_free(stats_.requested_bytes, b, b.requested);
  }
}

c10::DataPtr CachingAllocator::adopt(c10::DataPtr host, size_t bytes) {
  TORCH_INTERNAL_ASSERT(can_adopt(), "mpsgraph: only host memory can be adopted as device memory");
  auto* b = new Block{this, host.get(), bytes, bytes};
  b->adopted = std::move(host);
  std::lock_guard<std::mutex> lock(mutex_);
  stat_alloc(stats_.segment, *b, 1);
  stat_alloc(stats_.reserved_bytes, *b, bytes);
  stat_block(*b, /*alloc=*/true);
  return {b->ptr, b, &CachingAllocator::free_block, c10::Device(kDeviceType, 0)};
}

void CachingAllocator::free_block(void* ctx) {
  auto* b = static_cast<Block*>(ctx);
  b->owner->free(b);
}

void CachingAllocator::free(Block* b) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (b->adopted) {
    stat_block(*b, /*alloc=*/false);
    stat_free(stats_.segment, *b, 1);
    stat_free(stats_.reserved_bytes, *b, b->size);
    lock.unlock();
    delete b;  // its DataPtr's own deleter frees the memory
    return;
  }
  stat_free(stats_.allocation, *b, 1);
  stat_free(stats_.allocated_bytes, *b, b->size);
  stat_free(stats_.requested_bytes, *b, b->requested);
  if (!asynchronous_) {  // every op finished when it returned: reusable now
    stat_free(stats_.active, *b, 1);
    stat_free(stats_.active_bytes, *b, b->size);
    cache(b);
    return;
  }
  b->fence = epoch_.load();
  pending_.push_back(b);
  recycle_pending();
}

void CachingAllocator::end_sync(uint64_t epoch) {
  std::lock_guard<std::mutex> lock(mutex_);
  completed_ = std::max(completed_, epoch);
  recycle_pending();
}

void CachingAllocator::copy_data(void* dst, const void* src, std::size_t count) const {
  if (count) raw_->copy(dst, src, count);
}

void CachingAllocator::emptyCache(c10::MempoolId_t) {
  if (asynchronous_) synchronize();  // lets pending blocks go back too
  std::lock_guard<std::mutex> lock(mutex_);
  recycle_pending();
  release_cached();
}

c10::CachingDeviceAllocator::DeviceStats CachingAllocator::getDeviceStats(c10::DeviceIndex) {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::resetAccumulatedStats(c10::DeviceIndex) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (StatArray* s : {&stats_.allocation, &stats_.segment, &stats_.active, &stats_.inactive_split,
                       &stats_.allocated_bytes, &stats_.reserved_bytes, &stats_.active_bytes,
                       &stats_.inactive_split_bytes, &stats_.requested_bytes})
    for (auto& stat : *s) stat.reset_accumulated();
  stats_.num_alloc_retries = 0;
  stats_.num_ooms = 0;
  stats_.num_device_alloc = 0;
  stats_.num_device_free = 0;
}

void CachingAllocator::resetPeakStats(c10::DeviceIndex) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (StatArray* s : {&stats_.allocation, &stats_.segment, &stats_.active, &stats_.inactive_split,
                       &stats_.allocated_bytes, &stats_.reserved_bytes, &stats_.active_bytes,
                       &stats_.inactive_split_bytes, &stats_.requested_bytes})
    for (auto& stat : *s) stat.reset_peak();
}

std::pair<size_t, size_t> CachingAllocator::getMemoryInfo(c10::DeviceIndex) { return raw_->memory_info(); }

int64_t CachingAllocator::allocated_bytes() {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_.allocated_bytes[kAggregate].current;
}

}  // namespace mps_ext::device
