// Autocast rules for operators registered at run time from one table
// (mps_ext/autocast.py): torch.ops.mps_ext._autocast_register(op, policy)
// installs a boxed kernel for the op on AutocastCPU, AutocastMPS and
// AutocastPrivateUse1, so a new op needs one table row, and an op this build
// does not have is skipped (the call returns False).
//
// Policies (the casts PyTorch's autocast_mode.h applies, for any schema):
//   lower_precision  floating inputs -> the autocast dtype (bf16/fp16)
//   fp32             floating inputs -> float32
//   promote          floating inputs -> the widest among them (fp32 if any is)
//   match_inplace    floating inputs -> the dtype of the tensor the op writes
//                    in place (a KV cache keeps its dtype; its update follows)
//   fallthrough      no cast: the op runs in its inputs' dtypes
// Only eligible tensors are cast, as in PyTorch: floating, not float64, on the
// autocast's device type (also inside Tensor[] / Tensor?[] lists). Arguments
// the op writes (Tensor(a!)) are never cast: a cast copy would take the write.
// Non-tensor arguments (int, float, ScalarType, ...) pass through unchanged,
// so an op whose only tensors are integer runs exactly as without autocast.
//
// The policy is part of each registration's debug string
// ("[autocast policy: fp32]"), which the dispatcher reports back
// (torch._C._dispatch_dump): mps_ext.autocast.rules() reads it from there.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace mps_ext::autocast {
namespace {

enum class Policy { LowerPrecision, Fp32, Promote, MatchInplace, Fallthrough };

const std::pair<const char*, Policy> kPolicies[] = {
    {"lower_precision", Policy::LowerPrecision}, {"fp32", Policy::Fp32},       {"promote", Policy::Promote},
    {"match_inplace", Policy::MatchInplace},     {"fallthrough", Policy::Fallthrough},
};

bool writes(const c10::Argument& a) { return a.alias_info() && a.alias_info()->isWrite(); }

// Calls f(tensor) for every tensor in v (a Tensor, a Tensor?, or a list).
template <typename F>
void each_tensor(const c10::IValue& v, F&& f) {
  if (v.isTensor()) {
    f(v.toTensor());
  } else if (v.isTensorList()) {
    for (const at::Tensor& t : v.toTensorList().vec()) f(t);
  } else if (v.isList()) {
    for (const c10::IValue& e : v.toListRef())
      if (e.isTensor()) f(e.toTensor());
  }
}

c10::IValue cast_ivalue(const c10::IValue& v, at::ScalarType to, c10::DeviceType device) {
  if (v.isTensor()) return at::autocast::cached_cast(to, v.toTensor(), device);
  if (v.isTensorList()) {
    c10::List<at::Tensor> list = v.toTensorList().copy();
    for (size_t i = 0; i < list.size(); ++i) list.set(i, at::autocast::cached_cast(to, list.get(i), device));
    return list;
  }
  if (v.isList()) {  // Tensor?[]
    c10::List<c10::IValue> list = v.toList().copy();
    for (size_t i = 0; i < list.size(); ++i) {
      c10::IValue e = list.get(i);
      if (e.isTensor()) list.set(i, at::autocast::cached_cast(to, e.toTensor(), device));
    }
    return list;
  }
  return v;
}

// The dtype the policy casts to, or nullopt for "no cast".
template <Policy P, c10::DeviceType D>
std::optional<at::ScalarType> target_dtype(const c10::FunctionSchema& schema, const torch::jit::Stack& stack,
                                           size_t first) {
  const auto& args = schema.arguments();
  if constexpr (P == Policy::LowerPrecision) {
    return at::autocast::get_lower_precision_fp_from_device_type(D);
  } else if constexpr (P == Policy::Fp32) {
    return at::kFloat;
  } else if constexpr (P == Policy::Promote) {
    at::ScalarType to = at::autocast::get_lower_precision_fp_from_device_type(D);
    for (size_t i = 0; i < args.size(); ++i)
      if (!writes(args[i]))
        each_tensor(stack[first + i], [&](const at::Tensor& t) { to = at::autocast::prioritize(to, t, D); });
    return to;
  } else {  // MatchInplace
    for (size_t i = 0; i < args.size(); ++i) {
      const c10::IValue& v = stack[first + i];
      if (writes(args[i]) && v.isTensor() && at::isFloatingType(v.toTensor().scalar_type()))
        return v.toTensor().scalar_type();
    }
    return std::nullopt;
  }
}

template <Policy P, c10::DeviceType D>
void autocast_kernel(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(at::autocast::get_autocast_dispatch_key_from_device_type(D));
  const c10::FunctionSchema& schema = op.schema();
  const auto& args = schema.arguments();
  const size_t first = stack->size() - args.size();
  if (std::optional<at::ScalarType> to = target_dtype<P, D>(schema, *stack, first)) {
    for (size_t i = 0; i < args.size(); ++i)
      if (!writes(args[i])) (*stack)[first + i] = cast_ivalue((*stack)[first + i], *to, D);
  }
  op.callBoxed(stack);
}

template <Policy P>
c10::KernelFunction kernel_for(c10::DeviceType device) {
  if constexpr (P == Policy::Fallthrough) {
    return c10::KernelFunction::makeFallthrough();
  } else {
    switch (device) {
      case c10::DeviceType::CPU: return c10::KernelFunction::makeFromBoxedFunction<&autocast_kernel<P, c10::DeviceType::CPU>>();
      case c10::DeviceType::MPS: return c10::KernelFunction::makeFromBoxedFunction<&autocast_kernel<P, c10::DeviceType::MPS>>();
      default: return c10::KernelFunction::makeFromBoxedFunction<&autocast_kernel<P, c10::DeviceType::PrivateUse1>>();
    }
  }
}

c10::KernelFunction make_kernel(Policy p, c10::DeviceType device) {
  switch (p) {
    case Policy::LowerPrecision: return kernel_for<Policy::LowerPrecision>(device);
    case Policy::Fp32: return kernel_for<Policy::Fp32>(device);
    case Policy::Promote: return kernel_for<Policy::Promote>(device);
    case Policy::MatchInplace: return kernel_for<Policy::MatchInplace>(device);
    case Policy::Fallthrough: break;
  }
  return kernel_for<Policy::Fallthrough>(device);
}

// Live registrations by (op, key); re-registering an op replaces its rule.
// Never destroyed: deregistering at exit could outlive the dispatcher.
std::map<std::pair<std::string, c10::DispatchKey>, c10::RegistrationHandleRAII>& registrations() {
  static auto* r = new std::map<std::pair<std::string, c10::DispatchKey>, c10::RegistrationHandleRAII>();
  return *r;
}

bool register_rule(const std::string& op, const std::string& policy_name) {
  std::optional<Policy> policy;
  std::string names;
  for (const auto& [name, p] : kPolicies) {
    if (policy_name == name) policy = p;
    names += names.empty() ? name : std::string(", ") + name;
  }
  TORCH_CHECK_VALUE(policy, "_autocast_register: policy must be one of ", names, ", but got '", policy_name, "'");
  std::string qualified(op);
  auto sep = qualified.find("::");
  TORCH_CHECK_VALUE(sep != std::string::npos, "_autocast_register: op must be 'namespace::name[.overload]', but got '",
                    qualified, "'");
  auto dot = qualified.find('.', sep);
  c10::OperatorName name(qualified.substr(0, dot), dot == std::string::npos ? "" : qualified.substr(dot + 1));
  if (!c10::Dispatcher::singleton().findSchema(name)) return false;  // not in this build

  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  const std::string debug = "mps_ext.autocast table [autocast policy: " + std::string(policy_name) + "]";
  for (c10::DeviceType device : {c10::DeviceType::CPU, c10::DeviceType::MPS, c10::DeviceType::PrivateUse1}) {
    c10::DispatchKey key = at::autocast::get_autocast_dispatch_key_from_device_type(device);
    auto slot = std::make_pair(qualified, key);
    registrations().erase(slot);  // the old rule first: one kernel per key
    registrations().emplace(slot, c10::Dispatcher::singleton().registerImpl(
                                      name, key, make_kernel(*policy, device), std::nullopt, nullptr, debug));
  }
  return true;
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(mps_ext, m) {
  m.def("_autocast_register(str op, str policy) -> bool", &register_rule);
}

}  // namespace mps_ext::autocast
