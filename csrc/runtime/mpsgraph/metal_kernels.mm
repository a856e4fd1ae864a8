// Metal softshrink forward/backward. The library is compiled from source once
// per process and each pipeline state once per function (Apple's sample
// recompiles every call); kernels are encoded on the current MPS stream's
// compute encoder, which PyTorch coalesces and commits.
#import "runtime/mpsgraph/metal_kernels.h"

#import <ATen/mps/MPSDevice.h>
#import <ATen/mps/MPSStream.h>
#import "runtime/mpsgraph/lowering.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace mps_ext::runtime::mpsgraph {
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

std::mutex g_mutex;

id<MTLLibrary> library() {  // call with g_mutex held
  static id<MTLLibrary> lib = nil;
  if (lib == nil) {
    // Fast math (the default) may fold v - v to 0 and drop NaN checks.
    MTLCompileOptions* options = [MTLCompileOptions new];
    if (@available(macOS 15.0, *)) {
      options.mathMode = MTLMathModeSafe;  // macOS 15.0
    } else {
      options.fastMathEnabled = NO;  // macOS 10.11, deprecated in 15.0
    }
    NSError* error = nil;
    lib = [at::mps::MPSDevice::getInstance()->device() newLibraryWithSource:[NSString stringWithUTF8String:kSource]
                                                                    options:options
                                                                      error:&error];  // macOS 10.11
    TORCH_CHECK(lib != nil, "mps_ext: failed to compile the Metal softshrink kernels: ",
                error ? error.localizedDescription.UTF8String : "unknown error");
  }
  return lib;
}

id<MTLComputePipelineState> pipeline(const std::string& name) {
  std::lock_guard<std::mutex> lock(g_mutex);
  static std::map<std::string, id<MTLComputePipelineState>> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  id<MTLFunction> fn = [library() newFunctionWithName:[NSString stringWithUTF8String:name.c_str()]];  // macOS 10.11
  TORCH_CHECK(fn != nil, "mps_ext: Metal function ", name, " is not available on this macOS "
              "(bfloat16 needs macOS 14 / Metal 3.1)");
  NSError* error = nil;
  id<MTLComputePipelineState> pso = [at::mps::MPSDevice::getInstance()->device()
      newComputePipelineStateWithFunction:fn error:&error];  // macOS 10.11
  TORCH_CHECK(pso != nil, "mps_ext: failed to create pipeline ", name, ": ",
              error ? error.localizedDescription.UTF8String : "unknown error");
  return cache.emplace(name, pso).first->second;
}

const char* type_suffix(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float";
    case at::kHalf: return "half";
    case at::kBFloat16: return "bfloat";
    default: TORCH_CHECK(false, "mps_ext: softshrink on mps supports float32, float16 and bfloat16, got ", t);
  }
}


// Encodes a 1-D elementwise kernel over `n` elements; tensors are contiguous,
// bound at their storage offsets, followed by lambd and n as constants.
void dispatch_1d(const std::string& name, std::initializer_list<at::Tensor> tensors, float lambd, uint32_t n) {
  id<MTLComputePipelineState> pso = pipeline(name);
  at::mps::MPSStream* stream = at::mps::getCurrentMPSStream();
  std::vector<at::Tensor> ts(tensors);
  at::mps::dispatch_sync_with_rethrow(stream->queue(), ^() {
    @autoreleasepool {
      id<MTLComputeCommandEncoder> enc = stream->commandEncoder();
      [enc setComputePipelineState:pso];  // macOS 10.11
      NSUInteger index = 0;
      for (const at::Tensor& t : ts) {
        size_t offset = 0;
        id<MTLBuffer> buf = mtl_buffer_of(t, &offset);
        [enc setBuffer:buf offset:offset atIndex:index++];  // macOS 10.11
      }
      [enc setBytes:&lambd length:sizeof(lambd) atIndex:index++];  // macOS 10.11
      [enc setBytes:&n length:sizeof(n) atIndex:index++];
      NSUInteger group = std::min<NSUInteger>(pso.maxTotalThreadsPerThreadgroup, n);
      [enc dispatchThreads:MTLSizeMake(n, 1, 1) threadsPerThreadgroup:MTLSizeMake(group, 1, 1)];  // macOS 10.13
    }
  });
}

void check_mps(const char* what, const at::Tensor& t) {
  TORCH_CHECK(t.device().type() == c10::DeviceType::MPS, "mps_ext: ", what, " must be an mps tensor, got ", t.device());
  TORCH_CHECK(t.numel() <= std::numeric_limits<uint32_t>::max(), "mps_ext: ", what, " has too many elements");
}

}  // namespace

at::Tensor softshrink_metal(const at::Tensor& self, double lambd) {
  check_mps("self", self);
  at::Tensor x = self.contiguous();
  at::Tensor y = at::empty(x.sizes(), x.options());
  if (x.numel() == 0) return y;
  dispatch_1d(std::string("softshrink_") + type_suffix(x.scalar_type()), {x, y}, static_cast<float>(lambd),
              static_cast<uint32_t>(x.numel()));
  return y;
}

at::Tensor softshrink_backward_metal(const at::Tensor& grad, const at::Tensor& self, double lambd) {
  check_mps("grad", grad);
  check_mps("self", self);
  TORCH_CHECK(grad.sizes() == self.sizes() && grad.scalar_type() == self.scalar_type(),
              "mps_ext: softshrink_backward_metal needs grad and self of one shape and dtype");
  at::Tensor g = grad.contiguous(), x = self.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options());
  if (x.numel() == 0) return out;
  dispatch_1d(std::string("softshrink_backward_") + type_suffix(x.scalar_type()), {g, x, out},
              static_cast<float>(lambd), static_cast<uint32_t>(x.numel()));
  return out;
}

}  // namespace mps_ext::runtime::mpsgraph
