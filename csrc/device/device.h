// The mpsgraph device: PyTorch's PrivateUse1 backend, renamed "mpsgraph" by
// mps_ext/device.py. One device (index 0) whose memory is host-visible
// (unified memory on Apple silicon; plain host memory on Linux), so every
// aten op without a device kernel runs on the CPU over the same bytes
// (cpu_fallback.cpp).
//
// One file per integration point:
//   caching_allocator.*  the caching c10::DeviceAllocator with stats (both builds)
//   allocator.cpp        host raw memory (non-Apple builds), REGISTER_ALLOCATOR
//   allocator_metal.mm   shared-storage MTLBuffer raw memory, command queue (Apple builds)
//   pinned_memory.cpp    the host allocator behind pin_memory()
//   guard.cpp            C10_REGISTER_GUARD_IMPL: streams and events
//   events.cpp           event records: host clock (reference); events_metal.mm (Apple)
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

// --- allocator (allocator.cpp, caching_allocator.cpp, allocator_metal.mm) -------
class CachingAllocator;
CachingAllocator& caching_allocator();  // the device's c10::DeviceAllocator
c10::Allocator* allocator();
int64_t memory_allocated();  // bytes of the blocks live tensors hold
// Waits for all work queued on the device (no-op where the device is the CPU).
void synchronize();
// Host memory the device copies from and to directly ("pinned": on unified
// memory any host memory is; this allocator marks its blocks for is_pinned()).
c10::Allocator* pinned_host_allocator();
bool is_pinned_host_ptr(const void* ptr);

// --- events (events.cpp): what the guard's event methods do -----------------------
namespace events {
void* create(bool timing);
void record(void* event);
void block(void* event);  // later work on the device waits for the event
bool query(void* event);
void synchronize(void* event);
double elapsed_ms(void* start, void* end);
void destroy(void* event) noexcept;
}  // namespace events

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
// A new contiguous device tensor (no dispatcher round trip: runtimes allocate
// their outputs with it on every op).
at::Tensor empty_device(at::IntArrayRef sizes, at::ScalarType dtype);
// A new device tensor with `cpu`'s values (its strides when dense).
at::Tensor to_device(const at::Tensor& cpu);

// --- CPU fallback (cpu_fallback.cpp) ---------------------------------------------
// Runs a boxed aten call on the CPU over the device bytes (warns/raises per
// MPS_EXT_FALLBACK, like any op without a device kernel); counts every call.
void run_on_cpu(const c10::OperatorHandle& op, torch::jit::Stack* stack);
int64_t fallback_count();

// --- autograd at exit (guard.cpp) ---------------------------------------------------
// The autograd engine runs device backwards on its own thread, which may drop
// the last reference to a finished graph task (and the Python context torch
// stores in it) only after the interpreter began finalizing: std::terminate.
// At exit (mps_ext registers it with atexit), this runs one tiny C++ backward
// through that thread and waits: the previous task is then released while
// Python is alive, and the flush's own task holds no Python object. A no-op
// in processes whose engine started no device thread (forked children too).
void flush_autograd_device_thread();

}  // namespace mps_ext::device
