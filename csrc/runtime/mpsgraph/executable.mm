// MPSGraphExecutable cache and the glue to PyTorch's MPS stream.
//
// run(): inputs are made contiguous with storage offset 0 (MPSGraphTensorData
// has no byte offset), wrapped zero-copy, outputs allocated with at::empty on
// the same device, and the executable is encoded onto the current MPS stream's
// command buffer inside its serial queue, committing adaptively like
// PyTorch's own runMPSGraph (no synchronize per op).
#import "runtime/mpsgraph/executable.h"

#import <ATen/mps/MPSDevice.h>
#import <ATen/mps/MPSStream.h>
#import "runtime/mpsgraph/lowering.h"
#import "runtime/mpsgraph/metal_kernels.h"
#include "runtime/shape_buckets.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <list>
#include <map>
#include <memory>
#include <mutex>

namespace mps_ext::runtime::mpsgraph {
namespace {
using graph::NodeKind;
using graph::Shape;

std::atomic<BufferResolver> g_resolver{nullptr};
}  // namespace

id<MTLBuffer> mtl_buffer_of(const at::Tensor& t, size_t* offset) {
  void* data = const_cast<void*>(t.storage().data());
  *offset = t.storage_offset() * t.element_size();
  if (t.device().type() == c10::DeviceType::MPS) return (__bridge id<MTLBuffer>)data;  // as getMTLBufferStorage()
  BufferResolver resolve = g_resolver.load();
  TORCH_CHECK(resolve != nullptr, "mps_ext: no MTLBuffer resolver registered for ", t.device());
  size_t base = 0;
  id<MTLBuffer> buf = (__bridge id<MTLBuffer>)resolve(data, &base);
  *offset += base;
  return buf;
}

namespace {
// One input-shape set (ShapeBuckets::key: concrete sizes, or -1 for a dim in
// the dynamic bucket): the IR graph re-inferred for those shapes, lowered (so
// every lowering choice that needs a size sees it: native SDPA's head dim,
// blockwise dequantize, broadcasts, LUT) and compiled.
struct Compiled {
  Lowered lowered;
  MPSGraphExecutable* exe = nil;
  std::vector<Shape> target_shapes;  // per target; -1 where a bucketed dim reaches it
  bool dynamic = false;              // some dim is in the dynamic bucket
  NSMutableDictionary<MPSGraphTensor*, NSNumber*>* feed_index = nil;    // placeholder -> input index
  NSMutableDictionary<MPSGraphTensor*, NSNumber*>* target_index = nil;  // target -> index in target_ids_
};

class GraphExecutable final : public Executable {
 public:
  explicit GraphExecutable(std::shared_ptr<const graph::Graph> ir) : ir_(std::move(ir)) {
    // Targets: each distinct output, then each Assign's value, which run()
    // writes back into its variable.
    auto add_target = [&](int id) {
      if (std::find(target_ids_.begin(), target_ids_.end(), id) == target_ids_.end()) target_ids_.push_back(id);
    };
    for (int id : ir_->outputs()) add_target(id);
    for (size_t id = 0; id < ir_->nodes().size(); ++id)
      if (ir_->nodes()[id].kind == NodeKind::Assign) add_target(static_cast<int>(id));
    for (int id : target_ids_) {
      // constantWithScalar:dataType: (a dynamic-shape constant) is rank 0 and
      // only broadcasts inside the graph: it must not be a result.
      const graph::Node& n = ir_->node(id);
      const graph::Node& value = n.kind == NodeKind::Assign ? ir_->node(n.inputs[1]) : n;
      bool dynamic = std::any_of(value.type.shape.begin(), value.type.shape.end(), [](int64_t d) { return d < 0; });
      TORCH_CHECK(!(value.kind == NodeKind::Constant && dynamic),
                  "mps_ext: a dynamic-shape constant cannot be a graph result on MPSGraph; broadcast it first");
    }
    std::vector<Shape> declared;
    for (int id : ir_->inputs()) {
      input_types_.push_back(ir_->node(id).type);
      declared.push_back(ir_->node(id).type.shape);
    }
    buckets_ = std::make_unique<ShapeBuckets>(std::move(declared));
  }

  // Results are always fresh tensors on the inputs' device.
  std::vector<at::Tensor> run(c10::ArrayRef<at::Tensor> inputs, const OutputAllocator&) override;

 private:
  const Compiled& compiled_for(const std::vector<Shape>& input_shapes);

  std::shared_ptr<const graph::Graph> ir_;
  std::vector<graph::TensorType> input_types_;  // by input index
  std::vector<int> target_ids_;  // IR node id of each target tensor
  std::mutex mu_;
  std::unique_ptr<ShapeBuckets> buckets_;  // which shapes to compile for (under mu_)
  // One executable per concrete input-shape set, LRU-bounded by
  // MPS_EXT_GRAPH_CACHE_SIZE like the graph cache (a decode loop whose
  // length grows must not grow memory without bound).
  std::list<std::vector<Shape>> lru_;  // front: most recent
  std::map<std::vector<Shape>, std::pair<Compiled, std::list<std::vector<Shape>>::iterator>> cache_;
};

const Compiled& GraphExecutable::compiled_for(const std::vector<Shape>& input_shapes) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Shape> shapes;
  try {
    shapes = buckets_->key(input_shapes);
  } catch (const graph::GraphError& e) {
    TORCH_CHECK(false, "mps_ext: ", e.what());
  }
  auto it = cache_.find(shapes);
  if (it != cache_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.second);
    return it->second.first;
  }
  Compiled c;
  graph::Graph concrete;
  try {
    concrete = ir_->with_input_shapes(shapes);  // every node's type, concrete but for bucketed dims
  } catch (const graph::GraphError& e) {
    TORCH_CHECK(false, "mps_ext: ", e.what());
  }
  for (int id : target_ids_) c.target_shapes.push_back(concrete.node(id).type.shape);
  for (const Shape& s : shapes) c.dynamic = c.dynamic || std::count(s.begin(), s.end(), graph::kDynamic) > 0;
  @autoreleasepool {
    c.lowered = lower(concrete);
    NSMutableArray<MPSGraphTensor*>* targets = [NSMutableArray arrayWithCapacity:target_ids_.size()];
    for (int id : target_ids_) [targets addObject:c.lowered.values.at(id)];
    c.feed_index = [NSMutableDictionary dictionaryWithCapacity:shapes.size()];
    c.target_index = [NSMutableDictionary dictionaryWithCapacity:target_ids_.size()];
    for (size_t k = 0; k < target_ids_.size(); ++k) c.target_index[targets[k]] = @(k);
    NSMutableDictionary<MPSGraphTensor*, MPSGraphShapedType*>* feeds =
        [NSMutableDictionary dictionaryWithCapacity:shapes.size()];
    for (size_t i = 0; i < shapes.size(); ++i) {
      c.feed_index[c.lowered.inputs[i]] = @(i);
      feeds[c.lowered.inputs[i]] = [[MPSGraphShapedType alloc] initWithShape:mps_shape(shapes[i])
                                                                    dataType:to_mps_dtype(input_types_[i].dtype)];
    }
    MPSGraphDevice* device = [MPSGraphDevice deviceWithMTLDevice:at::mps::MPSDevice::getInstance()->device()];
    c.exe = [c.lowered.graph compileWithDevice:device feeds:feeds targetTensors:targets targetOperations:nil
                         compilationDescriptor:nil];  // macOS 12.0
  }
  TORCH_CHECK(c.exe != nil, "mps_ext: MPSGraph failed to compile the graph");
  while (!lru_.empty() && static_cast<int64_t>(cache_.size()) >= cache_maxsize()) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(shapes);
  return cache_.emplace(shapes, std::make_pair(std::move(c), lru_.begin())).first->second.first;
}

std::vector<at::Tensor> GraphExecutable::run(c10::ArrayRef<at::Tensor> inputs, const OutputAllocator&) {
  TORCH_CHECK(inputs.size() == input_types_.size(), "mps_ext: graph expects ", input_types_.size(),
              " inputs, got ", inputs.size());
  c10::optional<c10::Device> device;
  for (const at::Tensor& t : inputs)
    if (!t.is_cpu()) device = t.device();
  TORCH_CHECK(device.has_value(), "mps_ext: the mpsgraph runtime needs mps or mpsgraph tensors");

  // Contiguous, offset-0 copies where needed; 0-dim CPU scalars move over.
  std::vector<at::Tensor> bound(inputs.size());
  std::vector<Shape> shapes(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    at::Tensor t = inputs[i].device() == *device ? inputs[i] : inputs[i].to(*device);
    TORCH_CHECK(t.scalar_type() == to_scalar_type(input_types_[i].dtype), "mps_ext: input ", i, " has dtype ",
                t.scalar_type(), ", the graph expects ", graph::dtype_name(input_types_[i].dtype));
    if (!t.is_contiguous() || t.storage_offset() != 0) t = t.clone(at::MemoryFormat::Contiguous);
    TORCH_CHECK(t.numel() > 0, "mps_ext: MPSGraph cannot bind empty tensors (input ", i, ")");
    bound[i] = t;
    shapes[i] = t.sizes().vec();
  }
  const Compiled& c = compiled_for(shapes);

  // A dynamic-bucket executable leaves result sizes open: the IR's shape
  // inference gives them for these inputs (no lowering, no compile).
  std::vector<Shape> target_shapes = c.target_shapes;
  if (c.dynamic) {
    try {
      graph::Graph sized = ir_->with_input_shapes(shapes);
      for (size_t k = 0; k < target_shapes.size(); ++k) target_shapes[k] = sized.node(target_ids_[k]).type.shape;
    } catch (const graph::GraphError& e) {
      TORCH_CHECK(false, "mps_ext: ", e.what());
    }
  }
  std::vector<at::Tensor> results(target_ids_.size());
  for (size_t k = 0; k < results.size(); ++k) {
    const graph::Node& n = ir_->node(target_ids_[k]);
    results[k] = at::empty(target_shapes[k], at::TensorOptions().dtype(to_scalar_type(n.type.dtype)).device(*device));
    TORCH_CHECK(results[k].numel() > 0, "mps_ext: MPSGraph cannot produce empty outputs");
  }

  at::mps::MPSStream* stream = at::mps::getCurrentMPSStream();
  MPSGraphExecutable* exe = c.exe;
  @autoreleasepool {
    NSArray<MPSGraphTensor*>* feeds = exe.feedTensors;  // inputsArray must follow this order
    NSMutableArray<MPSGraphTensorData*>* in_data = [NSMutableArray arrayWithCapacity:feeds.count];
    for (NSUInteger f = 0; f < feeds.count; ++f) {
      const at::Tensor& t = bound.at([c.feed_index[feeds[f]] longLongValue]);
      size_t offset = 0;
      id<MTLBuffer> buf = mtl_buffer_of(t, &offset);
      TORCH_CHECK(offset == 0, "mps_ext: MPSGraphTensorData needs buffers at offset 0");
      [in_data addObject:[[MPSGraphTensorData alloc] initWithMTLBuffer:buf shape:mps_shape(t.sizes())
                                                              dataType:to_mps_dtype(to_graph_dtype(t.scalar_type()))]];
    }
    // resultsArray must follow exe.targetTensors' order, as inputs follow feedTensors.
    NSArray<MPSGraphTensor*>* targets = exe.targetTensors;  // macOS 12.0
    NSMutableArray<MPSGraphTensorData*>* out_data = [NSMutableArray arrayWithCapacity:results.size()];
    for (NSUInteger t = 0; t < targets.count; ++t) {
      size_t k = static_cast<size_t>([c.target_index[targets[t]] longLongValue]);
      size_t offset = 0;
      id<MTLBuffer> buf = mtl_buffer_of(results[k], &offset);
      [out_data addObject:[[MPSGraphTensorData alloc] initWithMTLBuffer:buf shape:mps_shape(results[k].sizes())
                                                               dataType:to_mps_dtype(ir_->node(target_ids_[k]).type.dtype)]];
    }
    at::mps::dispatch_sync_with_rethrow(stream->queue(), ^() {
      @autoreleasepool {
        stream->endKernelCoalescing();
        [exe encodeToCommandBuffer:stream->commandBuffer() inputsArray:in_data resultsArray:out_data
               executionDescriptor:nil];  // macOS 12.0
        stream->synchronize(at::mps::SyncType::COMMIT_ADAPTIVE);
      }
    });
  }

  // Assign: the variable (the caller's tensor) takes the new value, in stream order.
  for (size_t k = 0; k < target_ids_.size(); ++k) {
    const graph::Node& n = ir_->node(target_ids_[k]);
    if (n.kind == NodeKind::Assign) inputs.at(ir_->node(n.inputs[0]).int_attr("index")).copy_(results[k]);
  }
  std::vector<at::Tensor> outputs;
  for (int id : ir_->outputs()) {
    size_t k = std::find(target_ids_.begin(), target_ids_.end(), id) - target_ids_.begin();
    bool again = std::find_if(outputs.begin(), outputs.end(), [&](const at::Tensor& o) { return o.is_same(results[k]); }) != outputs.end();
    outputs.push_back(again ? results[k].clone() : results[k]);  // repeated outputs must not alias
  }
  return outputs;
}

}  // namespace

namespace {
// A graph that is exactly one kernel node over the graph's inputs, in order.
const graph::Node* lone_kernel(const graph::Graph& g) {
  if (g.outputs().size() != 1) return nullptr;
  const graph::Node& n = g.node(g.outputs()[0]);
  if (n.kind != NodeKind::Kernel || n.inputs != g.inputs()) return nullptr;
  if (g.nodes().size() != g.inputs().size() + 1) return nullptr;
  return &n;
}

class MetalKernelExecutable final : public Executable {
 public:
  MetalKernelExecutable(std::shared_ptr<const graph::Graph> g, const graph::Node& node, MetalKernel kernel)
      : graph_(std::move(g)), node_(node), kernel_(kernel) {}
  std::vector<at::Tensor> run(c10::ArrayRef<at::Tensor> inputs, const OutputAllocator&) override {
    return {kernel_(node_, inputs.vec())};
  }

 private:
  std::shared_ptr<const graph::Graph> graph_;  // owns node_
  const graph::Node& node_;
  MetalKernel kernel_;
};
}  // namespace

std::unique_ptr<Executable> compile(std::shared_ptr<const graph::Graph> graph, bool use_kernels) {
  if (use_kernels)
    if (const graph::Node* n = lone_kernel(*graph))
      if (MetalKernel kernel = find_metal_kernel(n->str_attr("kernel")))
        return std::make_unique<MetalKernelExecutable>(graph, *n, kernel);
  return std::make_unique<GraphExecutable>(std::move(graph));
}

void set_private_use1_buffer_resolver(BufferResolver resolver) { g_resolver.store(resolver); }

}  // namespace mps_ext::runtime::mpsgraph
