// One spec per IR node kind: how its result type follows from its inputs'
// types and its attrs. Graph::apply, every builder method and
// Graph::with_input_shapes go through the kind's spec, so a kind's shape and
// dtype rules are written once. Core kinds register in node_specs.cpp, the
// families' kinds next to their family (csrc/ops/<family>/*_nodes.cpp), with
// their reference evaluation (runtime/reference/node_eval.h) beside them.
#pragma once

#include <string>
#include <vector>

#include "graph/graph.h"

namespace mps_ext::graph {

// Checks the inputs and attrs of a `kind` node, normalises the attrs in place
// (axes made non-negative, defaults filled in, derived fields added) and
// returns the result type. Throws GraphError naming the kind on bad input.
using InferFn = TensorType (*)(NodeKind kind, const std::vector<TensorType>& inputs, Attrs& attrs);

struct NodeSpec {
  InferFn infer = nullptr;
  int min_inputs = 0;
  int max_inputs = 0;  // -1: any number
};

// nullptr when no spec is registered for `kind`.
const NodeSpec* find_node_spec(NodeKind kind);
bool register_node_spec(NodeKind kind, NodeSpec spec);

// Registers `Kind`'s spec at load time: MPS_EXT_NODE_SPEC(FFT, {infer_fft, 1, 1});
#define MPS_EXT_NODE_SPEC(Kind, ...)                                 \
  [[maybe_unused]] static const bool mps_ext_node_spec_##Kind##_ = \
      ::mps_ext::graph::register_node_spec(::mps_ext::graph::NodeKind::Kind, ::mps_ext::graph::NodeSpec __VA_ARGS__)

// Helpers for infer functions.
[[noreturn]] void fail(const std::string& message);
int64_t normalize_axis(int64_t axis, int64_t rank, const char* what);
int64_t numel_if_static(const Shape& s);
// `s` broadcasts into `target` without expanding it (numpy rules; a dynamic
// size matches anything).
bool broadcasts_into(const Shape& s, const Shape& target);
bool is_complex(DType t);
// Typed attr access on an Attrs map (GraphError when absent or mistyped).
int64_t int_attr(const Attrs& a, std::string_view key, const char* what);
double float_attr(const Attrs& a, std::string_view key, const char* what);
const std::vector<int64_t>& ints_attr(const Attrs& a, std::string_view key, const char* what);
const std::string& str_attr(const Attrs& a, std::string_view key, const char* what);
// A dtype stored by name (attr "dtype").
DType dtype_attr(const Attrs& a, const char* what);

}  // namespace mps_ext::graph
