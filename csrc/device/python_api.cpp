// What the torch.mpsgraph module (mps_ext/device.py) needs from C++, as
// torch.ops.mps_ext._device_* operators (no change to the pybind module).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <mutex>

#include "device/device.h"

namespace mps_ext::device {
namespace {
void op_synchronize() { synchronize(); }

void op_manual_seed(int64_t seed) {
  at::Generator g = default_generator();
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_current_seed(static_cast<uint64_t>(seed));
}

int64_t op_initial_seed() {
  at::Generator g = default_generator();
  std::lock_guard<std::mutex> lock(g.mutex());
  return static_cast<int64_t>(g.current_seed());
}

int64_t op_seed() {
  at::Generator g = default_generator();
  std::lock_guard<std::mutex> lock(g.mutex());
  return static_cast<int64_t>(g.seed());
}

at::Tensor op_get_rng_state() {
  at::Generator g = default_generator();
  std::lock_guard<std::mutex> lock(g.mutex());
  return g.get_state();
}

void op_set_rng_state(const at::Tensor& state) {
  at::Generator g = default_generator();
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_state(state);
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(mps_ext, m) {
  m.def("_device_synchronize() -> ()", &op_synchronize);
  m.def("_device_manual_seed(int seed) -> ()", &op_manual_seed);
  m.def("_device_initial_seed() -> int", &op_initial_seed);
  m.def("_device_seed() -> int", &op_seed);
  m.def("_device_get_rng_state() -> Tensor", &op_get_rng_state);
  m.def("_device_set_rng_state(Tensor state) -> ()", &op_set_rng_state);
}

}  // namespace mps_ext::device
