// What a lower_<Kind> function sees, and every lower_<Kind> declared from the
// registrations (lowerings.def). Core kinds are defined in lowering.mm, the
// families' kinds next to their family (csrc/ops/<family>/*_lowering.mm).
// Objective-C++ only.
#pragma once

#import <MetalPerformanceShadersGraph/MetalPerformanceShadersGraph.h>

#include <c10/util/ArrayRef.h>

#include <vector>

#include "graph/graph.h"

namespace mps_ext::runtime::mpsgraph {

struct LowerCtx {
  MPSGraph* g;
  const graph::Graph& ir;
  const std::vector<MPSGraphTensor*>& values;  // by node id
  MPSGraphTensor* in(const graph::Node& n, size_t i) const { return values.at(n.inputs.at(i)); }
  const graph::Shape& in_shape(const graph::Node& n, size_t i) const { return ir.node(n.inputs.at(i)).type.shape; }
};

// Throws c10::Error for dtypes MPSGraph lacks (Float64).
MPSDataType to_mps_dtype(graph::DType t);
// An MPSShape; -1 entries stay -1 (dynamic, as MPSGraph spells it).
MPSShape* mps_shape(c10::ArrayRef<int64_t> dims);
NSArray<NSNumber*>* ns_ints(const std::vector<int64_t>& v);
bool is_static(const graph::Shape& s);  // no dynamic (-1) dim

#define MPS_EXT_LOWERING(kind, selector, macos) MPSGraphTensor* lower_##kind(const LowerCtx& c, const graph::Node& n);
#include "runtime/mpsgraph/lowerings.def"
#undef MPS_EXT_LOWERING

}  // namespace mps_ext::runtime::mpsgraph
