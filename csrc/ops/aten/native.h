// The mpsgraph device's native aten ops: one table per op family maps an aten
// op (its base name; every overload whose arguments the family understands:
// functional, in-place `op_`, `op.out`) to a graph builder. Each family
// registers a boxed kernel for those overloads on PrivateUse1
// (register_family); the kernel reads the stack by the op's schema, so type
// promotion, broadcasting, scalars (0-d placeholders), in-place and out= are
// handled once per family, not per op. An input the family has no graph for
// (a dtype, an argument value) goes to the CPU fallback (device::run_on_cpu),
// which counts and warns like any op without a kernel.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "graph/graph.h"
#include "runtime/runtime.h"

namespace mps_ext::ops::aten {

using BoxedKernel = void (*)(const c10::OperatorHandle&, torch::jit::Stack*);

// Which overloads of a base name a family serves: the predicate sees the
// schema (arguments, returns) and accepts or skips it.
using SchemaFilter = bool (*)(const c10::FunctionSchema&);

// Registers `kernel` on PrivateUse1 for every existing aten overload of each
// base name that `accept` admits; records them for native_ops().
void register_family(torch::Library& m, const char* family, const std::vector<std::string>& base_names,
                     SchemaFilter accept, BoxedKernel kernel);

// Registers one boxed kernel for one overload ("name.overload"); recorded too.
void register_op(torch::Library& m, const char* op, BoxedKernel kernel);

// Every aten overload registered natively, "name.overload" (for the README list).
std::vector<std::string> native_ops();

// The op's base name: "add_.Tensor" -> "add" (in-place underscore dropped),
// "_foreach_add_" -> "_foreach_add".
std::string base_name(const c10::FunctionSchema& schema);
bool is_inplace(const c10::FunctionSchema& schema);
// Index of each kwarg-only out= argument (Tensor(a!) written), in order.
std::vector<size_t> out_arguments(const c10::FunctionSchema& schema);

// Hands the call to the CPU fallback (counts, warns, or raises under
// MPS_EXT_FALLBACK=error).
void fallback(const c10::OperatorHandle& op, torch::jit::Stack* stack);

// Whether the device's runtime can compute in this dtype (MPSGraph: no float64).
bool graph_dtype_ok(at::ScalarType t);

// The result written where the variant wants it: functional -> returned,
// in-place -> into self, out= -> into out (resized like ATen's resize_output).
at::Tensor write_result(const at::Tensor& result, const at::Tensor& dest);

}  // namespace mps_ext::ops::aten
