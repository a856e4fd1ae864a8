// The mpsgraph device: PyTorch's PrivateUse1 backend, renamed "mpsgraph" by
// mps_ext/device.py. One device (index 0) whose memory is host-visible
// (unified memory on Apple silicon; plain host memory on Linux), so every
// aten op without a device kernel runs on the CPU over the same bytes
// (cpu_fallback.cpp).
//
// One file per integration point:
//   allocator.cpp        counting host allocator (non-Apple builds), REGISTER_ALLOCATOR
//   allocator_metal.mm   shared-storage MTLBuffer allocator, command queue (Apple builds)
//   guard.cpp            C10_REGISTER_GUARD_IMPL (one device, one stream, trivial events)
//   hooks.cpp            PrivateUse1 hooks and the device generator
//   basic_ops.cpp        empty, views, resize_, set_, copies, _local_scalar_dense
//   cpu_fallback.cpp     boxed zero-copy CPU fallback for every other aten op
//   python_api.cpp       torch.ops.mps_ext._device_* used by the torch.mpsgraph module
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/Storage.h>

#include <cstdint>

namespace mps_ext::device {

constexpr c10::DeviceType kDeviceType = c10::DeviceType::PrivateUse1;
constexpr c10::DeviceIndex kDeviceCount = 1;

// --- allocator (allocator.cpp or allocator_metal.mm) ---------------------------
c10::Allocator* allocator();
int64_t memory_allocated();  // live bytes handed out by allocator()
// Waits for all work queued on the device (no-op where the device is the CPU).
void synchronize();

// --- generator (hooks.cpp) ------------------------------------------------------
const at::Generator& default_generator();
at::Generator new_generator();
// The CPU generator behind a device generator: CPU kernels run with it.
at::Generator cpu_generator_of(const at::Generator& device_generator);

// --- tensors (basic_ops.cpp) ----------------------------------------------------
// A CPU tensor over the same bytes as the device tensor `t` (same sizes,
// strides, storage offset; the CPU storage spans the whole device storage and
// keeps it alive). Writes through either are visible through both. The CPU
// storage may be resized by CPU kernels (out= arguments): it then moves to
// fresh CPU memory, which cpu_fallback.cpp copies back.
at::Tensor cpu_alias(const at::Tensor& t);
// A device tensor over `storage` (a device storage) with the given geometry.
at::Tensor device_tensor_over(const c10::Storage& storage, const at::Tensor& like_geometry,
                              int64_t storage_offset);
// A new device tensor with `cpu`'s values (its strides when dense).
at::Tensor to_device(const at::Tensor& cpu);

// --- CPU fallback (cpu_fallback.cpp) ---------------------------------------------
// Runs a boxed aten call on the CPU over the device bytes (warns/raises per
// MPS_EXT_FALLBACK, like any op without a device kernel); counts every call.
void run_on_cpu(const c10::OperatorHandle& op, torch::jit::Stack* stack);
int64_t fallback_count();

}  // namespace mps_ext::device
