// The fusion pass of the reference runtime: splits a graph into steps, each
// a single node (run with ATen) or a region of stitched elementwise nodes
// (run as one FusedProgram pass).
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "runtime/reference/executor.h"
#include "runtime/reference/fused_elementwise.h"
#include "runtime/runtime.h"

namespace mps_ext::runtime::reference {

struct FusedRegion {
  std::vector<int> nodes;    // graph node ids, in order
  std::vector<int> inputs;   // values read from outside: register i
  std::vector<int> outputs;  // values used outside the region
  // Per output: which inputs it depends on. An output must span the whole
  // iteration space, or the region falls back to node-by-node execution.
  std::vector<std::vector<int>> output_deps;
  FusedProgram program;
};

struct Step {
  int node = -1;    // run one node, or
  int region = -1;  // run regions[region]
};

struct Plan {
  std::vector<Step> steps;
  std::vector<FusedRegion> regions;
};

Plan plan_fusion(const graph::Graph& g);

// Runs `region` on its input values (register i reads *inputs[i]), its
// results (region.outputs order) in `outs`, tensors from `new_output`.
// Returns false (having written nothing) when the runtime shapes do not
// allow one pass.
bool run_region(const FusedRegion& region, c10::ArrayRef<const at::Tensor*> inputs, const NodeOutput& new_output,
                c10::SmallVectorImpl<at::Tensor>& outs);

}  // namespace mps_ext::runtime::reference
