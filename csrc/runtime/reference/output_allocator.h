// Where the reference runtime's kernels put their results.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace mps_ext::runtime::reference {

// A contiguous CPU tensor for a kernel result. Results of 256 KiB and more
// come from a small cache of recently freed result blocks, so a loop that
// frees and recomputes results of the same sizes (forward + backward, a
// training step) writes into memory that is already mapped, whatever glibc's
// heap does. Without it, the op's own small allocations interleaved with the
// results on glibc's heap made the heap top grow and trim on every call in a
// fresh process: ~1,000 page faults (each a zeroed 4 KiB page) per
// softshrink forward+backward at 1M fp32 where torch had none. New blocks of
// 32 MiB and more are placed on transparent huge pages (512x fewer faults).
// The cache keeps at most MPS_EXT_OUTPUT_CACHE_BYTES bytes (default 128 MiB;
// 0 turns it off), oldest blocks freed first. Smaller results use ATen's
// CPU allocator.
at::Tensor empty_output(at::IntArrayRef sizes, at::ScalarType dtype);

// Whether `p` came from ATen's CPU allocator or from empty_output: memory its
// storage owns, not an alias of other memory (a device tensor's CPU alias).
bool allocated_for_cpu_result(const c10::DataPtr& p);

struct OutputCacheInfo {
  int64_t hits, misses, cached_bytes, max_bytes;
};
OutputCacheInfo output_cache_info();
void output_cache_clear();  // frees the idle blocks

}  // namespace mps_ext::runtime::reference
