#include "runtime/reference/output_allocator.h"

#include <ATen/EmptyTensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/irange.h>

#include <cstdlib>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace mps_ext::runtime::reference {
namespace {
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kMinBytes = size_t{32} << 20;  // glibc's largest mmap threshold

#if defined(__linux__)
void free_huge(void* p) { std::free(p); }

// 2 MiB-aligned blocks advised as huge pages (THP "madvise" or "always").
struct HugePageAllocator final : c10::Allocator {
  c10::DataPtr allocate(size_t nbytes) override {
    void* p = nullptr;
    size_t rounded = (nbytes + kHugePage - 1) / kHugePage * kHugePage;
    if (posix_memalign(&p, kHugePage, rounded) != 0 || p == nullptr)
      return c10::GetCPUAllocator()->allocate(nbytes);  // fall back, never fail
    madvise(p, rounded, MADV_HUGEPAGE);  // advisory: ignored where THP is off
    return {p, p, &free_huge, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &free_huge; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
};
#endif
}  // namespace

at::Tensor empty_output(at::IntArrayRef sizes, at::ScalarType dtype) {
#if defined(__linux__)
  size_t nbytes = c10::multiply_integers(sizes) * c10::elementSize(dtype);
  if (nbytes >= kMinBytes) {
    static HugePageAllocator allocator;  // storages keep a pointer: lives forever
    return at::detail::empty_generic(sizes, &allocator, c10::DispatchKeySet(c10::DispatchKey::CPU), dtype,
                                     std::nullopt);
  }
#endif
  return at::detail::empty_cpu(sizes, dtype, /*pin_memory=*/false, std::nullopt);  // no dispatcher round trip
}

}  // namespace mps_ext::runtime::reference
