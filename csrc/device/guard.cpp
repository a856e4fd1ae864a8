// DeviceGuardImpl for the mpsgraph device: one device, many streams.
//
// Streams are ids: 0 is the default stream, getNewStream() hands out ids
// 1..kStreamPool-1 round robin (like CUDA's pool), and the current stream is
// per thread. All of them run in issue order on the device's one queue (the
// host on the reference runtime; PyTorch's MPS stream on Apple builds), so
// cross-stream waits are always satisfied by the time later work starts;
// streams keep PyTorch's API and bookkeeping intact. Events: events.cpp.
#include <c10/core/DeviceCapability.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <torch/csrc/autograd/autograd.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "device/device.h"
#include "runtime/runtime.h"

namespace mps_ext::device {
namespace {
constexpr c10::StreamId kStreamPool = 32;

thread_local c10::DeviceIndex g_current = 0;
// The thread that loaded the library, and the process in which another thread
// (the autograd engine's device thread: it sets its device first) set a device.
const std::thread::id g_loading_thread = std::this_thread::get_id();
std::atomic<pid_t> g_worker_process{0};
thread_local c10::StreamId g_current_stream = 0;
std::atomic<uint32_t> g_next_stream{0};

void check_index(c10::DeviceIndex i) {
  TORCH_CHECK(i >= -1 && i < kDeviceCount, "mpsgraph: The device index is out of range: got ", static_cast<int>(i),
              ", but there is ", static_cast<int>(kDeviceCount), " device");
}

c10::Stream make_stream(c10::DeviceIndex index, c10::StreamId id) {
  return c10::Stream(c10::Stream::UNSAFE, c10::Device(kDeviceType, index < 0 ? 0 : index), id);
}

struct GuardImpl final : c10::impl::DeviceGuardImplInterface {
  static constexpr c10::DeviceType static_type = kDeviceType;
  GuardImpl() = default;
  explicit GuardImpl(c10::DeviceType t) { TORCH_INTERNAL_ASSERT(t == static_type); }

  c10::DeviceType type() const override { return static_type; }
  c10::Device exchangeDevice(c10::Device d) const override {
    TORCH_CHECK(d.type() == static_type, "mpsgraph: expected an mpsgraph device, got ", d);
    check_index(d.index());
    c10::Device old(static_type, g_current);
    if (d.index() >= 0) g_current = d.index();
    if (std::this_thread::get_id() != g_loading_thread) g_worker_process = getpid();
    return old;
  }
  c10::Device getDevice() const override { return {static_type, g_current}; }
  void setDevice(c10::Device d) const override { exchangeDevice(d); }
  void uncheckedSetDevice(c10::Device d) const noexcept override {
    if (d.index() >= 0 && d.index() < kDeviceCount) g_current = d.index();
  }

  // --- streams ---------------------------------------------------------------
  c10::Stream getStream(c10::Device d) const override { return make_stream(d.index(), g_current_stream); }
  c10::Stream getDefaultStream(c10::Device d) const override { return make_stream(d.index(), 0); }
  c10::Stream getNewStream(c10::Device d, int) const override {
    check_index(d.index());
    return make_stream(d.index(), 1 + static_cast<c10::StreamId>(g_next_stream++ % (kStreamPool - 1)));
  }
  c10::Stream getStreamFromGlobalPool(c10::Device d, bool) const override { return getNewStream(d, 0); }
  c10::Stream exchangeStream(c10::Stream s) const override {
    TORCH_CHECK(s.device_type() == static_type, "mpsgraph: expected an mpsgraph stream, got one on ", s.device());
    c10::Stream old = make_stream(s.device_index(), g_current_stream);
    g_current_stream = s.id();
    return old;
  }
  bool queryStream(const c10::Stream&) const override {
    void* e = events::create(false);
    events::record(e);
    bool done = events::query(e);
    events::destroy(e);
    return done;
  }
  void synchronizeStream(const c10::Stream&) const override { synchronize(); }
  void synchronizeDevice(const c10::DeviceIndex) const override { synchronize(); }
  c10::DeviceIndex deviceCount() const noexcept override { return kDeviceCount; }

  // --- events ----------------------------------------------------------------
  void record(void** event, const c10::Stream& stream, const c10::DeviceIndex device_index,
              const c10::EventFlag flag) const override {
    TORCH_CHECK(device_index == -1 || device_index == stream.device_index(), "mpsgraph: event device index ",
                static_cast<int>(device_index), " does not match the stream's ", static_cast<int>(stream.device_index()));
    if (*event == nullptr) *event = events::create(flag == c10::EventFlag::BACKEND_DEFAULT);
    events::record(*event);
  }
  void block(void* event, const c10::Stream&) const override {
    if (event) events::block(event);
  }
  bool queryEvent(void* event) const override { return events::query(event); }
  void destroyEvent(void* event, const c10::DeviceIndex) const noexcept override { events::destroy(event); }
  void synchronizeEvent(void* event) const override { events::synchronize(event); }
  double elapsedTime(void* start, void* end, const c10::DeviceIndex) const override {
    return events::elapsed_ms(start, end);
  }
  void recordDataPtrOnStream(const c10::DataPtr&, const c10::Stream&) const override {}  // see caching_allocator.h

  // Dtypes the device computes in: every CPU dtype on the reference runtime
  // (ops fall back to the CPU over device memory); MPSGraph has no float64.
  // Quantized tensors are not supported on the device.
  c10::DeviceCapability getDeviceCapability(c10::Device) const override {
    c10::DeviceCapability cap;
    auto& t = cap.capability_data.supported_scalar_types;
    t.has_QInt8 = t.has_QUInt8 = t.has_QInt32 = t.has_QUInt4x2 = t.has_QUInt2x4 = 0;
    if (runtime::device_runtime() == runtime::Kind::MPSGraph) t.has_Double = t.has_ComplexDouble = 0;
    return cap;
  }
};
}  // namespace

C10_REGISTER_GUARD_IMPL(PrivateUse1, GuardImpl);

void flush_autograd_device_thread() {
  if (g_worker_process.load() != getpid()) return;
  at::Tensor x = at::ones({1}, at::TensorOptions().device(kDeviceType, 0)).requires_grad_(true);
  torch::autograd::backward({x.sum()});
}

}  // namespace mps_ext::device
