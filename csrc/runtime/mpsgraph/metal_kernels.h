// Hand-written Metal kernels for native `mps` tensors (metal_kernels.mm).
// Plain C++ interface; register these on the MPS dispatch key.
#pragma once

#include <ATen/core/Tensor.h>

namespace mps_ext::runtime::mpsgraph {

// torch.nn.functional.softshrink: x > l ? x - l : (x < -l ? x + l : x - x).
// float32/float16, and bfloat16 on macOS 14+ (Metal 3.1). Any strides.
at::Tensor softshrink_metal(const at::Tensor& self, double lambd);
// (x >= -l && x <= l) ? 0 : grad. grad and self must have the same shape/dtype.
at::Tensor softshrink_backward_metal(const at::Tensor& grad, const at::Tensor& self, double lambd);

}  // namespace mps_ext::runtime::mpsgraph
