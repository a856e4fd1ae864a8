// The "compile once, run many" cache shared by all runtimes.
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <unordered_map>

#include "device/device.h"
#include "profiler/profiler.h"
#include "runtime/reference/executor.h"
#include "runtime/runtime.h"
#ifdef MPS_EXT_WITH_MPSGRAPH
#include "runtime/mpsgraph/executable.h"
#endif

namespace mps_ext::runtime {
namespace {
struct Entry {
  std::shared_ptr<const graph::Graph> graph;
  std::shared_ptr<Executable> executable;
};

struct Cache {
  std::mutex mutex;
  std::unordered_map<std::string, Entry> entries;
  std::atomic<int64_t> hits{0}, misses{0};
};

Cache& cache() {
  static Cache* c = new Cache();  // leaked: outlives static destructors
  return *c;
}

thread_local std::vector<CapturedGraph>* capture = nullptr;
}  // namespace

const char* kind_name(Kind k) { return k == Kind::Reference ? "reference" : "mpsgraph"; }

bool mpsgraph_built() {
#ifdef MPS_EXT_WITH_MPSGRAPH
  return true;
#else
  return false;
#endif
}

Kind device_runtime() {
  static const Kind kind = [] {
    const char* env = std::getenv("MPS_EXT_RUNTIME");
    std::string name = env ? env : "";
    if (name.empty()) return mpsgraph_built() ? Kind::MPSGraph : Kind::Reference;
    TORCH_CHECK(name == "reference" || name == "mpsgraph",
                "MPS_EXT_RUNTIME must be 'reference' or 'mpsgraph', but got '", name, "'");
    TORCH_CHECK(name == "reference" || mpsgraph_built(),
                "MPS_EXT_RUNTIME=mpsgraph needs the macOS build of mps_ext (Metal and MPSGraph); "
                "this build has only the 'reference' runtime");
    return name == "reference" ? Kind::Reference : Kind::MPSGraph;
  }();
  return kind;
}

Kind runtime_for(const c10::Device& device) {
  switch (device.type()) {
    case c10::DeviceType::CPU: return Kind::Reference;
    case c10::DeviceType::MPS:
      TORCH_CHECK(mpsgraph_built(), "mps_ext was built without the mpsgraph runtime; "
                  "mps tensors need the macOS build");
      return Kind::MPSGraph;
    case c10::DeviceType::PrivateUse1: return device_runtime();
    default:
      TORCH_CHECK(false, "mps_ext ops support cpu, mps and mpsgraph tensors, but got a tensor on ",
                  device);
  }
}

std::unique_ptr<Executable> compile(Kind kind, std::shared_ptr<const graph::Graph> graph) {
#ifdef MPS_EXT_WITH_MPSGRAPH
  if (kind == Kind::MPSGraph) return mpsgraph::compile(std::move(graph));
#endif
  TORCH_INTERNAL_ASSERT(kind == Kind::Reference, "mpsgraph runtime is not built");
  return reference::compile(std::move(graph));
}

std::vector<at::Tensor> run_graph(const graph::CacheKey& key, const GraphBuilder& build,
                                  const std::vector<at::Tensor>& inputs) {
  profiler::OpScope profile_op(key, inputs);  // profiler hook (issue 14): one relaxed load when off
  TORCH_INTERNAL_ASSERT(!inputs.empty());
  Kind kind = runtime_for(inputs[0].device());
  std::string full_key = std::string(kind_name(kind)) + ":" + key.str();
  Cache& c = cache();
  std::shared_ptr<Executable> exe;
  std::shared_ptr<const graph::Graph> graph;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.entries.find(full_key);
    if (it != c.entries.end()) {
      exe = it->second.executable;
      graph = it->second.graph;
    }
  }
  if (exe) {
    c.hits.fetch_add(1, std::memory_order_relaxed);
  } else {
    c.misses.fetch_add(1, std::memory_order_relaxed);
    profiler::CompileScope profile_compile;  // profiler hook (issue 14): marks the op a miss
    auto g = std::make_shared<graph::Graph>();
    try {
      build(*g);
    } catch (const graph::GraphError& e) {
      TORCH_CHECK(false, "mps_ext: could not build graph '", key.str(), "': ", e.what());
    }
    graph = g;
    exe = compile(kind, graph);
    std::lock_guard<std::mutex> lock(c.mutex);
    c.entries.emplace(full_key, Entry{graph, exe});  // a racing twin is equivalent
  }
  if (capture) capture->push_back({full_key, graph});
  if (kind == Kind::Reference && inputs[0].device().type() == c10::DeviceType::PrivateUse1) {
    // The mpsgraph device on the reference runtime: it computes on CPU aliases
    // of the device's host-visible bytes, and its results go to the device.
    device::synchronize();
    std::vector<at::Tensor> host(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i)
      host[i] = inputs[i].device().type() == c10::DeviceType::PrivateUse1 ? device::cpu_alias(inputs[i]) : inputs[i];
    // Fused results are written straight into device memory; any other
    // result is copied over.
    std::vector<at::Tensor> on_device;
    OutputAllocator allocate = [&](at::IntArrayRef sizes, at::ScalarType dtype) {
      on_device.push_back(at::empty(sizes, inputs[0].options().dtype(dtype)));
      return device::cpu_alias(on_device.back());
    };
    std::vector<at::Tensor> outs = exe->run(host, allocate);
    for (at::Tensor& o : outs) {
      auto same = std::find_if(on_device.begin(), on_device.end(), [&](const at::Tensor& d) {
        return d.data_ptr() == o.data_ptr() && d.sizes() == o.sizes() && d.strides() == o.strides();
      });
      o = same != on_device.end() ? *same : device::to_device(o);
    }
    return outs;
  }
  return exe->run(inputs);
}

CacheInfo cache_info() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return {c.hits.load(), c.misses.load(), static_cast<int64_t>(c.entries.size())};
}

void cache_clear() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.entries.clear();
  c.hits = 0;
  c.misses = 0;
}

void begin_capture() {
  delete capture;
  capture = new std::vector<CapturedGraph>();
}

std::vector<CapturedGraph> end_capture() {
  std::vector<CapturedGraph> out;
  if (capture) out = std::move(*capture);
  delete capture;
  capture = nullptr;
  return out;
}

graph::DType to_graph_dtype(at::ScalarType t) {
  using graph::DType;
  switch (t) {
    case at::kBool: return DType::Bool;
    case at::kByte: return DType::UInt8;
    case at::kChar: return DType::Int8;
    case at::kInt: return DType::Int32;
    case at::kLong: return DType::Int64;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    case at::kFloat: return DType::Float32;
    case at::kDouble: return DType::Float64;
    case at::kComplexFloat: return DType::Complex64;
    default: TORCH_CHECK_TYPE(false, "mps_ext graphs do not support dtype ", t);
  }
}

at::ScalarType to_scalar_type(graph::DType t) {
  using graph::DType;
  switch (t) {
    case DType::Bool: return at::kBool;
    case DType::UInt8: return at::kByte;
    case DType::Int8: return at::kChar;
    case DType::Int32: return at::kInt;
    case DType::Int64: return at::kLong;
    case DType::Float16: return at::kHalf;
    case DType::BFloat16: return at::kBFloat16;
    case DType::Float32: return at::kFloat;
    case DType::Float64: return at::kDouble;
    case DType::Complex64: return at::kComplexFloat;
  }
  TORCH_INTERNAL_ASSERT(false, "unknown graph dtype");
}

}  // namespace mps_ext::runtime
