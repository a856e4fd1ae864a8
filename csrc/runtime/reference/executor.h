// The reference runtime: executes graphs on CPU tensors with ATen and the
// project's fused kernels. It is what Linux CI tests and what the mpsgraph
// runtime is checked against.
#pragma once

#include <functional>
#include <memory>

#include "runtime/runtime.h"

namespace mps_ext::runtime::reference {

// fuse=false runs every node with ATen: the oracle the fusion tests compare to.
// use_kernels=false runs every kernel node's decomposition (the kernel oracle).
std::unique_ptr<Executable> compile(std::shared_ptr<const graph::Graph> graph, bool fuse = true,
                                    bool use_kernels = true);

// Inputs may be mpsgraph-device tensors: on this runtime the device's memory
// is host memory, so fused regions read their bytes as they are, and ATen or
// a CPU kernel gets this CPU view of them (other tensors pass through).
// Graph outputs may be device tensors from the caller's OutputAllocator.
at::Tensor on_host(const at::Tensor& t);
// Drops the device memory that this thread's recycled CPU views no longer in
// use still point at (called when a graph run's results are settled).
void release_cpu_views();

// One node, evaluated with ATen: `args` are the values of node.inputs.
at::Tensor eval_node(const graph::Node& node, const std::vector<at::Tensor>& args);

// SliceUpdate: writes args[1] into the region of `data` (args[0] or a copy of
// it) and returns data. The region comes from the node's attrs or, in the
// dynamic form, from the starts tensor args[2].
at::Tensor slice_update(const graph::Node& node, at::Tensor data, const std::vector<at::Tensor>& args);

// Where the executor puts node `node`'s result (graph outputs: the caller's
// memory; other values: fresh tensors).
using NodeOutput = std::function<at::Tensor(int node, at::IntArrayRef sizes, at::ScalarType dtype)>;

}  // namespace mps_ext::runtime::reference
