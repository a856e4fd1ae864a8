// torch.amp.GradScaler("mpsgraph"): the two kernels it needs on the device,
// as graphs (the GPU runs them on a Mac; the reference runtime here), with
// the semantics of PyTorch's CPU/CUDA kernels:
//
//   _amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale)
//     every grad *= inv_scale (in float32 for half/bfloat16 grads); found_inf
//     becomes 1.0 if any element of any grad is inf or NaN, else is unchanged.
//   _amp_update_scale_(scale, growth_tracker, found_inf, growth, backoff, interval)
//     found_inf != 0: scale *= backoff, tracker = 0; else tracker + 1 reaching
//     interval grows the scale (unless that overflows to inf) and resets it.
//
// The scalars feed 0-d placeholders (one graph for all values); grads are
// graph variables updated in place, so one graph per list shape (dtype and
// rank of each grad) serves every step.
//
// On the reference runtime the device's memory is host memory, and PyTorch's
// own CPU kernels over CPU aliases of it do the work in one vectorized pass
// (the graph takes several elementwise passes): they play the part of a kernel
// node's hand-written kernel, the graphs that of its decomposition, which the
// mpsgraph runtime runs and which mps_ext.graph.decompositions() selects here
// (the tests compare the two).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cfloat>
#include <limits>

#include "device/device.h"
#include "ops/op_utils.h"

namespace mps_ext::autocast {
namespace {
using graph::DType;
using graph::Graph;
using graph::NodeKind;
using runtime::GraphSpec;

constexpr size_t kGradsPerGraph = 64;  // bounds a graph's size for models with many parameters

bool on_device(const at::Tensor& t) { return t.device().type() == c10::DeviceType::PrivateUse1; }

bool use_cpu_kernels() {
  return runtime::device_runtime() == runtime::Kind::Reference && runtime::use_kernels();
}

graph::Tensor max_finite(Graph& g, DType dtype) {
  return g.constant(dtype == DType::Float64 ? DBL_MAX : FLT_MAX, dtype);
}

// x is inf or NaN (bool, x's shape).
graph::Tensor non_finite(Graph& g, graph::Tensor x) {
  return g.binary(NodeKind::LogicalOr, g.unary(NodeKind::IsNaN, x), g.gt(g.abs(x), max_finite(g, g.type(x).dtype)));
}

// inputs: grads... (variables), found_inf (variable), inv_scale (placeholder)
void build_unscale(Graph& g, const GraphSpec& s) {
  const size_t n = s.num_inputs() - 2;
  std::vector<graph::Tensor> grads;
  for (size_t i = 0; i < n; ++i) grads.push_back(g.variable(s.input(i), "grad"));
  auto found = g.variable(s.input(n), "found_inf");
  auto inv_scale = g.reshape(g.placeholder(s.input(n + 1), "inv_scale"), {});
  graph::Tensor any_bad;  // float32 [1]: 1 if some grad has a non-finite element
  for (graph::Tensor grad : grads) {
    DType dtype = g.type(grad).dtype;
    DType math = dtype == DType::Float64 ? DType::Float64 : DType::Float32;
    graph::Tensor x = dtype == math ? grad : g.cast(grad, math);
    graph::Tensor bad = g.cast(non_finite(g, g.reshape(x, {graph::kDynamic})), DType::Float32);
    bad = g.reduce(NodeKind::ReduceMax, bad, {0});
    any_bad = any_bad.id < 0 ? bad : g.maximum(any_bad, bad);
    graph::Tensor y = g.mul(x, math == DType::Float32 ? inv_scale : g.cast(inv_scale, math));
    g.assign(grad, dtype == math ? y : g.cast(y, dtype));
  }
  auto found_flat = g.reshape(found, {1});
  auto flagged = g.select(g.gt(any_bad, g.constant(0, DType::Float32)), g.constant(1, DType::Float32), found_flat);
  g.assign(found, g.reshape(flagged, s.input(n).shape));
}

void check_one_element_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(on_device(t), name, " must be a mpsgraph tensor.");
  TORCH_CHECK(t.numel() == 1, name, " must be a 1-element tensor.");
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, " must be a float tensor.");
}

void unscale_chunk(at::TensorList grads, at::Tensor& found_inf, const at::Tensor& inv_scale) {
  GraphSpec spec("aten::_amp_foreach_non_finite_check_and_unscale_");
  std::vector<at::Tensor> inputs;
  std::vector<std::pair<at::Tensor, at::Tensor>> copied_back;  // (grad, its contiguous stand-in)
  for (const at::Tensor& t : grads) {
    at::Tensor work = t.is_contiguous() ? t : t.contiguous();
    if (!work.is_same(t)) copied_back.emplace_back(t, work);
    spec.input_dynamic(work);
    inputs.push_back(work);
  }
  spec.input(found_inf).input(inv_scale);
  inputs.push_back(found_inf);
  inputs.push_back(inv_scale);
  runtime::run_graph(spec, build_unscale, inputs);
  for (auto& [grad, work] : copied_back) grad.copy_(work);
}

void non_finite_check_and_unscale(at::TensorList scaled_grads, at::Tensor& found_inf, const at::Tensor& inv_scale) {
  if (scaled_grads.empty()) return;
  check_one_element_float(inv_scale, "inv_scale");
  check_one_element_float(found_inf, "found_inf");
  bool float64 = false;
  std::vector<at::Tensor> grads;
  for (const at::Tensor& t : scaled_grads) {
    TORCH_CHECK(t.defined() && on_device(t), "one of scaled_grads was not a mpsgraph tensor.");
    TORCH_CHECK(t.layout() == at::kStrided, "one of scaled_grads was not a strided tensor.");
    TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()),
                     "_amp_foreach_non_finite_check_and_unscale_: scaled_grads must be floating-point, but one is ",
                     t.scalar_type());
    float64 |= t.scalar_type() == at::kDouble;
    if (t.numel() > 0) grads.push_back(t);
  }
  if (use_cpu_kernels() || (float64 && runtime::device_runtime() == runtime::Kind::MPSGraph)) {
    // (MPSGraph has no float64: there too torch's CPU kernel, over unified
    // memory, after queued GPU work lands.)
    device::synchronize();
    std::vector<at::Tensor> host;
    for (const at::Tensor& t : grads) host.push_back(device::cpu_alias(t));
    at::Tensor found_host = device::cpu_alias(found_inf);
    at::_amp_foreach_non_finite_check_and_unscale_(host, found_host, device::cpu_alias(inv_scale));
    return;
  }
  for (size_t begin = 0; begin < grads.size(); begin += kGradsPerGraph) {
    size_t end = std::min(grads.size(), begin + kGradsPerGraph);
    unscale_chunk(at::TensorList(grads).slice(begin, end - begin), found_inf, inv_scale);
  }
}

// inputs: scale (variable), growth_tracker (variable), found_inf, growth, backoff, interval
void build_update_scale(Graph& g, const GraphSpec& s) {
  auto scale_var = g.variable(s.input(0), "current_scale");
  auto tracker_var = g.variable(s.input(1), "growth_tracker");
  auto found = g.reshape(g.placeholder(s.input(2), "found_inf"), {1});
  auto growth = g.placeholder(s.input(3), "growth_factor");
  auto backoff = g.placeholder(s.input(4), "backoff_factor");
  auto interval = g.placeholder(s.input(5), "growth_interval");
  auto scale = g.reshape(scale_var, {1});
  auto tracker = g.reshape(tracker_var, {1});

  auto skipped = g.binary(NodeKind::NotEqual, found, g.constant(0, DType::Float32));
  auto successful = g.add(tracker, g.constant(1, DType::Int32));
  auto grow = g.binary(NodeKind::Equal, g.cast(successful, DType::Int64), interval);
  auto grown = g.mul(scale, growth);
  auto grown_ok = g.logical_and(grow, g.unary(NodeKind::LogicalNot, non_finite(g, grown)));
  auto new_scale = g.select(skipped, g.mul(scale, backoff), g.select(grown_ok, grown, scale));
  auto new_tracker = g.select(g.binary(NodeKind::LogicalOr, skipped, grow), g.constant(0, DType::Int32), successful);
  g.assign(scale_var, g.reshape(new_scale, s.input(0).shape));
  g.assign(tracker_var, g.reshape(new_tracker, s.input(1).shape));
}

at::Tensor& update_scale(at::Tensor& current_scale, at::Tensor& growth_tracker, const at::Tensor& found_inf,
                         double growth_factor, double backoff_factor, int64_t growth_interval) {
  TORCH_CHECK(on_device(growth_tracker), "growth_tracker must be a mpsgraph tensor.");
  TORCH_CHECK(on_device(current_scale), "current_scale must be a mpsgraph tensor.");
  TORCH_CHECK(on_device(found_inf), "found_inf must be a mpsgraph tensor.");
  TORCH_CHECK(growth_tracker.numel() == 1, "growth_tracker must be a 1-element tensor.");
  TORCH_CHECK(current_scale.numel() == 1, "current_scale must be a 1-element tensor.");
  TORCH_CHECK(found_inf.numel() == 1, "found_inf must be a 1-element tensor.");
  TORCH_CHECK(growth_tracker.scalar_type() == at::kInt, "growth_tracker must be an int tensor.");
  TORCH_CHECK(current_scale.scalar_type() == at::kFloat, "current_scale must be a float tensor.");
  TORCH_CHECK(found_inf.scalar_type() == at::kFloat, "found_inf must be a float tensor.");
  // The graph multiplies the factors in float32 (MPSGraph has no float64):
  // within one rounding of torch's double product for factors float32 cannot
  // represent.
  if (use_cpu_kernels()) {
    at::Tensor scale_host = device::cpu_alias(current_scale), tracker_host = device::cpu_alias(growth_tracker);
    at::_amp_update_scale_(scale_host, tracker_host, device::cpu_alias(found_inf), growth_factor, backoff_factor,
                           growth_interval);
    return current_scale;
  }
  at::Tensor growth = ops::scalar_input(growth_factor, at::kFloat);
  at::Tensor backoff = ops::scalar_input(backoff_factor, at::kFloat);
  at::Tensor interval = ops::scalar_input(growth_interval, at::kLong);
  GraphSpec spec("aten::_amp_update_scale_");
  spec.input(current_scale).input(growth_tracker).input(found_inf).input(growth).input(backoff).input(interval);
  runtime::run_graph(spec, build_update_scale, {current_scale, growth_tracker, found_inf, growth, backoff, interval});
  return current_scale;
}
}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("_amp_foreach_non_finite_check_and_unscale_", &non_finite_check_and_unscale);
  m.impl("_amp_update_scale_", &update_scale);
}

}  // namespace mps_ext::autocast
