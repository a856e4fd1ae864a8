// Runtimes execute graphs. This header is the seam between ops (which build
// graphs from ATen tensors) and the runtimes (reference on the CPU, mpsgraph
// on macOS). Ops call run_graph(); nothing else needs to know which runtime
// ran.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/SmallVector.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "graph/graph.h"

namespace mps_ext::runtime {

// Where a runtime puts graph output `index` (sizes, dtype known once the
// graph runs) instead of allocating it itself: lets the reference runtime
// write results straight into device memory or a caller's out= tensor. It may
// return an undefined tensor: the runtime then allocates.
using OutputAllocator =
    std::function<at::Tensor(size_t index, at::IntArrayRef sizes, at::ScalarType dtype)>;

// A graph run's inputs, borrowed: the caller's tensors without reference
// count traffic. A tensor only Python holds has a count of 1, and torch takes
// the GIL to keep its PyObject alive whenever a C++ copy takes the count to 2,
// and again when it drops back to 1: two GIL round trips per copied operand,
// as long as a [16, 64] multiply. An op's operands outlive its graph run, so
// the run borrows them; a tensor the op makes itself (a reshape, a 0-d
// scalar) goes in with own(), which keeps it alive as long as the list.
template <unsigned N>
class BorrowedTensors {
 public:
  BorrowedTensors() = default;
  BorrowedTensors(std::initializer_list<std::reference_wrapper<const at::Tensor>> tensors) {
    for (const at::Tensor& t : tensors) borrow(t);
  }
  BorrowedTensors(const BorrowedTensors&) = delete;
  BorrowedTensors& operator=(const BorrowedTensors&) = delete;
  BorrowedTensors(BorrowedTensors&&) noexcept = default;  // a moved-from borrow is undefined: nothing to release
  BorrowedTensors& operator=(BorrowedTensors&& other) noexcept {
    release();
    tensors_ = std::move(other.tensors_);
    owned_ = std::move(other.owned_);
    return *this;
  }
  ~BorrowedTensors() { release(); }

  void borrow(const at::Tensor& t) { tensors_.push_back(c10::MaybeOwnedTraits<at::Tensor>::createBorrow(t)); }
  void own(at::Tensor t) {
    owned_.push_back(std::move(t));
    borrow(owned_.back());
  }
  operator c10::ArrayRef<at::Tensor>() const { return {tensors_.data(), tensors_.size()}; }
  size_t size() const { return tensors_.size(); }
  const at::Tensor& operator[](size_t i) const { return tensors_[i]; }
  const at::Tensor* begin() const { return tensors_.begin(); }
  const at::Tensor* end() const { return tensors_.end(); }

 private:
  void release() {
    for (at::Tensor& t : tensors_) c10::MaybeOwnedTraits<at::Tensor>::destroyBorrow(t);
    tensors_.clear();
  }
  c10::SmallVector<at::Tensor, N> tensors_;  // borrows: released, never decremented
  c10::SmallVector<at::Tensor, 1> owned_;
};

// The caller's tensors lent to one graph run: run_graph(spec, build, lend(x, w)).
template <typename... T>
BorrowedTensors<sizeof...(T)> lend(const T&... tensors) {
  return BorrowedTensors<sizeof...(T)>{tensors...};
}

// A graph compiled for one runtime. Inputs bind to placeholders/variables in
// creation order (a variable's tensor is updated in place); outputs come back
// in Graph::output() order.
class Executable {
 public:
  virtual ~Executable() = default;
  virtual std::vector<at::Tensor> run(c10::ArrayRef<at::Tensor> inputs,
                                      const OutputAllocator& allocate_output = {}) = 0;
};

enum class Kind { Reference, MPSGraph };
const char* kind_name(Kind k);

// Which runtime serves tensors on `device`: CPU -> reference, MPS -> mpsgraph,
// the mpsgraph device -> MPS_EXT_RUNTIME (default mpsgraph where Metal exists).
Kind runtime_for(const c10::Device& device);
// The runtime behind the mpsgraph device (MPS_EXT_RUNTIME, validated).
Kind device_runtime();
bool mpsgraph_built();  // compiled with the macOS lowering

// use_kernels=false: every kernel node runs its decomposition (the oracle).
std::unique_ptr<Executable> compile(Kind kind, std::shared_ptr<const graph::Graph> graph, bool use_kernels = true);

// Everything an op's graph depends on: op name, declared input types and
// attributes. The builder reads only this, and the cache key is its
// serialization, so a key cannot omit what the graph was built from.
//
// Built on every op call, so the hot path appends typed fields to one inline
// byte buffer (no strings, no map, no heap for typical specs) -- that buffer
// *is* the cache key. The accessors the builder uses decode it (lazily, on a
// miss), so a builder cannot read anything the key does not hold.
class GraphSpec {
 public:
  explicit GraphSpec(std::string_view op);
  GraphSpec(const GraphSpec& other);
  GraphSpec(GraphSpec&& other) noexcept;
  GraphSpec& operator=(const GraphSpec&) = delete;
  ~GraphSpec();
  // The next input's declared type: t's dtype and sizes, with the dims listed
  // in `dynamic` left unknown (-1) so one graph serves all their sizes.
  GraphSpec& input(const at::Tensor& t, std::initializer_list<int64_t> dynamic = {});
  // The next input with every dim dynamic: one graph per rank (elementwise ops).
  GraphSpec& input_dynamic(const at::Tensor& t);
  GraphSpec& input(graph::DType dtype, const graph::Shape& shape);
  GraphSpec& attr(std::string_view name, const graph::Attr& value);
  // Typed forms without a variant (the hot path); same key as the variant.
  GraphSpec& attr(std::string_view name, int64_t value);
  GraphSpec& attr(std::string_view name, double value);
  GraphSpec& attr(std::string_view name, std::string_view value);
  GraphSpec& attr(std::string_view name, const char* value) { return attr(name, std::string_view(value)); }
  GraphSpec& attr(std::string_view name, const std::string& value) { return attr(name, std::string_view(value)); }
  GraphSpec& attr(std::string_view name, const std::vector<int64_t>& value);

  const graph::TensorType& input(size_t i) const;
  size_t num_inputs() const { return num_inputs_; }
  int64_t int_attr(const std::string& name) const;
  double float_attr(const std::string& name) const;
  const std::string& str_attr(const std::string& name) const;
  const std::vector<int64_t>& ints_attr(const std::string& name) const;
  const graph::Attrs& attrs() const;
  // Readable form of the key ("op|float32[-1,-1]|name=value"): errors,
  // profiler, dumps. Built on demand.
  const std::string& key() const;
  // The cache key: the typed fields, length-prefixed (injective).
  std::string_view key_bytes() const { return {bytes_.data(), bytes_.size()}; }

 private:
  struct Decoded;
  const Decoded& decoded() const;
  void put_tag(char tag, std::string_view name);

  c10::SmallVector<char, 224> bytes_;
  size_t num_inputs_ = 0;
  mutable std::unique_ptr<Decoded> decoded_;  // inputs, attrs and readable key, on demand
};

// A plain function, not a closure: it cannot read live tensors behind the
// spec's back. Captureless lambdas convert (`+[](Graph& g, const GraphSpec& s) {...}`).
using GraphBuilder = void (*)(graph::Graph&, const GraphSpec&);

// Looks up the graph for `spec` in the process-wide cache of compiled graphs
// (per runtime, LRU), builds and compiles it on a miss, and runs it on
// `inputs` (the runtime follows their device). Inputs bound to variables are
// updated in place. MPS_EXT_CHECK_CACHE=1 rebuilds on every hit and fails if
// the graph differs (a builder that reads something its spec does not record).
std::vector<at::Tensor> run_graph(const GraphSpec& spec, GraphBuilder build, c10::ArrayRef<at::Tensor> inputs);
// The same, writing output k into outputs[k] (out= tensors, already of the
// result's sizes and dtype); returns `outputs`.
std::vector<at::Tensor> run_graph_into(const GraphSpec& spec, GraphBuilder build, c10::ArrayRef<at::Tensor> inputs,
                                       const std::vector<at::Tensor>& outputs);

// --- memoized runs: an op's hot path ----------------------------------------------
// A spec's compiled graph, kept by an op's GraphMemo so that a repeat call
// skips building the spec and the cache lookup. Immutable once made.
struct ResolvedGraph {
  ResolvedGraph(Kind kind, GraphSpec spec, std::shared_ptr<const graph::Graph> graph,
                std::shared_ptr<Executable> executable, uint64_t generation)
      : kind(kind), spec(std::move(spec)), graph(std::move(graph)), executable(std::move(executable)),
        generation(generation) {}
  Kind kind;
  GraphSpec spec;  // the spec it came from: spec.key_bytes() is its cache key
  std::shared_ptr<const graph::Graph> graph;
  std::shared_ptr<Executable> executable;
  uint64_t generation;  // cache_generation() when resolved
  // The readable key (profiler, graph capture, errors), decoded on first use:
  // a memo miss that the cache serves should not pay for the string.
  const std::string& key() const {
    std::call_once(key_once_, [this] { key_ = spec.key(); });
    return key_;
  }

 private:
  mutable std::once_flag key_once_;
  mutable std::string key_;
};

// Changes whenever a cached graph may no longer be the one a spec resolves
// to (cache_clear, an eviction, set_use_kernels): memo entries older are stale.
uint64_t cache_generation();
bool check_cache_enabled();  // MPS_EXT_CHECK_CACHE

// An op family's per-thread memo: a few words the op computes from a call,
// holding everything its spec would record in fixed fields (cheaper to build
// and compare than the spec), -> the graph that spec resolved to.
// Set-associative (64 sets of 4, most recent first): a step's few dozen keys
// per family fit without evicting each other, whatever their hashes.
template <size_t Words>
class GraphMemo {
 public:
  using Key = std::array<uint64_t, Words>;
  const ResolvedGraph* find(const Key& key) {
    Set& set = sets_[set_of(key)];
    for (size_t w = 0; w < kWays; ++w) {
      if (!set[w].graph || !same(set[w].key, key)) continue;
      if (set[w].graph->generation != cache_generation()) return nullptr;
      if (w > 0) std::rotate(set.begin(), set.begin() + w, set.begin() + w + 1);  // most recent first
      return set[0].graph.get();
    }
    return nullptr;
  }
  void put(const Key& key, std::shared_ptr<const ResolvedGraph> graph) {
    Set& set = sets_[set_of(key)];
    size_t w = 0;  // the key's own way if stale, else the least recent
    while (w + 1 < kWays && set[w].graph && !same(set[w].key, key)) ++w;
    std::rotate(set.begin(), set.begin() + w, set.begin() + w + 1);
    set[0] = {key, std::move(graph)};
  }

 private:
  static constexpr int kSetBits = 6;
  static constexpr size_t kWays = 4;
  struct Slot {
    Key key{};
    std::shared_ptr<const ResolvedGraph> graph;
  };
  using Set = std::array<Slot, kWays>;
  // Word by word, inlined: keys of one set mostly differ in their first
  // words (the call site, dtypes and ranks), where std::array's == calls memcmp.
  static bool same(const Key& a, const Key& b) {
    for (size_t i = 0; i < Words; ++i)
      if (a[i] != b[i]) return false;
    return true;
  }
  static size_t set_of(const Key& key) {
    uint64_t h = 0;
    for (uint64_t w : key) h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    return static_cast<size_t>(h >> (64 - kSetBits));
  }
  std::array<Set, size_t{1} << kSetBits> sets_;
};

// Writes a memo key word by word: a tag naming the call site (its builder's
// address), then the call's fields. Tensors go in as dtype and rank, then
// their sizes, so keys of different layouts never coincide. nullopt when the
// call does not fit in Words (it then runs unmemoized).
template <size_t Words>
class MemoKeyWriter {
 public:
  explicit MemoKeyWriter(GraphBuilder tag) { word(reinterpret_cast<uintptr_t>(tag)); }
  MemoKeyWriter& word(uint64_t w) {
    if (n_ < Words) key_[n_] = w;
    ++n_;
    return *this;
  }
  MemoKeyWriter& real(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    return word(bits);
  }
  MemoKeyWriter& text(std::string_view v) {  // its length, then 8 bytes a word
    word(v.size());
    for (size_t i = 0; i < v.size(); i += 8) {
      uint64_t w = 0;
      std::memcpy(&w, v.data() + i, std::min<size_t>(8, v.size() - i));
      word(w);
    }
    return *this;
  }
  MemoKeyWriter& tensor(const at::Tensor& t) {  // device, dtype, rank and sizes (as GraphSpec::input)
    word(static_cast<uint64_t>(t.scalar_type()) | static_cast<uint64_t>(t.dim()) << 8 |
         static_cast<uint64_t>(t.device().type()) << 16);
    for (int64_t s : t.sizes()) word(static_cast<uint64_t>(s));
    return *this;
  }
  std::optional<std::array<uint64_t, Words>> key() const {
    if (n_ > Words) return std::nullopt;
    return key_;
  }

 private:
  std::array<uint64_t, Words> key_{};
  size_t n_ = 0;
};

// run_graph (outputs == nullptr) or run_graph_into, resolving `resolved` too.
std::vector<at::Tensor> run_and_resolve(const GraphSpec& spec, GraphBuilder build, c10::ArrayRef<at::Tensor> inputs,
                                        const std::vector<at::Tensor>* outputs,
                                        std::shared_ptr<const ResolvedGraph>* resolved);
// Runs a resolved graph as run_graph/run_graph_into run theirs (a cache hit).
std::vector<at::Tensor> run_resolved(const ResolvedGraph& graph, c10::ArrayRef<at::Tensor> inputs,
                                     const std::vector<at::Tensor>* outputs);
// MPS_EXT_CHECK_CACHE on a memo hit: `spec` (built the slow way) must have the
// key the memo's graph was resolved from, and still build that graph.
void check_memo_hit(const ResolvedGraph& graph, const GraphSpec& spec, GraphBuilder build);

// run_graph/run_graph_into through `memo`: `key` (nullopt: this call is not
// memoized) finds the graph of an earlier call; make_spec() builds the spec
// only on a memo miss (or to check a hit).
template <size_t Words, typename MakeSpec>
std::vector<at::Tensor> run_graph_memoized(GraphMemo<Words>& memo, const std::optional<typename GraphMemo<Words>::Key>& key,
                                           MakeSpec&& make_spec, GraphBuilder build,
                                           c10::ArrayRef<at::Tensor> inputs,
                                           const std::vector<at::Tensor>* outputs = nullptr) {
  if (key) {
    if (const ResolvedGraph* graph = memo.find(*key)) {
      if (check_cache_enabled()) [[unlikely]] check_memo_hit(*graph, make_spec(), build);
      return run_resolved(*graph, inputs, outputs);
    }
  }
  const GraphSpec spec = make_spec();
  std::shared_ptr<const ResolvedGraph> resolved;
  std::vector<at::Tensor> results = run_and_resolve(spec, build, inputs, outputs, key ? &resolved : nullptr);
  if (key) memo.put(*key, std::move(resolved));
  return results;
}

struct CacheInfo {
  int64_t hits = 0, misses = 0, size = 0, maxsize = 0, evictions = 0;
  int64_t memo_hits = 0;  // of the hits, those an op's GraphMemo served
};
CacheInfo cache_info();
void cache_clear();
// MPS_EXT_GRAPH_CACHE_SIZE, default 1024 graphs per process.
int64_t cache_maxsize();

// Kernel nodes run their kernels (default) or, when false, their
// decompositions: tests compare the two (mps_ext.graph.decompositions()).
void set_use_kernels(bool use);
bool use_kernels();

// While capturing (thread-local), run_graph records every graph it runs, so
// that mps_ext.graph.dump() can show what an op executes.
struct CapturedGraph {
  std::string key;
  std::shared_ptr<const graph::Graph> graph;
};
void begin_capture();
std::vector<CapturedGraph> end_capture();

graph::DType to_graph_dtype(at::ScalarType t);
at::ScalarType to_scalar_type(graph::DType t);

}  // namespace mps_ext::runtime
