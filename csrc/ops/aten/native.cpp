#include "ops/aten/native.h"

#include <ATen/native/Resize.h>

#include <algorithm>
#include <mutex>

#include "device/device.h"

namespace mps_ext::ops::aten {
namespace {
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::vector<std::string>& registry() {
  static auto* r = new std::vector<std::string>();
  return *r;
}
// A boxed kernel chosen at registration time (one per family).
struct FamilyKernel final : c10::OperatorKernel {
  explicit FamilyKernel(BoxedKernel k) : kernel(k) {}
  void operator()(const c10::OperatorHandle& op, c10::DispatchKeySet, torch::jit::Stack* stack) { kernel(op, stack); }
  BoxedKernel kernel;
};
}  // namespace

std::string base_name(const c10::FunctionSchema& schema) {
  std::string name = schema.name();
  if (name.rfind("aten::", 0) == 0) name = name.substr(6);
  if (name.size() > 1 && name.back() == '_' && name[name.size() - 2] != '_') name.pop_back();
  return name;
}

bool is_inplace(const c10::FunctionSchema& schema) {
  const std::string& name = schema.name();
  // (dunder names like __lshift__ are functional, as in base_name)
  return name.size() > 1 && name.back() == '_' && name[name.size() - 2] != '_' && out_arguments(schema).empty();
}

std::vector<size_t> out_arguments(const c10::FunctionSchema& schema) {
  std::vector<size_t> outs;
  for (size_t i = 0; i < schema.arguments().size(); ++i) {
    const auto& a = schema.arguments()[i];
    if (a.kwarg_only() && a.alias_info() && a.alias_info()->isWrite()) outs.push_back(i);
  }
  return outs;
}

void register_family(torch::Library& m, const char* family, const std::vector<std::string>& base_names,
                     SchemaFilter accept, BoxedKernel kernel, TypedKernelFor typed) {
  (void)family;
  auto& dispatcher = c10::Dispatcher::singleton();
  std::vector<c10::OperatorName> names = dispatcher.getAllOpNames();
  std::sort(names.begin(), names.end(), [](const auto& a, const auto& b) {
    return a.name != b.name ? a.name < b.name : a.overload_name < b.overload_name;
  });
  std::vector<std::string> wanted(base_names.begin(), base_names.end());
  for (const c10::OperatorName& name : names) {
    if (name.name.rfind("aten::", 0) != 0) continue;
    auto handle = dispatcher.findOp(name);
    if (!handle || !handle->hasSchema()) continue;
    const c10::FunctionSchema& schema = handle->schema();
    if (std::find(wanted.begin(), wanted.end(), base_name(schema)) == wanted.end()) continue;
    if (!accept(schema)) continue;
    std::string full = name.name.substr(6) + (name.overload_name.empty() ? "" : "." + name.overload_name);
    std::optional<torch::CppFunction> unboxed = typed ? typed(*handle) : std::nullopt;
    m.impl(full.c_str(), unboxed ? std::move(*unboxed)
                                 : torch::CppFunction::makeFromBoxedFunctor(std::make_unique<FamilyKernel>(kernel)));
    std::lock_guard<std::mutex> lock(registry_mutex());
    registry().push_back(full);
  }
}

void register_op(torch::Library& m, const char* op, KernelFactory kernel) {
  m.impl(op, kernel(op));
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry().push_back(op);
}

std::vector<std::string> native_ops() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  std::vector<std::string> r = registry();
  std::sort(r.begin(), r.end());
  return r;
}

void fallback(const c10::OperatorHandle& op, torch::jit::Stack* stack) { device::run_on_cpu(op, stack); }

bool graph_dtype_ok(at::ScalarType t) {
  switch (t) {
    case at::kBool: case at::kByte: case at::kChar: case at::kInt: case at::kLong:
    case at::kHalf: case at::kBFloat16: case at::kFloat: return true;
    case at::kDouble: return runtime::device_runtime() == runtime::Kind::Reference;
    default: return false;
  }
}

at::Tensor write_result(const at::Tensor& result, const at::Tensor& dest) {
  if (!dest.defined()) return result;
  if (dest.is_same(result)) return dest;
  at::native::resize_output(dest, result.sizes());
  dest.copy_(result);
  return dest;
}

// Listing and counters for Python (mps_ext/ops.py, benchmarks).
TORCH_LIBRARY_FRAGMENT(mps_ext, m) {
  m.def("_native_ops() -> str[]", [] { return native_ops(); });
  m.def("_fallback_count() -> int", [] { return device::fallback_count(); });
}

}  // namespace mps_ext::ops::aten
