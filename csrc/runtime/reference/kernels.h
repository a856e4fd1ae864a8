// The reference runtime's kernel registry: hand-written CPU kernels for
// kernel nodes (graph.h, Graph::kernel), by name. A kernel node whose name is
// not registered runs its decomposition instead. Families register theirs next
// to their graph builders (csrc/ops/<family>/):
//
//   at::Tensor my_kernel(const graph::Node& node, const std::vector<at::Tensor>& inputs,
//                        const reference::NewOutput& new_output);
//   MPS_EXT_REFERENCE_KERNEL("my_kernel", my_kernel);
//
// or, for Graph::kernels (several results), MPS_EXT_REFERENCE_MULTI_KERNEL.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "graph/graph.h"

namespace mps_ext::runtime::reference {

// Gives the tensor a node's result is written into: device memory or a
// caller's out= tensor when the node is a graph output, else a fresh tensor.
using NewOutput = std::function<at::Tensor(at::IntArrayRef sizes, at::ScalarType dtype)>;

// A CPU kernel: inputs in the node's order (CPU tensors, any strides), attrs
// on the node. Returns its result, normally a tensor from new_output.
using CpuKernel = at::Tensor (*)(const graph::Node& node, const std::vector<at::Tensor>& inputs,
                                 const NewOutput& new_output);

bool register_kernel(const std::string& name, CpuKernel kernel);
CpuKernel find_kernel(const std::string& name);  // nullptr when none
std::vector<std::string> kernel_names();

// The kernel of Graph::kernels' nodes `name`, `name#1`, ...: returns every
// result; new_output(k, ...) is where result k goes (as NewOutput, for the
// node of result k). The executor runs it once per run, at the first of the
// nodes it reaches, and gives each node its result.
using ResultOutput = std::function<at::Tensor(size_t result, at::IntArrayRef sizes, at::ScalarType dtype)>;
using MultiCpuKernel = std::vector<at::Tensor> (*)(const graph::Node& node, const std::vector<at::Tensor>& inputs,
                                                   const ResultOutput& new_output);
bool register_multi_kernel(const std::string& name, MultiCpuKernel kernel);
// The multi-result kernel behind a node name (`name` or `name#k`), or nullptr.
MultiCpuKernel find_multi_kernel(const std::string& node_name);
// Whether a kernel node of this name runs a CPU kernel here (either kind).
bool has_kernel(const std::string& node_name);

#define MPS_EXT_REFERENCE_KERNEL_CAT2(a, b) a##b
#define MPS_EXT_REFERENCE_KERNEL_CAT(a, b) MPS_EXT_REFERENCE_KERNEL_CAT2(a, b)
#define MPS_EXT_REFERENCE_KERNEL(name, fn)                                             \
  static const bool MPS_EXT_REFERENCE_KERNEL_CAT(mps_ext_reference_kernel_, __LINE__) = \
      ::mps_ext::runtime::reference::register_kernel(name, fn)
#define MPS_EXT_REFERENCE_MULTI_KERNEL(name, fn)                                       \
  static const bool MPS_EXT_REFERENCE_KERNEL_CAT(mps_ext_reference_kernel_, __LINE__) = \
      ::mps_ext::runtime::reference::register_multi_kernel(name, fn)

}  // namespace mps_ext::runtime::reference
