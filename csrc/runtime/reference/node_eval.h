// The reference runtime's ATen evaluation of each IR node kind: the semantics
// every runtime must match. Core kinds register in node_eval.cpp, family kinds
// next to their spec in csrc/ops/<family>/*_nodes.cpp.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "graph/graph.h"
#include "runtime/reference/kernels.h"
#include "runtime/runtime.h"

namespace mps_ext::runtime::reference {

// `args` are the values of node.inputs; the result has node.type.
using NodeEval = at::Tensor (*)(const graph::Node& node, const std::vector<at::Tensor>& args);

bool register_node_eval(graph::NodeKind kind, NodeEval eval);
bool has_node_eval(graph::NodeKind kind);

// Optional second form of a kind's evaluation, for a node whose result is a
// graph output (directly or through reshapes): it takes the memory for its
// result from `new_output` (device memory or the caller's out= tensor, viewed
// with the sizes asked for) so ATen writes the result where the caller reads
// it instead of into fresh memory that is then copied. Same form as a kernel
// node's CpuKernel; returns the tensor new_output gave, filled.
using NodeEvalInto = at::Tensor (*)(const graph::Node& node, const std::vector<at::Tensor>& args,
                                    const NewOutput& new_output);
bool register_node_eval_into(graph::NodeKind kind, NodeEvalInto eval);
NodeEvalInto find_node_eval_into(graph::NodeKind kind);  // nullptr when the kind has none

// How many nodes eval_node has evaluated on this thread, the current one
// included: lets a node reuse work its immediate predecessor left behind.
uint64_t evaluation_serial();

#define MPS_EXT_NODE_EVAL_INTO(Kind, fn)                                 \
  [[maybe_unused]] static const bool mps_ext_node_eval_into_##Kind##_ = \
      ::mps_ext::runtime::reference::register_node_eval_into(::mps_ext::graph::NodeKind::Kind, fn)

#define MPS_EXT_NODE_EVAL(Kind, fn)                                 \
  [[maybe_unused]] static const bool mps_ext_node_eval_##Kind##_ = \
      ::mps_ext::runtime::reference::register_node_eval(::mps_ext::graph::NodeKind::Kind, fn)

}  // namespace mps_ext::runtime::reference
