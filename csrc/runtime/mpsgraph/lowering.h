// IR graph -> MPSGraph, one node at a time (lowering.mm). Objective-C++ only.
#pragma once

#import <MetalPerformanceShadersGraph/MetalPerformanceShadersGraph.h>

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <vector>

#include "graph/graph.h"
#import "runtime/mpsgraph/lower_node.h"

namespace mps_ext::runtime::mpsgraph {

struct Lowered {
  MPSGraph* graph = nil;
  std::vector<MPSGraphTensor*> inputs;   // by placeholder/variable "index"
  std::vector<MPSGraphTensor*> outputs;  // Graph::outputs() order
  std::vector<MPSGraphTensor*> values;   // every node's result, by node id
};

// Builds the MPSGraph for `ir`. The executable lowers the graph re-inferred
// for each concrete input-shape set (Graph::with_input_shapes), so lowerings
// see real sizes; a dynamic dim (-1) would stay -1 in placeholders.
Lowered lower(const graph::Graph& ir);

// The MTLBuffer behind an mps or mpsgraph-device tensor and the byte offset
// of its first element (executable.mm). Not retained.
id<MTLBuffer> mtl_buffer_of(const at::Tensor& t, size_t* offset);

}  // namespace mps_ext::runtime::mpsgraph
