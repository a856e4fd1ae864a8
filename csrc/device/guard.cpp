// DeviceGuardImpl for the mpsgraph device: one device, one (default) stream.
// Every op is in stream order on that stream (and synchronous on the host), so
// events are markers that are always complete; autograd's engine records and
// waits on them during backward.
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include "device/device.h"

namespace mps_ext::device {
namespace {
thread_local c10::DeviceIndex g_current = 0;

void check_index(c10::DeviceIndex i) {
  TORCH_CHECK(i >= -1 && i < kDeviceCount, "mpsgraph: invalid device index ", static_cast<int>(i),
              " (there is ", static_cast<int>(kDeviceCount), " device)");
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
    return old;
  }
  c10::Device getDevice() const override { return {static_type, g_current}; }
  void setDevice(c10::Device d) const override { exchangeDevice(d); }
  void uncheckedSetDevice(c10::Device d) const noexcept override {
    if (d.index() >= 0 && d.index() < kDeviceCount) g_current = d.index();
  }
  c10::Stream getStream(c10::Device d) const override {
    return c10::Stream(c10::Stream::DEFAULT, c10::Device(static_type, d.index() < 0 ? 0 : d.index()));
  }
  c10::Stream getDefaultStream(c10::Device d) const override { return getStream(d); }
  c10::Stream getNewStream(c10::Device d, int) const override { return getStream(d); }
  c10::Stream getStreamFromGlobalPool(c10::Device d, bool) const override { return getStream(d); }
  c10::Stream exchangeStream(c10::Stream s) const override { return getStream(s.device()); }
  c10::DeviceIndex deviceCount() const noexcept override { return kDeviceCount; }

  // Events: markers in the single in-order stream.
  void record(void** event, const c10::Stream&, const c10::DeviceIndex, const c10::EventFlag) const override {
    if (*event == nullptr) *event = reinterpret_cast<void*>(1);
  }
  void block(void*, const c10::Stream&) const override {}
  bool queryEvent(void*) const override { return true; }
  void destroyEvent(void*, const c10::DeviceIndex) const noexcept override {}
  bool queryStream(const c10::Stream&) const override { return true; }
  void synchronizeStream(const c10::Stream&) const override { synchronize(); }
  void synchronizeEvent(void*) const override { synchronize(); }
  void synchronizeDevice(const c10::DeviceIndex) const override { synchronize(); }
  void recordDataPtrOnStream(const c10::DataPtr&, const c10::Stream&) const override {}
  double elapsedTime(void*, void*, const c10::DeviceIndex) const override {
    TORCH_CHECK(false, "mpsgraph: events do not record timing");
  }
};
}  // namespace

C10_REGISTER_GUARD_IMPL(PrivateUse1, GuardImpl);

}  // namespace mps_ext::device
