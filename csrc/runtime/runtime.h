// Runtimes execute graphs. This header is the seam between ops (which build
// graphs from ATen tensors) and the runtimes (reference on the CPU, mpsgraph
// on macOS). Ops call run_graph(); nothing else needs to know which runtime
// ran.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "graph/cache_key.h"
#include "graph/graph.h"

namespace mps_ext::runtime {

// Where a runtime may put a fresh result (sizes, dtype) instead of allocating
// it itself: lets the reference runtime write straight into device memory.
using OutputAllocator = std::function<at::Tensor(at::IntArrayRef sizes, at::ScalarType dtype)>;

// A graph compiled for one runtime. Inputs bind to placeholders/variables in
// creation order; outputs come back in Graph::output() order.
class Executable {
 public:
  virtual ~Executable() = default;
  virtual std::vector<at::Tensor> run(const std::vector<at::Tensor>& inputs,
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

std::unique_ptr<Executable> compile(Kind kind, std::shared_ptr<const graph::Graph> graph);

// Looks up `key` in the process-wide cache of compiled graphs (per runtime),
// builds and compiles on a miss, and runs it on `inputs`.
using GraphBuilder = std::function<void(graph::Graph&)>;
std::vector<at::Tensor> run_graph(const graph::CacheKey& key, const GraphBuilder& build,
                                  const std::vector<at::Tensor>& inputs);

struct CacheInfo {
  int64_t hits = 0, misses = 0, size = 0;
};
CacheInfo cache_info();
void cache_clear();

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
