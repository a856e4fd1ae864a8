// The mpsgraph device's caching allocator: a c10::DeviceAllocator (so
// torch.accelerator.memory_* and torch.mpsgraph.memory_* work) over raw memory
// from a RawMemory backend (host memory on the reference runtime, shared
// MTLBuffers on Apple silicon).
//
// Freed blocks are cached by size and handed out again. On a device whose
// GPU runs asynchronously, a freed block may still be read or written by
// queued GPU work, so it is reused only after a device synchronize() that
// started after the free (an epoch fence: synchronize() calls begin_sync() /
// end_sync() around its wait). One command stream serves all torch streams,
// so this single fence covers recordStream() too.
#pragma once

#include <c10/core/CachingDeviceAllocator.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

namespace mps_ext::device {

struct RawMemory {
  virtual ~RawMemory() = default;
  virtual void* allocate(size_t bytes) = 0;  // nullptr when out of memory
  virtual void release(void* ptr, size_t bytes) = 0;
  virtual std::pair<size_t, size_t> memory_info() = 0;  // (free, total) bytes
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  // Whether this memory is plain host memory (CachingAllocator::adopt).
  virtual bool host() const { return false; }
};

class CachingAllocator final : public c10::DeviceAllocator {
 public:
  // asynchronous: GPU work may still use a block after it is freed.
  CachingAllocator(RawMemory* raw, bool asynchronous);

  c10::DataPtr allocate(size_t bytes) override;
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }  // contexts carry the block
  void copy_data(void* dst, const void* src, std::size_t count) const override;

  bool initialized() override { return true; }
  void emptyCache(c10::MempoolId_t mempool_id = {0, 0}) override;
  void recordStream(const c10::DataPtr&, c10::Stream) override {}  // the epoch fence covers every stream
  c10::CachingDeviceAllocator::DeviceStats getDeviceStats(c10::DeviceIndex device) override;
  void resetAccumulatedStats(c10::DeviceIndex device) override;
  void resetPeakStats(c10::DeviceIndex device) override;
  std::pair<size_t, size_t> getMemoryInfo(c10::DeviceIndex device) override;

  // Epoch fence (asynchronous devices): blocks freed before begin_sync()
  // returned are reusable once the matching end_sync() ran.
  uint64_t begin_sync() { return epoch_.fetch_add(1); }
  void end_sync(uint64_t epoch);

  int64_t allocated_bytes();

  // Host memory of `bytes` bytes that something else allocated (ATen, for a
  // graph result on the reference runtime) taken over as device memory
  // without a copy: counted as allocated while alive, handed back to its own
  // deleter when freed, never cached. Only where device memory is host
  // memory (can_adopt()).
  bool can_adopt() const { return raw_->host(); }
  c10::DataPtr adopt(c10::DataPtr host, size_t bytes);

  // Rounded block size for a request (exposed for tests through stats).
  static size_t round_size(size_t bytes);

 private:
  struct Block {
    CachingAllocator* owner;
    void* ptr;
    size_t size;       // rounded
    size_t requested;  // what the caller asked for
    uint64_t fence = 0;
    c10::DataPtr adopted;  // memory taken over by adopt(), freed through its own deleter
    bool small() const { return size <= kSmallSize; }
  };
  static constexpr size_t kSmallSize = 1 << 20;  // 1 MiB

  static void free_block(void* ctx);
  void free(Block* b);
  void stat_block(const Block& b, bool alloc);  // a block's allocation/free in every stat
  Block* take_cached(size_t size);  // under mutex_
  void cache(Block* b);             // under mutex_
  void recycle_pending();           // under mutex_
  void release_cached();            // under mutex_
  void stat_alloc(c10::CachingAllocator::StatArray& s, const Block& b, size_t amount);
  void stat_free(c10::CachingAllocator::StatArray& s, const Block& b, size_t amount);

  RawMemory* raw_;
  const bool asynchronous_;
  std::mutex mutex_;
  // Reusable blocks: per rounded size, a stack (the most recently freed on
  // top). A size's stack stays when it empties, so an allocation and free
  // pair of a cached size only pops and pushes (no tree node, no rebalancing).
  std::map<size_t, std::vector<Block*>> cached_;
  std::vector<Block*> pending_;           // freed, maybe still used by the GPU
  std::atomic<uint64_t> epoch_{1};
  uint64_t completed_ = 0;  // under mutex_
  c10::CachingDeviceAllocator::DeviceStats stats_;
};

}  // namespace mps_ext::device
