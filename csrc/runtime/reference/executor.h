// The reference runtime: executes graphs on CPU tensors with ATen and the
// project's fused kernels. It is what Linux CI tests and what the mpsgraph
// runtime is checked against.
#pragma once

#include <memory>

#include "runtime/runtime.h"

namespace mps_ext::runtime::reference {

// fuse=false runs every node with ATen: the oracle the fusion tests compare to.
std::unique_ptr<Executable> compile(std::shared_ptr<const graph::Graph> graph, bool fuse = true);

// One node, evaluated with ATen: `args` are the values of node.inputs.
at::Tensor eval_node(const graph::Node& node, const std::vector<at::Tensor>& args);

}  // namespace mps_ext::runtime::reference
