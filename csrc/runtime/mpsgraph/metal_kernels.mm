// The Metal kernel registry, library/pipeline caches and 1-D dispatch shared
// by the op families' Metal kernels. Libraries compile from source once per
// process and each pipeline once per function; kernels are encoded on the
// current MPS stream's compute encoder, which PyTorch coalesces and commits.
#import "runtime/mpsgraph/metal_kernels.h"

#import <ATen/mps/MPSDevice.h>
#import <ATen/mps/MPSStream.h>
#import "runtime/mpsgraph/lowering.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <unordered_map>

namespace mps_ext::runtime::mpsgraph {
namespace {
std::mutex g_mutex;

std::unordered_map<std::string, MetalKernel>& registry() {
  static auto* r = new std::unordered_map<std::string, MetalKernel>();
  return *r;
}

id<MTLLibrary> library(const char* name, const char* source) {  // call with g_mutex held
  static std::map<std::string, id<MTLLibrary>> libraries;
  auto it = libraries.find(name);
  if (it != libraries.end()) return it->second;
  // Fast math (the default) may fold v - v to 0 and drop NaN checks.
  MTLCompileOptions* options = [MTLCompileOptions new];
  if (@available(macOS 15.0, *)) {
    options.mathMode = MTLMathModeSafe;  // macOS 15.0
    options.mathFloatingPointFunctions = MTLMathFloatingPointFunctionsPrecise;  // macOS 15.0
  } else {
    options.fastMathEnabled = NO;  // macOS 10.11, deprecated in 15.0
  }
  NSError* error = nil;
  id<MTLLibrary> lib = [at::mps::MPSDevice::getInstance()->device() newLibraryWithSource:[NSString stringWithUTF8String:source]
                                                                                 options:options
                                                                                   error:&error];  // macOS 10.11
  TORCH_CHECK(lib != nil, "mps_ext: failed to compile the Metal library ", name, ": ",
              error ? error.localizedDescription.UTF8String : "unknown error");
  return libraries.emplace(name, lib).first->second;
}
}  // namespace

bool register_metal_kernel(const std::string& name, MetalKernel kernel) {
  std::lock_guard<std::mutex> lock(g_mutex);
  return registry().emplace(name, kernel).second;
}

MetalKernel find_metal_kernel(const std::string& name) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = registry().find(name);
  return it == registry().end() ? nullptr : it->second;
}

id<MTLComputePipelineState> metal_pipeline(const char* lib_name, const char* source, const std::string& function) {
  std::lock_guard<std::mutex> lock(g_mutex);
  static std::map<std::string, id<MTLComputePipelineState>> cache;
  std::string key = std::string(lib_name) + "/" + function;
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  id<MTLFunction> fn = [library(lib_name, source) newFunctionWithName:[NSString stringWithUTF8String:function.c_str()]];  // macOS 10.11
  TORCH_CHECK(fn != nil, "mps_ext: Metal function ", function, " is not available on this macOS "
              "(bfloat16 needs macOS 14 / Metal 3.1)");
  NSError* error = nil;
  id<MTLComputePipelineState> pso = [at::mps::MPSDevice::getInstance()->device()
      newComputePipelineStateWithFunction:fn error:&error];  // macOS 10.11
  TORCH_CHECK(pso != nil, "mps_ext: failed to create pipeline ", function, ": ",
              error ? error.localizedDescription.UTF8String : "unknown error");
  return cache.emplace(key, pso).first->second;
}

void dispatch_1d(id<MTLComputePipelineState> pso, const std::vector<at::Tensor>& tensors,
                 const std::vector<float>& float_constants, uint32_t n) {
  at::mps::MPSStream* stream = at::mps::getCurrentMPSStream();
  std::vector<at::Tensor> ts = tensors;
  std::vector<float> constants = float_constants;
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
      for (const float& c : constants) [enc setBytes:&c length:sizeof(c) atIndex:index++];  // macOS 10.11
      [enc setBytes:&n length:sizeof(n) atIndex:index++];
      NSUInteger group = std::min<NSUInteger>(pso.maxTotalThreadsPerThreadgroup, n);
      [enc dispatchThreads:MTLSizeMake(n, 1, 1) threadsPerThreadgroup:MTLSizeMake(group, 1, 1)];  // macOS 10.13
    }
  });
}

}  // namespace mps_ext::runtime::mpsgraph
