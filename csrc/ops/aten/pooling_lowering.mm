// The pooling kinds lowered to MPSGraph's 4-D pooling over a rank-5 view of
// the data (pool_plan.h: the view, explicit padding that realises ceil_mode,
// the average divisor correction; tested on Linux by emulation).
// Registered in runtime/mpsgraph/lowerings.def; comments give each call's
// minimum macOS (Apple docs). Compiled on macOS only (tools/check_objc.py
// checks it on Linux).
#import "runtime/mpsgraph/lower_node.h"

#include <c10/util/Exception.h>

#include <cstdint>

#include "runtime/mpsgraph/pool_plan.h"

namespace mps_ext::runtime::mpsgraph {
using graph::Node;
using graph::Shape;

namespace {
MPSGraphPooling4DOpDescriptor* pool_descriptor(const PoolPlan& plan) {
  return [MPSGraphPooling4DOpDescriptor descriptorWithKernelSizes:ns_ints(plan.kernel) strides:ns_ints(plan.stride) dilationRates:ns_ints(plan.dilation) paddingValues:ns_ints(plan.padding) paddingStyle:MPSGraphPaddingStyleExplicit];  // macOS 12.0
}

PoolPlan avg_plan(const Node& n, const Shape& input_shape) {
  return pool_plan(graph::pool_params(n), input_shape, /*avg=*/true, n.int_attr("count_include_pad") != 0,
                   n.int_attr("divisor_override"));
}

// torch's flat index into an input plane is MPSGraph's GlobalFlatten3D index
// of the rank-5 view (flattened over its innermost D, H, W, in unpadded input
// coordinates as PyTorch's own MPS backend relies on for its 2-D pools); int32.
void return_flat_indices(MPSGraphPooling4DOpDescriptor* desc) {
  desc.returnIndicesMode = MPSGraphPoolingReturnIndicesGlobalFlatten3D;  // macOS 12.2
  desc.returnIndicesDataType = MPSDataTypeInt32;  // macOS 12.2; the only type MPSGraph supports
}

void check_int32_plane(const Shape& in5) {
  TORCH_CHECK(in5[2] * in5[3] * in5[4] <= INT32_MAX, "mps_ext: max-pool indices of a plane of more than 2^31 elements "
              "do not fit MPSGraph's int32 indices; run it with MPS_EXT_RUNTIME=reference");
}

// The [1, 1, D, H, W] correction map as a constant of the node's dtype; nil when all ones.
MPSGraphTensor* avg_correction(const LowerCtx& c, const Node& n, const PoolPlan& plan) {
  if (!plan.needs_correction) return nil;
  NSData* data = [NSData dataWithBytes:plan.correction.data() length:plan.correction.size() * sizeof(float)];
  Shape shape = {1, 1, plan.out5[2], plan.out5[3], plan.out5[4]};
  MPSGraphTensor* t = [c.g constantWithData:data shape:mps_shape(shape) dataType:MPSDataTypeFloat32];  // macOS 11.0
  return n.type.dtype == graph::DType::Float32 ? t : [c.g castTensor:t toType:to_mps_dtype(n.type.dtype) name:nil];  // macOS 12.0
}

}  // namespace

// Pooling: 4-D pooling over the rank-5 view (pool_plan), reshaped back.
MPSGraphTensor* lower_MaxPool(const LowerCtx& c, const Node& n) {
  PoolPlan plan = pool_plan(graph::pool_params(n), c.in_shape(n, 0));
  MPSGraphTensor* x = [c.g reshapeTensor:c.in(n, 0) withShape:mps_shape(plan.in5) name:nil];  // macOS 11.0
  MPSGraphTensor* y = [c.g maxPooling4DWithSourceTensor:x descriptor:pool_descriptor(plan) name:nil];  // macOS 12.0
  return [c.g reshapeTensor:y withShape:mps_shape(n.type.shape) name:nil];  // macOS 11.0
}
MPSGraphTensor* lower_MaxPoolIndices(const LowerCtx& c, const Node& n) {
  PoolPlan plan = pool_plan(graph::pool_params(n), c.in_shape(n, 0));
  check_int32_plane(plan.in5);
  MPSGraphPooling4DOpDescriptor* desc = pool_descriptor(plan);
  return_flat_indices(desc);
  MPSGraphTensor* x = [c.g reshapeTensor:c.in(n, 0) withShape:mps_shape(plan.in5) name:nil];  // macOS 11.0
  MPSGraphTensor* idx = [c.g maxPooling4DReturnIndicesWithSourceTensor:x descriptor:desc name:nil][1];  // macOS 12.2
  idx = [c.g castTensor:idx toType:MPSDataTypeInt64 name:nil];  // macOS 12.0
  return [c.g reshapeTensor:idx withShape:mps_shape(n.type.shape) name:nil];  // macOS 11.0
}
MPSGraphTensor* lower_MaxPoolGradient(const LowerCtx& c, const Node& n) {
  PoolPlan plan = pool_plan(graph::pool_params(n), n.ints_attr("input_shape"));
  check_int32_plane(plan.in5);
  MPSGraphPooling4DOpDescriptor* desc = pool_descriptor(plan);
  return_flat_indices(desc);
  MPSGraphTensor* dy = [c.g reshapeTensor:c.in(n, 0) withShape:mps_shape(plan.out5) name:nil];  // macOS 11.0
  MPSGraphTensor* idx = [c.g castTensor:c.in(n, 1) toType:MPSDataTypeInt32 name:nil];  // macOS 12.0
  idx = [c.g reshapeTensor:idx withShape:mps_shape(plan.out5) name:nil];  // macOS 11.0
  MPSGraphTensor* dx = [c.g maxPooling4DGradientWithGradientTensor:dy indicesTensor:idx outputShape:mps_shape(plan.in5) descriptor:desc name:nil];  // macOS 13.0
  return [c.g reshapeTensor:dx withShape:mps_shape(n.type.shape) name:nil];  // macOS 11.0
}
MPSGraphTensor* lower_AvgPool(const LowerCtx& c, const Node& n) {
  PoolPlan plan = avg_plan(n, c.in_shape(n, 0));
  MPSGraphPooling4DOpDescriptor* desc = pool_descriptor(plan);
  desc.includeZeroPadToAverage = NO;  // macOS 12.0
  MPSGraphTensor* x = [c.g reshapeTensor:c.in(n, 0) withShape:mps_shape(plan.in5) name:nil];  // macOS 11.0
  MPSGraphTensor* y = [c.g avgPooling4DWithSourceTensor:x descriptor:desc name:nil];  // macOS 12.0
  if (MPSGraphTensor* fix = avg_correction(c, n, plan)) y = [c.g multiplicationWithPrimaryTensor:y secondaryTensor:fix name:nil];  // macOS 11.0
  return [c.g reshapeTensor:y withShape:mps_shape(n.type.shape) name:nil];  // macOS 11.0
}
MPSGraphTensor* lower_AvgPoolGradient(const LowerCtx& c, const Node& n) {
  PoolPlan plan = avg_plan(n, c.in_shape(n, 1));
  MPSGraphPooling4DOpDescriptor* desc = pool_descriptor(plan);
  desc.includeZeroPadToAverage = NO;  // macOS 12.0
  MPSGraphTensor* dy = [c.g reshapeTensor:c.in(n, 0) withShape:mps_shape(plan.out5) name:nil];  // macOS 11.0
  if (MPSGraphTensor* fix = avg_correction(c, n, plan)) dy = [c.g multiplicationWithPrimaryTensor:dy secondaryTensor:fix name:nil];  // macOS 11.0
  MPSGraphTensor* x = [c.g reshapeTensor:c.in(n, 1) withShape:mps_shape(plan.in5) name:nil];  // macOS 11.0
  MPSGraphTensor* dx = [c.g avgPooling4DGradientWithGradientTensor:dy sourceTensor:x descriptor:desc name:nil];  // macOS 12.0
  return [c.g reshapeTensor:dx withShape:mps_shape(n.type.shape) name:nil];  // macOS 11.0
}

}  // namespace mps_ext::runtime::mpsgraph
