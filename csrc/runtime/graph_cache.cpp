// The "compile once, run many" cache shared by all runtimes.
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <unordered_map>

#include "device/caching_allocator.h"
#include "device/device.h"
#include "profiler/profiler.h"
#include "runtime/reference/executor.h"
#include "runtime/reference/output_allocator.h"
#include "runtime/runtime.h"
#ifdef MPS_EXT_WITH_MPSGRAPH
#include "runtime/mpsgraph/executable.h"
#endif

namespace mps_ext::runtime {
namespace {
struct Entry {
  int variant;      // runtime x kernels-or-decompositions: one index each
  std::string key;  // the spec's key_bytes()
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
  std::atomic<int64_t> memo_hits{0};  // hits through an op's GraphMemo (no lock taken)
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
std::atomic<uint64_t> g_generation{1};
void new_generation() { g_generation.fetch_add(1, std::memory_order_relaxed); }
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

// The key's byte layout: the op name, then per input 'I' dtype rank dims, per
// attribute a type tag, its name and value. Every variable-length field is
// length-prefixed, so two different specs never share bytes.
template <typename T>
void put(c10::SmallVectorImpl<char>& b, T v) {
  const char* p = reinterpret_cast<const char*>(&v);
  b.append(p, p + sizeof(T));
}
void put_str(c10::SmallVectorImpl<char>& b, std::string_view v) {
  put(b, static_cast<uint32_t>(v.size()));
  b.append(v.begin(), v.end());
}
void put_ints(c10::SmallVectorImpl<char>& b, c10::ArrayRef<int64_t> v) {
  put(b, static_cast<uint32_t>(v.size()));
  const char* p = reinterpret_cast<const char*>(v.data());
  b.append(p, p + v.size() * sizeof(int64_t));
}

struct Reader {
  const char* p;
  const char* end;
  template <typename T>
  T get() {
    TORCH_INTERNAL_ASSERT(p + sizeof(T) <= end, "corrupt graph spec key");
    T v;
    std::memcpy(&v, p, sizeof(T));
    p += sizeof(T);
    return v;
  }
  std::string str() {
    auto n = get<uint32_t>();
    TORCH_INTERNAL_ASSERT(p + n <= end, "corrupt graph spec key");
    std::string v(p, n);
    p += n;
    return v;
  }
  std::vector<int64_t> ints() {
    auto n = get<uint32_t>();
    std::vector<int64_t> v(n);
    for (auto& x : v) x = get<int64_t>();
    return v;
  }
};
}  // namespace

struct GraphSpec::Decoded {
  std::vector<graph::TensorType> inputs;
  graph::Attrs attrs;
  std::string key;  // readable
};

GraphSpec::GraphSpec(std::string_view op) { put_str(bytes_, op); }
GraphSpec::GraphSpec(const GraphSpec& other) : bytes_(other.bytes_), num_inputs_(other.num_inputs_) {}
GraphSpec::GraphSpec(GraphSpec&& other) noexcept : bytes_(std::move(other.bytes_)), num_inputs_(other.num_inputs_) {}
GraphSpec::~GraphSpec() = default;

void GraphSpec::put_tag(char tag, std::string_view name) {
  decoded_.reset();  // read before being complete (an error message): decode again
  bytes_.push_back(tag);
  if (tag != 'I') put_str(bytes_, name);
}

GraphSpec& GraphSpec::input(const at::Tensor& t, std::initializer_list<int64_t> dynamic) {
  put_tag('I', {});
  put(bytes_, static_cast<uint8_t>(to_graph_dtype(t.scalar_type())));
  const size_t at = bytes_.size() + sizeof(uint32_t);
  put_ints(bytes_, t.sizes());
  for (int64_t d : dynamic) {
    int64_t dim = d < 0 ? d + t.dim() : d;
    TORCH_CHECK(dim >= 0 && dim < t.dim(), "GraphSpec::input: dynamic dim ", d, " out of range");
    std::memcpy(bytes_.data() + at + dim * sizeof(int64_t), &graph::kDynamic, sizeof(int64_t));
  }
  ++num_inputs_;
  return *this;
}

GraphSpec& GraphSpec::input_dynamic(const at::Tensor& t) {
  put_tag('I', {});
  put(bytes_, static_cast<uint8_t>(to_graph_dtype(t.scalar_type())));
  put(bytes_, static_cast<uint32_t>(t.dim()));
  for (int64_t i = 0; i < t.dim(); ++i) put(bytes_, graph::kDynamic);
  ++num_inputs_;
  return *this;
}

GraphSpec& GraphSpec::input(graph::DType dtype, const graph::Shape& shape) {
  put_tag('I', {});
  put(bytes_, static_cast<uint8_t>(dtype));
  put_ints(bytes_, shape);
  ++num_inputs_;
  return *this;
}

GraphSpec& GraphSpec::attr(std::string_view name, int64_t value) {
  put_tag('i', name);
  put(bytes_, value);
  return *this;
}
GraphSpec& GraphSpec::attr(std::string_view name, double value) {
  put_tag('f', name);
  put(bytes_, value);  // the bits: exact, -0.0 and NaN payloads included
  return *this;
}
GraphSpec& GraphSpec::attr(std::string_view name, std::string_view value) {
  put_tag('s', name);
  put_str(bytes_, value);
  return *this;
}
GraphSpec& GraphSpec::attr(std::string_view name, const std::vector<int64_t>& value) {
  put_tag('v', name);
  put_ints(bytes_, value);
  return *this;
}
GraphSpec& GraphSpec::attr(std::string_view name, const graph::Attr& value) {
  return std::visit([&](const auto& v) -> GraphSpec& {
    using T = std::decay_t<decltype(v)>;
    if constexpr (std::is_same_v<T, std::string>) return attr(name, std::string_view(v));
    else return attr(name, v);
  }, value);
}

const GraphSpec::Decoded& GraphSpec::decoded() const {
  if (decoded_) return *decoded_;
  auto d = std::make_unique<Decoded>();
  Reader r{bytes_.data(), bytes_.data() + bytes_.size()};
  d->key = r.str();
  while (r.p < r.end) {
    char tag = r.get<char>();
    if (tag == 'I') {
      auto dtype = static_cast<graph::DType>(r.get<uint8_t>());
      graph::Shape shape = r.ints();
      d->key += '|';
      d->key += graph::dtype_name(dtype);
      d->key += '[';
      for (size_t i = 0; i < shape.size(); ++i) {
        if (i) d->key += ',';
        d->key += std::to_string(shape[i]);
      }
      d->key += ']';
      d->inputs.push_back({dtype, std::move(shape)});
      continue;
    }
    std::string name = r.str();
    graph::Attr value;
    switch (tag) {
      case 'i': value = r.get<int64_t>(); break;
      case 'f': value = r.get<double>(); break;
      case 's': value = r.str(); break;
      case 'v': value = r.ints(); break;
      default: TORCH_INTERNAL_ASSERT(false, "corrupt graph spec key");
    }
    d->key += '|';
    d->key += name;
    d->key += '=';
    append_attr(d->key, value);
    d->attrs[name] = std::move(value);
  }
  decoded_ = std::move(d);
  return *decoded_;
}

const graph::TensorType& GraphSpec::input(size_t i) const { return decoded().inputs.at(i); }
const graph::Attrs& GraphSpec::attrs() const { return decoded().attrs; }
const std::string& GraphSpec::key() const { return decoded().key; }
int64_t GraphSpec::int_attr(const std::string& name) const { return spec_attr<int64_t>(attrs(), name, key()); }
double GraphSpec::float_attr(const std::string& name) const { return spec_attr<double>(attrs(), name, key()); }
const std::string& GraphSpec::str_attr(const std::string& name) const {
  return spec_attr<std::string>(attrs(), name, key());
}
const std::vector<int64_t>& GraphSpec::ints_attr(const std::string& name) const {
  return spec_attr<std::vector<int64_t>>(attrs(), name, key());
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

void set_use_kernels(bool use) {
  if (g_use_kernels.exchange(use, std::memory_order_relaxed) != use) new_generation();
}
uint64_t cache_generation() { return g_generation.load(std::memory_order_relaxed); }
bool check_cache_enabled() {
  static const bool check = env_flag("MPS_EXT_CHECK_CACHE");
  return check;
}
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

// MPS_EXT_CHECK_CACHE: a cache hit's graph must be the one its spec builds now.
void check_rebuilds_same(Kind kind, bool kernels, const GraphSpec& spec, GraphBuilder build, const graph::Graph& cached) {
  std::string rebuilt = build_graph(spec, build)->to_json();
  TORCH_CHECK(rebuilt == cached.to_json(), "mps_ext: MPS_EXT_CHECK_CACHE: the graph cached under '",
              display_key(kind, kernels, spec.key()),
              "' differs from the one its spec builds now: the builder depends on something its GraphSpec "
              "does not record.\ncached:  ", cached.to_json(), "\nrebuilt: ", rebuilt);
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
    auto it = c.index[variant].find(spec.key_bytes());
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
    if (check_cache_enabled()) check_rebuilds_same(kind, kernels, spec, build, *f.graph);
    return f;
  }
  profiler::CompileScope profile_compile;  // profiler hook (issue 14): marks the op a miss
  f.graph = build_graph(spec, build);
  f.executable = compile(kind, f.graph, kernels);
  std::lock_guard<std::mutex> lock(c.mutex);
  if (c.index[variant].count(spec.key_bytes())) return f;  // a racing twin got there first: equivalent
  c.lru.push_front(Entry{variant, std::string(spec.key_bytes()), f.graph, f.executable});
  c.index[variant].emplace(c.lru.front().key, c.lru.begin());
  while (static_cast<int64_t>(c.lru.size()) > cache_maxsize()) {
    c.index[c.lru.back().variant].erase(c.lru.back().key);
    c.lru.pop_back();
    ++c.evictions;
    new_generation();
  }
  return f;
}

// Result k of a graph run lands in outputs[k] when the caller gave one.
at::Tensor into_output(const at::Tensor& result, const std::vector<at::Tensor>* outputs, size_t k) {
  if (!outputs) return result;
  const at::Tensor& out = (*outputs)[k];
  if (out.is_same(result)) return out;
  if (result.is_cpu() && out.device().type() == c10::DeviceType::PrivateUse1 && out.is_contiguous() && result.is_contiguous() &&
      out.scalar_type() == result.scalar_type() && out.sizes() == result.sizes() && !result.is_conj() &&
      !result.is_neg()) {
    // A result computed by ATen into fresh host memory -> the device tensor's
    // (host) memory: one memcpy instead of a dispatched copy_.
    device::synchronize();
    if (result.numel() > 0) std::memcpy(out.mutable_data_ptr(), result.const_data_ptr(), result.nbytes());
    return out;
  }
  out.copy_(result);
  return out;
}

// A graph result ATen computed into memory it allocated, held by nobody
// else: on the reference runtime, whose device memory is host memory, that
// memory becomes the device tensor's as it is. Anything else (a view of an
// input's CPU alias, memory another tensor shares) is copied.
at::Tensor result_to_device(at::Tensor r) {
  device::CachingAllocator& allocator = device::caching_allocator();
  c10::StorageImpl* s = r.storage().unsafeGetStorageImpl();
  const c10::DataPtr& memory = s->data_ptr();
  if (!allocator.can_adopt() || !memory.get() || r.use_count() != 1 || r.storage().use_count() != 1 || r.is_conj() ||
      r.is_neg() || !reference::allocated_for_cpu_result(memory))
    return device::to_device(r);
  const size_t nbytes = s->nbytes();
  c10::DataPtr host = s->set_data_ptr(c10::DataPtr(nullptr, c10::Device(c10::kCPU)));
  c10::Storage storage(c10::Storage::use_byte_size_t(), nbytes, allocator.adopt(std::move(host), nbytes),
                       device::allocator(), /*resizable=*/true);
  return device::device_tensor_over(storage, r, r.storage_offset());
}

c10::Device device_of(c10::ArrayRef<at::Tensor> inputs) {
  TORCH_INTERNAL_ASSERT(!inputs.empty());
  for (const at::Tensor& t : inputs)  // 0-d CPU scalars go with any device
    if (!t.is_cpu() || t.dim() > 0) return t.device();
  return inputs[0].device();
}

// Runs a looked-up graph on the runtime `kind` serving `device`.
std::vector<at::Tensor> execute(Kind kind, const c10::Device& device, const graph::Graph& graph,
                                Executable& executable, c10::ArrayRef<at::Tensor> inputs,
                                const std::vector<at::Tensor>* outputs) {
  if (outputs)
    TORCH_INTERNAL_ASSERT(outputs->size() == graph.outputs().size(), "run_graph_into: expected ",
                          graph.outputs().size(), " out tensors, got ", outputs->size());
  // A caller's out= tensor takes its result directly when it fits.
  auto caller_output = [&](size_t k, at::IntArrayRef sizes, at::ScalarType dtype) -> at::Tensor {
    if (!outputs) return {};
    const at::Tensor& out = (*outputs)[k];
    if (out.sizes() != sizes || out.scalar_type() != dtype || !out.is_contiguous()) return {};
    return out;
  };
  std::vector<at::Tensor> results;
  if (kind == Kind::Reference && device.type() == c10::DeviceType::PrivateUse1) {
    // The mpsgraph device on the reference runtime: its memory is host
    // memory, so the executor takes device tensors as they are (viewing them
    // as CPU tensors only where ATen computes, reference::on_host) and writes
    // results straight into device memory (an out= tensor or a fresh device
    // tensor).
    device::synchronize();
    struct DeviceOutputs {
      const std::vector<at::Tensor>* outputs;
      c10::SmallVector<at::Tensor, 2> allocated;
    } out_state{outputs, {}};
    OutputAllocator allocate = [state = &out_state](size_t k, at::IntArrayRef sizes, at::ScalarType dtype) {
      if (state->outputs) {
        const at::Tensor& out = (*state->outputs)[k];
        if (out.sizes() == sizes && out.scalar_type() == dtype && out.is_contiguous()) {
          state->allocated.push_back(out);
          return out;
        }
      }
      state->allocated.push_back(device::empty_device(sizes, dtype));
      return state->allocated.back();
    };
    results = executable.run(inputs, allocate);
    for (at::Tensor& r : results) {
      if (!r.is_cpu()) continue;  // device memory already (an allocated output, a variable)
      // A CPU kernel's view of an allocated output -> that device tensor.
      auto same = std::find_if(out_state.allocated.begin(), out_state.allocated.end(), [&](const at::Tensor& d) {
        return d.const_data_ptr() == r.const_data_ptr() && d.sizes() == r.sizes() && d.strides() == r.strides();
      });
      r = same != out_state.allocated.end() ? *same : (outputs ? r : result_to_device(std::move(r)));
    }
    reference::release_cpu_views();
  } else {
    OutputAllocator allocate;
    if (outputs) allocate = caller_output;
    results = executable.run(inputs, allocate);
  }
  if (outputs)
    for (size_t k = 0; k < results.size(); ++k) results[k] = into_output(results[k], outputs, k);
  return results;
}

std::vector<at::Tensor> run(const GraphSpec& spec, GraphBuilder build, c10::ArrayRef<at::Tensor> inputs,
                            const std::vector<at::Tensor>* outputs,
                            std::shared_ptr<const ResolvedGraph>* resolved = nullptr) {
  profiler::OpScope profile_op([&]() -> const std::string& { return spec.key(); }, inputs);  // profiler hook (issue 14): one relaxed load when off
  const c10::Device device = device_of(inputs);
  const Kind kind = runtime_for(device);
  const uint64_t generation = cache_generation();  // before the lookup: an eviction after it makes the memo stale
  Found f = lookup_or_compile(kind, spec, build);
  if (capture) capture->push_back({display_key(kind, use_kernels(), spec.key()), f.graph});
  if (resolved)
    *resolved = std::make_shared<const ResolvedGraph>(kind, spec, f.graph, f.executable, generation);
  return execute(kind, device, *f.graph, *f.executable, inputs, outputs);
}
}  // namespace

std::vector<at::Tensor> run_and_resolve(const GraphSpec& spec, GraphBuilder build, c10::ArrayRef<at::Tensor> inputs,
                                        const std::vector<at::Tensor>* outputs,
                                        std::shared_ptr<const ResolvedGraph>* resolved) {
  return run(spec, build, inputs, outputs, resolved);
}

std::vector<at::Tensor> run_resolved(const ResolvedGraph& graph, c10::ArrayRef<at::Tensor> inputs,
                                     const std::vector<at::Tensor>* outputs) {
  profiler::OpScope profile_op([&]() -> const std::string& { return graph.key(); }, inputs);
  cache().memo_hits.fetch_add(1, std::memory_order_relaxed);
  if (capture) capture->push_back({display_key(graph.kind, use_kernels(), graph.key()), graph.graph});
  return execute(graph.kind, device_of(inputs), *graph.graph, *graph.executable, inputs, outputs);
}

void check_memo_hit(const ResolvedGraph& graph, const GraphSpec& spec, GraphBuilder build) {
  TORCH_CHECK(spec.key_bytes() == graph.spec.key_bytes(), "mps_ext: MPS_EXT_CHECK_CACHE: a memoized call ran the graph of '",
              graph.key(), "', but its spec is '", spec.key(), "': the op's memo key misses something its spec records");
  check_rebuilds_same(graph.kind, use_kernels(), spec, build, *graph.graph);
}

std::vector<at::Tensor> run_graph(const GraphSpec& spec, GraphBuilder build, c10::ArrayRef<at::Tensor> inputs) {
  return run(spec, build, inputs, nullptr);
}

std::vector<at::Tensor> run_graph_into(const GraphSpec& spec, GraphBuilder build, c10::ArrayRef<at::Tensor> inputs,
                                       const std::vector<at::Tensor>& outputs) {
  return run(spec, build, inputs, &outputs);
}

CacheInfo cache_info() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  const int64_t memo_hits = c.memo_hits.load(std::memory_order_relaxed);
  return {c.hits + memo_hits, c.misses, static_cast<int64_t>(c.lru.size()), cache_maxsize(), c.evictions, memo_hits};
}

void cache_clear() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  for (auto& index : c.index) index.clear();
  c.lru.clear();
  c.hits = c.misses = c.evictions = 0;
  c.memo_hits = 0;
  new_generation();
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
    case at::kComplexDouble: return DType::Complex128;
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
    case DType::Complex128: return at::kComplexDouble;
  }
  TORCH_INTERNAL_ASSERT(false, "unknown graph dtype");
}

}  // namespace mps_ext::runtime
