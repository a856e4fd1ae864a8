// The boxed CPU fallback: every aten op without an mpsgraph kernel runs on the
// CPU over the device tensors' own bytes (device memory is host-visible).
//
//   arguments  device tensors (also inside lists) -> CPU aliases of the same
//              bytes (cpu_alias); device -> cpu; device generators (and None
//              for a Generator? argument) -> the device generator's CPU twin
//   call       the CPU kernel, through the dispatcher
//   write-back in-place and out= results are already in device memory; an
//              out= argument the CPU kernel resized is resized and refilled
//   results    an input returned as is -> that input; a view of an input ->
//              the same view of the device storage; a fresh CPU tensor ->
//              copied into a new device tensor
//
// MPS_EXT_FALLBACK=warn (default) warns once per op, =silent does not,
// =error raises instead of falling back.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/native/Resize.h>
#include <torch/library.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_set>

#include "device/device.h"
#include "profiler/profiler.h"

namespace mps_ext::device {
namespace {

enum class Mode { Warn, Silent, Error };

Mode fallback_mode() {
  const char* env = std::getenv("MPS_EXT_FALLBACK");
  std::string v = env ? env : "";
  if (v.empty() || v == "warn") return Mode::Warn;
  if (v == "silent") return Mode::Silent;
  if (v == "error") return Mode::Error;
  TORCH_CHECK(false, "MPS_EXT_FALLBACK must be 'warn', 'silent' or 'error', but got '", v, "'");
}

bool first_time(const std::string& name) {
  static std::mutex mutex;
  static std::unordered_set<std::string> seen;
  std::lock_guard<std::mutex> lock(mutex);
  return seen.insert(name).second;
}

struct Alias {
  at::Tensor device, cpu;
};

bool on_device(const at::Tensor& t) { return t.defined() && t.device().type() == kDeviceType; }

at::Tensor to_cpu_arg(const at::Tensor& t, std::vector<Alias>& aliases) {
  if (!on_device(t)) return t;
  at::Tensor cpu = cpu_alias(t);
  aliases.push_back({t, cpu});
  return cpu;
}

bool is_generator_arg(const c10::Argument& a) {
  const auto& type = a.type();
  if (type->kind() == c10::TypeKind::GeneratorType) return true;
  auto opt = type->cast<c10::OptionalType>();
  return opt && opt->getElementType()->kind() == c10::TypeKind::GeneratorType;
}

c10::IValue to_cpu_ivalue(const c10::IValue& v, const c10::Argument& arg, std::vector<Alias>& aliases) {
  if (v.isTensor()) return to_cpu_arg(v.toTensor(), aliases);
  if (v.isTensorList()) {
    c10::List<at::Tensor> list = v.toTensorList().copy();
    for (size_t i = 0; i < list.size(); ++i) list.set(i, to_cpu_arg(list.get(i), aliases));
    return list;
  }
  if (v.isList()) {  // Tensor?[] and friends
    c10::List<c10::IValue> list = v.toList().copy();
    for (size_t i = 0; i < list.size(); ++i) {
      c10::IValue e = list.get(i);
      if (e.isTensor()) list.set(i, to_cpu_arg(e.toTensor(), aliases));
    }
    return list;
  }
  if (v.isDevice() && v.toDevice().type() == kDeviceType) return c10::Device(c10::kCPU);
  if (v.isGenerator() && v.toGenerator().device().type() == kDeviceType) return cpu_generator_of(v.toGenerator());
  if (v.isNone() && is_generator_arg(arg)) return cpu_generator_of(default_generator());
  return v;
}

// An argument whose CPU alias the kernel resized (out=) or restrided gets the
// new geometry, and the new bytes if they moved to fresh CPU memory.
void write_back(const Alias& a) {
  const at::Tensor& dev = a.device;
  const at::Tensor& cpu = a.cpu;
  c10::StorageImpl* ds = dev.storage().unsafeGetStorageImpl();
  const c10::StorageImpl* cs = cpu.storage().unsafeGetStorageImpl();
  if (cs->data() != ds->data()) {
    if (cs->nbytes() > ds->nbytes()) at::native::resize_bytes_cpu(ds, cs->nbytes());
    if (cs->nbytes()) std::memcpy(ds->mutable_data(), cs->data(), cs->nbytes());
  }
  if (dev.sizes() != cpu.sizes() || dev.strides() != cpu.strides() || dev.storage_offset() != cpu.storage_offset())
    dev.unsafeGetTensorImpl()->set_sizes_and_strides(cpu.sizes(), cpu.strides(), cpu.storage_offset());
}

at::Tensor to_device_result(const at::Tensor& r, const std::vector<Alias>& aliases) {
  if (!r.defined() || !r.is_cpu()) return r;
  for (const Alias& a : aliases)
    if (r.is_same(a.cpu)) return a.device;
  for (const Alias& a : aliases)
    if (r.storage().is_alias_of(a.cpu.storage())) return device_tensor_over(a.device.storage(), r, r.storage_offset());
  return to_device(r);
}

c10::IValue to_device_ivalue(const c10::IValue& v, const std::vector<Alias>& aliases) {
  if (v.isTensor()) return to_device_result(v.toTensor(), aliases);
  if (v.isTensorList()) {
    c10::List<at::Tensor> list = v.toTensorList().copy();
    for (size_t i = 0; i < list.size(); ++i) list.set(i, to_device_result(list.get(i), aliases));
    return list;
  }
  return v;
}

std::atomic<int64_t> g_fallbacks{0};

// The tensors among an op's arguments (for the profiler's input shapes).
std::vector<at::Tensor> tensor_args(const torch::jit::Stack& stack, size_t first) {
  std::vector<at::Tensor> out;
  for (size_t i = first; i < stack.size(); ++i) {
    const c10::IValue& v = stack[i];
    if (v.isTensor()) out.push_back(v.toTensor());
    else if (v.isTensorList()) for (const at::Tensor& t : v.toTensorList().vec()) out.push_back(t);
  }
  return out;
}

void cpu_fallback(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  g_fallbacks.fetch_add(1, std::memory_order_relaxed);
  const c10::FunctionSchema& schema = op.schema();
  const std::string name = c10::toString(schema.operator_name());
  Mode mode = fallback_mode();
  TORCH_CHECK(mode != Mode::Error, "mpsgraph: ", name, " has no mpsgraph kernel, and MPS_EXT_FALLBACK=error "
              "forbids running it on the CPU");
  if (mode == Mode::Warn && first_time(name))
    TORCH_WARN("mpsgraph: ", name, " has no mpsgraph kernel; it runs on the CPU over the device memory "
               "(zero-copy). MPS_EXT_FALLBACK=silent hides this warning, =error forbids the fallback.");
  const size_t num_args = schema.arguments().size();
  const size_t first = stack->size() - num_args;
  profiler::FallbackScope profile_fallback(name, [&] { return tensor_args(*stack, first); });
  synchronize();  // GPU work queued on the device must land before the CPU reads or writes

  std::vector<Alias> aliases;
  for (size_t i = 0; i < num_args; ++i)
    (*stack)[first + i] = to_cpu_ivalue((*stack)[first + i], schema.arguments()[i], aliases);

  op.callBoxed(stack);

  for (const Alias& a : aliases) write_back(a);
  const size_t num_returns = schema.returns().size();
  for (size_t i = stack->size() - num_returns; i < stack->size(); ++i)
    (*stack)[i] = to_device_ivalue((*stack)[i], aliases);
}
}  // namespace

// Hook for csrc/ops/aten: a native kernel that meets an input it has no graph
// for (a dtype, an argument value) hands the call to the fallback.
void run_on_cpu(const c10::OperatorHandle& op, torch::jit::Stack* stack) { cpu_fallback(op, stack); }
int64_t fallback_count() { return g_fallbacks.load(std::memory_order_relaxed); }

TORCH_LIBRARY_IMPL(_, PrivateUse1, m) {
  m.fallback(torch::CppFunction::makeFromBoxedFunction<&cpu_fallback>());
}

// (mse_loss, which used to fall back here as a functional op, is native now:
// csrc/ops/aten/nn.cpp.)

}  // namespace mps_ext::device
