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
#include <ATen/core/boxing/impl/make_boxed_from_unboxed_functor.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <stdexcept>

#include <string>
#include <vector>

#include "graph/graph.h"
#include "runtime/runtime.h"

namespace mps_ext::ops::aten {

using BoxedKernel = void (*)(const c10::OperatorHandle&, torch::jit::Stack*);
// The names every family's graph builders use.
using graph::DType;
using graph::Graph;
using graph::NodeKind;
using runtime::GraphSpec;
using G = graph::Tensor;

// Which overloads of a base name a family serves: the predicate sees the
// schema (arguments, returns) and accepts or skips it.
using SchemaFilter = bool (*)(const c10::FunctionSchema&);

// An unboxed kernel for one accepted overload, when the family has one for
// its signature (its hot overloads); nullopt: the boxed kernel serves it.
using TypedKernelFor = std::optional<torch::CppFunction> (*)(const c10::OperatorHandle& op);

// Registers `kernel` on PrivateUse1 for every existing aten overload of each
// base name that `accept` admits (or `typed`'s kernel, where it gives one);
// records them for native_ops().
void register_family(torch::Library& m, const char* family, const std::vector<std::string>& base_names,
                     SchemaFilter accept, BoxedKernel kernel, TypedKernelFor typed = nullptr);

// Registers one typed kernel (a Row's, made by guarded()) for one overload
// ("name.overload"); recorded too.
using KernelFactory = torch::CppFunction (*)(const char* op);
void register_op(torch::Library& m, const char* op, KernelFactory kernel);

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

// --- helpers for the typed families (nn.cpp, norms.cpp, ...) ---------------------------
// "No graph for this input": thrown before anything is written; guarded()
// turns it into the CPU fallback with the arguments still on the stack.
inline void require(bool ok) {
  if (!ok) throw std::domain_error("fallback");
}

// The CPU fallback as a boxed kernel (what the unboxed kernels hand back to).
inline void fallback_boxed(const c10::OperatorHandle& op, c10::DispatchKeySet, torch::jit::Stack* stack) {
  fallback(op, stack);
}

// An unboxed kernel's body: `run()` with the thread's CPU autocast state
// excluded (the graph's ATen calls on CPU aliases, and the fallback's CPU op,
// must not see it: the device op is already past its own autocast handling).
// When run() meets an input it has no graph for (require() throws before
// anything is written), the untouched arguments are boxed and go to the CPU
// fallback.
template <class Ret, class... Args, class Run>
Ret run_or_fall_back(const c10::OperatorHandle& op, Run&& run, Args... args) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  try {
    return run();
  } catch (const std::domain_error&) {
  }
  return c10::impl::BoxedKernelWrapper<Ret(Args...)>::call(c10::BoxedKernel::makeFromFunction<&fallback_boxed>(), op,
                                                          c10::DispatchKeySet(c10::DispatchKey::PrivateUse1), args...);
}

// Each typed kernel is registered unboxed through this functor: the
// dispatcher calls it with the op's arguments as they are (no IValue stack,
// no copies of the tensors).
template <class FuncType, FuncType* func>
struct Guarded;
template <class Ret, class... Args, Ret (*func)(Args...)>
struct Guarded<Ret(Args...), func> {
  static torch::CppFunction kernel(c10::OperatorHandle op) {
    return torch::CppFunction([op](Args... args) -> Ret {
      return run_or_fall_back<Ret, Args...>(op, [&]() -> Ret { return func(args...); }, args...);
    });
  }
};

// The unboxed kernel of aten op `name` ("scatter.src") running `func`.
template <class FuncType, FuncType* func>
torch::CppFunction guarded(const char* name) {
  std::string full(name);
  const size_t dot = full.find('.');
  const std::string overload = dot == std::string::npos ? "" : full.substr(dot + 1);
  return Guarded<FuncType, func>::kernel(
      c10::Dispatcher::singleton().findSchemaOrThrow(("aten::" + full.substr(0, dot)).c_str(), overload.c_str()));
}

struct Row {
  const char* op;
  KernelFactory kernel;
};
#define MPS_EXT_ATEN_ROW(name, fn) ::mps_ext::ops::aten::Row{name, &::mps_ext::ops::aten::guarded<decltype(fn), fn>}

inline at::TensorOptions device_options(const at::Tensor& like, at::ScalarType dtype) {
  return at::TensorOptions().device(like.device()).dtype(dtype);
}
inline graph::Tensor k(graph::Graph& g, double v, graph::Tensor like) { return g.constant(v, g.type(like).dtype); }
inline graph::Tensor cast_to(graph::Graph& g, graph::Tensor x, graph::DType t) {
  return g.type(x).dtype == t ? x : g.cast(x, t);
}
// x[..., start:end, ...] along `dim` (a static-shape graph value).
inline graph::Tensor slice_along(graph::Graph& g, graph::Tensor x, int64_t dim, int64_t start, int64_t end) {
  graph::Shape shape = g.type(x).shape;
  std::vector<int64_t> starts(shape.size(), 0), strides(shape.size(), 1);
  starts[dim] = start;
  shape[dim] = end;
  return g.slice(x, starts, shape, strides);
}
// log(1 + x) and exp(x) - 1 without the cancellation of the naive forms
// (log1p(1e-10) is 1e-10, not 0): the rounding error of u = 1 + x (of
// u = exp(x)) is corrected by x / (u - 1) (by x / log(u)), Goldberg's and
// Kahan's forms; exact u == 1 means the answer is x itself. inf and NaN as torch.
inline graph::Tensor log1p(graph::Graph& g, graph::Tensor x) {
  graph::Tensor u = g.add(k(g, 1, x), x), um1 = g.sub(u, k(g, 1, x));
  graph::Tensor corrected = g.mul(g.unary(graph::NodeKind::Log, u), g.div(x, um1));
  graph::Tensor inf = g.binary(graph::NodeKind::Equal, u, k(g, INFINITY, x));
  return g.select(g.binary(graph::NodeKind::Equal, um1, k(g, 0, x)), x, g.select(inf, u, corrected));
}
inline graph::Tensor expm1(graph::Graph& g, graph::Tensor x) {
  graph::Tensor u = g.unary(graph::NodeKind::Exp, x), um1 = g.sub(u, k(g, 1, x));
  graph::Tensor corrected = g.mul(um1, g.div(x, g.unary(graph::NodeKind::Log, u)));
  graph::Tensor y = g.select(g.binary(graph::NodeKind::Equal, um1, k(g, -1, x)), um1, corrected);
  y = g.select(g.binary(graph::NodeKind::Equal, u, k(g, INFINITY, x)), u, y);
  return g.select(g.binary(graph::NodeKind::Equal, u, k(g, 1, x)), x, y);
}

inline std::string dname(at::ScalarType t) { return graph::dtype_name(runtime::to_graph_dtype(t)); }
// The dtypes the aten family's kernel nodes (ATen's CPU kernels on the
// reference runtime) compute in end to end; reduced precision runs the
// decompositions, which compute in float32.
inline bool kernel_dtype(graph::DType t) { return t == graph::DType::Float32 || t == graph::DType::Float64; }
// Whether a norm's graph may use ATen's fused CPU kernel as its kernel node:
// those take parameters of the input's dtype and return float statistics only
// for float inputs, so float32/float64 with matching inputs [first, first + n).
inline bool fused_cpu_norm_ok(const runtime::GraphSpec& s, size_t first, size_t n) {
  graph::DType x = s.input(0).dtype;
  if (!kernel_dtype(x)) return false;
  for (size_t i = first; i < first + n; ++i)
    if (s.input(i).dtype != x) return false;
  return true;
}

inline graph::DType attr_dtype(const runtime::GraphSpec& s, const char* name) {
  return graph::dtype_from_name(s.str_attr(name));
}

}  // namespace mps_ext::ops::aten
