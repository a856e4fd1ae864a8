// batch_norm (running statistics updated in place as graph variables),
// group_norm and the losses beyond nll/mse: smooth_l1, huber,
// binary_cross_entropy (pooling: pooling.cpp). Inputs these graphs do not
// cover go to the CPU fallback.
#include "ops/aten/native.h"
#include "ops/op_utils.h"
#include "runtime/reference/kernels.h"

namespace mps_ext::ops::aten {
namespace {
using graph::DType;
using graph::Graph;
using graph::NodeKind;
using runtime::GraphSpec;
using G = graph::Tensor;

bool defined(const std::optional<at::Tensor>& t) { return t && t->defined(); }
bool float_ok(const at::Tensor& t) { return at::isFloatingType(t.scalar_type()) && graph_dtype_ok(t.scalar_type()); }

// Reduction axes of batch norm: every dim but 1; the per-channel shape [1, C, 1, ...].
std::vector<int64_t> bn_axes(int64_t rank) {
  std::vector<int64_t> a{0};
  for (int64_t d = 2; d < rank; ++d) a.push_back(d);
  return a;
}
graph::Shape channel_shape(int64_t rank, int64_t c) {
  graph::Shape s(rank, 1);
  s[1] = c;
  return s;
}

// --- batch_norm -----------------------------------------------------------------------
// Inputs: x, [weight], [bias], [running_mean, running_var (variables)].
// attrs: train, eps, momentum, has_weight, has_bias, has_running, compute.
// Outputs: y, save_mean, save_invstd (train) [, new running_mean, running_var].
// float32/float64 run as the kernel "aten.batch_norm" (on the reference
// runtime: ATen's fused CPU kernel) over this decomposition.
struct BatchNormParams {
  bool train, has_weight, has_bias, running;
  double eps, momentum;
  DType compute;
};

// Results: y [, save_mean, save_invstd (train) [, new running_mean, running_var]].
std::vector<G> batch_norm_decomposition(Graph& g, const std::vector<G>& in, const BatchNormParams& p) {
  G x = cast_to(g, in[0], p.compute);
  const graph::Shape shape = g.type(in[0]).shape;  // a copy: adding nodes moves types
  int64_t rank = static_cast<int64_t>(shape.size()), c = shape[1];
  std::vector<int64_t> axes = bn_axes(rank);
  graph::Shape cs = channel_shape(rank, c);
  size_t next = 1;
  G w, b, rm, rv;
  if (p.has_weight) w = g.reshape(cast_to(g, in[next++], p.compute), cs);
  if (p.has_bias) b = g.reshape(cast_to(g, in[next++], p.compute), cs);
  if (p.running) {
    rm = in[next++];
    rv = in[next++];
  }
  G mean, var;
  if (p.train) {
    mean = g.reduce(NodeKind::ReduceMean, x, axes);
    G d = g.sub(x, mean);
    var = g.reduce(NodeKind::ReduceMean, g.mul(d, d), axes);
  } else {
    mean = g.reshape(cast_to(g, rm, p.compute), cs);
    var = g.reshape(cast_to(g, rv, p.compute), cs);
  }
  G invstd = g.unary(NodeKind::Rsqrt, g.add(var, k(g, p.eps, var)));
  G y = g.mul(g.sub(x, mean), invstd);
  if (w.id >= 0) y = g.mul(y, w);
  if (b.id >= 0) y = g.add(y, b);
  std::vector<G> out{cast_to(g, y, g.type(in[0]).dtype)};
  if (!p.train) return out;
  out.push_back(g.reshape(mean, {c}));
  out.push_back(g.reshape(invstd, {c}));
  if (p.running) {
    int64_t n = 1;
    for (int64_t a : axes) n *= shape[a];
    G unbiased = g.mul(g.reshape(var, {c}), k(g, n > 1 ? static_cast<double>(n) / (n - 1) : 1.0, var));
    DType rt = g.type(rm).dtype;
    const double m = p.momentum;
    out.push_back(g.add(g.mul(rm, k(g, 1 - m, rm)), cast_to(g, g.mul(g.reshape(mean, {c}), k(g, m, mean)), rt)));
    out.push_back(g.add(g.mul(rv, k(g, 1 - m, rv)), cast_to(g, g.mul(unbiased, k(g, m, unbiased)), rt)));
  }
  return out;
}

std::vector<at::Tensor> batch_norm_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                                       const runtime::reference::ResultOutput&) {
  bool train = n.int_attr("train"), running = n.int_attr("has_running");
  size_t next = 1;
  std::optional<at::Tensor> w, b, rm, rv;
  if (n.int_attr("has_weight")) w = in[next++];
  if (n.int_attr("has_bias")) b = in[next++];
  if (running) {  // ATen updates them in place: the new statistics are the variables' own memory (Assign copies nothing)
    rm = in[next];
    rv = in[next + 1];
  }
  auto [y, mean, invstd] = at::native_batch_norm(in[0], w, b, rm, rv, train, n.float_attr("momentum"), n.float_attr("eps"));
  if (!train) return {y};
  std::vector<at::Tensor> out{y, mean, invstd};
  if (running) {
    out.push_back(*rm);
    out.push_back(*rv);
  }
  return out;
}
MPS_EXT_REFERENCE_MULTI_KERNEL("aten.batch_norm", batch_norm_cpu);

void build_batch_norm(Graph& g, const GraphSpec& s) {
  BatchNormParams p{s.int_attr("train") != 0, s.int_attr("has_weight") != 0, s.int_attr("has_bias") != 0,
                    s.int_attr("has_running") != 0, s.float_attr("eps"), s.float_attr("momentum"),
                    attr_dtype(s, "compute")};
  std::vector<G> in{g.placeholder(s.input(0), "input")};
  if (p.has_weight) in.push_back(g.placeholder(s.input(in.size()), "weight"));
  if (p.has_bias) in.push_back(g.placeholder(s.input(in.size()), "bias"));
  G rm, rv;
  if (p.running) {
    rm = g.variable(s.input(in.size()), "running_mean");
    in.push_back(rm);
    rv = g.variable(s.input(in.size()), "running_var");
    in.push_back(rv);
  }
  auto decomposition = [p](Graph& d, const std::vector<G>& x) { return batch_norm_decomposition(d, x, p); };
  graph::Attrs attrs{{"train", int64_t{p.train}}, {"has_weight", int64_t{p.has_weight}},
                     {"has_bias", int64_t{p.has_bias}}, {"has_running", int64_t{p.running}}, {"eps", p.eps},
                     {"momentum", p.momentum}};
  std::vector<G> r = fused_cpu_norm_ok(s, 1, in.size() - 1) ? g.kernels("aten.batch_norm", in, attrs, decomposition)
                                                            : decomposition(g, in);
  for (size_t i = 0; i < std::min<size_t>(r.size(), 3); ++i) g.output(r[i]);
  if (r.size() == 5) {
    g.output(g.assign(rm, r[3]));
    g.output(g.assign(rv, r[4]));
  }
}

std::vector<at::Tensor> run_batch_norm(const at::Tensor& input, const std::optional<at::Tensor>& weight,
                                       const std::optional<at::Tensor>& bias, const at::Tensor* running_mean,
                                       const at::Tensor* running_var, bool train, double momentum, double eps) {
  require(float_ok(input) && input.dim() >= 2 && input.numel() > 0);
  bool running = running_mean && running_var && running_mean->defined() && running_var->defined();
  require(train || running);
  if (running) require(running_mean->is_contiguous() && running_var->is_contiguous() && float_ok(*running_mean));
  const bool hw = defined(weight), hb = defined(bias);
  runtime::BorrowedTensors<5> inputs{input};  // parameters and buffers only Python holds: no GIL round trip
  if (hw) inputs.borrow(*weight);
  if (hb) inputs.borrow(*bias);
  if (running) {
    inputs.borrow(*running_mean);
    inputs.borrow(*running_var);
  }
  auto spec = [&] {
    GraphSpec s("aten::batch_norm");
    for (const at::Tensor& t : inputs) s.input(t);
    s.attr("train", int64_t{train}).attr("eps", eps).attr("momentum", momentum).attr("has_weight", int64_t{hw})
        .attr("has_bias", int64_t{hb}).attr("has_running", int64_t{running})
        .attr("compute", dname(opmath_type(input.scalar_type())));
    return s;
  };
  // The memo key: every input's dtype and sizes, the flags, eps and momentum
  // (a 4-d input with all four per-channel tensors fills the 16 words).
  runtime::MemoKeyWriter<16> key(build_batch_norm);
  key.word(train | hw << 1 | hb << 2 | running << 3).real(eps).real(momentum);
  for (const at::Tensor& t : inputs) key.tensor(t);
  thread_local runtime::GraphMemo<16> memo;
  return runtime::run_graph_memoized(memo, key.key(), spec, build_batch_norm, inputs);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> batch_norm_with_update(
    const at::Tensor& input, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    at::Tensor& running_mean, at::Tensor& running_var, double momentum, double eps) {
  auto r = run_batch_norm(input, weight, bias, &running_mean, &running_var, true, momentum, eps);
  return {r[0], r[1], r[2], at::empty({0}, device_options(input, at::kByte))};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> batch_norm_no_update(
    const at::Tensor& input, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var, double momentum,
    double eps) {
  bool running = defined(running_mean) && defined(running_var);
  auto r = run_batch_norm(input, weight, bias, running ? &*running_mean : nullptr, running ? &*running_var : nullptr,
                          !running, momentum, eps);
  at::Tensor empty = at::empty({0}, device_options(input, opmath_type(input.scalar_type())));
  return {r[0], running ? empty : r[1], running ? empty : r[2], at::empty({0}, device_options(input, at::kByte))};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> native_batch_norm(
    const at::Tensor& input, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var, bool training,
    double momentum, double eps) {
  bool running = defined(running_mean) && defined(running_var);
  auto r = run_batch_norm(input, weight, bias, running ? &*running_mean : nullptr, running ? &*running_var : nullptr,
                          training, momentum, eps);
  at::Tensor empty = at::empty({0}, device_options(input, opmath_type(input.scalar_type())));
  return {r[0], training ? r[1] : empty, training ? r[2] : empty};
}

// Inputs (dy, x, save_mean, save_invstd, [weight]) in training mode, (dy, x,
// running_mean, running_var, [weight]) in eval mode (the statistics are
// constants there); results dx, dweight, dbias. float32/float64 run as the
// kernel "aten.batch_norm_backward" (ATen's fused CPU backward) over this
// decomposition.
struct BatchNormBackwardParams {
  bool has_weight, train;
  double eps;
  DType compute, wdtype;
};

std::vector<G> batch_norm_backward_decomposition(Graph& g, const std::vector<G>& in, const BatchNormBackwardParams& p) {
  G dy = cast_to(g, in[0], p.compute), x = cast_to(g, in[1], p.compute);
  const graph::Shape shape = g.type(in[1]).shape;  // a copy: adding nodes moves types
  int64_t rank = static_cast<int64_t>(shape.size()), c = shape[1];
  std::vector<int64_t> axes = bn_axes(rank);
  graph::Shape cs = channel_shape(rank, c);
  G mean = g.reshape(cast_to(g, in[2], p.compute), cs);
  G invstd = g.reshape(cast_to(g, in[3], p.compute), cs);
  if (!p.train) invstd = g.unary(NodeKind::Rsqrt, g.add(invstd, k(g, p.eps, invstd)));  // in[3]: running_var
  G xhat = g.mul(g.sub(x, mean), invstd);
  G sum_dy = g.reduce(NodeKind::ReduceSum, dy, axes);
  G sum_dy_xhat = g.reduce(NodeKind::ReduceSum, g.mul(dy, xhat), axes);
  int64_t n = 1;
  for (int64_t a : axes) n *= shape[a];
  G inv_n = g.constant(1.0 / static_cast<double>(n), p.compute);
  G dx = p.train ? g.mul(invstd, g.sub(g.sub(dy, g.mul(sum_dy, inv_n)), g.mul(xhat, g.mul(sum_dy_xhat, inv_n))))
                 : g.mul(dy, invstd);
  if (p.has_weight) dx = g.mul(dx, g.reshape(cast_to(g, in[4], p.compute), cs));
  return {cast_to(g, dx, g.type(in[1]).dtype), cast_to(g, g.reshape(sum_dy_xhat, {c}), p.wdtype),
          cast_to(g, g.reshape(sum_dy, {c}), p.wdtype)};
}

std::vector<at::Tensor> batch_norm_backward_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                                                const runtime::reference::ResultOutput&) {
  std::optional<at::Tensor> w;
  if (n.int_attr("has_weight")) w = in[4];
  bool train = n.int_attr("train");
  std::optional<at::Tensor> none;
  auto [dx, dw, db] = at::native_batch_norm_backward(in[0], in[1], w, train ? none : in[2], train ? none : in[3],
                                                     train ? in[2] : none, train ? in[3] : none, train,
                                                     n.float_attr("eps"), {true, true, true});
  return {dx, dw, db};
}
MPS_EXT_REFERENCE_MULTI_KERNEL("aten.batch_norm_backward", batch_norm_backward_cpu);

void build_batch_norm_backward(Graph& g, const GraphSpec& s) {
  BatchNormBackwardParams p{s.int_attr("has_weight") != 0, s.int_attr("train") != 0, s.float_attr("eps"),
                            attr_dtype(s, "compute"), attr_dtype(s, "wdtype")};
  std::vector<G> in{g.placeholder(s.input(0), "grad_out"), g.placeholder(s.input(1), "input"),
                    g.placeholder(s.input(2), "save_mean"), g.placeholder(s.input(3), "save_invstd")};
  if (p.has_weight) in.push_back(g.placeholder(s.input(4), "weight"));
  auto decomposition = [p](Graph& d, const std::vector<G>& x) { return batch_norm_backward_decomposition(d, x, p); };
  bool fused = fused_cpu_norm_ok(s, 0, in.size()) && p.wdtype == s.input(0).dtype;
  graph::Attrs attrs{{"has_weight", int64_t{p.has_weight}}, {"train", int64_t{p.train}}, {"eps", p.eps}};
  for (G r : fused ? g.kernels("aten.batch_norm_backward", in, attrs, decomposition)
                   : decomposition(g, in))
    g.output(r);
}

// stat_a, stat_b: save_mean, save_invstd (train) or running_mean, running_var.
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_batch_norm_backward(const at::Tensor& grad_out, const at::Tensor& input,
                                                                       const std::optional<at::Tensor>& weight,
                                                                       const std::optional<at::Tensor>& stat_a,
                                                                       const std::optional<at::Tensor>& stat_b, bool train,
                                                                       double eps, std::array<bool, 3> mask) {
  require(float_ok(input) && input.dim() >= 2 && input.numel() > 0 && defined(stat_a) && defined(stat_b) &&
          stat_a->numel() == input.size(1) && stat_b->numel() == input.size(1));
  bool hw = defined(weight);
  GraphSpec spec("aten::batch_norm_backward");
  spec.input(grad_out).input(input).input(*stat_a).input(*stat_b);
  std::vector<at::Tensor> inputs{grad_out, input, *stat_a, *stat_b};
  if (hw) { spec.input(*weight); inputs.push_back(*weight); }
  spec.attr("has_weight", int64_t{hw}).attr("train", int64_t{train}).attr("eps", train ? 0.0 : eps)
      .attr("compute", dname(opmath_type(input.scalar_type())))
      .attr("wdtype", dname(hw ? weight->scalar_type() : input.scalar_type()));
  auto r = runtime::run_graph(spec, build_batch_norm_backward, inputs);
  return {mask[0] ? r[0] : at::Tensor(), mask[1] ? r[1] : at::Tensor(), mask[2] ? r[2] : at::Tensor()};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_backward(
    const at::Tensor& grad_out, const at::Tensor& input, const at::Tensor& weight,
    const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var,
    const std::optional<at::Tensor>& save_mean, const std::optional<at::Tensor>& save_var, bool update, double eps,
    std::array<bool, 3> output_mask, const at::Tensor& reserve) {
  std::optional<at::Tensor> w = weight.defined() ? std::optional<at::Tensor>(weight) : std::nullopt;
  return update ? run_batch_norm_backward(grad_out, input, w, save_mean, save_var, true, eps, output_mask)
                : run_batch_norm_backward(grad_out, input, w, running_mean, running_var, false, eps, output_mask);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> native_batch_norm_backward(
    const at::Tensor& grad_out, const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var,
    const std::optional<at::Tensor>& save_mean, const std::optional<at::Tensor>& save_invstd, bool train, double eps,
    std::array<bool, 3> output_mask) {
  return train ? run_batch_norm_backward(grad_out, input, weight, save_mean, save_invstd, true, eps, output_mask)
               : run_batch_norm_backward(grad_out, input, weight, running_mean, running_var, false, eps, output_mask);
}

// --- group_norm -----------------------------------------------------------------------
// x [N, C, HxW] viewed as [N, G, C/G * HxW]. float32/float64 with matching
// weight and bias run ATen's fused CPU kernels on the reference runtime (3.4x
// faster on [32, 64, 16, 16]); the decompositions are MPSGraph's.
struct GroupNormParams {
  int64_t n, c, hw, groups;
  bool has_weight;
  DType compute;
};
GroupNormParams group_norm_params(const GraphSpec& s) {
  return {s.int_attr("N"), s.int_attr("C"), s.int_attr("HxW"), s.int_attr("group"), s.int_attr("has_weight") != 0,
          attr_dtype(s, "compute")};
}
// The kernel node's attrs: what ATen's kernels take besides the tensors.
graph::Attrs group_norm_attrs(const GroupNormParams& p) {
  return {{"N", p.n}, {"C", p.c}, {"HxW", p.hw}, {"group", p.groups}, {"has_weight", int64_t{p.has_weight}}};
}

// Inputs (x, [weight], [bias]) -> (y, mean, rstd).
std::vector<G> group_norm_decomposition(Graph& g, const std::vector<G>& in, const GroupNormParams& p, double eps,
                                        bool has_bias) {
  const graph::Shape shape = g.type(in[0]).shape;
  const DType dtype = g.type(in[0]).dtype;
  G x = g.reshape(cast_to(g, in[0], p.compute), {p.n, p.groups, (p.c / p.groups) * p.hw});
  G mean = g.reduce(NodeKind::ReduceMean, x, {2});
  G d = g.sub(x, mean);
  G rstd = g.unary(NodeKind::Rsqrt, g.add(g.reduce(NodeKind::ReduceMean, g.mul(d, d), {2}), k(g, eps, d)));
  G y = g.reshape(g.mul(d, rstd), {p.n, p.c, p.hw});
  size_t next = 1;
  if (p.has_weight) y = g.mul(y, g.reshape(cast_to(g, in[next++], p.compute), {1, p.c, 1}));
  if (has_bias) y = g.add(y, g.reshape(cast_to(g, in[next++], p.compute), {1, p.c, 1}));
  return {cast_to(g, g.reshape(y, shape), dtype), cast_to(g, g.reshape(mean, {p.n, p.groups}), dtype),
          cast_to(g, g.reshape(rstd, {p.n, p.groups}), dtype)};
}

std::vector<at::Tensor> group_norm_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                                       const runtime::reference::ResultOutput&) {
  size_t next = 1;
  std::optional<at::Tensor> w, b;
  if (n.int_attr("has_weight")) w = in[next++];
  if (n.int_attr("has_bias")) b = in[next++];
  auto [y, mean, rstd] = at::native_group_norm(in[0], w, b, n.int_attr("N"), n.int_attr("C"), n.int_attr("HxW"),
                                               n.int_attr("group"), n.float_attr("eps"));
  return {y, mean, rstd};
}
MPS_EXT_REFERENCE_MULTI_KERNEL("aten.group_norm", group_norm_cpu);

void build_group_norm(Graph& g, const GraphSpec& s) {
  const GroupNormParams p = group_norm_params(s);
  const double eps = s.float_attr("eps");
  const bool has_bias = s.int_attr("has_bias") != 0;
  std::vector<G> in{g.placeholder(s.input(0), "input")};
  if (p.has_weight) in.push_back(g.placeholder(s.input(in.size()), "weight"));
  if (has_bias) in.push_back(g.placeholder(s.input(in.size()), "bias"));
  auto decomposition = [p, eps, has_bias](Graph& d, const std::vector<G>& x) {
    return group_norm_decomposition(d, x, p, eps, has_bias);
  };
  graph::Attrs attrs = group_norm_attrs(p);
  attrs["eps"] = eps;
  attrs["has_bias"] = int64_t{has_bias};
  for (G r : fused_cpu_norm_ok(s, 1, in.size() - 1) ? g.kernels("aten.group_norm", in, attrs, decomposition)
                                                    : decomposition(g, in))
    g.output(r);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> native_group_norm(const at::Tensor& input, const std::optional<at::Tensor>& weight,
                                                                 const std::optional<at::Tensor>& bias, c10::SymInt N,
                                                                 c10::SymInt C, c10::SymInt HxW, int64_t group, double eps) {
  require(float_ok(input) && input.numel() > 0);
  int64_t n = N.expect_int(), c = C.expect_int(), hw = HxW.expect_int();
  TORCH_CHECK(group > 0 && c % group == 0, "Expected number of channels in input to be divisible by num_groups, but got input of shape ",
              input.sizes(), " and num_groups=", group);
  bool has_w = defined(weight), has_b = defined(bias);
  GraphSpec spec("aten::native_group_norm");
  spec.input(input);
  std::vector<at::Tensor> inputs{input};
  if (has_w) { spec.input(*weight); inputs.push_back(*weight); }
  if (has_b) { spec.input(*bias); inputs.push_back(*bias); }
  spec.attr("N", n).attr("C", c).attr("HxW", hw).attr("group", group).attr("eps", eps).attr("has_weight", int64_t{has_w})
      .attr("has_bias", int64_t{has_b}).attr("compute", dname(opmath_type(input.scalar_type())));
  auto r = runtime::run_graph(spec, build_group_norm, inputs);
  return {r[0], r[1], r[2]};
}

// Inputs (dy, x, mean, rstd, [weight]) -> (dx, dweight, dbias), dweight and
// dbias in wdtype.
std::vector<G> group_norm_backward_decomposition(Graph& g, const std::vector<G>& in, const GroupNormParams& p, DType wt) {
  const graph::Shape shape = g.type(in[1]).shape;
  const DType dtype = g.type(in[1]).dtype;
  const int64_t cg = p.c / p.groups;
  G dy = g.reshape(cast_to(g, in[0], p.compute), {p.n, p.groups, cg, p.hw});
  G x = g.reshape(cast_to(g, in[1], p.compute), {p.n, p.groups, cg, p.hw});
  G mean = g.reshape(cast_to(g, in[2], p.compute), {p.n, p.groups, 1, 1});
  G rstd = g.reshape(cast_to(g, in[3], p.compute), {p.n, p.groups, 1, 1});
  G xhat = g.mul(g.sub(x, mean), rstd);
  G dxhat = dy;
  if (p.has_weight) dxhat = g.mul(dy, g.reshape(cast_to(g, in[4], p.compute), {1, p.groups, cg, 1}));
  G a1 = g.reduce(NodeKind::ReduceMean, dxhat, {2, 3});
  G a2 = g.reduce(NodeKind::ReduceMean, g.mul(dxhat, xhat), {2, 3});
  G dx = g.mul(rstd, g.sub(g.sub(dxhat, a1), g.mul(xhat, a2)));
  return {cast_to(g, g.reshape(dx, shape), dtype),
          cast_to(g, g.reshape(g.reduce(NodeKind::ReduceSum, g.mul(dy, xhat), {0, 3}), {p.c}), wt),
          cast_to(g, g.reshape(g.reduce(NodeKind::ReduceSum, dy, {0, 3}), {p.c}), wt)};
}

std::vector<at::Tensor> group_norm_backward_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                                                const runtime::reference::ResultOutput&) {
  auto [dx, dw, db] = at::native_group_norm_backward(in[0], in[1], in[2], in[3], in[4], n.int_attr("N"), n.int_attr("C"),
                                                     n.int_attr("HxW"), n.int_attr("group"), {true, true, true});
  return {dx, dw, db};
}
MPS_EXT_REFERENCE_MULTI_KERNEL("aten.group_norm_backward", group_norm_backward_cpu);

void build_group_norm_backward(Graph& g, const GraphSpec& s) {
  const GroupNormParams p = group_norm_params(s);
  const DType wt = attr_dtype(s, "wdtype");
  std::vector<G> in{g.placeholder(s.input(0), "grad_out"), g.placeholder(s.input(1), "input"),
                    g.placeholder(s.input(2), "mean"), g.placeholder(s.input(3), "rstd")};
  if (p.has_weight) in.push_back(g.placeholder(s.input(4), "weight"));
  auto decomposition = [p, wt](Graph& d, const std::vector<G>& x) { return group_norm_backward_decomposition(d, x, p, wt); };
  // ATen's kernel needs the weight (its dweight/dbias take the weight's shape).
  const bool fused = p.has_weight && fused_cpu_norm_ok(s, 0, in.size()) && wt == s.input(1).dtype;
  for (G r : fused ? g.kernels("aten.group_norm_backward", in, group_norm_attrs(p), decomposition) : decomposition(g, in))
    g.output(r);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> native_group_norm_backward(
    const at::Tensor& grad_out, const at::Tensor& input, const at::Tensor& mean, const at::Tensor& rstd,
    const std::optional<at::Tensor>& weight, c10::SymInt N, c10::SymInt C, c10::SymInt HxW, int64_t group,
    std::array<bool, 3> mask) {
  require(float_ok(input) && input.numel() > 0);
  bool has_w = defined(weight);
  GraphSpec spec("aten::native_group_norm_backward");
  spec.input(grad_out).input(input).input(mean).input(rstd);
  std::vector<at::Tensor> inputs{grad_out, input, mean, rstd};
  if (has_w) { spec.input(*weight); inputs.push_back(*weight); }
  spec.attr("N", N.expect_int()).attr("C", C.expect_int()).attr("HxW", HxW.expect_int()).attr("group", group)
      .attr("has_weight", int64_t{has_w}).attr("compute", dname(opmath_type(input.scalar_type())))
      .attr("wdtype", dname(has_w ? weight->scalar_type() : input.scalar_type()));
  auto r = runtime::run_graph(spec, build_group_norm_backward, inputs);
  return {mask[0] ? r[0] : at::Tensor(), mask[1] ? r[1] : at::Tensor(), mask[2] ? r[2] : at::Tensor()};
}

// --- losses: smooth_l1 / huber / binary_cross_entropy ------------------------------------
// Inputs (self, target, [weight], [grad_output]); attrs: kind, reduction, beta, numel, backward.
void build_loss(Graph& g, const GraphSpec& s) {
  DType compute = attr_dtype(s, "compute");
  G x = cast_to(g, g.placeholder(s.input(0), "self"), compute);
  G t = cast_to(g, g.placeholder(s.input(1), "target"), compute);
  size_t next = 2;
  G w = s.int_attr("has_weight") ? cast_to(g, g.placeholder(s.input(next++), "weight"), compute) : G{};
  const std::string& kind = s.str_attr("kind");
  double beta = s.float_attr("beta");
  int64_t reduction = s.int_attr("reduction");
  bool backward = s.int_attr("backward");
  G d = g.sub(x, t), ad = g.abs(d);
  G r;
  if (!backward) {
    if (kind == "smooth_l1") {
      r = beta == 0 ? ad : g.select(g.lt(ad, k(g, beta, ad)), g.div(g.mul(k(g, 0.5, d), g.mul(d, d)), k(g, beta, d)),
                                    g.sub(ad, k(g, 0.5 * beta, ad)));
    } else if (kind == "huber") {
      r = g.select(g.lt(ad, k(g, beta, ad)), g.mul(k(g, 0.5, d), g.mul(d, d)), g.mul(k(g, beta, ad), g.sub(ad, k(g, 0.5 * beta, ad))));
    } else {  // binary_cross_entropy: log clamped at -100 like torch
      G lx = g.maximum(g.unary(NodeKind::Log, x), k(g, -100, x));
      G l1x = g.maximum(g.unary(NodeKind::Log, g.sub(k(g, 1, x), x)), k(g, -100, x));
      r = g.neg(g.add(g.mul(t, lx), g.mul(g.sub(k(g, 1, t), t), l1x)));
    }
    if (w.id >= 0) r = g.mul(r, w);
    if (reduction != 0) {
      std::vector<int64_t> all(g.type(r).rank());
      for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
      r = g.reshape(g.reduce(reduction == 1 ? NodeKind::ReduceMean : NodeKind::ReduceSum, r, all), {});
    }
    g.output(cast_to(g, r, attr_dtype(s, "result")));
    return;
  }
  G dy = cast_to(g, g.placeholder(s.input(next++), "grad_output"), compute);
  if (kind == "smooth_l1") {
    G sign = g.unary(NodeKind::Sign, d);
    r = beta == 0 ? sign : g.select(g.lt(ad, k(g, beta, ad)), g.div(d, k(g, beta, d)), sign);
  } else if (kind == "huber") {
    r = g.select(g.lt(ad, k(g, beta, ad)), d, g.mul(k(g, beta, d), g.unary(NodeKind::Sign, d)));
  } else {
    G denom = g.maximum(g.mul(g.sub(k(g, 1, x), x), x), k(g, 1e-12, x));
    r = g.div(d, denom);
  }
  if (w.id >= 0) r = g.mul(r, w);
  r = g.mul(r, dy);
  if (reduction == 1) r = g.div(r, k(g, static_cast<double>(s.int_attr("numel")), r));
  g.output(cast_to(g, r, attr_dtype(s, "result")));
}

at::Tensor run_loss(const char* kind, const at::Tensor* grad, const at::Tensor& self, const at::Tensor& target,
                    const std::optional<at::Tensor>& weight, int64_t reduction, double beta) {
  at::ScalarType r = at::result_type(self, target);
  require(at::isFloatingType(r) && graph_dtype_ok(r) && self.numel() > 0 && self.sizes() == target.sizes());
  bool hw = defined(weight);
  GraphSpec spec("aten::loss");
  spec.input(self).input(target);
  std::vector<at::Tensor> inputs{self, target};
  if (hw) {
    at::Tensor w = weight->expand(self.sizes());
    spec.input(w);
    inputs.push_back(w);
  }
  if (grad) {
    at::Tensor gexp = grad->expand(self.sizes());
    spec.input(gexp);
    inputs.push_back(gexp);
  }
  spec.attr("kind", std::string(kind)).attr("reduction", reduction).attr("beta", beta).attr("has_weight", int64_t{hw})
      .attr("backward", int64_t{grad != nullptr}).attr("numel", self.numel())
      .attr("compute", dname(opmath_type(r))).attr("result", dname(r));
  return runtime::run_graph(spec, build_loss, inputs)[0];
}

at::Tensor smooth_l1_loss(const at::Tensor& self, const at::Tensor& target, int64_t reduction, double beta) {
  TORCH_CHECK(beta >= 0, "smooth_l1_loss does not support negative values for beta.");
  return run_loss("smooth_l1", nullptr, self, target, std::nullopt, reduction, beta);
}
at::Tensor smooth_l1_loss_backward(const at::Tensor& grad, const at::Tensor& self, const at::Tensor& target,
                                   int64_t reduction, double beta) {
  return run_loss("smooth_l1", &grad, self, target, std::nullopt, reduction, beta);
}
at::Tensor huber_loss(const at::Tensor& self, const at::Tensor& target, int64_t reduction, double delta) {
  TORCH_CHECK(delta > 0, "huber_loss does not support non-positive values for delta.")
  return run_loss("huber", nullptr, self, target, std::nullopt, reduction, delta);
}
at::Tensor huber_loss_backward(const at::Tensor& grad, const at::Tensor& self, const at::Tensor& target,
                               int64_t reduction, double delta) {
  return run_loss("huber", &grad, self, target, std::nullopt, reduction, delta);
}
at::Tensor binary_cross_entropy(const at::Tensor& self, const at::Tensor& target, const std::optional<at::Tensor>& weight,
                                int64_t reduction) {
  return run_loss("bce", nullptr, self, target, weight, reduction, 0);
}
at::Tensor binary_cross_entropy_backward(const at::Tensor& grad, const at::Tensor& self, const at::Tensor& target,
                                         const std::optional<at::Tensor>& weight, int64_t reduction) {
  return run_loss("bce", &grad, self, target, weight, reduction, 0);
}

const std::vector<Row>& rows() {
  static const std::vector<Row> r = {
      MPS_EXT_ATEN_ROW("_batch_norm_with_update", batch_norm_with_update),
      MPS_EXT_ATEN_ROW("_batch_norm_no_update", batch_norm_no_update),
      MPS_EXT_ATEN_ROW("batch_norm_backward", batch_norm_backward),
      MPS_EXT_ATEN_ROW("native_batch_norm", native_batch_norm),
      MPS_EXT_ATEN_ROW("native_batch_norm_backward", native_batch_norm_backward),
      MPS_EXT_ATEN_ROW("native_group_norm", native_group_norm),
      MPS_EXT_ATEN_ROW("native_group_norm_backward", native_group_norm_backward),
      MPS_EXT_ATEN_ROW("smooth_l1_loss", smooth_l1_loss),
      MPS_EXT_ATEN_ROW("smooth_l1_loss_backward", smooth_l1_loss_backward),
      MPS_EXT_ATEN_ROW("huber_loss", huber_loss),
      MPS_EXT_ATEN_ROW("huber_loss_backward", huber_loss_backward),
      MPS_EXT_ATEN_ROW("binary_cross_entropy", binary_cross_entropy),
      MPS_EXT_ATEN_ROW("binary_cross_entropy_backward", binary_cross_entropy_backward),
  };
  return r;
}
}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  for (const Row& row : rows()) register_op(m, row.op, row.kernel);
}

}  // namespace mps_ext::ops::aten
