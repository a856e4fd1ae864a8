// The "compile once, run many" cache shared by all runtimes.
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <list>
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
  int variant;      // runtime x kernels-or-decompositions: one index each
  std::string key;  // the spec's key
  std::shared_ptr<const graph::Graph> graph;
  std::shared_ptr<Executable> executable;
};

// LRU: the front is the most recently used. Looked up by the spec's key in
// the index of its variant, so a hit builds no string.
struct Cache {
  std::mutex mutex;
  std::list<Entry> lru;
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index[4];  // views into lru's keys
  int64_t hits = 0, misses = 0, evictions = 0;
};

int variant_of(Kind kind, bool kernels) { return (kind == Kind::MPSGraph ? 2 : 0) + (kernels ? 0 : 1); }

std::string display_key(Kind kind, bool kernels, const std::string& key) {
  return std::string(kind_name(kind)) + (kernels ? ":" : ":decomposed:") + key;
}

Cache& cache() {
  static Cache* c = new Cache();  // leaked: outlives static destructors
  return *c;
}

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::string(v) != "0";
}

std::atomic<bool> g_use_kernels{true};
thread_local std::vector<CapturedGraph>* capture = nullptr;

void append_attr(std::string& key, const graph::Attr& value) {
  std::visit(
      [&key](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          key += '"';
          key += v;
          key += '"';
        } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
          key += graph::shape_str(v);
        } else if constexpr (std::is_same_v<T, double>) {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%a", v);  // exact: no two doubles share a key
          key += buf;
        } else {
          key += std::to_string(v);
        }
      },
      value);
}

template <typename T>
const T& spec_attr(const graph::Attrs& attrs, const std::string& name, const std::string& op) {
  auto it = attrs.find(name);
  TORCH_CHECK(it != attrs.end() && std::holds_alternative<T>(it->second), "mps_ext: graph spec '", op,
              "' has no attribute '", name, "' of that type");
  return std::get<T>(it->second);
}
}  // namespace

GraphSpec& GraphSpec::input(const at::Tensor& t, std::initializer_list<int64_t> dynamic) {
  graph::Shape shape = t.sizes().vec();
  for (int64_t d : dynamic) shape.at(static_cast<size_t>(d < 0 ? d + t.dim() : d)) = graph::kDynamic;
  return input(to_graph_dtype(t.scalar_type()), std::move(shape));
}

GraphSpec& GraphSpec::input_dynamic(const at::Tensor& t) {
  return input(to_graph_dtype(t.scalar_type()), graph::Shape(static_cast<size_t>(t.dim()), graph::kDynamic));
}

GraphSpec& GraphSpec::input(graph::DType dtype, graph::Shape shape) {
  // Built on every op call: plain appends, no streams.
  key_ += '|';
  key_ += graph::dtype_name(dtype);
  key_ += '[';
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) key_ += ',';
    key_ += std::to_string(shape[i]);
  }
  key_ += ']';
  inputs_.push_back({dtype, std::move(shape)});
  return *this;
}

GraphSpec& GraphSpec::attr(std::string_view name, graph::Attr value) {
  key_ += '|';
  key_ += name;
  key_ += '=';
  append_attr(key_, value);
  attrs_[std::string(name)] = std::move(value);
  return *this;
}

int64_t GraphSpec::int_attr(const std::string& name) const { return spec_attr<int64_t>(attrs_, name, key_); }
double GraphSpec::float_attr(const std::string& name) const { return spec_attr<double>(attrs_, name, key_); }
const std::string& GraphSpec::str_attr(const std::string& name) const {
  return spec_attr<std::string>(attrs_, name, key_);
}
const std::vector<int64_t>& GraphSpec::ints_attr(const std::string& name) const {
  return spec_attr<std::vector<int64_t>>(attrs_, name, key_);
}

int64_t cache_maxsize() {
  static const int64_t size = [] {
    const char* env = std::getenv("MPS_EXT_GRAPH_CACHE_SIZE");
    if (!env || !*env) return int64_t{1024};
    char* end = nullptr;
    long long v = std::strtoll(env, &end, 10);
    TORCH_CHECK(end && *end == '\0' && v >= 1, "MPS_EXT_GRAPH_CACHE_SIZE must be a positive integer, but got '",
                env, "'");
    return static_cast<int64_t>(v);
  }();
  return size;
}

void set_use_kernels(bool use) { g_use_kernels.store(use, std::memory_order_relaxed); }
bool use_kernels() { return g_use_kernels.load(std::memory_order_relaxed); }

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

std::unique_ptr<Executable> compile(Kind kind, std::shared_ptr<const graph::Graph> graph, bool use_kernels) {
#ifdef MPS_EXT_WITH_MPSGRAPH
  if (kind == Kind::MPSGraph) return mpsgraph::compile(std::move(graph), use_kernels);
#endif
  TORCH_INTERNAL_ASSERT(kind == Kind::Reference, "mpsgraph runtime is not built");
  return reference::compile(std::move(graph), /*fuse=*/true, use_kernels);
}

namespace {
std::shared_ptr<const graph::Graph> build_graph(const GraphSpec& spec, GraphBuilder build) {
  auto g = std::make_shared<graph::Graph>();
  try {
    build(*g, spec);
  } catch (const graph::GraphError& e) {
    TORCH_CHECK(false, "mps_ext: could not build graph '", spec.key(), "': ", e.what());
  }
  return g;
}

struct Found {
  std::shared_ptr<const graph::Graph> graph;
  std::shared_ptr<Executable> executable;
};

Found lookup_or_compile(Kind kind, const GraphSpec& spec, GraphBuilder build) {
  const bool kernels = use_kernels();
  const int variant = variant_of(kind, kernels);
  Found f;
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.index[variant].find(spec.key());
    if (it != c.index[variant].end()) {
      c.lru.splice(c.lru.begin(), c.lru, it->second);
      f.graph = it->second->graph;
      f.executable = it->second->executable;
      ++c.hits;
    } else {
      ++c.misses;
    }
  }
  if (f.executable) {
    static const bool check = env_flag("MPS_EXT_CHECK_CACHE");
    if (check) {
      std::string rebuilt = build_graph(spec, build)->to_json();
      TORCH_CHECK(rebuilt == f.graph->to_json(), "mps_ext: MPS_EXT_CHECK_CACHE: the graph cached under '",
                  display_key(kind, kernels, spec.key()),
                  "' differs from the one its spec builds now: the builder depends on something its GraphSpec "
                  "does not record.\ncached:  ", f.graph->to_json(), "\nrebuilt: ", rebuilt);
    }
    return f;
  }
  profiler::CompileScope profile_compile;  // profiler hook (issue 14): marks the op a miss
  f.graph = build_graph(spec, build);
  f.executable = compile(kind, f.graph, kernels);
  std::lock_guard<std::mutex> lock(c.mutex);
  if (c.index[variant].count(spec.key())) return f;  // a racing twin got there first: equivalent
  c.lru.push_front(Entry{variant, spec.key(), f.graph, f.executable});
  c.index[variant].emplace(c.lru.front().key, c.lru.begin());
  while (static_cast<int64_t>(c.lru.size()) > cache_maxsize()) {
    c.index[c.lru.back().variant].erase(c.lru.back().key);
    c.lru.pop_back();
    ++c.evictions;
  }
  return f;
}

// Result k of a graph run lands in outputs[k] when the caller gave one.
at::Tensor into_output(const at::Tensor& result, const std::vector<at::Tensor>* outputs, size_t k) {
  if (!outputs) return result;
  const at::Tensor& out = (*outputs)[k];
  if (!out.is_same(result)) out.copy_(result);
  return out;
}

std::vector<at::Tensor> run(const GraphSpec& spec, GraphBuilder build, const std::vector<at::Tensor>& inputs,
                            const std::vector<at::Tensor>* outputs) {
  profiler::OpScope profile_op(spec.key(), inputs);  // profiler hook (issue 14): one relaxed load when off
  TORCH_INTERNAL_ASSERT(!inputs.empty());
  c10::Device device = inputs[0].device();
  for (const at::Tensor& t : inputs)  // 0-d CPU scalars go with any device
    if (!t.is_cpu() || t.dim() > 0) {
      device = t.device();
      break;
    }
  Kind kind = runtime_for(device);
  Found f = lookup_or_compile(kind, spec, build);
  if (capture) capture->push_back({display_key(kind, use_kernels(), spec.key()), f.graph});
  if (outputs)
    TORCH_INTERNAL_ASSERT(outputs->size() == f.graph->outputs().size(), "run_graph_into: expected ",
                          f.graph->outputs().size(), " out tensors, got ", outputs->size());
  // A caller's out= tensor takes its result directly when it fits.
  auto caller_output = [&](size_t k, at::IntArrayRef sizes, at::ScalarType dtype) -> at::Tensor {
    if (!outputs) return {};
    const at::Tensor& out = (*outputs)[k];
    if (out.sizes() != sizes || out.scalar_type() != dtype || !out.is_contiguous()) return {};
    return out;
  };
  std::vector<at::Tensor> results;
  if (kind == Kind::Reference && device.type() == c10::DeviceType::PrivateUse1) {
    // The mpsgraph device on the reference runtime: it computes on CPU aliases
    // of the device's host-visible bytes; results are written straight into
    // device memory (an out= tensor or a fresh device tensor).
    device::synchronize();
    std::vector<at::Tensor> host(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i)
      host[i] = inputs[i].device().type() == c10::DeviceType::PrivateUse1 ? device::cpu_alias(inputs[i]) : inputs[i];
    std::vector<std::pair<at::Tensor, at::Tensor>> on_device;  // (device tensor, its CPU alias)
    OutputAllocator allocate = [&](size_t k, at::IntArrayRef sizes, at::ScalarType dtype) {
      at::Tensor d = caller_output(k, sizes, dtype);
      if (!d.defined()) d = at::empty(sizes, inputs[0].options().device(device).dtype(dtype));
      on_device.emplace_back(d, device::cpu_alias(d));
      return on_device.back().second;
    };
    results = f.executable->run(host, allocate);
    for (at::Tensor& r : results) {
      auto same = std::find_if(on_device.begin(), on_device.end(), [&](const auto& d) {
        return d.second.data_ptr() == r.data_ptr() && d.second.sizes() == r.sizes() && d.second.strides() == r.strides();
      });
      r = same != on_device.end() ? same->first : (outputs ? r : device::to_device(r));
    }
  } else {
    OutputAllocator allocate;
    if (outputs) allocate = caller_output;
    results = f.executable->run(inputs, allocate);
  }
  for (size_t k = 0; k < results.size(); ++k) results[k] = into_output(results[k], outputs, k);
  return results;
}
}  // namespace

std::vector<at::Tensor> run_graph(const GraphSpec& spec, GraphBuilder build, const std::vector<at::Tensor>& inputs) {
  return run(spec, build, inputs, nullptr);
}

std::vector<at::Tensor> run_graph_into(const GraphSpec& spec, GraphBuilder build, const std::vector<at::Tensor>& inputs,
                                       const std::vector<at::Tensor>& outputs) {
  return run(spec, build, inputs, &outputs);
}

CacheInfo cache_info() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return {c.hits, c.misses, static_cast<int64_t>(c.lru.size()), cache_maxsize(), c.evictions};
}

void cache_clear() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  for (auto& index : c.index) index.clear();
  c.lru.clear();
  c.hits = c.misses = c.evictions = 0;
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
