#include "runtime/reference/executor.h"

#include <ATen/ATen.h>

#include <mutex>
#include <unordered_map>

#include "device/device.h"
#include "runtime/reference/cpu_dispatch.h"
#include "runtime/reference/fusion.h"
#include "runtime/reference/kernels.h"
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

class ReferenceExecutable final : public Executable {
 public:
  ReferenceExecutable(std::shared_ptr<const graph::Graph> g, bool fuse, bool use_kernels)
      : graph_(std::make_shared<graph::Graph>(g->inline_kernels(
            [use_kernels](const std::string& name) { return use_kernels && find_kernel(name) != nullptr; }))),
        plan_(fuse ? plan_fusion(*graph_) : unfused_plan(*graph_)),
        in_place_(in_place_updates(*graph_)),
        kernels_(graph_->nodes().size(), nullptr),
        output_index_(graph_->nodes().size(), -1) {
    for (size_t k = graph_->outputs().size(); k-- > 0;) output_index_[graph_->outputs()[k]] = static_cast<int>(k);
    // Kernel nodes left after inlining have a CPU kernel: look each up once.
    for (size_t id = 0; id < graph_->nodes().size(); ++id)
      if (graph_->nodes()[id].kind == NodeKind::Kernel) kernels_[id] = find_kernel(graph_->nodes()[id].str_attr("kernel"));
    precompute_input_independent_steps();
  }

  std::vector<at::Tensor> run(const std::vector<at::Tensor>& inputs,
                              const OutputAllocator& allocate_output) override {
    // A graph computes in the dtypes its builder chose: the ATen calls that
    // evaluate its nodes must not see the thread's autocast state (an op under
    // torch.autocast("cpu") already had its inputs cast at its own key).
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const auto& nodes = graph_->nodes();
    TORCH_INTERNAL_ASSERT(inputs.size() == graph_->inputs().size(), "graph expects ", graph_->inputs().size(),
                          " inputs, got ", inputs.size());
    std::vector<at::Tensor> env(nodes.size());
    for (size_t i = 0; i < graph_->inputs().size(); ++i) {
      const graph::Node& n = nodes[graph_->inputs()[i]];
      const at::Tensor& t = inputs[i];
      TORCH_INTERNAL_ASSERT(t.scalar_type() == to_scalar_type(n.type.dtype) &&
                                t.dim() == n.type.rank(),
                            "input '", n.name, "' does not match its placeholder");
      env[graph_->inputs()[i]] = t;
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
      int k = st->self->output_index_[node];
      at::Tensor t = k >= 0 && *st->allocate ? (*st->allocate)(static_cast<size_t>(k), sizes, dtype) : at::Tensor();
      if (!t.defined()) return empty_output(sizes, dtype);
      st->given[k] = t.unsafeGetTensorImpl();
      return t;
    };
    for (const Step& s : plan_.steps) {
      if (s.region < 0 && precomputed_[s.node].defined()) continue;
      if (s.region >= 0) {
        const FusedRegion& r = plan_.regions[s.region];
        if (run_region(r, env, new_output)) continue;
        for (int id : r.nodes) eval(id, env, new_output);  // shapes need broadcasting steps
      } else {
        eval(s.node, env, new_output);
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

  void eval(int id, std::vector<at::Tensor>& env, const NodeOutput& new_output) const {
    const graph::Node& n = graph_->node(id);
    std::vector<at::Tensor> args;
    args.reserve(n.inputs.size());
    for (int in : n.inputs) args.push_back(on_host(env[in]));
    switch (n.kind) {
      case NodeKind::Kernel:
        env[id] = kernels_[id](
            n, args, [&](at::IntArrayRef sizes, at::ScalarType dtype) { return on_host(new_output(id, sizes, dtype)); });
        return;
      case NodeKind::SliceUpdate:
        env[id] = slice_update(n, in_place_[id] ? args[0] : args[0].clone(), args);
        return;
      case NodeKind::Assign:
        if (!args[1].is_same(args[0])) args[0].copy_(args[1]);
        env[id] = args[0];
        return;
      default:
        env[id] = eval_node(n, args);
    }
  }

  std::shared_ptr<const graph::Graph> graph_;  // kernels without a CPU kernel inlined
  Plan plan_;
  std::vector<bool> in_place_;
  std::vector<CpuKernel> kernels_;  // node id -> its CPU kernel (kernel nodes only)
  std::vector<int> output_index_;  // node id -> graph output index, or -1
  std::vector<at::Tensor> precomputed_;  // node id -> its value when it depends on no input
  std::vector<int> precomputed_ids_;
};
}  // namespace

at::Tensor on_host(const at::Tensor& t) {
  if (!t.defined() || t.device().type() != c10::DeviceType::PrivateUse1) return t;
  return device::cpu_alias(t);
}

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

CpuKernel find_kernel(const std::string& name) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto it = registry().find(name);
  return it == registry().end() ? nullptr : it->second;
}

std::vector<std::string> kernel_names() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  std::vector<std::string> names;
  for (const auto& [name, fn] : registry()) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

std::unique_ptr<Executable> compile(std::shared_ptr<const graph::Graph> graph, bool fuse, bool use_kernels) {
  return std::make_unique<ReferenceExecutable>(std::move(graph), fuse, use_kernels);
}

}  // namespace mps_ext::runtime::reference
