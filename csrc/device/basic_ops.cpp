// The aten kernels every PrivateUse1 backend must provide itself: allocation,
// views, resize_/set_, copies and _local_scalar_dense. Memory is host-visible,
// so copies are CPU copies over aliases of the device bytes (after
// synchronize(), which waits for queued GPU work on Apple builds).
#include <ATen/ATen.h>
#include <ATen/EmptyTensor.h>
#include <ATen/native/Resize.h>
#include <ATen/ops/_local_scalar_dense_native.h>
#include <ATen/ops/_reshape_alias_native.h>
#include <ATen/ops/as_strided_native.h>
#include <ATen/ops/copy_native.h>
#include <ATen/ops/resize_native.h>
#include <ATen/ops/set_native.h>
#include <ATen/ops/unfold_native.h>
#include <ATen/ops/view_native.h>
#include <c10/core/CPUAllocator.h>
#include <torch/library.h>

#include "device/device.h"
#include "profiler/profiler.h"

namespace mps_ext::device {

at::Tensor cpu_alias(const at::Tensor& t) {
  const c10::Storage& s = t.storage();
  void* base = const_cast<void*>(s.data());
  auto* keep = new c10::Storage(s);  // the CPU storage keeps the device storage alive
  c10::DataPtr ptr(base, keep, [](void* ctx) { delete static_cast<c10::Storage*>(ctx); }, c10::Device(c10::kCPU));
  auto storage = c10::make_intrusive<c10::StorageImpl>(c10::StorageImpl::use_byte_size_t(), s.nbytes(),
                                                       std::move(ptr), c10::GetCPUAllocator(), /*resizable=*/true);
  at::Tensor cpu = at::detail::make_tensor<c10::TensorImpl>(c10::Storage(std::move(storage)),
                                                            c10::DispatchKeySet(c10::DispatchKey::CPU), t.dtype());
  cpu.unsafeGetTensorImpl()->set_sizes_and_strides(t.sizes(), t.strides(), t.storage_offset());
  if (t.is_conj()) cpu._set_conj(true);
  if (t.is_neg()) cpu._set_neg(true);
  return cpu;
}

at::Tensor device_tensor_over(const c10::Storage& storage, const at::Tensor& like, int64_t storage_offset) {
  TORCH_INTERNAL_ASSERT(storage.device_type() == kDeviceType);
  at::Tensor t = at::detail::make_tensor<c10::TensorImpl>(c10::Storage(storage),
                                                          c10::DispatchKeySet(c10::DispatchKey::PrivateUse1), like.dtype());
  t.unsafeGetTensorImpl()->set_sizes_and_strides(like.sizes(), like.strides(), storage_offset);
  if (like.is_conj()) t._set_conj(true);
  if (like.is_neg()) t._set_neg(true);
  return t;
}

at::Tensor to_device(const at::Tensor& cpu) {
  auto options = cpu.options().device(c10::Device(kDeviceType, 0));
  at::Tensor out = cpu.is_non_overlapping_and_dense() ? at::empty_strided(cpu.sizes(), cpu.strides(), options)
                                                      : at::empty(cpu.sizes(), options);
  profiler::CopyScope profile_copy(cpu, out);  // fallback and runtime results moving to the device
  if (cpu.numel() > 0) cpu_alias(out).copy_(cpu);
  return out;
}

namespace {
constexpr c10::DispatchKeySet kKeys(c10::DispatchKey::PrivateUse1);

void check_options(std::optional<c10::Layout> layout, std::optional<c10::Device> device, std::optional<bool> pin) {
  TORCH_CHECK(c10::layout_or_default(layout) == c10::Layout::Strided, "mpsgraph: only strided tensors are supported");
  TORCH_CHECK(!c10::pinned_memory_or_default(pin), "mpsgraph: pin_memory applies to CPU tensors only");
  if (device) TORCH_CHECK(device->type() == kDeviceType && device->index() < kDeviceCount, "mpsgraph: bad device ", *device);
}

at::Tensor empty_memory_format(c10::IntArrayRef size, std::optional<c10::ScalarType> dtype,
                               std::optional<c10::Layout> layout, std::optional<c10::Device> device,
                               std::optional<bool> pin, std::optional<c10::MemoryFormat> memory_format) {
  check_options(layout, device, pin);
  return at::detail::empty_generic(size, allocator(), kKeys, c10::dtype_or_default(dtype), memory_format);
}

at::Tensor empty_strided(c10::IntArrayRef size, c10::IntArrayRef stride, std::optional<c10::ScalarType> dtype,
                         std::optional<c10::Layout> layout, std::optional<c10::Device> device,
                         std::optional<bool> pin) {
  check_options(layout, device, pin);
  return at::detail::empty_strided_generic(size, stride, allocator(), kKeys, c10::dtype_or_default(dtype));
}

at::Tensor as_strided(const at::Tensor& self, c10::IntArrayRef size, c10::IntArrayRef stride,
                      std::optional<int64_t> storage_offset) {
  return at::native::as_strided_tensorimpl(self, size, stride, storage_offset);
}

at::Tensor view(const at::Tensor& self, c10::IntArrayRef size) { return at::native::view(self, size); }
// A strided view like as_strided (ATen registers it per backend; repeat uses it).
at::Tensor unfold(const at::Tensor& self, int64_t dimension, int64_t size, int64_t step) {
  return at::native::unfold(self, dimension, size, step);
}

at::Tensor reshape_alias(const at::Tensor& self, c10::IntArrayRef size, c10::IntArrayRef stride) {
  return at::native::_reshape_alias(self, size, stride);
}

const at::Tensor& resize_(const at::Tensor& self, c10::IntArrayRef size, std::optional<c10::MemoryFormat> format) {
  synchronize();  // growing copies the old bytes on the host
  return at::native::resize_(self, size, format);
}

at::Tensor& set_storage(at::Tensor& self, c10::Storage source) { return at::native::set_(self, source); }

at::Tensor& set_storage_offset(at::Tensor& self, c10::Storage source, int64_t offset, c10::IntArrayRef size,
                               c10::IntArrayRef stride) {
  synchronize();
  return at::native::set_storage_cpu_(self, source, offset, size, stride);
}

at::Tensor& set_tensor(at::Tensor& self, const at::Tensor& source) { return at::native::set_tensor_(self, source); }

// copy_ sends every copy that involves a PrivateUse1 tensor here; dtype
// conversion, broadcasting and strides are the CPU copy's.
at::Tensor copy_from(const at::Tensor& self, const at::Tensor& dst, bool /*non_blocking*/) {
  TORCH_CHECK(self.device().type() == kDeviceType || self.is_cpu(), "mpsgraph: cannot copy from ", self.device());
  TORCH_CHECK(dst.device().type() == kDeviceType || dst.is_cpu(), "mpsgraph: cannot copy to ", dst.device());
  profiler::CopyScope profile_copy(self, dst);
  synchronize();
  at::Tensor src_cpu = self.is_cpu() ? self : cpu_alias(self);
  at::Tensor dst_cpu = dst.is_cpu() ? dst : cpu_alias(dst);
  dst_cpu.copy_(src_cpu);
  return dst;
}

at::Tensor copy_from_and_resize(const at::Tensor& self, const at::Tensor& dst) {
  dst.resize_(self.sizes());
  return copy_from(self, dst, false);
}

at::Scalar local_scalar_dense(const at::Tensor& self) {
  synchronize();
  return at::native::_local_scalar_dense_cpu(cpu_alias(self));
}

// Whether `self.data = from` (and Module._apply's in-place move of Parameters)
// may swap `from`'s TensorImpl fields into `self`. c10's TensorImpl check
// accepts only same key sets or pairs of built-in dense backends, so without
// this a CPU Parameter moved with .to("mpsgraph") is *replaced*: optimizers
// built before the move keep the old tensors and tied weights come apart. The
// device's tensors are plain dense strided TensorImpls, like CPU ones.
bool is_dense_cpu_or_device(const at::Tensor& t) {
  c10::DispatchKeySet ks = t.key_set();
  return t.layout() == c10::kStrided && ks.has(c10::DispatchKey::Dense) &&
         (t.device().type() == kDeviceType || t.device().type() == c10::kCPU);
}

bool has_compatible_shallow_copy_type(const at::Tensor& self, const at::Tensor& from) {
  if (self.unsafeGetTensorImpl()->has_compatible_shallow_copy_type(from.key_set())) return true;
  return is_dense_cpu_or_device(self) && is_dense_cpu_or_device(from);
}
}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("empty.memory_format", TORCH_FN(empty_memory_format));
  m.impl("empty_strided", TORCH_FN(empty_strided));
  m.impl("as_strided", TORCH_FN(as_strided));
  m.impl("view", TORCH_FN(view));
  m.impl("unfold", TORCH_FN(unfold));
  m.impl("_reshape_alias", TORCH_FN(reshape_alias));
  m.impl("resize_", TORCH_FN(resize_));
  m.impl("set_.source_Storage", TORCH_FN(set_storage));
  m.impl("set_.source_Storage_storage_offset", TORCH_FN(set_storage_offset));
  m.impl("set_.source_Tensor", TORCH_FN(set_tensor));
  m.impl("_copy_from", TORCH_FN(copy_from));
  m.impl("_copy_from_and_resize", TORCH_FN(copy_from_and_resize));
  m.impl("_local_scalar_dense", TORCH_FN(local_scalar_dense));
  m.impl("_has_compatible_shallow_copy_type", TORCH_FN(has_compatible_shallow_copy_type));
}

}  // namespace mps_ext::device
