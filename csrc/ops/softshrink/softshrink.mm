// softshrink's Metal kernels (macOS): the mpsgraph runtime's kernels for
// the "softshrink" and "softshrink_backward" kernel nodes, so a softshrink
// graph on mps or the mpsgraph device is one Metal dispatch. Same semantics
// as the decomposition (softshrink_math.h).
#import "runtime/mpsgraph/metal_kernels.h"

#include <ATen/ExpandUtils.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <limits>
#include <string>

namespace mps_ext::ops {
namespace {

// The math runs in float (opmath), as torch's CPU kernel does for half/bfloat.
// bfloat exists from Metal 3.1 (macOS 14).
constexpr const char* kSource = R"METAL(
#include <metal_stdlib>
using namespace metal;

template <typename T>
kernel void softshrink(device const T* x [[buffer(0)]], device T* y [[buffer(1)]],
                       constant float& l [[buffer(2)]], constant uint& n [[buffer(3)]],
                       uint i [[thread_position_in_grid]]) {
  if (i >= n) return;
  float v = float(x[i]);
  // v - v: +0 in the dead zone, NaN for NaN, as the graph path (needs safe math).
  y[i] = T(v > l ? v - l : (v < -l ? v + l : v - v));
}

template <typename T>
kernel void softshrink_backward(device const T* g [[buffer(0)]], device const T* x [[buffer(1)]],
                                device T* out [[buffer(2)]], constant float& l [[buffer(3)]],
                                constant uint& n [[buffer(4)]], uint i [[thread_position_in_grid]]) {
  if (i >= n) return;
  float v = float(x[i]);
  out[i] = (v >= -l && v <= l) ? T(0) : g[i];
}

#define INSTANTIATE(T)                                                                    \
  template [[host_name("softshrink_" #T)]] kernel void softshrink<T>(                     \
      device const T*, device T*, constant float&, constant uint&, uint);                 \
  template [[host_name("softshrink_backward_" #T)]] kernel void softshrink_backward<T>(   \
      device const T*, device const T*, device T*, constant float&, constant uint&, uint);
INSTANTIATE(float)
INSTANTIATE(half)
#if __METAL_VERSION__ >= 310
INSTANTIATE(bfloat)
#endif
)METAL";

const char* type_suffix(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float";
    case at::kHalf: return "half";
    case at::kBFloat16: return "bfloat";
    default: TORCH_CHECK(false, "mps_ext: softshrink's Metal kernel supports float32, float16 and bfloat16, got ", t);
  }
}

float scalar_value(const at::Tensor& t) {  // the 0-d CPU lambd input
  return t.scalar_type() == at::kDouble ? static_cast<float>(*t.const_data_ptr<double>()) : *t.const_data_ptr<float>();
}

at::Tensor run(const std::string& fn, const std::vector<at::Tensor>& tensors, const at::Tensor& out, float lambd) {
  TORCH_CHECK(out.numel() <= std::numeric_limits<uint32_t>::max(), "mps_ext: softshrink: too many elements");
  if (out.numel() == 0) return out;
  std::vector<at::Tensor> bound;
  for (const at::Tensor& t : tensors) bound.push_back(t.contiguous());
  bound.push_back(out);
  runtime::mpsgraph::dispatch_1d(runtime::mpsgraph::metal_pipeline("softshrink", kSource, fn + "_" + type_suffix(out.scalar_type())),
                                 bound, {lambd}, static_cast<uint32_t>(out.numel()));
  return out;
}

// inputs: (self, lambd)
at::Tensor softshrink_metal(const graph::Node&, const std::vector<at::Tensor>& in) {
  return run("softshrink", {in[0]}, at::empty(in[0].sizes(), in[0].options()), scalar_value(in[1]));
}

// inputs: (grad, self, lambd), broadcast to one shape
at::Tensor softshrink_backward_metal(const graph::Node&, const std::vector<at::Tensor>& in) {
  auto shape = at::infer_size(in[0].sizes(), in[1].sizes());
  return run("softshrink_backward", {in[0].expand(shape), in[1].expand(shape)},
             at::empty(shape, in[1].options()), scalar_value(in[2]));
}
}  // namespace

MPS_EXT_METAL_KERNEL("softshrink", softshrink_metal);
MPS_EXT_METAL_KERNEL("softshrink_backward", softshrink_backward_metal);

}  // namespace mps_ext::ops
