// The indexing and sorting kinds lowered to MPSGraph's gather/scatter/top-k.
// Indices reach MPSGraph as int32 (the gather/scatter selectors' index type;
// the IR's int64 indices are in range). Registered in
// runtime/mpsgraph/lowerings.def; comments give each call's minimum macOS
// (Apple docs). Compiled on macOS only (tools/check_objc.py checks it on Linux).
#import "runtime/mpsgraph/lower_node.h"

#include <c10/util/Exception.h>

#include <utility>

namespace mps_ext::runtime::mpsgraph {
using graph::kDynamic;
using graph::Node;
using graph::Shape;

namespace {
// Scatter nodes' mode attr as MPSGraph's scatter mode.
MPSGraphScatterMode scatter_mode(const Node& n) {
  const std::string& m = n.str_attr("mode");
  if (m == "add") return MPSGraphScatterModeAdd;  // macOS 11.0
  if (m == "mul") return MPSGraphScatterModeMul;  // macOS 11.0
  if (m == "max") return MPSGraphScatterModeMax;  // macOS 11.0
  if (m == "min") return MPSGraphScatterModeMin;  // macOS 11.0
  return MPSGraphScatterModeSet;  // macOS 12.0
}
}  // namespace

MPSGraphTensor* lower_GatherAlongAxis(const LowerCtx& c, const Node& n) {
  MPSGraphTensor* axis = [c.g constantWithScalar:n.int_attr("axis") dataType:MPSDataTypeInt32];  // macOS 11.0
  MPSGraphTensor* index = [c.g castTensor:c.in(n, 1) toType:MPSDataTypeInt32 name:nil];  // macOS 12.0
  return [c.g gatherAlongAxisTensor:axis withUpdatesTensor:c.in(n, 0) indicesTensor:index name:nil];  // macOS 12.3
}

MPSGraphTensor* lower_ScatterAlongAxis(const LowerCtx& c, const Node& n) {
  MPSGraphTensor* axis = [c.g constantWithScalar:n.int_attr("axis") dataType:MPSDataTypeInt32];  // macOS 11.0
  MPSGraphTensor* index = [c.g castTensor:c.in(n, 2) toType:MPSDataTypeInt32 name:nil];  // macOS 12.0
  return [c.g scatterAlongAxisTensor:axis withDataTensor:c.in(n, 0) updatesTensor:c.in(n, 1) indicesTensor:index mode:scatter_mode(n) name:nil];  // macOS 12.3
}

MPSGraphTensor* lower_Gather(const LowerCtx& c, const Node& n) {
  MPSGraphTensor* index = [c.g castTensor:c.in(n, 1) toType:MPSDataTypeInt32 name:nil];  // macOS 12.0
  return [c.g gatherWithUpdatesTensor:c.in(n, 0) indicesTensor:index axis:n.int_attr("axis") batchDimensions:0 name:nil];  // macOS 11.0
}

MPSGraphTensor* lower_Scatter(const LowerCtx& c, const Node& n) {
  MPSGraphTensor* index = [c.g castTensor:c.in(n, 2) toType:MPSDataTypeInt32 name:nil];  // macOS 12.0
  return [c.g scatterWithDataTensor:c.in(n, 0) updatesTensor:c.in(n, 1) indicesTensor:index axis:n.int_attr("axis") mode:scatter_mode(n) name:nil];  // macOS 12.0
}

// ArgSort as a full top-k along the minor dimension (the documented form):
// the sorted axis moves last, k = its size; ascending order is the top-k of
// the negated values (bool/uint8 widened to int32 first). Unverified without
// a Mac: whether top-k keeps equal elements in index order (the IR's stable
// order) and where it puts NaN.
MPSGraphTensor* lower_ArgSort(const LowerCtx& c, const Node& n) {
  const Shape& shape = c.in_shape(n, 0);
  int64_t rank = static_cast<int64_t>(shape.size()), axis = n.int_attr("axis");
  TORCH_CHECK(rank == 0 || shape[axis] != kDynamic, "mps_ext: arg_sort along a dynamic dimension is not lowered to MPSGraph");
  if (rank == 0) return [c.g constantWithScalar:0 dataType:MPSDataTypeInt64];  // macOS 11.0
  MPSGraphTensor* x = c.in(n, 0);
  graph::DType dt = c.ir.node(n.inputs[0]).type.dtype;
  if (dt == graph::DType::Bool || dt == graph::DType::UInt8) x = [c.g castTensor:x toType:MPSDataTypeInt32 name:nil];  // macOS 12.0
  if (!n.int_attr("descending")) x = [c.g negativeWithTensor:x name:nil];  // macOS 11.0
  std::vector<int64_t> perm(rank);
  for (int64_t d = 0; d < rank; ++d) perm[d] = d;
  std::swap(perm[axis], perm[rank - 1]);
  if (axis != rank - 1) x = [c.g transposeTensor:x permutation:ns_ints(perm) name:nil];  // macOS 13.0
  MPSGraphTensor* k = [c.g constantWithScalar:static_cast<double>(shape[axis]) dataType:MPSDataTypeInt32];  // macOS 11.0
  MPSGraphTensor* index = [c.g topKWithSourceTensor:x kTensor:k name:nil][1];  // macOS 12.0
  if (axis != rank - 1) index = [c.g transposeTensor:index permutation:ns_ints(perm) name:nil];  // macOS 13.0
  return [c.g castTensor:index toType:MPSDataTypeInt64 name:nil];  // macOS 12.0
}

}  // namespace mps_ext::runtime::mpsgraph
