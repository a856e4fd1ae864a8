// Pooling on the mpsgraph device: max_pool2d/3d (with indices), avg_pool2d/3d,
// adaptive avg/max pools 2d/3d and their backwards. (The 1-d forms are
// CompositeImplicit in torch and reach the 2-d ops.) Fixed windows are the
// IR's MaxPool/MaxPoolIndices/MaxPoolGradient/AvgPool/AvgPoolGradient nodes,
// 1:1 MPSGraph's pooling. Adaptive pools with windows that tile the input are
// AvgPool/MaxPool too; otherwise torch's windows [floor(i*I/O), ceil((i+1)*I/O))
// per spatial dim become masks built from Iota: averages as one matmul per
// dim with the [O, I] window-weight matrix, maxima as a masked reduction per
// dim carrying the flat index along.
//
// Arguments are checked by ATen's own meta functions (torch's checks and
// messages, and its output shape) before anything is built: called in C++
// where they are structured kernels, else by running the op on meta tensors.
#include <ATen/ATen.h>
#include <ATen/ops/adaptive_max_pool2d_meta.h>
#include <ATen/ops/adaptive_max_pool3d_meta.h>
#include <ATen/ops/avg_pool2d_meta.h>
#include <ATen/ops/avg_pool3d_meta.h>
#include <ATen/ops/max_pool2d_with_indices_meta.h>

#include "ops/aten/native.h"
#include "ops/op_utils.h"
#include "runtime/reference/kernels.h"

namespace mps_ext::ops::aten {
namespace {
using graph::DType;
using graph::Graph;
using graph::NodeKind;
using graph::PoolParams;
using runtime::GraphSpec;
using G = graph::Tensor;

bool float_ok(const at::Tensor& t) { return at::isFloatingType(t.scalar_type()) && graph_dtype_ok(t.scalar_type()); }

// A meta tensor with t's sizes and strides (channels_last checks see the layout).
at::Tensor meta_like(const at::Tensor& t) {
  return at::empty_strided(t.sizes(), t.strides(), t.options().device(at::kMeta));
}

// The sizes a structured kernel's meta function gives its first result, run
// directly in C++: the meta kernel the dispatcher would run for some ops
// (max_pool2d, avg_pool2d, adaptive_max_pool2d) is torch's Python
// registration, ~30-40 µs a call.
template <typename Meta>
struct ResultSizes final : Meta {
  std::vector<int64_t> sizes;
  at::Tensor none;
  const at::Tensor& maybe_get_output(int64_t) override { return none; }
  void set_output_raw_strided(int64_t output, at::IntArrayRef s, at::IntArrayRef, at::TensorOptions) override {
    if (output == 0) sizes = s.vec();
  }
};
template <typename Meta, typename... Args>
std::vector<int64_t> result_sizes(const Args&... args) {
  ResultSizes<Meta> meta;
  meta.meta(args...);
  return std::move(meta.sizes);
}

// torch's argument expansion: one value for every spatial dim, an empty
// stride means the kernel size.
std::vector<int64_t> expand(at::IntArrayRef v, size_t k, at::IntArrayRef fallback = {}) {
  if (v.empty()) return fallback.vec();
  return v.size() == 1 ? std::vector<int64_t>(k, v[0]) : v.vec();
}

PoolParams params(size_t k, at::IntArrayRef kernel, at::IntArrayRef stride, at::IntArrayRef padding,
                  at::IntArrayRef dilation, bool ceil_mode) {
  PoolParams p;
  p.kernel = expand(kernel, k);
  p.stride = expand(stride, k, p.kernel);
  p.padding = expand(padding, k);
  p.dilation = dilation.empty() ? std::vector<int64_t>(k, 1) : expand(dilation, k);
  p.ceil_mode = ceil_mode;
  return p;
}

// Batched [N, C, spatial...] view of a batched or unbatched input.
// Borrowed when already batched: an input only Python holds is lent to the
// graph run, not copied (a copy would take the GIL, see BorrowedTensors).
c10::MaybeOwned<at::Tensor> batched(const at::Tensor& t, size_t k) {
  return t.dim() == static_cast<int64_t>(k) + 1 ? c10::MaybeOwned<at::Tensor>::owned(t.unsqueeze(0))
                                                : c10::MaybeOwned<at::Tensor>::borrowed(t);
}
at::Tensor like_input(const at::Tensor& r, const at::Tensor& self, size_t k) {
  at::Tensor out = self.dim() == static_cast<int64_t>(k) + 1 ? r.squeeze(0) : r;
  // torch keeps channels_last for 4-d (and channels_last_3d for 5-d) inputs.
  auto fmt = self.suggest_memory_format();
  return fmt == at::MemoryFormat::Contiguous ? out : out.contiguous(fmt);
}

void pool_attrs(GraphSpec& spec, const PoolParams& p) {
  spec.attr("kernel", p.kernel).attr("stride", p.stride).attr("padding", p.padding).attr("dilation", p.dilation)
      .attr("ceil_mode", int64_t{p.ceil_mode});
}
PoolParams spec_params(const GraphSpec& s) {
  return {s.ints_attr("kernel"), s.ints_attr("stride"), s.ints_attr("padding"), s.ints_attr("dilation"),
          s.int_attr("ceil_mode") != 0};
}

// --- fixed windows -------------------------------------------------------------------------
// An adaptive average pool whose windows tile its input is an average pool
// (MPSGraph's), but on the reference runtime a kernel node running ATen's
// adaptive kernels: torch's own results, and cheaper than ATen's avg_pool2d
// over the same windows (1.07M vs 1.22M instructions for [16, 32, 8, 8] ->
// 4 x 4, the benchmark CNN's head).
bool tiled_adaptive(const GraphSpec& s, DType dtype) { return s.attrs().count("adaptive") && kernel_dtype(dtype); }

at::Tensor adaptive_avg_pool_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                                 const runtime::reference::NewOutput&) {
  const std::vector<int64_t> out(n.type.shape.begin() + 2, n.type.shape.end());
  return out.size() == 2 ? at::_adaptive_avg_pool2d(in[0], out) : at::_adaptive_avg_pool3d(in[0], out);
}
MPS_EXT_REFERENCE_KERNEL("aten.adaptive_avg_pool", adaptive_avg_pool_cpu);

at::Tensor adaptive_avg_pool_backward_cpu(const graph::Node&, const std::vector<at::Tensor>& in,
                                          const runtime::reference::NewOutput&) {
  return in[1].dim() == 4 ? at::_adaptive_avg_pool2d_backward(in[0], in[1]) : at::_adaptive_avg_pool3d_backward(in[0], in[1]);
}
MPS_EXT_REFERENCE_KERNEL("aten.adaptive_avg_pool_backward", adaptive_avg_pool_backward_cpu);

// attrs: kind (max | max_backward | avg | avg_backward), PoolParams, count_include_pad,
// divisor_override, adaptive (avg kinds whose windows tile an adaptive pool's input);
// max_backward: input_shape.
void build_pool(Graph& g, const GraphSpec& s) {
  const std::string& kind = s.str_attr("kind");
  PoolParams p = spec_params(s);
  if (kind == "max") {
    G x = g.placeholder(s.input(0), "self");
    g.output(g.max_pool(x, p));
    g.output(g.max_pool_indices(x, p));
    return;
  }
  if (kind == "max_backward") {
    G dy = g.placeholder(s.input(0), "grad_output");
    G idx = g.placeholder(s.input(1), "indices");
    g.output(g.max_pool_gradient(dy, idx, s.ints_attr("input_shape"), p));
    return;
  }
  const bool include = s.int_attr("count_include_pad") != 0;
  const int64_t divisor = s.int_attr("divisor_override");
  if (kind == "avg") {
    G x = g.placeholder(s.input(0), "self");
    auto pool = [p, include, divisor](Graph& d, const std::vector<G>& in) { return d.avg_pool(in[0], p, include, divisor); };
    g.output(tiled_adaptive(s, g.type(x).dtype) ? g.kernel("aten.adaptive_avg_pool", {x}, {}, pool) : pool(g, {x}));
    return;
  }
  G dy = g.placeholder(s.input(0), "grad_output");
  G x = g.placeholder(s.input(1), "self");
  auto gradient = [p, include, divisor](Graph& d, const std::vector<G>& in) {
    return d.avg_pool_gradient(in[0], in[1], p, include, divisor);
  };
  g.output(tiled_adaptive(s, g.type(x).dtype) ? g.kernel("aten.adaptive_avg_pool_backward", {dy, x}, {}, gradient)
                                              : gradient(g, {dy, x}));
}

std::tuple<at::Tensor, at::Tensor> max_pool_with_indices(size_t k, const at::Tensor& self, at::IntArrayRef kernel_size,
                                                         at::IntArrayRef stride, at::IntArrayRef padding,
                                                         at::IntArrayRef dilation, bool ceil_mode) {
  // (max_pool3d_with_indices has no structured meta function: the meta tensor)
  std::vector<int64_t> sizes =
      k == 2 ? result_sizes<at::meta::structured_max_pool2d_with_indices>(self, kernel_size, stride, padding, dilation,
                                                                          ceil_mode)
             : std::get<0>(at::max_pool3d_with_indices(meta_like(self), kernel_size, stride, padding, dilation, ceil_mode))
                   .sizes().vec();
  require(float_ok(self));
  if (c10::multiply_integers(sizes) == 0)
    return {at::empty(sizes, self.options()), at::empty(sizes, self.options().dtype(at::kLong))};
  const c10::MaybeOwned<at::Tensor> x_ = batched(self, k);
  const at::Tensor& x = *x_;
  GraphSpec spec("aten::pool");
  spec.input(x).attr("kind", std::string("max"));
  pool_attrs(spec, params(k, kernel_size, stride, padding, dilation, ceil_mode));
  auto r = runtime::run_graph(spec, build_pool, runtime::lend(x));
  return {like_input(r[0], self, k), like_input(r[1], self, k)};
}

at::Tensor max_pool_backward(size_t k, const at::Tensor& grad_output, const at::Tensor& self, at::IntArrayRef kernel_size,
                             at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode,
                             const at::Tensor& indices) {
  require(float_ok(self) && grad_output.scalar_type() == self.scalar_type() && indices.scalar_type() == at::kLong &&
          grad_output.sizes() == indices.sizes() && grad_output.dim() == self.dim());
  if (self.numel() == 0 || grad_output.numel() == 0) return at::zeros_like(self);
  const c10::MaybeOwned<at::Tensor> dy_ = batched(grad_output, k), idx_ = batched(indices, k), x_ = batched(self, k);
  const at::Tensor &dy = *dy_, &idx = *idx_, &x = *x_;
  GraphSpec spec("aten::pool_backward");
  spec.input(dy).input(idx).attr("kind", std::string("max_backward")).attr("input_shape", x.sizes().vec());
  pool_attrs(spec, params(k, kernel_size, stride, padding, dilation, ceil_mode));
  return like_input(runtime::run_graph(spec, build_pool, runtime::lend(dy, idx))[0], self, k);
}

at::Tensor avg_pool(size_t k, const at::Tensor& self, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                    at::IntArrayRef padding, bool ceil_mode, bool count_include_pad, std::optional<int64_t> divisor_override) {
  std::vector<int64_t> sizes =
      k == 2 ? result_sizes<at::meta::structured_avg_pool2d>(self, kernel_size, stride, padding, ceil_mode,
                                                             count_include_pad, divisor_override)
             : result_sizes<at::meta::structured_avg_pool3d>(self, kernel_size, stride, padding, ceil_mode,
                                                             count_include_pad, divisor_override);
  require(float_ok(self));
  if (c10::multiply_integers(sizes) == 0) return at::empty(sizes, self.options());
  const c10::MaybeOwned<at::Tensor> x_ = batched(self, k);
  const at::Tensor& x = *x_;
  GraphSpec spec("aten::pool");
  spec.input(x).attr("kind", std::string("avg")).attr("count_include_pad", int64_t{count_include_pad})
      .attr("divisor_override", divisor_override.value_or(0));
  pool_attrs(spec, params(k, kernel_size, stride, padding, {}, ceil_mode));
  return like_input(runtime::run_graph(spec, build_pool, runtime::lend(x))[0], self, k);
}

at::Tensor avg_pool_backward(size_t k, const at::Tensor& grad_output, const at::Tensor& self, at::IntArrayRef kernel_size,
                             at::IntArrayRef stride, at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                             std::optional<int64_t> divisor_override) {
  require(float_ok(self) && grad_output.scalar_type() == self.scalar_type() && grad_output.dim() == self.dim());
  TORCH_CHECK(!divisor_override || *divisor_override != 0, "divisor must be not zero");
  if (self.numel() == 0 || grad_output.numel() == 0) return at::zeros_like(self);
  const c10::MaybeOwned<at::Tensor> dy_ = batched(grad_output, k), x_ = batched(self, k);
  const at::Tensor &dy = *dy_, &x = *x_;
  GraphSpec spec("aten::pool_backward");
  spec.input(dy).input(x).attr("kind", std::string("avg_backward")).attr("count_include_pad", int64_t{count_include_pad})
      .attr("divisor_override", divisor_override.value_or(0));
  pool_attrs(spec, params(k, kernel_size, stride, padding, {}, ceil_mode));
  return like_input(runtime::run_graph(spec, build_pool, runtime::lend(dy, x))[0], self, k);
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices(const at::Tensor& self, at::IntArrayRef kernel_size,
                                                          at::IntArrayRef stride, at::IntArrayRef padding,
                                                          at::IntArrayRef dilation, bool ceil_mode) {
  return max_pool_with_indices(2, self, kernel_size, stride, padding, dilation, ceil_mode);
}
std::tuple<at::Tensor, at::Tensor> max_pool3d_with_indices(const at::Tensor& self, at::IntArrayRef kernel_size,
                                                          at::IntArrayRef stride, at::IntArrayRef padding,
                                                          at::IntArrayRef dilation, bool ceil_mode) {
  return max_pool_with_indices(3, self, kernel_size, stride, padding, dilation, ceil_mode);
}
at::Tensor max_pool2d_with_indices_backward(const at::Tensor& grad_output, const at::Tensor& self, at::IntArrayRef kernel_size,
                                            at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                            bool ceil_mode, const at::Tensor& indices) {
  return max_pool_backward(2, grad_output, self, kernel_size, stride, padding, dilation, ceil_mode, indices);
}
at::Tensor max_pool3d_with_indices_backward(const at::Tensor& grad_output, const at::Tensor& self, at::IntArrayRef kernel_size,
                                            at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                            bool ceil_mode, const at::Tensor& indices) {
  return max_pool_backward(3, grad_output, self, kernel_size, stride, padding, dilation, ceil_mode, indices);
}
at::Tensor avg_pool2d(const at::Tensor& self, at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                      bool ceil_mode, bool count_include_pad, std::optional<int64_t> divisor_override) {
  return avg_pool(2, self, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override);
}
at::Tensor avg_pool3d(const at::Tensor& self, at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                      bool ceil_mode, bool count_include_pad, std::optional<int64_t> divisor_override) {
  return avg_pool(3, self, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override);
}
at::Tensor avg_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& self, at::IntArrayRef kernel_size,
                               at::IntArrayRef stride, at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                               std::optional<int64_t> divisor_override) {
  return avg_pool_backward(2, grad_output, self, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override);
}
at::Tensor avg_pool3d_backward(const at::Tensor& grad_output, const at::Tensor& self, at::IntArrayRef kernel_size,
                               at::IntArrayRef stride, at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                               std::optional<int64_t> divisor_override) {
  return avg_pool_backward(3, grad_output, self, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override);
}

// --- adaptive windows ----------------------------------------------------------------------
// Windows tile the input (I % O == 0 on every dim): a fixed pool.
bool tiles(at::IntArrayRef in, at::IntArrayRef out) {
  for (size_t i = 0; i < out.size(); ++i)
    if (out[i] <= 0 || in[i] % out[i] != 0) return false;
  return true;
}

// [O, I] bool: i's window of torch's adaptive pools holds j, and float
// (end - start) per row (compute dtype). Windows from float math: exact while
// O * I < 2^24 (callers check).
// The mask and end - start (float32, [O, 1]).
std::pair<G, G> adaptive_window_mask(Graph& g, int64_t in, int64_t out) {
  G i = g.cast(g.iota({out, 1}, 0, DType::Int32), DType::Float32);
  G j = g.cast(g.iota({1, in}, 1, DType::Int32), DType::Float32);
  auto c = [&](double v) { return g.constant(v, DType::Float32); };
  G start = g.unary(NodeKind::Floor, g.div(g.mul(i, c(in)), c(out)));
  G end = g.unary(NodeKind::Ceil, g.div(g.mul(g.add(i, c(1)), c(in)), c(out)));
  return {g.logical_and(g.ge(j, start), g.lt(j, end)), g.sub(end, start)};
}
std::pair<G, G> adaptive_windows(Graph& g, int64_t in, int64_t out, DType compute) {
  auto [inside, count] = adaptive_window_mask(g, in, out);
  return {inside, cast_to(g, count, compute)};
}

// x with dim d moved last (and back: the same permutation inverted).
std::vector<int64_t> move_last(int64_t rank, int64_t d) {
  std::vector<int64_t> perm;
  for (int64_t i = 0; i < rank; ++i)
    if (i != d) perm.push_back(i);
  perm.push_back(d);
  return perm;
}
std::vector<int64_t> inverse(const std::vector<int64_t>& perm) {
  std::vector<int64_t> inv(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inv[perm[i]] = static_cast<int64_t>(i);
  return inv;
}

// Adaptive max pooling over the [N, C, in...] input: per spatial dim, last to
// first, window maxima and the first arg max (a NaN counts as the maximum),
// carrying the flat index over the dims already reduced (picked at the arg
// max with a one-hot sum). Returns {values, int64 flat indices}.
std::vector<G> adaptive_max_decomposition(Graph& g, G v, const std::vector<int64_t>& in, const std::vector<int64_t>& out) {
  const int64_t rank = static_cast<int64_t>(in.size()) + 2;
  DType t = g.type(v).dtype;
  G flat;  // int64 index over the reduced trailing dims, v's shape
  int64_t stride = 1;
  for (int64_t d = rank - 1; d >= 2; --d) {
    int64_t I = in[d - 2], O = out[d - 2];
    auto perm = move_last(rank, d);
    G vl = d == rank - 1 ? v : g.transpose(v, perm);
    graph::Shape sl = g.type(vl).shape;  // [..., I]
    graph::Shape s5 = sl;
    s5.insert(s5.end() - 1, 1);  // [..., 1, I]
    G inside = adaptive_window_mask(g, I, O).first;
    G masked = g.select(inside, g.reshape(vl, s5), g.constant(-INFINITY, t));  // [..., O, I]
    G m = g.reduce(NodeKind::ReduceMax, masked, {rank});                       // [..., O, 1]
    G hit = g.logical_and(inside, g.binary(NodeKind::LogicalOr, g.binary(NodeKind::Equal, masked, m),
                                             g.unary(NodeKind::IsNaN, masked)));
    G pos = g.iota({1, I}, 1, DType::Int64);
    G arg = g.reduce(NodeKind::ReduceMin, g.select(hit, pos, g.constant(static_cast<double>(I), DType::Int64)), {rank});
    G idx = g.mul(arg, g.constant(static_cast<double>(stride), DType::Int64));  // [..., O, 1]
    if (flat.id >= 0) {
      G fl = g.reshape(d == rank - 1 ? flat : g.transpose(flat, perm), s5);  // [..., 1, I]
      G pick = g.binary(NodeKind::Equal, pos, arg);                           // [..., O, I]
      idx = g.add(idx, g.reduce(NodeKind::ReduceSum, g.select(pick, fl, g.constant(0, DType::Int64)), {rank}));
    }
    graph::Shape so = sl;
    so.back() = O;
    G vo = g.reshape(m, so), io = g.reshape(idx, so);
    v = d == rank - 1 ? vo : g.transpose(vo, inverse(perm));
    flat = d == rank - 1 ? io : g.transpose(io, inverse(perm));
    stride *= I;
  }
  return {v, flat};
}

// adaptive_max_backward: dx[lead, rest] = sum_o dy[o] [lead(o) == lead] [rest(o) == rest]
// over one input plane, a matmul of two one-hots: lead = the first spatial
// dim, rest = the flat index over the others (float division: exact while
// the plane has < 2^24 elements, checked by the caller). dy in compute dtype.
G adaptive_max_backward_decomposition(Graph& g, G dy, G idx, const std::vector<int64_t>& in,
                                      const std::vector<int64_t>& out) {
  const int64_t k = static_cast<int64_t>(in.size());
  const DType compute = g.type(dy).dtype;
  const graph::Shape ds = g.type(dy).shape;  // a copy: adding nodes moves the graph's storage
  int64_t n = ds[0], c = ds[1], outs = 1, rest = 1;
  for (int64_t o : out) outs *= o;
  for (int64_t d = 1; d < k; ++d) rest *= in[d];
  G dyf = g.reshape(dy, {n, c, outs, 1});
  G fi = g.cast(g.reshape(idx, {n, c, outs, 1}), DType::Float32);
  G lead = g.unary(NodeKind::Floor, g.div(g.add(fi, g.constant(0.5, DType::Float32)), g.constant(static_cast<double>(rest), DType::Float32)));
  G restv = g.sub(fi, g.mul(lead, g.constant(static_cast<double>(rest), DType::Float32)));
  G lead_pos = g.cast(g.iota({1, in[0]}, 1, DType::Int32), DType::Float32);
  G rest_pos = g.cast(g.iota({1, rest}, 1, DType::Int32), DType::Float32);
  G zero = g.constant(0, compute);
  G a = g.select(g.binary(NodeKind::Equal, lead_pos, lead), g.broadcast(dyf, {n, c, outs, in[0]}), zero);  // [N, C, O, L]
  G b = g.cast(g.binary(NodeKind::Equal, rest_pos, restv), compute);                                       // [N, C, O, R]
  G dx = g.matmul(g.transpose(a, {0, 1, 3, 2}), b);                                                       // [N, C, L, R]
  graph::Shape xs{n, c};
  xs.insert(xs.end(), in.begin(), in.end());
  return g.reshape(dx, xs);
}

// On the reference runtime float32/float64 adaptive max pools run ATen's CPU
// kernels: the masked decompositions above build [..., O, I] temporaries per
// dim (~20x slower than ATen's direct loop). MPSGraph lowers the decompositions.
std::vector<at::Tensor> adaptive_max_pool_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                                              const runtime::reference::ResultOutput&) {
  const auto& out = n.ints_attr("out");
  auto [values, indices] = out.size() == 2 ? at::adaptive_max_pool2d(in[0], out) : at::adaptive_max_pool3d(in[0], out);
  return {values, indices};
}
MPS_EXT_REFERENCE_MULTI_KERNEL("aten.adaptive_max_pool", adaptive_max_pool_cpu);

at::Tensor adaptive_max_pool_backward_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                                          const runtime::reference::NewOutput& new_output) {
  const auto& dy = in[0];
  std::vector<int64_t> sizes{dy.size(0), dy.size(1)};
  const auto& spatial_in = n.ints_attr("in");
  sizes.insert(sizes.end(), spatial_in.begin(), spatial_in.end());
  at::Tensor dx = new_output(sizes, dy.scalar_type());
  // The kernels read only the input's sizes and layout: the result stands in for it.
  return spatial_in.size() == 2 ? at::adaptive_max_pool2d_backward_out(dx, dy, dx, in[1])
                                : at::adaptive_max_pool3d_backward_out(dx, dy, dx, in[1]);
}
MPS_EXT_REFERENCE_KERNEL("aten.adaptive_max_pool_backward", adaptive_max_pool_backward_cpu);

// attrs: kind (adaptive_avg | adaptive_avg_backward | adaptive_max | adaptive_max_backward),
// in (spatial input sizes), out (spatial output sizes), compute.
void build_adaptive(Graph& g, const GraphSpec& s) {
  const std::string& kind = s.str_attr("kind");
  const auto& in = s.ints_attr("in");
  const auto& out = s.ints_attr("out");
  DType compute = attr_dtype(s, "compute");
  int64_t k = static_cast<int64_t>(in.size()), rank = k + 2;
  if (kind == "adaptive_avg" || kind == "adaptive_avg_backward") {
    bool backward = kind == "adaptive_avg_backward";
    G x0 = g.placeholder(s.input(0), backward ? "grad_output" : "self");
    G x = cast_to(g, x0, compute);
    for (int64_t d = rank - 1; d >= 2; --d) {  // contract one spatial dim at a time
      auto [inside, count] = adaptive_windows(g, in[d - 2], out[d - 2], compute);
      G w = g.select(inside, g.div(g.constant(1, compute), count), g.constant(0, compute));  // [O, I]
      auto perm = move_last(rank, d);
      G t = d == rank - 1 ? x : g.transpose(x, perm);
      t = backward ? g.matmul(t, w) : g.matmul(t, g.transpose(w, {1, 0}));
      x = d == rank - 1 ? t : g.transpose(t, inverse(perm));
    }
    g.output(cast_to(g, x, g.type(x0).dtype));
    return;
  }
  if (kind == "adaptive_max") {
    G x = g.placeholder(s.input(0), "self");
    auto decomposition = [in, out](Graph& d, const std::vector<G>& xs) {
      return adaptive_max_decomposition(d, xs[0], in, out);
    };
    std::vector<G> r = kernel_dtype(g.type(x).dtype)
                           ? g.kernels("aten.adaptive_max_pool", {x}, {{"in", in}, {"out", out}}, decomposition)
                           : decomposition(g, {x});
    g.output(r[0]);
    g.output(r[1]);
    return;
  }
  G dy = cast_to(g, g.placeholder(s.input(0), "grad_output"), compute);
  G idx = g.placeholder(s.input(1), "indices");
  G dx = kernel_dtype(compute) && compute == s.input(0).dtype
             ? g.kernel("aten.adaptive_max_pool_backward", {dy, idx}, {{"in", in}, {"out", out}},
                        [in, out](Graph& d, const std::vector<G>& xs) {
                          return adaptive_max_backward_decomposition(d, xs[0], xs[1], in, out);
                        })
             : adaptive_max_backward_decomposition(g, dy, idx, in, out);
  g.output(cast_to(g, dx, attr_dtype(s, "result")));
}

int64_t prod(at::IntArrayRef v) {
  int64_t p = 1;
  for (int64_t x : v) p *= x;
  return p;
}

// Spatial sizes of a batched [N, C, spatial...] tensor.
std::vector<int64_t> spatial(const at::Tensor& x) { return x.sizes().slice(2).vec(); }

// The masked graphs' temporaries ([..., O, I] per dim) and float window math
// stay small enough; larger inputs run on the CPU.
bool adaptive_fits(const at::Tensor& x, at::IntArrayRef in, at::IntArrayRef out) {
  int64_t widest = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] * out[i] >= (int64_t{1} << 24)) return false;
    widest = std::max(widest, x.numel() / in[i] * out[i] * in[i]);
  }
  return widest <= (int64_t{1} << 27) && prod(in) < (int64_t{1} << 24);
}

// adaptive_avg_pool's result sizes. Its meta kernels are Python (~10 µs a
// call): an ordinary call (k positive output sizes, no empty non-batch dim)
// takes the sizes directly, anything else runs the meta kernel for torch's
// own checks and messages.
std::vector<int64_t> adaptive_avg_pool_sizes(size_t k, const at::Tensor& self, c10::SymIntArrayRef output_size) {
  const int64_t dim = self.dim(), spatial_dims = static_cast<int64_t>(k);
  bool plain = output_size.size() == k && (dim == spatial_dims + 1 || dim == spatial_dims + 2);
  for (int64_t d = dim == spatial_dims + 2 ? 1 : 0; plain && d < dim; ++d) plain = self.size(d) > 0;
  std::vector<int64_t> sizes(self.sizes().begin(), self.sizes().end() - std::min<int64_t>(dim, spatial_dims));
  for (const c10::SymInt& s : output_size) {
    auto v = s.maybe_as_int();
    plain = plain && v && *v > 0;
    sizes.push_back(v.value_or(0));
  }
  if (plain) return sizes;
  at::Tensor meta = k == 2 ? at::_adaptive_avg_pool2d_symint(meta_like(self), output_size)
                           : at::_adaptive_avg_pool3d_symint(meta_like(self), output_size);
  return meta.sizes().vec();
}

at::Tensor adaptive_avg_pool(size_t k, const at::Tensor& self, c10::SymIntArrayRef output_size) {
  const std::vector<int64_t> sizes = adaptive_avg_pool_sizes(k, self, output_size);
  require(float_ok(self));
  if (c10::multiply_integers(sizes) == 0) return at::empty(sizes, self.options());
  const c10::MaybeOwned<at::Tensor> x_ = batched(self, k);
  const at::Tensor& x = *x_;
  std::vector<int64_t> in = spatial(x), out(sizes.end() - k, sizes.end());
  if (tiles(in, out)) {
    std::vector<int64_t> kernel(k);
    for (size_t i = 0; i < k; ++i) kernel[i] = in[i] / out[i];
    GraphSpec spec("aten::pool");
    spec.input(x).attr("kind", std::string("avg")).attr("count_include_pad", int64_t{1}).attr("divisor_override", int64_t{0})
        .attr("adaptive", int64_t{1});
    pool_attrs(spec, params(k, kernel, kernel, std::vector<int64_t>(k, 0), {}, false));
    return like_input(runtime::run_graph(spec, build_pool, runtime::lend(x))[0], self, k);
  }
  require(adaptive_fits(x, in, out));
  GraphSpec spec("aten::adaptive_pool");
  spec.input(x).attr("kind", std::string("adaptive_avg")).attr("in", in).attr("out", out)
      .attr("compute", dname(opmath_type(self.scalar_type())));
  return like_input(runtime::run_graph(spec, build_adaptive, runtime::lend(x))[0], self, k);
}

at::Tensor adaptive_avg_pool_backward(size_t k, const at::Tensor& grad_output, const at::Tensor& self) {
  require(float_ok(self) && grad_output.scalar_type() == self.scalar_type() && grad_output.dim() == self.dim());
  if (self.numel() == 0) return at::zeros_like(self);
  const c10::MaybeOwned<at::Tensor> dy_ = batched(grad_output, k), x_ = batched(self, k);
  const at::Tensor &dy = *dy_, &x = *x_;
  std::vector<int64_t> in = spatial(x), out = spatial(dy);
  if (tiles(in, out)) {
    std::vector<int64_t> kernel(k);
    for (size_t i = 0; i < k; ++i) kernel[i] = in[i] / out[i];
    GraphSpec spec("aten::pool_backward");
    spec.input(dy).input(x).attr("kind", std::string("avg_backward")).attr("count_include_pad", int64_t{1})
        .attr("divisor_override", int64_t{0}).attr("adaptive", int64_t{1});
    pool_attrs(spec, params(k, kernel, kernel, std::vector<int64_t>(k, 0), {}, false));
    return like_input(runtime::run_graph(spec, build_pool, runtime::lend(dy, x))[0], self, k);
  }
  require(adaptive_fits(x, in, out));
  GraphSpec spec("aten::adaptive_pool");
  spec.input(dy).attr("kind", std::string("adaptive_avg_backward")).attr("in", in).attr("out", out)
      .attr("compute", dname(opmath_type(self.scalar_type())));
  return like_input(runtime::run_graph(spec, build_adaptive, runtime::lend(dy))[0], self, k);
}

std::tuple<at::Tensor, at::Tensor> adaptive_max_pool(size_t k, const at::Tensor& self, at::IntArrayRef output_size) {
  std::vector<int64_t> sizes = k == 2 ? result_sizes<at::meta::structured_adaptive_max_pool2d>(self, output_size)
                                      : result_sizes<at::meta::structured_adaptive_max_pool3d>(self, output_size);
  require(float_ok(self));
  if (c10::multiply_integers(sizes) == 0)
    return {at::empty(sizes, self.options()), at::empty(sizes, self.options().dtype(at::kLong))};
  const c10::MaybeOwned<at::Tensor> x_ = batched(self, k);
  const at::Tensor& x = *x_;
  std::vector<int64_t> in = spatial(x), out(sizes.end() - k, sizes.end());
  if (tiles(in, out)) {
    std::vector<int64_t> kernel(k);
    for (size_t i = 0; i < k; ++i) kernel[i] = in[i] / out[i];
    GraphSpec spec("aten::pool");
    spec.input(x).attr("kind", std::string("max"));
    pool_attrs(spec, params(k, kernel, kernel, std::vector<int64_t>(k, 0), {}, false));
    auto r = runtime::run_graph(spec, build_pool, runtime::lend(x));
    return {like_input(r[0], self, k), like_input(r[1], self, k)};
  }
  require(adaptive_fits(x, in, out));
  GraphSpec spec("aten::adaptive_pool");
  spec.input(x).attr("kind", std::string("adaptive_max")).attr("in", in).attr("out", out)
      .attr("compute", dname(opmath_type(self.scalar_type())));
  auto r = runtime::run_graph(spec, build_adaptive, runtime::lend(x));
  return {like_input(r[0], self, k), like_input(r[1], self, k)};
}

at::Tensor adaptive_max_pool_backward(size_t k, const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& indices) {
  require(float_ok(self) && grad_output.scalar_type() == self.scalar_type() && indices.scalar_type() == at::kLong &&
          grad_output.sizes() == indices.sizes() && grad_output.dim() == self.dim());
  if (self.numel() == 0 || grad_output.numel() == 0) return at::zeros_like(self);
  const c10::MaybeOwned<at::Tensor> dy_ = batched(grad_output, k), idx_ = batched(indices, k), x_ = batched(self, k);
  const at::Tensor &dy = *dy_, &idx = *idx_, &x = *x_;
  std::vector<int64_t> in = spatial(x), out = spatial(dy);
  int64_t rest = prod(in) / in[0];
  require(prod(in) < (int64_t{1} << 24) && dy.numel() / prod(out) * prod(out) * std::max(in[0], rest) <= (int64_t{1} << 27));
  GraphSpec spec("aten::adaptive_pool");
  spec.input(dy).input(idx).attr("kind", std::string("adaptive_max_backward")).attr("in", in).attr("out", out)
      .attr("compute", dname(opmath_type(self.scalar_type()))).attr("result", dname(self.scalar_type()));
  return like_input(runtime::run_graph(spec, build_adaptive, runtime::lend(dy, idx))[0], self, k);
}

at::Tensor adaptive_avg_pool2d(const at::Tensor& self, c10::SymIntArrayRef output_size) {
  return adaptive_avg_pool(2, self, output_size);
}
at::Tensor adaptive_avg_pool3d(const at::Tensor& self, c10::SymIntArrayRef output_size) {
  return adaptive_avg_pool(3, self, output_size);
}
at::Tensor adaptive_avg_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& self) {
  return adaptive_avg_pool_backward(2, grad_output, self);
}
at::Tensor adaptive_avg_pool3d_backward(const at::Tensor& grad_output, const at::Tensor& self) {
  return adaptive_avg_pool_backward(3, grad_output, self);
}
std::tuple<at::Tensor, at::Tensor> adaptive_max_pool2d(const at::Tensor& self, at::IntArrayRef output_size) {
  return adaptive_max_pool(2, self, output_size);
}
std::tuple<at::Tensor, at::Tensor> adaptive_max_pool3d(const at::Tensor& self, at::IntArrayRef output_size) {
  return adaptive_max_pool(3, self, output_size);
}
at::Tensor adaptive_max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& indices) {
  return adaptive_max_pool_backward(2, grad_output, self, indices);
}
at::Tensor adaptive_max_pool3d_backward(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& indices) {
  return adaptive_max_pool_backward(3, grad_output, self, indices);
}

const std::vector<Row>& rows() {
  static const std::vector<Row> r = {
      MPS_EXT_ATEN_ROW("max_pool2d_with_indices", max_pool2d_with_indices),
      MPS_EXT_ATEN_ROW("max_pool2d_with_indices_backward", max_pool2d_with_indices_backward),
      MPS_EXT_ATEN_ROW("max_pool3d_with_indices", max_pool3d_with_indices),
      MPS_EXT_ATEN_ROW("max_pool3d_with_indices_backward", max_pool3d_with_indices_backward),
      MPS_EXT_ATEN_ROW("avg_pool2d", avg_pool2d),
      MPS_EXT_ATEN_ROW("avg_pool2d_backward", avg_pool2d_backward),
      MPS_EXT_ATEN_ROW("avg_pool3d", avg_pool3d),
      MPS_EXT_ATEN_ROW("avg_pool3d_backward", avg_pool3d_backward),
      MPS_EXT_ATEN_ROW("_adaptive_avg_pool2d", adaptive_avg_pool2d),
      MPS_EXT_ATEN_ROW("_adaptive_avg_pool2d_backward", adaptive_avg_pool2d_backward),
      MPS_EXT_ATEN_ROW("_adaptive_avg_pool3d", adaptive_avg_pool3d),
      MPS_EXT_ATEN_ROW("_adaptive_avg_pool3d_backward", adaptive_avg_pool3d_backward),
      MPS_EXT_ATEN_ROW("adaptive_max_pool2d", adaptive_max_pool2d),
      MPS_EXT_ATEN_ROW("adaptive_max_pool2d_backward", adaptive_max_pool2d_backward),
      MPS_EXT_ATEN_ROW("adaptive_max_pool3d", adaptive_max_pool3d),
      MPS_EXT_ATEN_ROW("adaptive_max_pool3d_backward", adaptive_max_pool3d_backward),
  };
  return r;
}
}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  for (const Row& row : rows()) register_op(m, row.op, row.kernel);
}

}  // namespace mps_ext::ops::aten
