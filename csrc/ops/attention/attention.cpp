// mps_ext::scaled_dot_product_attention: F.scaled_dot_product_attention's
// semantics on the graph runtimes.
//
// The public op is composite (like aten's own): it checks arguments, views the
// inputs as rank 4, draws the dropout mask, and calls the internal op
// mps_ext::_sdpa, which has CPU/Meta/PrivateUse1/MPS/Autograd kernels and runs
// one graph: a ScaledDotProductAttention node (prefill; the reference runtime
// runs ATen's CPU flash attention for it), the "sdpa_decode" kernel node for
// 1..8 queries (split-K over the keys, sdpa_decode_kernel.cpp; its
// decomposition is the plain node), or, with dropout, the softmax chain.
// The backward (mps_ext::_sdpa_backward) recomputes the probabilities in one
// graph; grouped-query heads are a broadcast dim there too, never expanded.
#include "ops/attention/attention.h"

#include <ATen/ATen.h>
#include <ATen/ExpandUtils.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cmath>
#include <limits>

#include "ops/op_utils.h"

namespace mps_ext::ops::attention {
using graph::Graph;
using graph::NodeKind;
using runtime::GraphSpec;
using GT = graph::Tensor;

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<int64_t> concat(at::IntArrayRef a, at::IntArrayRef b) {
  std::vector<int64_t> r = a.vec();
  r.insert(r.end(), b.begin(), b.end());
  return r;
}

at::IntArrayRef leading(const at::Tensor& t, int64_t trailing) { return t.sizes().slice(0, t.dim() - trailing); }

std::vector<int64_t> broadcast3(const char* op, at::IntArrayRef a, at::IntArrayRef b, at::IntArrayRef c) {
  try {
    return at::infer_size(at::infer_size(a, b), c);
  } catch (const c10::Error&) {
    TORCH_CHECK(false, op, ": the batch dims of query ", a, ", key ", b, " and value ", c, " do not broadcast");
  }
}
}  // namespace

Attention4d normalize(const char* op, const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                      const std::optional<at::Tensor>& attn_mask, double dropout_p, bool is_causal,
                      std::optional<double> scale, bool enable_gqa) {
  TORCH_CHECK(query.dim() >= 2 && key.dim() >= 2 && value.dim() >= 2, op,
              ": expected query, key and value to have at least 2 dimensions, but got query.dim() ", query.dim(),
              ", key.dim() ", key.dim(), " and value.dim() ", value.dim());
  TORCH_CHECK_TYPE(at::isFloatingType(query.scalar_type()), op, ": expected a floating-point 'query', but got ",
                   query.scalar_type());
  TORCH_CHECK_TYPE(key.scalar_type() == query.scalar_type() && value.scalar_type() == query.scalar_type(), op,
                   ": expected query, key, and value to have the same dtype, but got query.dtype: ",
                   query.scalar_type(), ", key.dtype: ", key.scalar_type(), " and value.dtype: ", value.scalar_type());
  TORCH_CHECK(key.device() == query.device() && value.device() == query.device(), op,
              ": expected query, key and value on one device, but got ", query.device(), ", ", key.device(), ", ",
              value.device());
  TORCH_CHECK(key.size(-1) == query.size(-1), op,
              ": query and key must have the same embedding dim (last dim), but got query ", query.sizes(),
              " and key ", key.sizes());
  TORCH_CHECK(key.size(-2) == value.size(-2), op,
              ": key and value must have the same sequence length (dim -2), but got key ", key.sizes(),
              " and value ", value.sizes());
  TORCH_CHECK_VALUE(dropout_p >= 0 && dropout_p <= 1, op, ": dropout_p must be in [0, 1], but got ", dropout_p);
  TORCH_CHECK(!(is_causal && attn_mask && attn_mask->defined()), op,
              ": explicit attn_mask should not be set when is_causal=True");
  const int64_t L = query.size(-2), E = query.size(-1), S = key.size(-2), Ev = value.size(-1);

  Attention4d r;
  std::vector<int64_t> batch;  // (N...), the head dim last
  bool gqa = false;
  if (enable_gqa && query.dim() >= 3 && key.dim() >= 3 && value.dim() >= 3) {
    int64_t hq = query.size(-3), hk = key.size(-3);
    TORCH_CHECK(value.size(-3) == hk, op, ": key and value must have the same number of heads (dim -3) with ",
                "enable_gqa, but got key ", key.sizes(), " and value ", value.sizes());
    TORCH_CHECK(hk > 0 ? hq % hk == 0 : hq == 0, op, ": the number of heads in key and value (", hk,
                ") must divide the number of heads in query (", hq, ")");
    gqa = hq != hk;
  }
  if (gqa) {
    std::vector<int64_t> outer = broadcast3(op, leading(query, 3), leading(key, 3), leading(value, 3));
    int64_t b = c10::multiply_integers(outer);
    int64_t hq = query.size(-3), hk = key.size(-3);
    r.q = query.expand(concat(outer, {hq, L, E})).reshape({b, hq, L, E});
    r.k = key.expand(concat(outer, {hk, S, E})).reshape({b, hk, S, E});
    r.v = value.expand(concat(outer, {hk, S, Ev})).reshape({b, hk, S, Ev});
    batch = concat(outer, {hq});
  } else {
    batch = broadcast3(op, leading(query, 2), leading(key, 2), leading(value, 2));
    int64_t h = batch.empty() ? 1 : batch.back();
    int64_t b = batch.empty() ? 1 : c10::multiply_integers(batch.begin(), batch.end() - 1);
    r.q = query.expand(concat(batch, {L, E})).reshape({b, h, L, E});
    r.k = key.expand(concat(batch, {S, E})).reshape({b, h, S, E});
    r.v = value.expand(concat(batch, {S, Ev})).reshape({b, h, S, Ev});
  }
  if (attn_mask && attn_mask->defined()) {
    const at::Tensor& m = *attn_mask;
    TORCH_CHECK(m.device() == query.device(), op, ": expected attn_mask on ", query.device(), ", but got ",
                m.device());
    TORCH_CHECK_TYPE(m.scalar_type() == at::kBool || m.scalar_type() == query.scalar_type(), op,
                     ": expected attn_mask dtype to be bool or to match query dtype, but got attn_mask.dtype: ",
                     m.scalar_type(), " and query.dtype: ", query.scalar_type());
    std::vector<int64_t> full = concat(batch, {L, S});
    TORCH_CHECK(static_cast<size_t>(m.dim()) <= full.size() && at::is_expandable_to(m.sizes(), full), op,
                ": attn_mask of shape ", m.sizes(), " is not broadcastable to the attention weights' shape ",
                at::IntArrayRef(full));
    std::vector<int64_t> padded(full.size() - m.dim(), 1);
    padded.insert(padded.end(), m.sizes().begin(), m.sizes().end());
    at::Tensor mp = m.reshape(padded);
    size_t n_outer = batch.empty() ? 0 : batch.size() - 1;
    int64_t h = batch.empty() ? 1 : padded[n_outer];
    bool outer_broadcast = std::all_of(padded.begin(), padded.begin() + n_outer, [](int64_t d) { return d == 1; });
    if (outer_broadcast) {
      r.mask = mp.reshape({1, h, padded[padded.size() - 2], padded.back()});
    } else {  // per-batch masks: a copy only if the batch dims themselves broadcast
      std::vector<int64_t> shape(full.begin(), full.begin() + n_outer);
      shape.insert(shape.end(), padded.end() - 3, padded.end());
      r.mask = mp.expand(shape).reshape({r.q.size(0), h, padded[padded.size() - 2], padded.back()});
    }
  }
  r.out_shape = concat(batch, {L, Ev});
  r.scale = scale ? *scale : 1.0 / std::sqrt(static_cast<double>(E));
  return r;
}

// --- graphs ---------------------------------------------------------------------
namespace {
GT scalar(Graph& g, double value, graph::DType dtype) { return g.constant(value, dtype); }

// A bool mask (True takes part) as an additive one in `dtype`.
GT additive(Graph& g, GT mask, graph::DType dtype) {
  if (g.type(mask).dtype != graph::DType::Bool) return g.type(mask).dtype == dtype ? mask : g.cast(mask, dtype);
  return g.select(mask, scalar(g, 0, dtype), scalar(g, -kInf, dtype));
}

// Rank-5 views for grouped-query heads: q [B, Hkv, G, L, E] against
// k/v [B, Hkv, 1, S, E]; a [B|1, H|1, L|1, S|1] mask follows q.
struct Heads {
  int64_t b, hkv, groups;
};
Heads heads(const Graph& g, GT q, GT k) {
  const auto& sq = g.type(q).shape;
  const auto& sk = g.type(k).shape;
  return {sq[0], sk[1], sk[1] == 0 ? 1 : sq[1] / sk[1]};
}
GT split_q(Graph& g, GT x, Heads h) {
  const auto& s = g.type(x).shape;
  return g.reshape(x, {s[0], h.hkv, h.groups, s[2], s[3]});
}
GT split_kv(Graph& g, GT x) {
  const auto& s = g.type(x).shape;
  return g.reshape(x, {s[0], s[1], 1, s[2], s[3]});
}
GT split_mask(Graph& g, GT m, Heads h) {
  const auto& s = g.type(m).shape;
  bool per_head = s[1] != 1;
  return g.reshape(m, {s[0], per_head ? h.hkv : 1, per_head ? h.groups : 1, s[2], s[3]});
}
GT merge_heads(Graph& g, GT x5) {
  const auto& s = g.type(x5).shape;
  return g.reshape(x5, {s[0], s[1] * s[2], s[3], s[4]});
}
GT transpose5(Graph& g, GT x) { return g.transpose(x, {0, 1, 2, 4, 3}); }

// The type the chain computes in (ATen's opmath): float32 for reduced types.
graph::DType math_dtype(graph::DType t) { return t == graph::DType::Float64 ? t : graph::DType::Float32; }

// Softmax probabilities [B, Hkv, G, L, S] in q5's dtype; fully masked rows
// are 0 (torch's safe softmax). `future`: bool [L, S], True above the diagonal.
GT probabilities(Graph& g, GT q5, GT k5, std::optional<GT> mask5, std::optional<GT> future, double scale) {
  const auto math = g.type(q5).dtype;
  GT s = g.mul(g.matmul(q5, transpose5(g, k5)), scalar(g, scale, math));
  if (mask5) s = g.add(s, *mask5);
  if (future) s = g.select(*future, scalar(g, -kInf, math), s);
  GT p = g.softmax(s, 4);
  return g.select(g.unary(NodeKind::IsNaN, p), scalar(g, 0, math), p);
}

GT to_math(Graph& g, GT x, graph::DType math) { return g.type(x).dtype == math ? x : g.cast(x, math); }

// Graph inputs after q, k, v: [mask] [dropout mask] [future].
struct Extras {
  std::optional<GT> mask, keep, future;
};
Extras extras(Graph& g, const GraphSpec& s, size_t first) {
  Extras e;
  size_t i = first;
  if (s.int_attr("has_mask")) e.mask = g.placeholder(s.input(i++), "attn_mask");
  if (s.int_attr("has_dropout")) e.keep = g.placeholder(s.input(i++), "dropout_mask");
  if (s.int_attr("has_future")) e.future = g.placeholder(s.input(i++), "future");
  return e;
}

void build_forward(Graph& g, const GraphSpec& s) {
  GT q = g.placeholder(s.input(0), "query"), k = g.placeholder(s.input(1), "key"),
     v = g.placeholder(s.input(2), "value");
  graph::DType dtype = s.input(0).dtype;
  Extras e = extras(g, s, 3);
  double scale = s.float_attr("scale");
  bool is_causal = s.int_attr("is_causal") != 0;
  if (e.keep) {  // dropout: the softmax chain in opmath
    const graph::DType math = math_dtype(dtype);
    Heads h = heads(g, q, k);
    std::optional<GT> mask5;
    if (e.mask) mask5 = split_mask(g, additive(g, *e.mask, math), h);
    GT p = probabilities(g, split_q(g, to_math(g, q, math), h), split_kv(g, to_math(g, k, math)), mask5, e.future,
                         scale);
    p = g.mul(p, split_mask(g, to_math(g, *e.keep, math), h));
    GT out = merge_heads(g, g.matmul(p, split_kv(g, to_math(g, v, math))));
    g.output(dtype == math ? out : g.cast(out, dtype));
    return;
  }
  std::optional<GT> mask;
  if (e.mask) mask = additive(g, *e.mask, dtype);
  if (s.int_attr("decode")) {
    std::vector<GT> in = {q, k, v};
    if (mask) in.push_back(*mask);
    graph::Attrs attrs = {{"scale", scale}, {"is_causal", int64_t{is_causal}}};
    g.output(g.kernel("sdpa_decode", in, attrs, [scale, is_causal](Graph& d, const std::vector<GT>& x) {
      return d.scaled_dot_product_attention(x[0], x[1], x[2], x.size() > 3 ? std::optional<GT>(x[3]) : std::nullopt,
                                            scale, is_causal);
    }));
    return;
  }
  g.output(g.scaled_dot_product_attention(q, k, v, mask, scale, is_causal));
}

// dS = P * (dP - rowsum(dP * P)); dQ = scale dS K, dK = scale dS^T Q,
// dV = P^T dO (group dim summed for grouped-query heads), dMask = dS.
void build_backward(Graph& g, const GraphSpec& s) {
  GT go = g.placeholder(s.input(0), "grad_out"), q = g.placeholder(s.input(1), "query"),
     k = g.placeholder(s.input(2), "key"), v = g.placeholder(s.input(3), "value");
  graph::DType dtype = s.input(1).dtype;
  const auto math = math_dtype(dtype);  // opmath
  Extras e = extras(g, s, 4);
  double scale = s.float_attr("scale");
  Heads h = heads(g, q, k);
  GT q5 = split_q(g, to_math(g, q, math), h), k5 = split_kv(g, to_math(g, k, math)),
     v5 = split_kv(g, to_math(g, v, math));
  GT go5 = split_q(g, to_math(g, go, math), h);
  std::optional<GT> mask5, keep5;
  if (e.mask) mask5 = split_mask(g, additive(g, *e.mask, math), h);
  if (e.keep) keep5 = split_mask(g, to_math(g, *e.keep, math), h);
  GT p = probabilities(g, q5, k5, mask5, e.future, scale);
  GT pd = keep5 ? g.mul(p, *keep5) : p;
  GT dv = g.reduce(NodeKind::ReduceSum, g.matmul(transpose5(g, pd), go5), {2});
  GT dp = g.matmul(go5, transpose5(g, v5));
  if (keep5) dp = g.mul(dp, *keep5);
  GT ds = g.mul(p, g.sub(dp, g.reduce(NodeKind::ReduceSum, g.mul(dp, p), {4})));
  GT dq = g.mul(g.matmul(ds, k5), scalar(g, scale, math));
  GT dk = g.mul(g.reduce(NodeKind::ReduceSum, g.matmul(transpose5(g, ds), q5), {2}), scalar(g, scale, math));
  auto back = [&](GT x5, const graph::Shape& shape) {
    GT x = g.reshape(x5, shape);
    return dtype == math ? x : g.cast(x, dtype);
  };
  g.output(back(dq, s.input(1).shape));
  g.output(back(dk, s.input(2).shape));
  g.output(back(dv, s.input(3).shape));
  if (s.int_attr("mask_grad")) {  // dS summed to the mask's broadcast shape
    const graph::Shape& ms = s.input(4).shape;
    GT ds4 = merge_heads(g, ds);
    std::vector<int64_t> axes;
    for (int64_t d = 0; d < 4; ++d)
      if (ms[d] == 1 && g.type(ds4).shape[d] != 1) axes.push_back(d);
    if (!axes.empty()) ds4 = g.reduce(NodeKind::ReduceSum, ds4, axes);
    g.output(s.input(4).dtype == math ? ds4 : g.cast(ds4, s.input(4).dtype));
  }
}

// bool [L, S], True where key j is in query i's future (j > i).
at::Tensor future_mask(int64_t l, int64_t s) {
  return at::ones({l, s}, at::TensorOptions().dtype(at::kBool)).triu(1);
}

void check_rank4(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op, ": expects rank-4 query, key, value, got ", q.sizes(),
              ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK(k.size(0) == q.size(0) && v.size(0) == q.size(0) && v.size(1) == k.size(1) &&
                  (k.size(1) == 0 ? q.size(1) == 0 : q.size(1) % k.size(1) == 0) && k.size(3) == q.size(3) &&
                  v.size(2) == k.size(2),
              op, ": inconsistent shapes: query ", q.sizes(), ", key ", k.sizes(), ", value ", v.sizes());
}
}  // namespace

at::Tensor forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                   const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& dropout_mask,
                   bool is_causal, double scale, double dropout_p) {
  check_rank4("_sdpa", q, k, v);
  const int64_t L = q.size(2), S = k.size(2);
  std::vector<int64_t> out_shape = {q.size(0), q.size(1), L, v.size(3)};
  if (q.numel() == 0 || v.size(3) == 0) return at::empty(out_shape, q.options());
  if (S == 0) return at::zeros(out_shape, q.options());
  bool has_mask = mask && mask->defined(), has_dropout = dropout_mask && dropout_mask->defined();
  bool decode = !has_dropout && L <= kMaxDecodeQueries;
  GraphSpec spec("mps_ext::_sdpa");
  std::vector<at::Tensor> inputs = {q, k, v};
  spec.input(q);
  // Decode: one graph for every key length (a KV cache growing per token).
  if (decode) spec.input(k, {2}).input(v, {2});
  else spec.input(k).input(v);
  if (has_mask) {
    if (decode && mask->size(-1) != 1) spec.input(*mask, {3});
    else spec.input(*mask);
    inputs.push_back(*mask);
  }
  if (has_dropout) {
    spec.input(*dropout_mask);
    inputs.push_back(*dropout_mask);
  }
  bool has_future = has_dropout && is_causal;
  if (has_future) {
    at::Tensor future = future_mask(L, S);
    spec.input(future);
    inputs.push_back(future);
  }
  spec.attr("has_mask", int64_t{has_mask}).attr("has_dropout", int64_t{has_dropout})
      .attr("has_future", int64_t{has_future}).attr("decode", int64_t{decode})
      .attr("is_causal", int64_t{is_causal}).attr("scale", scale);
  (void)dropout_p;  // already folded into dropout_mask (keep / (1 - p))
  return runtime::run_graph(spec, build_forward, inputs)[0];
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& dropout_mask, bool is_causal,
    double scale, double dropout_p, bool want_mask_grad) {
  check_rank4("_sdpa_backward", q, k, v);
  bool has_mask = mask && mask->defined(), has_dropout = dropout_mask && dropout_mask->defined();
  bool mask_grad = want_mask_grad && has_mask && mask->scalar_type() != at::kBool;
  auto empty_mask_grad = [&] { return mask_grad ? at::zeros_like(*mask) : at::empty({0}, q.options()); };
  if (q.numel() == 0 || k.numel() == 0 || v.numel() == 0 || grad_out.numel() == 0)
    return {at::zeros_like(q), at::zeros_like(k), at::zeros_like(v), empty_mask_grad()};
  at::Tensor go = grad_out.scalar_type() == q.scalar_type() ? grad_out : grad_out.to(q.scalar_type());
  GraphSpec spec("mps_ext::_sdpa_backward");
  spec.input(go).input(q).input(k).input(v);
  std::vector<at::Tensor> inputs = {go, q, k, v};
  if (has_mask) {
    spec.input(*mask);
    inputs.push_back(*mask);
  }
  if (has_dropout) {
    spec.input(*dropout_mask);
    inputs.push_back(*dropout_mask);
  }
  if (is_causal) {
    at::Tensor future = future_mask(q.size(2), k.size(2));
    spec.input(future);
    inputs.push_back(future);
  }
  spec.attr("has_mask", int64_t{has_mask}).attr("has_dropout", int64_t{has_dropout})
      .attr("has_future", int64_t{is_causal}).attr("mask_grad", int64_t{mask_grad}).attr("scale", scale);
  (void)dropout_p;
  std::vector<at::Tensor> g = runtime::run_graph(spec, build_backward, inputs);
  return {g[0], g[1], g[2], mask_grad ? g[3] : at::empty({0}, q.options())};
}

// --- op kernels -----------------------------------------------------------------
namespace {
at::Tensor sdpa_kernel(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& dropout_mask,
                       bool is_causal, double scale, double dropout_p) {
  return forward(q, k, v, mask, dropout_mask, is_causal, scale, dropout_p);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sdpa_backward_kernel(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& dropout_mask, bool is_causal,
    double scale, double dropout_p, bool mask_grad) {
  return backward(grad_out, q, k, v, mask, dropout_mask, is_causal, scale, dropout_p, mask_grad);
}

// Meta kernels see symbolic sizes (torch.compile): sizes stay SymInts.
at::Tensor sdpa_meta(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, bool, double, double) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "_sdpa: expects rank-4 query, key, value");
  return at::empty_symint({q.sym_size(0), q.sym_size(1), q.sym_size(2), v.sym_size(3)}, q.options());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sdpa_backward_meta(
    const at::Tensor&, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>&, bool, double, double, bool mask_grad) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "_sdpa_backward: expects rank-4 query, key, value");
  bool want = mask_grad && mask && mask->defined() && mask->scalar_type() != at::kBool;
  return {at::empty_like(q), at::empty_like(k), at::empty_like(v),
          want ? at::empty_like(*mask) : at::empty({0}, q.options())};
}

// --- autograd ----------------------------------------------------------------------
at::Tensor call_sdpa(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& keep, bool is_causal,
                     double scale, double dropout_p) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mps_ext::_sdpa", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, bool,
                                         double, double)>();
  return op.call(q, k, v, mask, keep, is_causal, scale, dropout_p);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> call_sdpa_backward(
    const at::Tensor& go, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& keep, bool is_causal, double scale,
    double dropout_p, bool mask_grad) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("mps_ext::_sdpa_backward", "")
          .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
              const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
              const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, bool, double, double, bool)>();
  return op.call(go, q, k, v, mask, keep, is_causal, scale, dropout_p, mask_grad);
}

// Function::apply wants defined tensors: an absent mask travels as a 0-element
// stand-in.
std::optional<at::Tensor> opt(const at::Tensor& t) {
  return t.defined() && t.sym_numel() != 0 ? std::optional<at::Tensor>(t) : std::nullopt;
}
at::Tensor or_empty(const std::optional<at::Tensor>& t, const at::Tensor& like) {
  return t && t->defined() ? *t : at::empty({0}, like.options());
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct SdpaFn : torch::autograd::Function<SdpaFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& mask, const at::Tensor& keep, bool is_causal, double scale,
                            double dropout_p) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({q, k, v, mask, keep});
    ctx->saved_data["is_causal"] = is_causal;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["dropout_p"] = dropout_p;
    return call_sdpa(q, k, v, opt(mask), opt(keep), is_causal, scale, dropout_p);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& mask = saved[3];
    bool mask_grad = opt(mask) && mask.requires_grad();
    auto [dq, dk, dv, dm] = call_sdpa_backward(grads[0], saved[0], saved[1], saved[2], opt(mask), opt(saved[4]),
                                               ctx->saved_data["is_causal"].toBool(),
                                               ctx->saved_data["scale"].toDouble(),
                                               ctx->saved_data["dropout_p"].toDouble(), mask_grad);
    return {dq, dk, dv, mask_grad ? dm : at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor sdpa_autograd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& keep,
                         bool is_causal, double scale, double dropout_p) {
  bool mask_needs = mask && mask->defined() && requires_grad(*mask);
  if (!requires_grad(q) && !requires_grad(k) && !requires_grad(v) && !mask_needs) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_sdpa(q, k, v, mask, keep, is_causal, scale, dropout_p);
  }
  return SdpaFn::apply(q, k, v, or_empty(mask, q), or_empty(keep, q), is_causal, scale, dropout_p);
}

// The backward has no derivative of its own: differentiating it (double
// backward) is an error rather than a silently constant gradient.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sdpa_backward_autograd(
    const at::Tensor& go, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& keep, bool is_causal, double scale,
    double dropout_p, bool mask_grad) {
  bool mask_needs = mask && mask->defined() && requires_grad(*mask);
  TORCH_CHECK(!(requires_grad(go) || requires_grad(q) || requires_grad(k) || requires_grad(v) || mask_needs),
              "mps_ext.scaled_dot_product_attention: double backward (create_graph=True) is not supported");
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_sdpa_backward(go, q, k, v, mask, keep, is_causal, scale, dropout_p, mask_grad);
}

// The public op: composite, so autograd flows through the views into _sdpa.
at::Tensor scaled_dot_product_attention(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                        const std::optional<at::Tensor>& attn_mask, double dropout_p, bool is_causal,
                                        std::optional<double> scale, bool enable_gqa) {
  Attention4d a = normalize("scaled_dot_product_attention", query, key, value, attn_mask, dropout_p, is_causal,
                            scale, enable_gqa);
  std::optional<at::Tensor> keep;
  if (dropout_p > 0) {  // drawn from the device's generator; keep / (1 - p)
    std::vector<int64_t> shape = {a.q.size(0), a.q.size(1), a.q.size(2), a.k.size(2)};
    keep = dropout_p < 1 ? at::empty(shape, a.q.options()).bernoulli_(1 - dropout_p).div_(1 - dropout_p)
                         : at::zeros(shape, a.q.options());
  }
  return call_sdpa(a.q, a.k, a.v, a.mask, keep, is_causal, a.scale, dropout_p).view(a.out_shape);
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(mps_ext, m) {
  m.def("scaled_dot_product_attention(Tensor query, Tensor key, Tensor value, Tensor? attn_mask=None, "
        "float dropout_p=0.0, bool is_causal=False, *, float? scale=None, bool enable_gqa=False) -> Tensor");
  // Rank-4 internals: q [B, H, L, E], k/v [B, Hkv, S, E|Ev], mask [B|1, H|1, L|1, S|1] (bool or additive),
  // dropout_mask [B, H, L, S] = keep / (1 - dropout_p).
  m.def("_sdpa(Tensor query, Tensor key, Tensor value, Tensor? attn_mask, Tensor? dropout_mask, bool is_causal, "
        "float scale, float dropout_p) -> Tensor");
  m.def("_sdpa_backward(Tensor grad_out, Tensor query, Tensor key, Tensor value, Tensor? attn_mask, "
        "Tensor? dropout_mask, bool is_causal, float scale, float dropout_p, bool mask_grad) "
        "-> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mps_ext, CompositeImplicitAutograd, m) {
  m.impl("scaled_dot_product_attention", &scaled_dot_product_attention);
}

TORCH_LIBRARY_IMPL(mps_ext, CPU, m) {
  m.impl("_sdpa", &sdpa_kernel);
  m.impl("_sdpa_backward", &sdpa_backward_kernel);
}

TORCH_LIBRARY_IMPL(mps_ext, Meta, m) {
  m.impl("_sdpa", &sdpa_meta);
  m.impl("_sdpa_backward", &sdpa_backward_meta);
}

TORCH_LIBRARY_IMPL(mps_ext, Autograd, m) {
  m.impl("_sdpa", &sdpa_autograd);
  m.impl("_sdpa_backward", &sdpa_backward_autograd);
}

TORCH_LIBRARY_IMPL(mps_ext, PrivateUse1, m) {
  m.impl("_sdpa", &sdpa_kernel);
  m.impl("_sdpa_backward", &sdpa_backward_kernel);
}

#ifdef MPS_EXT_WITH_MPSGRAPH
TORCH_LIBRARY_IMPL(mps_ext, MPS, m) {
  m.impl("_sdpa", &sdpa_kernel);
  m.impl("_sdpa_backward", &sdpa_backward_kernel);
}
#endif

}  // namespace mps_ext::ops::attention
