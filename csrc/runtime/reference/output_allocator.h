// Where the reference runtime's fused kernels put their results.
#pragma once

#include <ATen/core/Tensor.h>

namespace mps_ext::runtime::reference {

// A contiguous CPU tensor for a kernel result. Results too large for the C
// heap to recycle (glibc maps >= 32 MiB afresh on every call, so each 4 KiB
// page faults on first touch) are placed on transparent huge pages: 512x
// fewer faults. Smaller results use ATen's CPU allocator as usual.
at::Tensor empty_output(at::IntArrayRef sizes, at::ScalarType dtype);

}  // namespace mps_ext::runtime::reference
