// PrivateUse1 hooks and the device generator.
//
// The generator wraps a CPU generator (mt19937, same state format): ops on the
// device run on the CPU (cpu_fallback.cpp), which hands the wrapped CPU
// generator to the CPU kernels. So a seeded device generator produces the same
// numbers as a CPU generator with that seed.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/detail/PrivateUse1HooksInterface.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/core/CPUAllocator.h>

#include <mutex>

#include "device/device.h"

namespace mps_ext::device {
namespace {

struct DeviceGeneratorImpl final : c10::GeneratorImpl {
  explicit DeviceGeneratorImpl(at::Generator cpu)
      : c10::GeneratorImpl(c10::Device(kDeviceType, 0), c10::DispatchKeySet(c10::DispatchKey::PrivateUse1)),
        cpu_(std::move(cpu)) {}

  void set_current_seed(uint64_t seed) override { cpu_.set_current_seed(seed); }
  void set_offset(uint64_t offset) override { cpu_.set_offset(offset); }
  uint64_t get_offset() const override { return cpu_.get_offset(); }
  uint64_t current_seed() const override { return cpu_.current_seed(); }
  uint64_t seed() override { return cpu_.seed(); }
  void set_state(const c10::TensorImpl& state) override { cpu_.unsafeGetGeneratorImpl()->set_state(state); }
  c10::intrusive_ptr<c10::TensorImpl> get_state() const override {
    return cpu_.unsafeGetGeneratorImpl()->get_state();
  }
  static c10::DeviceType device_type() { return kDeviceType; }

  const at::Generator& cpu() const { return cpu_; }

 private:
  DeviceGeneratorImpl* clone_impl() const override { return new DeviceGeneratorImpl(cpu_.clone()); }
  at::Generator cpu_;
};

at::Generator make_device_generator() {
  auto gen = at::make_generator<DeviceGeneratorImpl>(at::make_generator<at::CPUGeneratorImpl>());
  gen.set_current_seed(c10::detail::getNonDeterministicRandom());
  return gen;
}

struct Hooks final : at::PrivateUse1HooksInterface {
  void init() const override {}
  bool isBuilt() const override { return true; }
  bool isAvailable() const override { return true; }
  bool hasPrimaryContext(c10::DeviceIndex) const override { return true; }
  c10::DeviceIndex deviceCount() const override { return kDeviceCount; }
  void setCurrentDevice(c10::DeviceIndex d) const override { guard().setDevice({kDeviceType, d}); }
  c10::DeviceIndex getCurrentDevice() const override { return guard().getDevice().index(); }
  c10::DeviceIndex exchangeDevice(c10::DeviceIndex d) const override {
    return guard().exchangeDevice({kDeviceType, d}).index();
  }
  c10::DeviceIndex maybeExchangeDevice(c10::DeviceIndex d) const override { return exchangeDevice(d); }
  const at::Generator& getDefaultGenerator(c10::DeviceIndex) const override { return default_generator(); }
  at::Generator getNewGenerator(c10::DeviceIndex) const override { return new_generator(); }
  at::Device getDeviceFromPtr(void*) const override { return {kDeviceType, 0}; }
  bool isPinnedPtr(const void* p) const override { return is_pinned_host_ptr(p); }
  at::Allocator* getPinnedMemoryAllocator() const override { return pinned_host_allocator(); }
  void resizePrivateUse1Bytes(const c10::Storage& storage, size_t newsize) const override {
    synchronize();
    c10::StorageImpl* impl = storage.unsafeGetStorageImpl();
    TORCH_CHECK(impl->resizable(), "mpsgraph: trying to resize storage that is not resizable");
    c10::DataPtr fresh = allocator()->allocate(newsize);
    size_t keep = std::min(newsize, impl->nbytes());
    if (keep) allocator()->copy_data(fresh.get(), impl->data(), keep);
    impl->set_data_ptr_noswap(std::move(fresh));
    impl->set_nbytes(newsize);
  }

 private:
  static const c10::impl::DeviceGuardImplInterface& guard() {
    return *c10::impl::getDeviceGuardImpl(kDeviceType);
  }
};

const bool g_registered = [] {
  static Hooks hooks;
  at::RegisterPrivateUse1HooksInterface(&hooks);
  return true;
}();
}  // namespace

const at::Generator& default_generator() {
  static const at::Generator gen = make_device_generator();
  return gen;
}

at::Generator new_generator() { return make_device_generator(); }

at::Generator cpu_generator_of(const at::Generator& g) {
  auto* impl = dynamic_cast<DeviceGeneratorImpl*>(g.unsafeGetGeneratorImpl());
  TORCH_CHECK(impl != nullptr, "mpsgraph: expected a generator of the mpsgraph device, got one on ", g.device());
  return impl->cpu();
}

}  // namespace mps_ext::device
