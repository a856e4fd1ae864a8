// Hand-written Metal kernels for kernel nodes (graph.h, Graph::kernel), by
// name: the mpsgraph runtime's kernel registry. A graph that is one kernel
// node with a Metal kernel runs as that kernel; anywhere else the node is its
// decomposition, lowered to MPSGraph. Families register theirs in their .mm
// (csrc/ops/<family>/*.mm):  MPS_EXT_METAL_KERNEL("softshrink", fn);
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "graph/graph.h"

#ifdef __OBJC__
#import <Metal/Metal.h>
#endif

namespace mps_ext::runtime::mpsgraph {

// inputs in the node's order: tensors on one GPU device (mps or the mpsgraph
// device); 0-d CPU tensors are scalars. Returns the result on that device.
using MetalKernel = at::Tensor (*)(const graph::Node& node, const std::vector<at::Tensor>& inputs);

bool register_metal_kernel(const std::string& name, MetalKernel kernel);
MetalKernel find_metal_kernel(const std::string& name);  // nullptr when none

#define MPS_EXT_METAL_KERNEL_CAT2(a, b) a##b
#define MPS_EXT_METAL_KERNEL_CAT(a, b) MPS_EXT_METAL_KERNEL_CAT2(a, b)
#define MPS_EXT_METAL_KERNEL(name, fn)                                             \
  static const bool MPS_EXT_METAL_KERNEL_CAT(mps_ext_metal_kernel_, __LINE__) = \
      ::mps_ext::runtime::mpsgraph::register_metal_kernel(name, fn)

#ifdef __OBJC__
// The pipeline for `function` in the Metal library compiled once from
// `source` (keyed by `library`), in safe math: IEEE NaN/Inf and signed zeros
// as the CPU has them.
id<MTLComputePipelineState> metal_pipeline(const char* library, const char* source, const std::string& function);

// Encodes a 1-D kernel over n threads on the current MPS stream: the tensors'
// buffers (at their offsets, contiguous) bound first, then each constant.
void dispatch_1d(id<MTLComputePipelineState> pso, const std::vector<at::Tensor>& tensors,
                 const std::vector<float>& float_constants, uint32_t n);
#endif

}  // namespace mps_ext::runtime::mpsgraph
