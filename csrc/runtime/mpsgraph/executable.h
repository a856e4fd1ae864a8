// The mpsgraph runtime: compiles IR graphs to MPSGraphExecutables and runs
// them on PyTorch's MPS stream. Plain C++ interface (implemented in
// executable.mm), so graph_cache.cpp can include it.
#pragma once

#include <memory>

#include "runtime/runtime.h"

namespace mps_ext::runtime::mpsgraph {

// Lowers `graph` now; compiles one MPSGraphExecutable per set of concrete
// input shapes on first use and caches it. Inputs must live on one device:
// `mps`, or the mpsgraph device (PrivateUse1) once it has registered a
// buffer resolver below. 0-dim inputs on the CPU are moved to that device.
// A graph that is one kernel node with a Metal kernel (metal_kernels.h) runs
// as that kernel unless use_kernels is false.
std::unique_ptr<Executable> compile(std::shared_ptr<const graph::Graph> graph, bool use_kernels = true);

// For PrivateUse1 storages: returns the id<MTLBuffer> (bridged to void*, not
// retained) behind `data`, the storage's data pointer, and the byte offset of
// `data` inside it. Registered by the mpsgraph device's allocator.
using BufferResolver = void* (*)(const void* data, size_t* offset);
void set_private_use1_buffer_resolver(BufferResolver resolver);

}  // namespace mps_ext::runtime::mpsgraph
