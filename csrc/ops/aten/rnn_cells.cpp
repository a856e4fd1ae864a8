// The fused LSTM and GRU cells on the mpsgraph device, as graphs.
//
// ATen's RNN loop (aten/src/ATen/native/RNN.cpp) takes the fused-cell path for
// every device but the CPU: it computes the gate pre-activations with two
// matmuls and calls _thnn_fused_lstm_cell / _thnn_fused_gru_cell, whose only
// kernels are CUDA's. These are their elementwise halves, with the same
// results and the same workspace contract as the CUDA kernels:
//   LSTM  gates = ig + hg (+ b_ih + b_hh), chunks i, f, g, o along dim 1;
//         cy = sigmoid(f) * cx + sigmoid(i) * tanh(g); hy = sigmoid(o) * tanh(cy);
//         workspace [B, 4H] = the activated gates.
//   GRU   chunks r, z, n of ig (+ b_ih) and hg (+ b_hh);
//         r = sigmoid(ir + hr), z = sigmoid(iz + hz), n = tanh(in + r * hn);
//         hy = n + z * (hx - n); workspace [B, 5H] = r, z, n, hx, hn.
// Autograd's formulas (derivatives.yaml) call the backward kernels below with
// that workspace; under create_graph they use ATen's differentiable
// decompositions instead, which run through the CPU fallback.
//
// Graphs are built for concrete shapes (the slice bounds depend on H, and a
// training loop repeats one batch size); flags say which optional inputs the
// graph has.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "ops/op_utils.h"

namespace mps_ext::ops {
namespace {
using graph::Graph;
using graph::Shape;
using runtime::GraphSpec;
using GTensor = graph::Tensor;

// Columns [k*h, (k+1)*h) of a [B, n*h] tensor.
GTensor chunk(Graph& g, GTensor x, int64_t k, int64_t h) {
  const Shape& s = g.type(x).shape;
  return g.slice(x, {0, k * h}, {s[0], (k + 1) * h}, {1, 1});
}

GTensor sigmoid(Graph& g, GTensor x) { return g.unary(graph::NodeKind::Sigmoid, x); }
GTensor tanh(Graph& g, GTensor x) { return g.unary(graph::NodeKind::Tanh, x); }

// 1 - x, in x's dtype.
GTensor one_minus(Graph& g, GTensor x) { return g.sub(g.constant(1.0, g.type(x).dtype), x); }

void check_cell(const char* op, const at::Tensor& ig, const at::Tensor& hg, const at::Tensor& state,
                const std::optional<at::Tensor>& b_ih, const std::optional<at::Tensor>& b_hh, int64_t n_gates) {
  check_floating(op, "input_gates", ig);
  TORCH_CHECK(ig.dim() == 2 && state.dim() == 2, op, ": expected 2-D input_gates and state, got ", ig.sizes(),
              " and ", state.sizes());
  TORCH_CHECK(hg.sizes() == ig.sizes(), op, ": hidden_gates ", hg.sizes(), " must match input_gates ", ig.sizes());
  TORCH_CHECK(ig.size(1) == n_gates * state.size(1) && ig.size(0) == state.size(0), op, ": input_gates ",
              ig.sizes(), " must be [batch, ", n_gates, " * hidden] for a state of ", state.sizes());
  TORCH_CHECK(hg.scalar_type() == ig.scalar_type() && state.scalar_type() == ig.scalar_type(), op,
              ": input_gates, hidden_gates and the state must share a dtype");
  TORCH_CHECK(b_ih.has_value() == b_hh.has_value(), op, ": pass both biases or neither");
  if (b_ih) {
    TORCH_CHECK(b_ih->dim() == 1 && b_ih->size(0) == ig.size(1) && b_hh->sizes() == b_ih->sizes(), op,
                ": biases must be 1-D of size ", ig.size(1), ", got ", b_ih->sizes(), " and ", b_hh->sizes());
    TORCH_CHECK(b_ih->scalar_type() == ig.scalar_type() && b_hh->scalar_type() == ig.scalar_type(), op,
                ": biases must have the gates' dtype");
  }
}

std::optional<at::Tensor> defined(const std::optional<at::Tensor>& t) {
  return t && t->defined() ? t : std::nullopt;
}

// Placeholders for the spec's inputs in order, cast to the math dtype
// (opmath: float32 for half types); outputs cast back.
struct Inputs {
  Graph& g;
  const GraphSpec& s;
  graph::DType dtype, math;
  size_t next = 0;
  Inputs(Graph& g, const GraphSpec& s)
      : g(g), s(s), dtype(s.input(0).dtype),
        math(graph_dtype(opmath_type(runtime::to_scalar_type(s.input(0).dtype)))) {}
  GTensor add(const char* name) {
    GTensor x = g.placeholder(s.input(next++), name);
    return math == dtype ? x : g.cast(x, math);
  }
  void output(GTensor x) { g.output(math == dtype ? x : g.cast(x, dtype)); }
};

GraphSpec spec_for(const char* op, const std::vector<at::Tensor>& ts) {
  GraphSpec spec(op);
  for (const at::Tensor& t : ts) spec.input(t);
  return spec;
}

void build_lstm_cell(Graph& g, const GraphSpec& s) {
  Inputs p(g, s);
  const int64_t h = s.input(2).shape[1];
  GTensor ig = p.add("input_gates"), hg = p.add("hidden_gates"), c = p.add("cx");
  GTensor gates = g.add(ig, hg);
  if (s.int_attr("has_bias")) {
    GTensor b_ih = p.add("input_bias"), b_hh = p.add("hidden_bias");
    gates = g.add(gates, g.add(b_ih, b_hh));
  }
  GTensor i = sigmoid(g, chunk(g, gates, 0, h));
  GTensor f = sigmoid(g, chunk(g, gates, 1, h));
  GTensor cand = tanh(g, chunk(g, gates, 2, h));
  GTensor o = sigmoid(g, chunk(g, gates, 3, h));
  GTensor kept = g.mul(f, c);
  GTensor added = g.mul(i, cand);
  GTensor cy = g.add(kept, added);
  GTensor hy = g.mul(o, tanh(g, cy));
  p.output(hy);
  p.output(cy);
  p.output(g.concat({i, f, cand, o}, 1));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_cell(const at::Tensor& ig, const at::Tensor& hg,
                                                         const at::Tensor& cx,
                                                         const std::optional<at::Tensor>& b_ih_,
                                                         const std::optional<at::Tensor>& b_hh_) {
  auto b_ih = defined(b_ih_), b_hh = defined(b_hh_);
  check_cell("_thnn_fused_lstm_cell", ig, hg, cx, b_ih, b_hh, 4);
  if (ig.numel() == 0)
    return {at::empty_like(cx), at::empty_like(cx), at::empty_like(ig)};
  std::vector<at::Tensor> in = {ig, hg, cx};
  if (b_ih) in.insert(in.end(), {*b_ih, *b_hh});
  auto spec = spec_for("aten::_thnn_fused_lstm_cell", in);
  spec.attr("has_bias", int64_t{b_ih ? 1 : 0});
  auto out = runtime::run_graph(spec, build_lstm_cell, in);
  return {out[0], out[1], out[2]};
}

void build_lstm_cell_backward(Graph& g, const GraphSpec& s) {
  Inputs p(g, s);
  const int64_t h = s.input(0).shape[1];
  GTensor c = p.add("cx"), c_new = p.add("cy"), ws = p.add("workspace");
  GTensor i = chunk(g, ws, 0, h), f = chunk(g, ws, 1, h), cand = chunk(g, ws, 2, h), o = chunk(g, ws, 3, h);
  GTensor tanh_cy = tanh(g, c_new);
  // d(loss)/d(cy) through both outputs, and d/d(o) before o's sigmoid.
  GTensor gcy, go;
  if (s.int_attr("has_grad_hy")) {
    GTensor ghy = p.add("grad_hy");
    GTensor through_tanh = g.mul(g.mul(ghy, o), one_minus(g, g.mul(tanh_cy, tanh_cy)));
    gcy = s.int_attr("has_grad_cy") ? g.add(through_tanh, p.add("grad_cy")) : through_tanh;
    go = g.mul(g.mul(ghy, tanh_cy), g.mul(o, one_minus(g, o)));
  } else {
    gcy = p.add("grad_cy");
    go = g.mul(o, g.constant(0.0, g.type(o).dtype));
  }
  GTensor gi = g.mul(g.mul(gcy, cand), g.mul(i, one_minus(g, i)));
  GTensor gf = g.mul(g.mul(gcy, c), g.mul(f, one_minus(g, f)));
  GTensor gg = g.mul(g.mul(gcy, i), one_minus(g, g.mul(cand, cand)));
  GTensor grad_gates = g.concat({gi, gf, gg, go}, 1);
  p.output(grad_gates);
  p.output(g.mul(gcy, f));
  if (s.int_attr("has_bias")) p.output(g.reshape(g.reduce(graph::NodeKind::ReduceSum, grad_gates, {0}), {4 * h}));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_cell_backward(const std::optional<at::Tensor>& grad_hy_,
                                                                  const std::optional<at::Tensor>& grad_cy_,
                                                                  const at::Tensor& cx, const at::Tensor& cy,
                                                                  const at::Tensor& workspace, bool has_bias) {
  auto grad_hy = defined(grad_hy_), grad_cy = defined(grad_cy_);
  const char* op = "_thnn_fused_lstm_cell_backward_impl";
  TORCH_CHECK(workspace.dim() == 2 && workspace.size(1) == 4 * cx.size(1) && cy.sizes() == cx.sizes(), op,
              ": workspace ", workspace.sizes(), " does not fit cx ", cx.sizes(), " and cy ", cy.sizes());
  if (!grad_hy && !grad_cy) return {at::Tensor(), at::Tensor(), at::Tensor()};
  if (workspace.numel() == 0) {
    at::Tensor gg = at::zeros_like(workspace);
    return {gg, at::zeros_like(cx), has_bias ? gg.sum(0) : at::Tensor()};
  }
  std::vector<at::Tensor> in = {cx, cy, workspace};
  if (grad_hy) in.push_back(grad_hy->to(cx.scalar_type()));
  if (grad_cy) in.push_back(grad_cy->to(cx.scalar_type()));
  auto spec = spec_for(op, in);
  spec.attr("has_grad_hy", int64_t{grad_hy ? 1 : 0})
      .attr("has_grad_cy", int64_t{grad_cy ? 1 : 0})
      .attr("has_bias", int64_t{has_bias ? 1 : 0});
  auto out = runtime::run_graph(spec, build_lstm_cell_backward, in);
  return {out[0], out[1], has_bias ? out[2] : at::Tensor()};
}

void build_gru_cell(Graph& g, const GraphSpec& s) {
  Inputs p(g, s);
  const int64_t h = s.input(2).shape[1];
  GTensor igs = p.add("input_gates"), hgs = p.add("hidden_gates"), x = p.add("hx");
  if (s.int_attr("has_bias")) {
    igs = g.add(igs, p.add("input_bias"));
    hgs = g.add(hgs, p.add("hidden_bias"));
  }
  GTensor r = sigmoid(g, g.add(chunk(g, igs, 0, h), chunk(g, hgs, 0, h)));
  GTensor z = sigmoid(g, g.add(chunk(g, igs, 1, h), chunk(g, hgs, 1, h)));
  GTensor hn = chunk(g, hgs, 2, h);
  GTensor n = tanh(g, g.add(chunk(g, igs, 2, h), g.mul(r, hn)));
  GTensor hy = g.add(n, g.mul(z, g.sub(x, n)));
  p.output(hy);
  p.output(g.concat({r, z, n, x, hn}, 1));
}

std::tuple<at::Tensor, at::Tensor> gru_cell(const at::Tensor& ig, const at::Tensor& hg, const at::Tensor& hx,
                                            const std::optional<at::Tensor>& b_ih_,
                                            const std::optional<at::Tensor>& b_hh_) {
  auto b_ih = defined(b_ih_), b_hh = defined(b_hh_);
  check_cell("_thnn_fused_gru_cell", ig, hg, hx, b_ih, b_hh, 3);
  const int64_t h = hx.size(1);
  if (ig.numel() == 0) return {at::empty_like(hx), at::empty({hx.size(0), 5 * h}, hx.options())};
  std::vector<at::Tensor> in = {ig, hg, hx};
  if (b_ih) in.insert(in.end(), {*b_ih, *b_hh});
  auto spec = spec_for("aten::_thnn_fused_gru_cell", in);
  spec.attr("has_bias", int64_t{b_ih ? 1 : 0});
  auto out = runtime::run_graph(spec, build_gru_cell, in);
  return {out[0], out[1]};
}

void build_gru_cell_backward(Graph& g, const GraphSpec& s) {
  Inputs p(g, s);
  const int64_t h = s.input(0).shape[1];
  GTensor ghy = p.add("grad_hy"), ws = p.add("workspace");
  GTensor r = chunk(g, ws, 0, h), z = chunk(g, ws, 1, h), n = chunk(g, ws, 2, h), x = chunk(g, ws, 3, h),
          hn = chunk(g, ws, 4, h);
  // d/d(in + r*hn), d/d(z before its sigmoid), d/d(r before its sigmoid).
  GTensor gn = g.mul(g.mul(ghy, one_minus(g, z)), one_minus(g, g.mul(n, n)));
  GTensor gz = g.mul(g.mul(ghy, g.sub(x, n)), g.mul(z, one_minus(g, z)));
  GTensor gr = g.mul(g.mul(gn, hn), g.mul(r, one_minus(g, r)));
  GTensor grad_input_gates = g.concat({gr, gz, gn}, 1);
  GTensor grad_hidden_gates = g.concat({gr, gz, g.mul(gn, r)}, 1);
  p.output(grad_input_gates);
  p.output(grad_hidden_gates);
  p.output(g.mul(ghy, z));
  if (s.int_attr("has_bias")) {
    p.output(g.reshape(g.reduce(graph::NodeKind::ReduceSum, grad_input_gates, {0}), {3 * h}));
    p.output(g.reshape(g.reduce(graph::NodeKind::ReduceSum, grad_hidden_gates, {0}), {3 * h}));
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> gru_cell_backward(
    const at::Tensor& grad_hy, const at::Tensor& workspace, bool has_bias) {
  const char* op = "_thnn_fused_gru_cell_backward";
  TORCH_CHECK(grad_hy.dim() == 2 && workspace.dim() == 2 && workspace.size(1) == 5 * grad_hy.size(1) &&
                  workspace.size(0) == grad_hy.size(0),
              op, ": workspace ", workspace.sizes(), " does not fit grad_hy ", grad_hy.sizes());
  const int64_t h = grad_hy.size(1);
  if (grad_hy.numel() == 0) {
    at::Tensor gates = at::zeros({grad_hy.size(0), 3 * h}, grad_hy.options());
    at::Tensor gb = has_bias ? gates.sum(0) : at::Tensor();
    return {gates, gates.clone(), at::zeros_like(grad_hy), gb, has_bias ? gb.clone() : at::Tensor()};
  }
  std::vector<at::Tensor> in = {grad_hy, workspace.to(grad_hy.scalar_type())};
  auto spec = spec_for(op, in);
  spec.attr("has_bias", int64_t{has_bias ? 1 : 0});
  auto out = runtime::run_graph(spec, build_gru_cell_backward, in);
  if (!has_bias) return {out[0], out[1], out[2], at::Tensor(), at::Tensor()};
  return {out[0], out[1], out[2], out[3], out[4]};
}
}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("_thnn_fused_lstm_cell", TORCH_FN(lstm_cell));
  m.impl("_thnn_fused_lstm_cell_backward_impl", TORCH_FN(lstm_cell_backward));
  m.impl("_thnn_fused_gru_cell", TORCH_FN(gru_cell));
  m.impl("_thnn_fused_gru_cell_backward", TORCH_FN(gru_cell_backward));
}

}  // namespace mps_ext::ops
