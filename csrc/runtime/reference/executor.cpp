#include "runtime/reference/executor.h"

#include <ATen/ATen.h>

#include "runtime/reference/fusion.h"

namespace mps_ext::runtime::reference {
namespace {
using graph::NodeKind;

Plan unfused_plan(const graph::Graph& g) {
  Plan plan;
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    if (!graph::is_input(g.nodes()[i].kind)) plan.steps.push_back({static_cast<int>(i), -1});
  }
  return plan;
}

class ReferenceExecutable final : public Executable {
 public:
  ReferenceExecutable(std::shared_ptr<const graph::Graph> g, bool fuse)
      : graph_(std::move(g)), plan_(fuse ? plan_fusion(*graph_) : unfused_plan(*graph_)) {}

  std::vector<at::Tensor> run(const std::vector<at::Tensor>& inputs,
                              const OutputAllocator& allocate_output) override {
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
    for (const Step& s : plan_.steps) {
      if (s.region >= 0) {
        const FusedRegion& r = plan_.regions[s.region];
        if (run_region(r, env, allocate_output)) continue;
        for (int id : r.nodes) eval(id, env);  // shapes need broadcasting steps
      } else {
        eval(s.node, env);
      }
    }
    std::vector<at::Tensor> outs;
    for (int id : graph_->outputs()) {
      at::Tensor t = env[id];
      // Results must not alias inputs or each other (custom-op contract).
      bool aliased = std::any_of(inputs.begin(), inputs.end(), [&](const at::Tensor& in) { return t.is_alias_of(in); }) ||
                     std::any_of(outs.begin(), outs.end(), [&](const at::Tensor& o) { return t.is_alias_of(o); });
      outs.push_back(aliased ? t.clone() : t.contiguous());
    }
    return outs;
  }

 private:
  void eval(int id, std::vector<at::Tensor>& env) const {
    const graph::Node& n = graph_->node(id);
    std::vector<at::Tensor> args;
    args.reserve(n.inputs.size());
    for (int in : n.inputs) args.push_back(env[in]);
    env[id] = eval_node(n, args);
  }

  std::shared_ptr<const graph::Graph> graph_;
  Plan plan_;
};
}  // namespace

std::unique_ptr<Executable> compile(std::shared_ptr<const graph::Graph> graph, bool fuse) {
  return std::make_unique<ReferenceExecutable>(std::move(graph), fuse);
}

}  // namespace mps_ext::runtime::reference
