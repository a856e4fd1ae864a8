#include "runtime/reference/executor.h"

#include <ATen/ATen.h>
#include <ATen/ops/view_native.h>

#include <array>
#include <mutex>
#include <unordered_map>

#include "device/device.h"
#include "runtime/reference/cpu_dispatch.h"
#include "runtime/reference/fusion.h"
#include "runtime/reference/kernels.h"
#include "runtime/reference/node_eval.h"
#include "runtime/reference/output_allocator.h"

namespace mps_ext::runtime::reference {
namespace {
using graph::NodeKind;


std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::unordered_map<std::string, CpuKernel>& registry() {
  static auto* r = new std::unordered_map<std::string, CpuKernel>();
  return *r;
}
std::unordered_map<std::string, MultiCpuKernel>& multi_registry() {
  static auto* r = new std::unordered_map<std::string, MultiCpuKernel>();
  return *r;
}

// Graph::kernels' sibling nodes: for each kernel node of a multi-result
// kernel, its group (same base name, inputs and attrs but "result") and the
// node id of each result in that group.
struct KernelGroups {
  std::vector<int> group;                     // node id -> group, or -1
  std::vector<std::vector<int>> result_node;  // group -> result index -> node id (or -1)
};

std::string base_name(const std::string& node_name) { return node_name.substr(0, node_name.find('#')); }

KernelGroups group_multi_kernels(const graph::Graph& g) {
  KernelGroups groups{std::vector<int>(g.nodes().size(), -1), {}};
  std::vector<int> first;  // group -> one of its nodes, to compare against
  auto same_call = [](const graph::Node& a, const graph::Node& b) {
    if (a.inputs != b.inputs || base_name(a.str_attr("kernel")) != base_name(b.str_attr("kernel")) ||
        a.attrs.size() != b.attrs.size())
      return false;
    for (const auto& [key, value] : a.attrs) {
      if (key == "kernel" || key == "result" || key == "decomposition") continue;
      auto it = b.attrs.find(key);
      if (it == b.attrs.end() || !(it->second == value)) return false;
    }
    return true;
  };
  for (size_t id = 0; id < g.nodes().size(); ++id) {
    const graph::Node& n = g.nodes()[id];
    if (n.kind != NodeKind::Kernel || !find_multi_kernel(n.str_attr("kernel"))) continue;
    size_t k = static_cast<size_t>(n.int_attr("result"));
    int gi = -1;
    for (size_t j = 0; j < first.size() && gi < 0; ++j)
      if (same_call(g.nodes()[first[j]], n) && (groups.result_node[j].size() <= k || groups.result_node[j][k] < 0))
        gi = static_cast<int>(j);
    if (gi < 0) {
      gi = static_cast<int>(first.size());
      first.push_back(static_cast<int>(id));
      groups.result_node.emplace_back();
    }
    auto& slots = groups.result_node[gi];
    if (slots.size() <= k) slots.resize(k + 1, -1);
    slots[k] = static_cast<int>(id);
    groups.group[id] = gi;
  }
  return groups;
}

Plan unfused_plan(const graph::Graph& g) {
  Plan plan;
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    if (!graph::is_input(g.nodes()[i].kind)) plan.steps.push_back({static_cast<int>(i), -1});
  }
  return plan;
}

// SliceUpdate nodes that may write into their data tensor directly: the data
// is a variable (the caller's tensor) and the update's only use is assigning
// it back to that variable, so the write costs O(update), not O(data).
std::vector<bool> in_place_updates(const graph::Graph& g) {
  std::vector<int> uses(g.nodes().size());
  for (const auto& n : g.nodes())
    for (int in : n.inputs) ++uses[in];
  for (int o : g.outputs()) ++uses[o];
  std::vector<bool> in_place(g.nodes().size());
  for (const auto& n : g.nodes()) {
    if (n.kind != NodeKind::Assign) continue;
    const graph::Node& value = g.node(n.inputs[1]);
    if (value.kind == NodeKind::SliceUpdate && value.inputs[0] == n.inputs[0] && uses[n.inputs[1]] == 1 &&
        uses[n.inputs[0]] == 2)  // the variable feeds only this update and this assign
      in_place[n.inputs[1]] = true;
  }
  return in_place;
}

// Two views of the same elements: the same memory, dtype and layout.
bool same_memory(const at::Tensor& a, const at::Tensor& b) {
  return a.const_data_ptr() == b.const_data_ptr() && a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() &&
         a.strides() == b.strides() && a.is_conj() == b.is_conj() && a.is_neg() == b.is_neg();
}

class ReferenceExecutable final : public Executable {
 public:
  ReferenceExecutable(std::shared_ptr<const graph::Graph> g, bool fuse, bool use_kernels)
      : graph_(std::make_shared<graph::Graph>(g->inline_kernels(
            [use_kernels](const std::string& name) { return use_kernels && has_kernel(name); }))),
        plan_(fuse ? plan_fusion(*graph_) : unfused_plan(*graph_)),
        in_place_(in_place_updates(*graph_)),
        kernels_(graph_->nodes().size(), nullptr),
        groups_(group_multi_kernels(*graph_)),
        output_index_(graph_->nodes().size(), -1) {
    for (size_t k = graph_->outputs().size(); k-- > 0;) output_index_[graph_->outputs()[k]] = static_cast<int>(k);
    for (int id : graph_->inputs()) {
      const graph::TensorType& type = graph_->node(id).type;
      input_types_.emplace_back(to_scalar_type(type.dtype), type.rank());
    }
    find_evaluations_into_outputs();
    // Kernel nodes left after inlining have a CPU kernel: look each up once.
    for (size_t id = 0; id < graph_->nodes().size(); ++id)
      if (graph_->nodes()[id].kind == NodeKind::Kernel && groups_.group[id] < 0)
        kernels_[id] = find_kernel(graph_->nodes()[id].str_attr("kernel"));
    precompute_input_independent_steps();
    find_direct_region();
  }

  std::vector<at::Tensor> run(c10::ArrayRef<at::Tensor> inputs,
                              const OutputAllocator& allocate_output) override {
    // A graph computes in the dtypes its builder chose: the ATen calls that
    // evaluate its nodes must not see the thread's autocast state (an op under
    // torch.autocast("cpu") already had its inputs cast at its own key).
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const auto& nodes = graph_->nodes();
    TORCH_INTERNAL_ASSERT(inputs.size() == graph_->inputs().size(), "graph expects ", graph_->inputs().size(),
                          " inputs, got ", inputs.size());
    if (!direct_inputs_.empty()) {
      std::vector<at::Tensor> outs;
      if (run_direct(inputs, allocate_output, outs)) return outs;
    }
    c10::SmallVector<at::Tensor, 16> env(nodes.size());  // no allocation for most graphs
    c10::SmallVector<char, 4> group_done(groups_.result_node.size(), 0);  // multi-result kernels run this run
    // The inputs' slots borrow the caller's tensors (see BorrowedTensors)
    // and give them back, uncounted, however the run ends.
    struct InputSlots {
      c10::SmallVectorImpl<at::Tensor>& env;
      const std::vector<int>& ids;
      ~InputSlots() {
        for (int id : ids) c10::MaybeOwnedTraits<at::Tensor>::destroyBorrow(env[id]);
      }
    } input_slots{env, graph_->inputs()};
    for (size_t i = 0; i < graph_->inputs().size(); ++i) {
      check_input(i, inputs[i]);
      env[graph_->inputs()[i]] = c10::MaybeOwnedTraits<at::Tensor>::createBorrow(inputs[i]);
    }
    for (int id : precomputed_ids_) env[id] = precomputed_[id];
    // Graph outputs go where the caller wants them; other values are fresh.
    // (One pointer captured: the std::function stores it without allocating.)
    struct OutputState {
      const ReferenceExecutable* self;
      const OutputAllocator* allocate;
      c10::SmallVector<const c10::TensorImpl*, 2> given;  // per graph output: the caller's tensor, if it gave one
    } state{this, &allocate_output, c10::SmallVector<const c10::TensorImpl*, 2>(graph_->outputs().size(), nullptr)};
    NodeOutput new_output = [st = &state](int node, at::IntArrayRef sizes, at::ScalarType dtype) {
      at::Tensor t = st->self->caller_memory(*st->allocate, node, sizes, dtype);
      if (!t.defined()) return empty_output(sizes, dtype);
      st->given[st->self->output_index_[node]] = t.unsafeGetTensorImpl();
      return t;
    };
    for (const Step& s : plan_.steps) {
      if (s.region < 0 && (precomputed_[s.node].defined() || written_output(s.node, env))) continue;
      if (s.region >= 0) {
        const FusedRegion& r = plan_.regions[s.region];
        c10::SmallVector<const at::Tensor*, 8> region_inputs;
        for (int v : r.inputs) region_inputs.push_back(&env[v]);
        c10::SmallVector<at::Tensor, 2> results;
        if (run_region(r, region_inputs, new_output, results)) {
          for (size_t k = 0; k < r.outputs.size(); ++k) env[r.outputs[k]] = std::move(results[k]);
          continue;
        }
        for (int id : r.nodes) eval(id, env, new_output, group_done);  // shapes need broadcasting steps
      } else {
        eval(s.node, env, new_output, group_done);
      }
    }
    std::vector<at::Tensor> outs;
    outs.reserve(graph_->outputs().size());
    for (int id : graph_->outputs()) {
      const at::Tensor& t = env[id];
      // Results must not alias inputs or each other (custom-op contract);
      // an Assign's result is its variable, returned as such, and so is the
      // memory the caller gave for the result (an in-place op's self).
      if (t.unsafeGetTensorImpl() == state.given[outs.size()]) {
        outs.push_back(t);
        continue;
      }
      if (precomputed_[id].defined()) {  // shared by every run: the caller gets its own copy
        outs.push_back(t.clone());
        continue;
      }
      bool assign = nodes[id].kind == NodeKind::Assign;
      bool aliased = !assign && (std::any_of(inputs.begin(), inputs.end(), [&](const at::Tensor& in) { return t.is_alias_of(in); }) ||
                                 std::any_of(outs.begin(), outs.end(), [&](const at::Tensor& o) { return t.is_alias_of(o); }));
      if (assign || (!aliased && t.is_contiguous())) outs.push_back(t);
      else outs.push_back(aliased ? on_host(t).clone() : on_host(t).contiguous());
    }
    return outs;
  }

 private:
  void check_input(size_t i, const at::Tensor& t) const {
    if (t.scalar_type() == input_types_[i].first && t.dim() == input_types_[i].second) [[likely]] return;
    TORCH_INTERNAL_ASSERT(false, "input '", graph_->node(graph_->inputs()[i]).name, "' does not match its placeholder");
  }

  // Where the caller wants graph output `node` (its OutputAllocator), or an
  // undefined tensor: a fresh one, or not a graph output.
  at::Tensor caller_memory(const OutputAllocator& allocate, int node, at::IntArrayRef sizes, at::ScalarType dtype) const {
    const int k = output_index_[node];
    return k >= 0 && allocate ? allocate(static_cast<size_t>(k), sizes, dtype) : at::Tensor();
  }

  // A graph that is one fused region from its inputs to its outputs (most
  // elementwise ops): run() hands the region the caller's tensors and returns
  // its results, without the value table and the output checks a graph of
  // several steps needs (a region's results are fresh or the caller's memory).
  void find_direct_region() {
    if (plan_.steps.size() != 1 || plan_.steps[0].region < 0 || !precomputed_ids_.empty()) return;
    const FusedRegion& r = plan_.regions[plan_.steps[0].region];
    if (r.outputs != graph_->outputs()) return;
    std::vector<int> positions;
    for (int v : r.inputs) {
      auto it = std::find(graph_->inputs().begin(), graph_->inputs().end(), v);
      if (it == graph_->inputs().end() || graph_->node(v).kind != NodeKind::Placeholder) return;
      positions.push_back(static_cast<int>(it - graph_->inputs().begin()));
    }
    direct_inputs_ = std::move(positions);
  }

  bool run_direct(c10::ArrayRef<at::Tensor> inputs, const OutputAllocator& allocate_output,
                  std::vector<at::Tensor>& outs) const {
    const FusedRegion& r = plan_.regions[plan_.steps[0].region];
    c10::SmallVector<const at::Tensor*, 8> region_inputs;
    for (int pos : direct_inputs_) {
      check_input(pos, inputs[pos]);
      region_inputs.push_back(&inputs[pos]);
    }
    NodeOutput new_output = [st = this, allocate = &allocate_output](int node, at::IntArrayRef sizes,
                                                                     at::ScalarType dtype) {
      at::Tensor t = st->caller_memory(*allocate, node, sizes, dtype);
      return t.defined() ? t : empty_output(sizes, dtype);
    };
    c10::SmallVector<at::Tensor, 2> results;
    if (!run_region(r, region_inputs, new_output, results)) return false;
    outs.assign(std::make_move_iterator(results.begin()), std::make_move_iterator(results.end()));
    return true;
  }

  // Single-node steps that depend on no input (Iota/Constant chains: window
  // indices, one-hot positions, masks) have the same value on every run:
  // evaluated once here, not by ATen on every call.
  void precompute_input_independent_steps() {
    const auto& nodes = graph_->nodes();
    precomputed_.resize(nodes.size());
    std::vector<bool> fixed(nodes.size(), false);
    auto pure = [](NodeKind k) {
      return !graph::is_input(k) && k != NodeKind::Kernel && k != NodeKind::Assign && k != NodeKind::SliceUpdate &&
             k != NodeKind::RandomUniform;
    };
    for (size_t id = 0; id < nodes.size(); ++id) {
      const graph::Node& n = nodes[id];
      bool roots = n.inputs.empty() ? (n.kind == NodeKind::Constant || n.kind == NodeKind::Iota) : true;
      fixed[id] = pure(n.kind) && roots &&
                  std::all_of(n.inputs.begin(), n.inputs.end(), [&](int in) { return fixed[in]; });
    }
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    std::vector<at::Tensor> env(nodes.size());
    for (const Step& s : plan_.steps) {
      if (s.region >= 0 || !fixed[s.node]) continue;
      const graph::Node& n = nodes[s.node];
      if (!std::all_of(n.inputs.begin(), n.inputs.end(), [&](int in) { return precomputed_[in].defined(); }))
        continue;  // an input computed inside a fused region: leave the chain to the run
      std::vector<at::Tensor> args;
      for (int in : n.inputs) args.push_back(precomputed_[in]);
      precomputed_[s.node] = eval_node(n, args);
      precomputed_ids_.push_back(s.node);
    }
  }

  // Nodes whose kind evaluates into given memory and whose value is a graph
  // output, directly or through reshapes that each are its only use (a
  // reduction's kept dims dropped): into_[node] is that evaluation and
  // into_output_[node] the output node whose memory it writes.
  void find_evaluations_into_outputs() {
    const auto& nodes = graph_->nodes();
    std::vector<int> uses(nodes.size());
    for (const auto& n : nodes)
      for (int in : n.inputs) ++uses[in];
    into_.assign(nodes.size(), nullptr);
    into_output_.assign(nodes.size(), -1);
    reshaped_output_.assign(nodes.size(), -1);
    auto is_static = [](const graph::Node& n) {
      return std::all_of(n.type.shape.begin(), n.type.shape.end(), [](int64_t d) { return d >= 0; });
    };
    for (int out : graph_->outputs()) {
      int id = out;
      while (nodes[id].kind == NodeKind::Reshape && is_static(nodes[out]) && uses[nodes[id].inputs[0]] == 1 &&
             output_index_[nodes[id].inputs[0]] < 0)
        id = nodes[id].inputs[0];
      // A single-result kernel takes its memory from new_output anyway.
      bool kernel = nodes[id].kind == NodeKind::Kernel && groups_.group[id] < 0;
      NodeEvalInto into = find_node_eval_into(nodes[id].kind);
      if ((!into && !kernel) || graph::is_input(nodes[id].kind) || into_output_[id] >= 0) continue;
      into_[id] = into;
      into_output_[id] = out;
      for (int n = out; n != id; n = nodes[n].inputs[0]) reshaped_output_[n] = out;
    }
  }

  // A reshape between an evaluation into an output's memory and that output,
  // or the output itself, once eval has put the output's tensor in env (the
  // evaluation wrote all of it): nothing left to compute.
  bool written_output(int node, const c10::SmallVectorImpl<at::Tensor>& env) const {
    const int out = reshaped_output_[node];
    return out >= 0 && env[out].defined();
  }

  void eval(int id, c10::SmallVectorImpl<at::Tensor>& env, const NodeOutput& new_output,
            c10::SmallVectorImpl<char>& group_done) const {
    const graph::Node& n = graph_->node(id);
    std::vector<at::Tensor> args;
    args.reserve(n.inputs.size());
    for (int in : n.inputs) args.push_back(on_host(env[in]));
    // The memory for the node's result: the graph output's it feeds (through
    // reshapes: viewed with the node's sizes), else a fresh tensor. (One
    // pointer captured: the std::function keeps it without allocating.)
    struct MemoryState {
      const ReferenceExecutable* self;
      int id;
      const NodeOutput* new_output;
      at::Tensor device;  // the graph output's device tensor handed out as the node's memory
    } state{this, id, &new_output, {}};
    NewOutput memory = [st = &state](at::IntArrayRef sizes, at::ScalarType dtype) {
      const int out = st->self->into_output_[st->id];
      if (out < 0) return on_host((*st->new_output)(st->id, sizes, dtype));
      at::Tensor output = (*st->new_output)(out, out == st->id ? sizes : st->self->graph_->node(out).type.shape, dtype);
      if (output.device().type() == c10::DeviceType::PrivateUse1) st->device = output;
      if (out == st->id) return on_host(output);
      // A fresh tensor, or the CPU view on_host makes of device memory for
      // this call alone, takes the node's sizes itself: no second view.
      const bool held_once = output.use_count() == 1 || output.device().type() == c10::DeviceType::PrivateUse1;
      at::Tensor host = on_host(output);
      if (held_once && host.is_contiguous() && c10::multiply_integers(sizes) == host.numel()) {
        host.unsafeGetTensorImpl()->set_sizes_contiguous(sizes);
        return host;
      }
      return at::native::view(host, sizes);
    };
    switch (n.kind) {
      case NodeKind::Kernel:
        if (groups_.group[id] >= 0) return run_multi_kernel(id, args, env, new_output, group_done);
        env[id] = kernels_[id](n, args, memory);
        keep_output_tensor(id, env, state.device);
        return;
      case NodeKind::SliceUpdate:
        env[id] = slice_update(n, in_place_[id] ? args[0] : args[0].clone(), args);
        return;
      case NodeKind::Assign:  // (a kernel that updated the variable in place returns its memory: nothing to copy)
        if (!args[1].is_same(args[0]) && !same_memory(args[0], args[1])) args[0].copy_(args[1]);
        env[id] = args[0];
        return;
      default:
        if (into_[id]) {  // a graph output ATen can write in place
          env[id] = into_[id](n, args, memory);
          keep_output_tensor(id, env, state.device);
          return;
        }
        env[id] = eval_node(n, args);
    }
  }

  // A node evaluated into the whole of a graph output's device memory: that
  // output's value is the device tensor itself (its reshapes and the output
  // bookkeeping have nothing left to do), not the CPU view the node returned.
  void keep_output_tensor(int id, c10::SmallVectorImpl<at::Tensor>& env, at::Tensor& device) const {
    const at::Tensor& r = env[id];
    if (!device.defined() || !r.is_cpu() || r.const_data_ptr() != device.const_data_ptr() ||
        r.scalar_type() != device.scalar_type() || !r.is_contiguous() || !device.is_contiguous())
      return;
    const int out = into_output_[id];
    if (out == id ? r.sizes() == device.sizes() : r.numel() == device.numel()) env[out] = std::move(device);
  }

  // A multi-result kernel runs once per run: at the first node of its group
  // reached, which fills every result node of the group in env.
  void run_multi_kernel(int id, const std::vector<at::Tensor>& args, c10::SmallVectorImpl<at::Tensor>& env,
                        const NodeOutput& new_output, c10::SmallVectorImpl<char>& group_done) const {
    const int gi = groups_.group[id];
    if (group_done[gi]) return;
    const graph::Node& n = graph_->node(id);
    const auto& slots = groups_.result_node[gi];
    auto results = find_multi_kernel(n.str_attr("kernel"))(
        n, args, [&](size_t k, at::IntArrayRef sizes, at::ScalarType dtype) {
          int node = k < slots.size() ? slots[k] : -1;
          return node >= 0 ? on_host(new_output(node, sizes, dtype)) : empty_output(sizes, dtype);
        });
    for (size_t k = 0; k < slots.size(); ++k)
      if (slots[k] >= 0) env[slots[k]] = results.at(k);
    group_done[gi] = 1;
  }

  std::shared_ptr<const graph::Graph> graph_;  // kernels without a CPU kernel inlined
  Plan plan_;
  std::vector<bool> in_place_;
  std::vector<CpuKernel> kernels_;  // node id -> its CPU kernel (single-result kernel nodes only)
  KernelGroups groups_;
  std::vector<int> output_index_;  // node id -> graph output index, or -1
  std::vector<NodeEvalInto> into_;  // node id -> its evaluation into an output's memory, if it has one
  std::vector<int> into_output_;    // node id -> the output node whose memory that is
  std::vector<int> reshaped_output_;  // the reshapes from such a node to its output, and the output: that output
  std::vector<at::Tensor> precomputed_;  // node id -> its value when it depends on no input
  std::vector<int> precomputed_ids_;
  std::vector<int> direct_inputs_;  // a one-region graph: region input i is graph input direct_inputs_[i]
  std::vector<std::pair<at::ScalarType, int64_t>> input_types_;  // per graph input: its placeholder's dtype and rank
};
}  // namespace

namespace {
// The CPU views on_host makes, recycled per thread: a free slot's TensorImpl
// and StorageImpl are re-pointed at the next device tensor instead of
// allocating and freeing a storage, a tensor and a version counter per operand
// of every ATen call (mm: three). A slot is free when only the pool holds it;
// release_cpu_views() lets go of free slots' device memory.
class CpuViews {
 public:
  at::Tensor view(const at::Tensor& t) {
    for (size_t i = 0; i < slots_.size(); ++i) {
      at::Tensor& slot = slots_[i];
      if (slot.defined() && !free(slot)) continue;
      if (slot.defined()) repoint(slot, t);
      else slot = device::cpu_alias(t);
      held_ = std::max(held_, i + 1);
      return slot;
    }
    return device::cpu_alias(t);  // every slot in use: an unpooled view
  }
  void release() {
    size_t still_held = 0;  // most runs (fused regions) made no view: nothing to scan
    for (size_t i = 0; i < held_; ++i) {
      at::Tensor& slot = slots_[i];
      if (!slot.storage().data()) continue;
      if (!free(slot)) {  // still held (a result's view): look again at the next release
        still_held = i + 1;
        continue;
      }
      c10::StorageImpl* s = slot.storage().unsafeGetStorageImpl();
      s->set_data_ptr_noswap(c10::DataPtr(nullptr, c10::Device(c10::kCPU)));
      s->set_nbytes(0);
    }
    held_ = still_held;
  }

 private:
  static bool free(const at::Tensor& slot) { return slot.use_count() == 1 && slot.storage().use_count() == 1; }
  static void repoint(at::Tensor& slot, const at::Tensor& t) {
    const c10::Storage& memory = t.storage();
    c10::StorageImpl* keep = memory.unsafeGetStorageImpl();  // kept alive by the view, as cpu_alias does
    c10::raw::intrusive_ptr::incref(keep);
    c10::StorageImpl* s = slot.storage().unsafeGetStorageImpl();
    s->set_data_ptr_noswap(c10::DataPtr(const_cast<void*>(memory.data()), keep,
                                        [](void* ctx) { c10::raw::intrusive_ptr::decref(static_cast<c10::StorageImpl*>(ctx)); },
                                        c10::Device(c10::kCPU)));
    s->set_nbytes(memory.nbytes());
    c10::TensorImpl* impl = slot.unsafeGetTensorImpl();
    if (impl->dtype() != t.dtype()) impl->set_storage_and_dtype(slot.storage(), t.dtype());
    // A step's ops often repeat a slot's last shape: then only the offset may differ.
    if (impl->sizes() != t.sizes() || impl->strides() != t.strides())
      impl->set_sizes_and_strides(t.sizes(), t.strides(), t.storage_offset());
    else if (impl->storage_offset() != t.storage_offset())
      impl->set_storage_offset(t.storage_offset());
    impl->_set_conj(t.is_conj());
    impl->_set_neg(t.is_neg());
  }
  std::array<at::Tensor, 8> slots_;
  size_t held_ = 0;  // slots [0, held_) may point at device memory
};
thread_local CpuViews cpu_views;
}  // namespace

at::Tensor on_host(const at::Tensor& t) {
  if (!t.defined() || t.device().type() != c10::DeviceType::PrivateUse1) return t;
  return cpu_views.view(t);
}

void release_cpu_views() { cpu_views.release(); }

CpuCapability cpu_capability() {
  // ATen's own choice (honours ATEN_CPU_CAPABILITY), so we vectorize like it.
  static const CpuCapability cap = [] {
    const std::string name = at::get_cpu_capability();
    if (name == "AVX512") return CpuCapability::AVX512;
    if (name == "AVX2") return CpuCapability::AVX2;
    return CpuCapability::Default;
  }();
  return cap;
}

bool register_kernel(const std::string& name, CpuKernel kernel) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  return registry().emplace(name, kernel).second;
}

bool register_multi_kernel(const std::string& name, MultiCpuKernel kernel) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  return multi_registry().emplace(name, kernel).second;
}

MultiCpuKernel find_multi_kernel(const std::string& node_name) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto it = multi_registry().find(base_name(node_name));
  return it == multi_registry().end() ? nullptr : it->second;
}

bool has_kernel(const std::string& node_name) {
  return find_kernel(node_name) != nullptr || find_multi_kernel(node_name) != nullptr;
}

CpuKernel find_kernel(const std::string& name) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto it = registry().find(name);
  return it == registry().end() ? nullptr : it->second;
}

std::vector<std::string> kernel_names() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  std::vector<std::string> names;
  for (const auto& [name, fn] : registry()) names.push_back(name);
  for (const auto& [name, fn] : multi_registry()) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

std::unique_ptr<Executable> compile(std::shared_ptr<const graph::Graph> graph, bool fuse, bool use_kernels) {
  return std::make_unique<ReferenceExecutable>(std::move(graph), fuse, use_kernels);
}

}  // namespace mps_ext::runtime::reference
