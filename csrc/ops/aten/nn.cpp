// Non-elementwise aten ops on the mpsgraph device: fills, reductions, the
// matmul family, softmax, layer_norm, losses, arange, cat, tril/triu, roll,
// flip. Each is a typed kernel that declares a GraphSpec (static shapes:
// these graphs reshape and reduce) and runs a plain builder. Gathers and
// scatters (index_select, embedding, gather, ...) live in indexing.cpp.
#include <optional>

#include <ATen/ExpandUtils.h>
#include <ATen/ops/addmm_cpu_dispatch.h>
#include <ATen/ops/baddbmm_cpu_dispatch.h>
#include <ATen/native/Resize.h>
#include <ATen/native/TypeProperties.h>

#include "device/device.h"
#include "ops/aten/native.h"
#include "ops/op_utils.h"
#include "runtime/reference/gemm.h"
#include "runtime/reference/kernels.h"

namespace mps_ext::ops::aten {
namespace {
using graph::DType;
using graph::Graph;
using graph::NodeKind;
using runtime::GraphSpec;
using G = graph::Tensor;



// --- fill_ / zero_ -----------------------------------------------------------------
void build_fill(Graph& g, const GraphSpec& s) {
  G v = g.placeholder(s.input(0), "value");
  DType out = attr_dtype(s, "dtype");
  G b = g.broadcast(cast_to(g, v, out), s.ints_attr("shape"));
  g.output(b);
}

// self[...] = value (a 0-d tensor), memoized: zeros, ones_like (backward's
// seed) and zero_ run it every step.
at::Tensor& run_fill(at::Tensor& self, const at::Tensor& value) {
  auto spec = [&] {
    GraphSpec s("aten::fill_");
    s.input(value).attr("dtype", dname(self.scalar_type())).attr("shape", self.sizes().vec());
    return s;
  };
  runtime::MemoKeyWriter<16> key(build_fill);
  key.tensor(value).tensor(self);
  thread_local runtime::GraphMemo<16> memo;
  const std::vector<at::Tensor> outputs{self};
  runtime::run_graph_memoized(memo, key.key(), spec, build_fill, value, &outputs);
  return self;
}

at::Tensor& fill_scalar(at::Tensor& self, const at::Scalar& value) {
  require(graph_dtype_ok(self.scalar_type()));
  if (self.numel() == 0) return self;
  return run_fill(self, scalar_input(value, self.scalar_type()));
}

at::Tensor& fill_tensor(at::Tensor& self, const at::Tensor& value) {
  TORCH_CHECK(value.dim() == 0, "fill_ only supports 0-dimension value tensor but got tensor with ", value.dim(),
              " dimensions.");
  require(graph_dtype_ok(self.scalar_type()) && graph_dtype_ok(value.scalar_type()));
  if (self.numel() == 0) return self;
  return run_fill(self, value);
}

at::Tensor& zero_(at::Tensor& self) { return fill_scalar(self, 0); }

// --- reductions ----------------------------------------------------------------------
std::vector<int64_t> reduce_dims(const at::Tensor& self, at::OptionalIntArrayRef dim) {
  std::vector<int64_t> dims;
  if (!dim || dim->empty()) {
    for (int64_t d = 0; d < self.dim(); ++d) dims.push_back(d);
  } else {
    for (int64_t d : *dim) dims.push_back(c10::maybe_wrap_dim(d, std::max<int64_t>(self.dim(), 1)));
  }
  if (self.dim() == 0) dims.clear();
  return dims;
}

std::vector<int64_t> reduced_shape(const at::Tensor& self, const std::vector<int64_t>& dims, bool keepdim) {
  std::vector<int64_t> out;
  for (int64_t d = 0; d < self.dim(); ++d) {
    bool r = std::find(dims.begin(), dims.end(), d) != dims.end();
    if (!r) out.push_back(self.size(d));
    else if (keepdim) out.push_back(1);
  }
  return out;
}

// Vector norms (ord 2, 1, inf) with the reduced dims kept.
G vector_norm_decomposition(Graph& g, G x, const std::vector<int64_t>& dims, double ord) {
  if (ord == 2) return g.unary(NodeKind::Sqrt, g.reduce(NodeKind::ReduceSum, g.mul(x, x), dims));
  if (ord == 1) return g.reduce(NodeKind::ReduceSum, g.abs(x), dims);
  return g.reduce(NodeKind::ReduceMax, g.abs(x), dims);
}

// A float32/float64 norm is one kernel node: ATen's one-pass norm on the
// reference runtime (clip_grad_norm_ takes one per parameter), the
// decomposition elsewhere.
at::Tensor vector_norm_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                           const runtime::reference::NewOutput& new_output) {
  const auto& dims = n.ints_attr("dims");
  c10::SmallVector<int64_t, 6> shape(in[0].sizes().begin(), in[0].sizes().end());
  for (int64_t d : dims) shape[d] = 1;
  at::Tensor out = new_output(shape, in[0].scalar_type());
  return at::linalg_vector_norm_out(out, in[0], n.float_attr("ord"), dims, /*keepdim=*/true);
}
MPS_EXT_REFERENCE_KERNEL("aten.vector_norm", vector_norm_cpu);

// any/all of a bool tensor on the reference runtime: ATen's reduction (one
// pass; the decomposition's casts and integer reduction are 5x slower on
// [256, 512]). Dims kept, as the decomposition's.
at::Tensor any_all_cpu(const graph::Node& n, const std::vector<at::Tensor>& in, const runtime::reference::NewOutput&) {
  const auto& dims = n.ints_attr("dims");
  return n.int_attr("any") ? at::any(in[0], at::OptionalIntArrayRef(dims), /*keepdim=*/true)
                           : at::all(in[0], at::OptionalIntArrayRef(dims), /*keepdim=*/true);
}
MPS_EXT_REFERENCE_KERNEL("aten.any_all", any_all_cpu);

// attrs: kind (sum|nansum|mean|amax|amin|prod|logsumexp|norm2|norm1|norminf|var|std|count_nonzero|any|all), dims,
// shape (result), compute, result, correction (var).
void build_reduce(Graph& g, const GraphSpec& s) {
  G x0 = g.placeholder(s.input(0), "self");
  G x = cast_to(g, x0, attr_dtype(s, "compute"));
  const auto& dims = s.ints_attr("dims");
  const std::string& kind = s.str_attr("kind");
  G y;
  if (kind == "sum") y = g.reduce(NodeKind::ReduceSum, x, dims);
  else if (kind == "mean") y = g.reduce(NodeKind::ReduceMean, x, dims);
  else if (kind == "amax") y = g.reduce(NodeKind::ReduceMax, x, dims);
  else if (kind == "amin") y = g.reduce(NodeKind::ReduceMin, x, dims);
  else if (kind == "prod") y = g.reduce(NodeKind::ReduceProd, x, dims);
  else if (kind == "logsumexp") {
    // max + log(sum(exp(x - max))); an all -inf slice has max -inf: shift by 0 there.
    G m = g.reduce(NodeKind::ReduceMax, x, dims);
    G finite = g.lt(g.abs(m), k(g, INFINITY, m));
    G shift = g.select(finite, m, k(g, 0, m));
    y = g.add(g.unary(NodeKind::Log, g.reduce(NodeKind::ReduceSum, g.unary(NodeKind::Exp, g.sub(x, shift)), dims)), shift);
  }
  else if (kind == "norm2" || kind == "norm1" || kind == "norminf") {
    const double ord = kind == "norm2" ? 2.0 : kind == "norm1" ? 1.0 : INFINITY;
    DType t = g.type(x0).dtype;
    if (kernel_dtype(t) && g.type(x).dtype == t && !dims.empty())
      y = g.kernel("aten.vector_norm", {x}, {{"dims", dims}, {"ord", ord}},
                   [dims, ord](Graph& d, const std::vector<G>& in) { return vector_norm_decomposition(d, in[0], dims, ord); });
    else
      y = vector_norm_decomposition(g, x, dims, ord);
  }
  else if (kind == "var" || kind == "std") {
    G d = g.sub(x, g.reduce(NodeKind::ReduceMean, x, dims));
    int64_t n = 1;
    for (int64_t a : dims) n *= s.input(0).shape[a];
    double denom = std::max<double>(0.0, static_cast<double>(n) - s.float_attr("correction"));
    y = g.div(g.reduce(NodeKind::ReduceSum, g.mul(d, d), dims), k(g, denom, x));
    if (kind == "std") y = g.unary(NodeKind::Sqrt, y);
  } else if (kind == "nansum") {  // NaN counts as zero
    y = g.reduce(NodeKind::ReduceSum, graph::is_floating(g.type(x).dtype) ? g.select(g.unary(NodeKind::IsNaN, x), k(g, 0, x), x) : x, dims);
  } else if (kind == "count_nonzero") {  // a cast to bool is x != 0 (NaN counts)
    y = g.reduce(NodeKind::ReduceSum, g.cast(g.cast(x, DType::Bool), DType::Int64), dims);
  } else if (kind == "any" || kind == "all") {
    const bool any = kind == "any";
    auto decomposition = [dims, any](Graph& d, const std::vector<G>& in) {
      G b = d.cast(d.cast(in[0], DType::Bool), DType::Int32);
      return d.cast(d.reduce(any ? NodeKind::ReduceMax : NodeKind::ReduceMin, b, dims), DType::Bool);
    };
    y = g.type(x).dtype == DType::Bool && !dims.empty() ? g.kernel("aten.any_all", {x}, {{"dims", dims}, {"any", int64_t{any}}}, decomposition)
                                                        : decomposition(g, {x});
  }
  y = g.reshape(y, s.ints_attr("shape"));
  g.output(cast_to(g, y, attr_dtype(s, "result")));
}

at::Tensor run_reduce(std::string_view kind, const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim,
                      at::ScalarType compute, at::ScalarType result, double correction = 0) {
  require(graph_dtype_ok(self.scalar_type()) && graph_dtype_ok(compute) && self.is_privateuseone());
  std::vector<int64_t> dims = reduce_dims(self, dim);
  std::vector<int64_t> shape = reduced_shape(self, dims, keepdim);
  if (self.numel() == 0) {  // the identity; empty max/min/var/... keep the CPU op's errors and warnings
    const bool zero = kind == "sum" || kind == "nansum" || kind == "count_nonzero" || kind == "any";
    require(zero || kind == "prod" || kind == "all" || kind == "mean");
    return at::full(shape, zero ? 0.0 : kind == "mean" ? NAN : 1.0, device_options(self, result));
  }
  auto spec = [&] {
    GraphSpec s("aten::reduce");
    s.input(self).attr("kind", kind).attr("dims", dims).attr("shape", shape)
        .attr("compute", dname(compute)).attr("result", dname(result)).attr("correction", correction);
    return s;
  };
  // The memo key: what the spec records (shape follows from sizes, dims and keepdim).
  runtime::MemoKeyWriter<16> key(build_reduce);
  key.tensor(self).text(kind).word(dims.size());
  for (int64_t d : dims) key.word(static_cast<uint64_t>(d));
  key.word(keepdim | static_cast<uint64_t>(compute) << 8 | static_cast<uint64_t>(result) << 16).real(correction);
  thread_local runtime::GraphMemo<16> memo;
  return std::move(runtime::run_graph_memoized(memo, key.key(), spec, build_reduce, self)[0]);
}

at::ScalarType sum_type(const at::Tensor& self, std::optional<at::ScalarType> dtype) {
  if (dtype) return *dtype;
  return at::isIntegralType(self.scalar_type(), true) ? at::kLong : self.scalar_type();
}

at::Tensor sum_dim(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim, std::optional<at::ScalarType> dtype) {
  at::ScalarType r = sum_type(self, dtype);
  return run_reduce("sum", self, dim, keepdim, opmath_type(r), r);
}
at::Tensor sum_all(const at::Tensor& self, std::optional<at::ScalarType> dtype) { return sum_dim(self, {}, false, dtype); }
// out= reductions: without a dtype argument the result takes out's dtype (as ATen).
at::Tensor& sum_out(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim, std::optional<at::ScalarType> dtype,
                    at::Tensor& out) {
  write_result(sum_dim(self, dim, keepdim, dtype.value_or(out.scalar_type())), out);
  return out;
}

at::Tensor prod_dims(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim, std::optional<at::ScalarType> dtype) {
  at::ScalarType r = sum_type(self, dtype);
  require(r != at::kBool);
  // ATen's prod of a float16/bfloat16 tensor multiplies in that dtype,
  // rounding every step (4% off the float32 product over 64 bfloat16 values).
  const bool in_dtype = at::isReducedFloatingType(r) && self.scalar_type() == r;
  return run_reduce("prod", self, dim, keepdim, in_dtype ? r : opmath_type(r), r);
}
at::Tensor prod_all(const at::Tensor& self, std::optional<at::ScalarType> dtype) { return prod_dims(self, {}, false, dtype); }
at::Tensor prod_dim(const at::Tensor& self, int64_t dim, bool keepdim, std::optional<at::ScalarType> dtype) {
  return prod_dims(self, at::IntArrayRef{dim}, keepdim, dtype);
}
at::Tensor& prod_out(const at::Tensor& self, int64_t dim, bool keepdim, std::optional<at::ScalarType> dtype, at::Tensor& out) {
  write_result(prod_dims(self, at::IntArrayRef{dim}, keepdim, dtype.value_or(out.scalar_type())), out);
  return out;
}

// Integer inputs give the default float dtype, as torch.logsumexp.
at::Tensor logsumexp(const at::Tensor& self, at::IntArrayRef dim, bool keepdim) {
  at::ScalarType r = at::isIntegralType(self.scalar_type(), true) ? at::typeMetaToScalarType(at::get_default_dtype())
                                                                  : self.scalar_type();
  require(at::isFloatingType(r) && !dim.empty());
  return run_reduce("logsumexp", self, dim, keepdim, opmath_type(r), r);
}

at::Tensor mean_dim(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim, std::optional<at::ScalarType> dtype) {
  at::ScalarType r = dtype.value_or(self.scalar_type());
  TORCH_CHECK(at::isFloatingType(r), "mean(): could not infer output dtype. Input dtype must be either a floating point "
              "or complex dtype. Got: ", r);
  return run_reduce("mean", self, dim, keepdim, opmath_type(r), r);
}
at::Tensor mean_all(const at::Tensor& self, std::optional<at::ScalarType> dtype) { return mean_dim(self, {}, false, dtype); }

at::Tensor amax(const at::Tensor& self, at::IntArrayRef dim, bool keepdim) {
  return run_reduce("amax", self, dim, keepdim, self.scalar_type(), self.scalar_type());
}
at::Tensor amin(const at::Tensor& self, at::IntArrayRef dim, bool keepdim) {
  return run_reduce("amin", self, dim, keepdim, self.scalar_type(), self.scalar_type());
}
at::Tensor max_all(const at::Tensor& self) {
  TORCH_CHECK(self.numel() > 0, "max(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim with the 'dim' argument.");
  return (amax)(self, at::IntArrayRef{}, false);
}
at::Tensor min_all(const at::Tensor& self) {
  TORCH_CHECK(self.numel() > 0, "min(): Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim with the 'dim' argument.");
  return (amin)(self, at::IntArrayRef{}, false);
}
std::tuple<at::Tensor, at::Tensor> aminmax(const at::Tensor& self, std::optional<int64_t> dim, bool keepdim) {
  require(self.scalar_type() != at::kBool && self.numel() > 0);  // empty: ATen's error
  std::vector<int64_t> dims;
  if (dim) dims.push_back(*dim);
  return {(amin)(self, dims, keepdim), (amax)(self, dims, keepdim)};
}
at::Tensor nansum(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim, std::optional<at::ScalarType> dtype) {
  at::ScalarType r = sum_type(self, dtype);
  return run_reduce("nansum", self, dim, keepdim, opmath_type(r), r);
}
at::Tensor trace(const at::Tensor& self) {
  TORCH_CHECK(self.dim() == 2, "trace: expected a matrix, but got tensor with dim ", self.dim());
  return sum_dim(self.diagonal(), {}, false, std::nullopt);
}
at::Tensor count_nonzero(const at::Tensor& self, at::IntArrayRef dim) {
  return run_reduce("count_nonzero", self, dim, false, self.scalar_type(), at::kLong);
}
at::Tensor any_all(const at::Tensor& self) { return run_reduce("any", self, {}, false, self.scalar_type(), at::kBool); }
at::Tensor all_all(const at::Tensor& self) { return run_reduce("all", self, {}, false, self.scalar_type(), at::kBool); }
at::Tensor any_dims(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim) {
  return run_reduce("any", self, dim, keepdim, self.scalar_type(), at::kBool);
}
at::Tensor all_dims(const at::Tensor& self, at::OptionalIntArrayRef dim, bool keepdim) {
  return run_reduce("all", self, dim, keepdim, self.scalar_type(), at::kBool);
}

at::Tensor any_dim(const at::Tensor& self, int64_t dim, bool keepdim) {
  return run_reduce("any", self, at::IntArrayRef{dim}, keepdim, self.scalar_type(), at::kBool);
}
at::Tensor all_dim(const at::Tensor& self, int64_t dim, bool keepdim) {
  return run_reduce("all", self, at::IntArrayRef{dim}, keepdim, self.scalar_type(), at::kBool);
}

at::Tensor var_correction(const at::Tensor& self, at::OptionalIntArrayRef dim, const std::optional<at::Scalar>& correction,
                          bool keepdim) {
  require(at::isFloatingType(self.scalar_type()));
  return run_reduce("var", self, dim, keepdim, opmath_type(self.scalar_type()), self.scalar_type(),
                    correction ? correction->toDouble() : 1.0);
}
at::Tensor std_correction(const at::Tensor& self, at::OptionalIntArrayRef dim, const std::optional<at::Scalar>& correction,
                          bool keepdim) {
  require(at::isFloatingType(self.scalar_type()));
  return run_reduce("std", self, dim, keepdim, opmath_type(self.scalar_type()), self.scalar_type(),
                    correction ? correction->toDouble() : 1.0);
}

std::tuple<at::Tensor, at::Tensor> var_mean_correction(const at::Tensor& self, at::OptionalIntArrayRef dim,
                                                       const std::optional<at::Scalar>& correction, bool keepdim) {
  return {var_correction(self, dim, correction, keepdim), mean_dim(self, dim, keepdim, std::nullopt)};
}
std::tuple<at::Tensor, at::Tensor> std_mean_correction(const at::Tensor& self, at::OptionalIntArrayRef dim,
                                                       const std::optional<at::Scalar>& correction, bool keepdim) {
  return {std_correction(self, dim, correction, keepdim), mean_dim(self, dim, keepdim, std::nullopt)};
}

at::Tensor vector_norm(const at::Tensor& self, const at::Scalar& ord, at::OptionalIntArrayRef dim, bool keepdim,
                       std::optional<at::ScalarType> dtype) {
  double p = ord.toDouble();
  at::ScalarType r = dtype.value_or(self.scalar_type());
  require(at::isFloatingType(r) && (p == 2 || p == 1 || std::isinf(p) && p > 0));
  const char* kind = p == 2 ? "norm2" : p == 1 ? "norm1" : "norminf";
  return run_reduce(kind, self, dim, keepdim, opmath_type(r), r);
}

std::vector<at::Tensor> foreach_norm(at::TensorList self, const at::Scalar& ord, std::optional<at::ScalarType> dtype) {
  std::vector<at::Tensor> out;
  for (const at::Tensor& t : self) out.push_back(vector_norm(t, ord, {}, false, dtype));
  return out;
}

// max/min along a dim with indices: the first index where the value is the
// extreme (a NaN is the extreme, as torch.max propagates it). Dims kept.
std::vector<G> max_dim_decomposition(Graph& g, G x, int64_t dim, bool is_max) {
  const graph::Shape shape = g.type(x).shape;  // a copy: adding nodes moves the graph's storage
  G v = g.reduce(is_max ? NodeKind::ReduceMax : NodeKind::ReduceMin, x, {dim});
  G hit = g.binary(NodeKind::Equal, x, v);
  if (graph::is_floating(g.type(x).dtype))
    hit = g.binary(NodeKind::LogicalOr, hit, g.unary(NodeKind::IsNaN, x));
  G idx = g.iota(shape, dim, DType::Int64);
  G big = g.constant(static_cast<double>(shape[dim]), DType::Int64);
  G first = g.reduce(NodeKind::ReduceMin, g.select(hit, idx, big), {dim});
  if (graph::is_floating(g.type(x).dtype)) {  // with a NaN, report NaN as the value
    G nan_idx = g.reduce(NodeKind::ReduceMax, g.cast(g.unary(NodeKind::IsNaN, x), DType::Int32), {dim});
    v = g.select(g.cast(nan_idx, DType::Bool), g.constant(NAN, g.type(x).dtype), v);
  }
  return {v, first};
}

// On the reference runtime ATen's max/min kernel: one pass instead of the
// decomposition's reduction, compare and index reduction (6x on [256, 512]).
std::vector<at::Tensor> max_dim_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                                    const runtime::reference::ResultOutput&) {
  const int64_t dim = n.int_attr("dim");
  auto [values, indices] = n.int_attr("max") ? at::max(in[0], dim, /*keepdim=*/true) : at::min(in[0], dim, /*keepdim=*/true);
  return {values, indices};
}
MPS_EXT_REFERENCE_MULTI_KERNEL("aten.max_dim", max_dim_cpu);

void build_max_dim(Graph& g, const GraphSpec& s) {
  G x = g.placeholder(s.input(0), "self");
  const int64_t dim = s.int_attr("dim");
  const bool is_max = s.int_attr("max") != 0;
  std::vector<G> r = g.kernels("aten.max_dim", {x}, {{"dim", dim}, {"max", int64_t{is_max}}},
                               [dim, is_max](Graph& d, const std::vector<G>& in) {
                                 return max_dim_decomposition(d, in[0], dim, is_max);
                               });
  const auto& shape = s.ints_attr("shape");
  g.output(g.reshape(r[0], shape));
  g.output(g.reshape(r[1], shape));
}

std::tuple<at::Tensor, at::Tensor> max_min_dim(const at::Tensor& self, int64_t dim, bool keepdim, bool is_max) {
  require(graph_dtype_ok(self.scalar_type()) && self.scalar_type() != at::kBool && self.numel() > 0);
  dim = c10::maybe_wrap_dim(dim, std::max<int64_t>(self.dim(), 1));
  if (self.dim() == 0) return {self.clone(), at::zeros({}, device_options(self, at::kLong))};
  GraphSpec spec("aten::max_dim");
  spec.input(self).attr("dim", dim).attr("max", int64_t{is_max}).attr("shape", reduced_shape(self, {dim}, keepdim));
  auto r = runtime::run_graph(spec, build_max_dim, {self});
  return {r[0], r[1]};
}
std::tuple<at::Tensor, at::Tensor> max_dim(const at::Tensor& self, int64_t dim, bool keepdim) {
  return max_min_dim(self, dim, keepdim, true);
}
std::tuple<at::Tensor, at::Tensor> min_dim(const at::Tensor& self, int64_t dim, bool keepdim) {
  return max_min_dim(self, dim, keepdim, false);
}
at::Tensor argmax(const at::Tensor& self, std::optional<int64_t> dim, bool keepdim) {
  if (!dim) return std::get<1>(max_min_dim(self.reshape({-1}), 0, false, true)).reshape(keepdim ? std::vector<int64_t>(self.dim(), 1) : std::vector<int64_t>{});
  return std::get<1>(max_min_dim(self, *dim, keepdim, true));
}
at::Tensor argmin(const at::Tensor& self, std::optional<int64_t> dim, bool keepdim) {
  if (!dim) return std::get<1>(max_min_dim(self.reshape({-1}), 0, false, false)).reshape(keepdim ? std::vector<int64_t>(self.dim(), 1) : std::vector<int64_t>{});
  return std::get<1>(max_min_dim(self, *dim, keepdim, false));
}

// cumsum: a kernel node (ATen's scan on the CPU) whose decomposition is a
// MatMul with an upper-triangular ones matrix along the scanned dim.
G cumsum_decomposition(Graph& d, const std::vector<G>& in) {
  const graph::TensorType t = d.type(in[0]);
  int64_t n = t.shape.back();
  G row = d.iota({n, n}, 0, DType::Int32), col = d.iota({n, n}, 1, DType::Int32);
  G tri = d.cast(d.le(row, col), t.dtype);
  if (t.rank() >= 2) return d.matmul(in[0], tri);
  return d.reshape(d.matmul(d.reshape(in[0], {1, n}), tri), {n});  // MatMul wants rank >= 2
}
at::Tensor cumsum_cpu(const graph::Node&, const std::vector<at::Tensor>& in, const runtime::reference::NewOutput& new_output) {
  at::Tensor out = new_output(in[0].sizes(), in[0].scalar_type());
  at::cumsum_out(out, in[0], -1);
  return out;
}
MPS_EXT_REFERENCE_KERNEL("aten.cumsum_last", cumsum_cpu);

void build_cumsum(Graph& g, const GraphSpec& s) {
  G x = g.placeholder(s.input(0), "self");
  x = cast_to(g, x, attr_dtype(s, "compute"));
  int64_t dim = s.int_attr("dim"), rank = g.type(x).rank();
  std::vector<int64_t> perm(rank);
  for (int64_t i = 0; i < rank; ++i) perm[i] = i;
  std::swap(perm[dim], perm[rank - 1]);
  G t = dim == rank - 1 ? x : g.transpose(x, perm);
  G c = g.kernel("aten.cumsum_last", {t}, {}, cumsum_decomposition);
  if (dim != rank - 1) c = g.transpose(c, perm);
  g.output(cast_to(g, c, attr_dtype(s, "result")));
}

at::Tensor cumsum(const at::Tensor& self, int64_t dim, std::optional<at::ScalarType> dtype) {
  at::ScalarType r = sum_type(self, dtype);
  // Integer scans: ATen's kernel on the reference runtime (MPSGraph's MatMul has no integer form).
  require(graph_dtype_ok(self.scalar_type()) && graph_dtype_ok(r) &&
          (at::isFloatingType(r) || runtime::device_runtime() == runtime::Kind::Reference));
  dim = c10::maybe_wrap_dim(dim, std::max<int64_t>(self.dim(), 1));
  if (self.dim() == 0 || self.numel() == 0) return self.to(r, /*non_blocking=*/false, /*copy=*/true);
  GraphSpec spec("aten::cumsum");
  spec.input(self).attr("dim", dim).attr("compute", dname(opmath_type(r))).attr("result", dname(r));
  return runtime::run_graph(spec, build_cumsum, {self})[0];
}

// --- matmul family ----------------------------------------------------------------
// attrs: op (mm|addmm), alpha, beta. Inputs (a, b[, c]).
// beta * c + alpha * (a @ b), c broadcast to the product's shape.
G addmm_decomposition(Graph& g, G c, G a, G b, double alpha, double beta) {
  G y = g.matmul(a, b);
  if (alpha != 1) y = g.mul(y, k(g, alpha, y));
  if (beta != 0) y = g.add(beta == 1 ? c : g.mul(c, k(g, beta, c)), y);
  return y;
}

// addmm / baddbmm in the tensors' own float dtype: one ATen call on the
// reference runtime (one GEMM with beta, as torch on the CPU), instead of a
// product into fresh memory and an add.
at::Tensor addmm_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                     const runtime::reference::NewOutput& new_output) {
  const at::Tensor &c = in[0], &a = in[1], &b = in[2];
  const double alpha = n.float_attr("alpha"), beta = n.float_attr("beta");
  if (a.dim() == 2) {
    at::Tensor out = new_output({a.size(0), b.size(1)}, a.scalar_type());
    if (runtime::reference::gemm_into(out, a, b, &c, alpha, beta)) return out;
    return at::cpu::addmm_out(out, c, a, b, beta, alpha);
  }
  at::Tensor out = new_output({a.size(0), a.size(1), b.size(2)}, a.scalar_type());
  return at::cpu::baddbmm_out(out, c, a, b, beta, alpha);
}
MPS_EXT_REFERENCE_KERNEL("aten.addmm", addmm_cpu);

void build_matmul(Graph& g, const GraphSpec& s) {
  G a = g.placeholder(s.input(0), "a");
  G b = g.placeholder(s.input(1), "b");
  DType compute = attr_dtype(s, "compute");
  if (s.num_inputs() == 2) {
    g.output(cast_to(g, g.matmul(cast_to(g, a, compute), cast_to(g, b, compute)), g.type(a).dtype));
    return;
  }
  G c = g.placeholder(s.input(2), "self");
  double alpha = s.float_attr("alpha"), beta = s.float_attr("beta");
  const auto& sa = s.input(0).shape;
  const auto& sb = s.input(1).shape;
  bool batched_alike = sa.size() == 3 && sb.size() == 3 && sa[0] == sb[0] && sa[0] != graph::kDynamic;
  if (g.type(a).dtype == compute && (sa.size() == 2 || batched_alike)) {
    g.output(g.kernel("aten.addmm", {c, a, b}, {{"alpha", alpha}, {"beta", beta}},
                      [alpha, beta](Graph& d, const std::vector<G>& in) {
                        return addmm_decomposition(d, in[0], in[1], in[2], alpha, beta);
                      }));
    return;
  }
  G y = addmm_decomposition(g, cast_to(g, c, compute), cast_to(g, a, compute), cast_to(g, b, compute), alpha, beta);
  g.output(cast_to(g, y, g.type(a).dtype));
}

at::Tensor run_matmul(const at::Tensor& a, const at::Tensor& b, const at::Tensor* c, double alpha, double beta) {
  require(at::isFloatingType(a.scalar_type()) && graph_dtype_ok(a.scalar_type()));
  TORCH_CHECK(a.scalar_type() == b.scalar_type() && (!c || c->scalar_type() == a.scalar_type()),
              "expected m1 and m2 to have the same dtype, but got: ", a.scalar_type(), " != ", b.scalar_type());
  at::DimVector shape(a.sizes());
  shape.back() = b.size(-1);
  if (c10::multiply_integers(shape) == 0) return at::empty(shape, a.options());
  if (a.size(-1) == 0)  // an empty sum: beta * self, and beta == 0 ignores self (NaN included), as ATen
    return c && beta != 0 ? c->expand(shape).mul(beta) : at::zeros(shape, a.options());
  auto spec = [&] {
    GraphSpec s("aten::matmul");
    s.input(a).input(b);
    if (c) s.input(*c);
    // Reduced precision accumulates in float32 (ATen's CPU kernels do too).
    s.attr("compute", dname(a.scalar_type() == at::kDouble ? at::kDouble : at::kFloat)).attr("alpha", alpha).attr("beta", beta);
    return s;
  };
  runtime::MemoKeyWriter<16> key(build_matmul);  // what the spec records (compute follows from a's dtype)
  key.tensor(a).tensor(b).word(c != nullptr);
  if (c) key.tensor(*c);
  key.real(alpha).real(beta);
  thread_local runtime::GraphMemo<16> memo;
  runtime::BorrowedTensors<3> inputs{a, b};
  if (c) inputs.borrow(*c);
  return std::move(runtime::run_graph_memoized(memo, key.key(), spec, build_matmul, inputs)[0]);
}

at::Tensor mm(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.dim() == 2, "self must be a matrix");
  TORCH_CHECK(b.dim() == 2, "mat2 must be a matrix");
  TORCH_CHECK(a.size(1) == b.size(0), "mat1 and mat2 shapes cannot be multiplied (", a.size(0), "x", a.size(1), " and ",
              b.size(0), "x", b.size(1), ")");
  return run_matmul(a, b, nullptr, 1, 0);
}
at::Tensor bmm(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.dim() == 3 && b.dim() == 3, "batch1 and batch2 must be 3D tensors");
  TORCH_CHECK(a.size(0) == b.size(0) && a.size(2) == b.size(1), "Expected size for first two dimensions of batch2 tensor to be: [",
              a.size(0), ", ", a.size(2), "] but got: [", b.size(0), ", ", b.size(1), "].");
  return run_matmul(a, b, nullptr, 1, 0);
}
at::Tensor addmm(const at::Tensor& self, const at::Tensor& a, const at::Tensor& b, const at::Scalar& beta,
                 const at::Scalar& alpha) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2, "mat1 and mat2 must be matrices");
  TORCH_CHECK(a.size(1) == b.size(0), "mat1 and mat2 shapes cannot be multiplied (", a.size(0), "x", a.size(1), " and ",
              b.size(0), "x", b.size(1), ")");
  // The bias goes in as it is (a Linear's [n]): the graph's add and ATen's
  // addmm_out broadcast it, with no expanded view per call.
  if (!at::is_expandable_to(self.sizes(), {a.size(0), b.size(1)})) self.expand({a.size(0), b.size(1)});  // torch's error
  return run_matmul(a, b, &self, alpha.toDouble(), beta.toDouble());
}
at::Tensor& addmm_out(const at::Tensor& self, const at::Tensor& a, const at::Tensor& b, const at::Scalar& beta,
                      const at::Scalar& alpha, at::Tensor& out) {
  TORCH_CHECK(out.scalar_type() == a.scalar_type(), "Expected out tensor to have dtype ", a.dtype(),
              ", but got ", out.dtype(), " instead");
  write_result((addmm)(self, a, b, beta, alpha), out);  // (ours, not at::addmm)
  return out;
}
at::Tensor baddbmm(const at::Tensor& self, const at::Tensor& a, const at::Tensor& b, const at::Scalar& beta,
                   const at::Scalar& alpha) {
  TORCH_CHECK(a.dim() == 3 && b.dim() == 3, "batch1 and batch2 must be 3D tensors");
  at::Tensor c = self.expand({a.size(0), a.size(1), b.size(2)});
  return run_matmul(a, b, &c, alpha.toDouble(), beta.toDouble());
}
at::Tensor dot(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.dim() == 1 && b.dim() == 1, "1D tensors expected, but got ", a.dim(), "D and ", b.dim(), "D tensors");
  TORCH_CHECK(a.numel() == b.numel(), "inconsistent tensor size, expected tensor [", a.numel(), "] and src [", b.numel(),
              "] to have the same number of elements, but got ", a.numel(), " and ", b.numel(), " elements respectively");
  return run_matmul(a.reshape({1, -1}), b.reshape({-1, 1}), nullptr, 1, 0).reshape({});
}
at::Tensor mv(const at::Tensor& a, const at::Tensor& v) {
  TORCH_CHECK(a.dim() == 2 && v.dim() == 1, "vector + matrix @ vector expected, got ", a.dim(), ", ", v.dim());
  return run_matmul(a, v.reshape({-1, 1}), nullptr, 1, 0).reshape({a.size(0)});
}
at::Tensor addmv(const at::Tensor& self, const at::Tensor& a, const at::Tensor& v, const at::Scalar& beta,
                 const at::Scalar& alpha) {
  TORCH_CHECK(a.dim() == 2 && v.dim() == 1, "vector + matrix @ vector expected, got ", self.dim(), ", ", a.dim(), ", ", v.dim());
  at::Tensor c = self.expand({a.size(0)}).reshape({-1, 1});
  return run_matmul(a, v.reshape({-1, 1}), &c, alpha.toDouble(), beta.toDouble()).reshape({a.size(0)});
}

// --- softmax -----------------------------------------------------------------------
// attrs: dim, log, compute, result. Computes in float32 for reduced precision.
// log_softmax and both backwards of float32/float64 run as kernels (on the
// reference runtime ATen's fused CPU kernels: one pass per row instead of a
// reduction, an elementwise pass, another reduction and a final pass).
G log_softmax_decomposition(Graph& g, G x, int64_t dim) {
  G shifted = g.sub(x, g.reduce(NodeKind::ReduceMax, x, {dim}));
  return g.sub(shifted, g.unary(NodeKind::Log, g.reduce(NodeKind::ReduceSum, g.unary(NodeKind::Exp, shifted), {dim})));
}

// (grad_output, output) -> grad_input, of softmax or (log) of log_softmax.
G softmax_backward_decomposition(Graph& g, G dy, G y, int64_t dim, bool log) {
  if (log) return g.sub(dy, g.mul(g.unary(NodeKind::Exp, y), g.reduce(NodeKind::ReduceSum, dy, {dim})));
  return g.mul(y, g.sub(dy, g.reduce(NodeKind::ReduceSum, g.mul(dy, y), {dim})));
}

at::Tensor log_softmax_cpu(const graph::Node& n, const std::vector<at::Tensor>& in, const runtime::reference::NewOutput&) {
  return at::_log_softmax(in[0], n.int_attr("dim"), false);
}
at::Tensor softmax_backward_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                                const runtime::reference::NewOutput&) {
  int64_t dim = n.int_attr("dim");
  at::ScalarType t = in[0].scalar_type();
  return n.int_attr("log") ? at::_log_softmax_backward_data(in[0], in[1], dim, t)
                           : at::_softmax_backward_data(in[0], in[1], dim, t);
}
MPS_EXT_REFERENCE_KERNEL("aten.log_softmax", log_softmax_cpu);
MPS_EXT_REFERENCE_KERNEL("aten.softmax_backward", softmax_backward_cpu);

// The kernels run in the tensors' own dtype: float32/float64 end to end.
bool softmax_kernel_ok(const GraphSpec& s) {
  DType t = s.input(0).dtype;
  return kernel_dtype(t) && attr_dtype(s, "compute") == t && attr_dtype(s, "result") == t;
}

void build_softmax(Graph& g, const GraphSpec& s) {
  G x0 = g.placeholder(s.input(0), "self");
  int64_t dim = s.int_attr("dim");
  if (s.int_attr("log") && softmax_kernel_ok(s)) {
    g.output(g.kernel("aten.log_softmax", {x0}, {{"dim", dim}},
                      [dim](Graph& d, const std::vector<G>& in) { return log_softmax_decomposition(d, in[0], dim); }));
    return;
  }
  G x = cast_to(g, x0, attr_dtype(s, "compute"));
  G y = s.int_attr("log") ? log_softmax_decomposition(g, x, dim) : g.softmax(x, dim);
  g.output(cast_to(g, y, attr_dtype(s, "result")));
}

at::Tensor run_softmax(const at::Tensor& self, int64_t dim, bool half_to_float, bool log) {
  require(at::isFloatingType(self.scalar_type()) && graph_dtype_ok(self.scalar_type()));
  if (self.numel() == 0) require(false);
  dim = c10::maybe_wrap_dim(dim, std::max<int64_t>(self.dim(), 1));
  at::ScalarType r = half_to_float ? at::kFloat : self.scalar_type();
  runtime::BorrowedTensors<1> x;  // self (borrowed), or a 0-d self as [1]
  if (self.dim() == 0) x.own(self.reshape({1}));
  else x.borrow(self);
  auto spec = [&] {
    GraphSpec s("aten::softmax");
    s.input(x[0], {0}).attr("dim", dim).attr("log", int64_t{log}).attr("compute", dname(opmath_type(self.scalar_type())))
        .attr("result", dname(r));
    return s;
  };
  runtime::MemoKeyWriter<16> key(build_softmax);  // what the spec records (compute follows from the dtype)
  key.tensor(x[0]).word(static_cast<uint64_t>(dim) | uint64_t{log} << 32 | static_cast<uint64_t>(r) << 40);
  thread_local runtime::GraphMemo<16> memo;
  at::Tensor y = std::move(runtime::run_graph_memoized(memo, key.key(), spec, build_softmax, x)[0]);
  return self.dim() == 0 ? y.reshape({}) : y;
}
at::Tensor softmax(const at::Tensor& self, int64_t dim, bool half_to_float) { return run_softmax(self, dim, half_to_float, false); }
at::Tensor log_softmax(const at::Tensor& self, int64_t dim, bool half_to_float) { return run_softmax(self, dim, half_to_float, true); }

void build_softmax_backward(Graph& g, const GraphSpec& s) {
  G dy0 = g.placeholder(s.input(0), "grad_output"), y0 = g.placeholder(s.input(1), "output");
  int64_t dim = s.int_attr("dim");
  bool log = s.int_attr("log") != 0;
  if (softmax_kernel_ok(s) && s.input(1).dtype == s.input(0).dtype) {
    g.output(g.kernel("aten.softmax_backward", {dy0, y0}, {{"dim", dim}, {"log", int64_t{log}}},
                      [dim, log](Graph& d, const std::vector<G>& in) {
                        return softmax_backward_decomposition(d, in[0], in[1], dim, log);
                      }));
    return;
  }
  DType compute = attr_dtype(s, "compute");
  G dx = softmax_backward_decomposition(g, cast_to(g, dy0, compute), cast_to(g, y0, compute), dim, log);
  g.output(cast_to(g, dx, attr_dtype(s, "result")));
}

at::Tensor run_softmax_backward(const at::Tensor& grad, const at::Tensor& output, int64_t dim, at::ScalarType input_dtype, bool log) {
  require(at::isFloatingType(grad.scalar_type()) && graph_dtype_ok(grad.scalar_type()) && grad.dim() > 0 && grad.numel() > 0);
  dim = c10::maybe_wrap_dim(dim, grad.dim());
  auto spec = [&] {
    GraphSpec s("aten::softmax_backward");
    s.input(grad, {0}).input(output, {0}).attr("dim", dim).attr("log", int64_t{log})
        .attr("compute", dname(opmath_type(grad.scalar_type()))).attr("result", dname(input_dtype));
    return s;
  };
  runtime::MemoKeyWriter<16> key(build_softmax_backward);
  key.tensor(grad).tensor(output).word(static_cast<uint64_t>(dim) | uint64_t{log} << 32 | static_cast<uint64_t>(input_dtype) << 40);
  thread_local runtime::GraphMemo<16> memo;
  runtime::BorrowedTensors<2> inputs{grad, output};
  return std::move(runtime::run_graph_memoized(memo, key.key(), spec, build_softmax_backward, inputs)[0]);
}
at::Tensor softmax_backward(const at::Tensor& g, const at::Tensor& y, int64_t dim, at::ScalarType t) {
  return run_softmax_backward(g, y, dim, t, false);
}
at::Tensor log_softmax_backward(const at::Tensor& g, const at::Tensor& y, int64_t dim, at::ScalarType t) {
  return run_softmax_backward(g, y, dim, t, true);
}

// --- layer_norm --------------------------------------------------------------------
// Inputs (x, [weight], [bias]); attrs: axes (normalized dims), eps, has_weight,
// has_bias, compute, stat. Outputs: y, mean, rstd (kept dims, as ATen returns them).
// float32/float64 run as the kernel "aten.layer_norm" (on the reference
// runtime: ATen's fused CPU kernel, one pass instead of four), with this
// decomposition as its oracle and its MPSGraph form.
struct LayerNormParams {
  std::vector<int64_t> axes;
  double eps;
  bool has_weight, has_bias;
  DType compute, stat;
};

std::vector<G> layer_norm_decomposition(Graph& g, const std::vector<G>& in, const LayerNormParams& p) {
  G x = cast_to(g, in[0], p.compute);
  size_t next = 1;
  G mean = g.reduce(NodeKind::ReduceMean, x, p.axes);
  G d = g.sub(x, mean);
  G var = g.reduce(NodeKind::ReduceMean, g.mul(d, d), p.axes);
  G rstd = g.unary(NodeKind::Rsqrt, g.add(var, k(g, p.eps, var)));
  G y = g.mul(d, rstd);
  if (p.has_weight) y = g.mul(y, cast_to(g, in[next++], p.compute));
  if (p.has_bias) y = g.add(y, cast_to(g, in[next++], p.compute));
  return {cast_to(g, y, g.type(in[0]).dtype), cast_to(g, mean, p.stat), cast_to(g, rstd, p.stat)};
}

std::vector<at::Tensor> layer_norm_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                                       const runtime::reference::ResultOutput&) {
  const auto& axes = n.ints_attr("axes");
  std::vector<int64_t> normalized(in[0].sizes().end() - axes.size(), in[0].sizes().end());
  size_t next = 1;
  std::optional<at::Tensor> w, b;
  if (n.int_attr("has_weight")) w = in[next++];
  if (n.int_attr("has_bias")) b = in[next++];
  auto [y, mean, rstd] = at::native_layer_norm(in[0], normalized, w, b, n.float_attr("eps"));
  return {y, mean, rstd};
}
MPS_EXT_REFERENCE_MULTI_KERNEL("aten.layer_norm", layer_norm_cpu);

void build_layer_norm(Graph& g, const GraphSpec& s) {
  LayerNormParams p{s.ints_attr("axes"), s.float_attr("eps"), s.int_attr("has_weight") != 0,
                    s.int_attr("has_bias") != 0, attr_dtype(s, "compute"), attr_dtype(s, "stat")};
  std::vector<G> in{g.placeholder(s.input(0), "input")};
  if (p.has_weight) in.push_back(g.placeholder(s.input(in.size()), "weight"));
  if (p.has_bias) in.push_back(g.placeholder(s.input(in.size()), "bias"));
  auto decomposition = [p](Graph& d, const std::vector<G>& x) { return layer_norm_decomposition(d, x, p); };
  graph::Attrs attrs{{"axes", p.axes}, {"eps", p.eps}, {"has_weight", int64_t{p.has_weight}},
                     {"has_bias", int64_t{p.has_bias}}};
  for (G r : fused_cpu_norm_ok(s, 1, in.size() - 1) ? g.kernels("aten.layer_norm", in, attrs, decomposition)
                                                : decomposition(g, in))
    g.output(r);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> native_layer_norm(const at::Tensor& input, c10::SymIntArrayRef normalized_shape,
                                                                 const std::optional<at::Tensor>& weight,
                                                                 const std::optional<at::Tensor>& bias, double eps) {
  require(at::isFloatingType(input.scalar_type()) && graph_dtype_ok(input.scalar_type()) && input.numel() > 0);
  int64_t n = static_cast<int64_t>(normalized_shape.size());
  TORCH_CHECK(n >= 1 && input.dim() >= n, "Expected normalized_shape to be at least 1-dimensional");
  std::vector<int64_t> axes;
  for (int64_t i = input.dim() - n; i < input.dim(); ++i) axes.push_back(i);
  bool hw = weight && weight->defined(), hb = bias && bias->defined();
  runtime::BorrowedTensors<3> inputs{input};
  if (hw) inputs.borrow(*weight);
  if (hb) inputs.borrow(*bias);
  auto spec = [&] {
    GraphSpec s("aten::native_layer_norm");
    s.input(input, {0});
    if (hw) s.input(*weight);
    if (hb) s.input(*bias);
    at::ScalarType stat = opmath_type(input.scalar_type());
    s.attr("axes", axes).attr("eps", eps).attr("has_weight", int64_t{hw}).attr("has_bias", int64_t{hb})
        .attr("compute", dname(stat)).attr("stat", dname(input.scalar_type() == at::kDouble ? at::kDouble : stat));
    return s;
  };
  // The memo key: what the spec records (axes follow from the rank and n, the dtypes from the input's).
  runtime::MemoKeyWriter<16> key(build_layer_norm);
  key.word(static_cast<uint64_t>(n) | uint64_t{hw} << 32 | uint64_t{hb} << 33).real(eps);
  for (const at::Tensor& t : inputs) key.tensor(t);
  thread_local runtime::GraphMemo<16> memo;
  auto r = runtime::run_graph_memoized(memo, key.key(), spec, build_layer_norm, inputs);
  return {std::move(r[0]), std::move(r[1]), std::move(r[2])};
}

// Inputs (dy, x, mean, rstd, [weight]); outputs dx, [dweight, dbias]. Like
// the forward, float32/float64 run as a kernel ("aten.layer_norm_backward":
// ATen's fused CPU backward) over this decomposition.
struct LayerNormBackwardParams {
  std::vector<int64_t> axes, outer, wshape;
  bool has_weight, grad_weight, grad_bias;
  DType compute, wdtype;
};

std::vector<G> layer_norm_backward_decomposition(Graph& g, const std::vector<G>& in, const LayerNormBackwardParams& p) {
  G dy = cast_to(g, in[0], p.compute), x = cast_to(g, in[1], p.compute);
  G mean = cast_to(g, in[2], p.compute), rstd = cast_to(g, in[3], p.compute);
  G xhat = g.mul(g.sub(x, mean), rstd);
  G dyw = p.has_weight ? g.mul(dy, cast_to(g, in[4], p.compute)) : dy;
  G a1 = g.reduce(NodeKind::ReduceMean, dyw, p.axes);
  G a2 = g.reduce(NodeKind::ReduceMean, g.mul(dyw, xhat), p.axes);
  G dx = g.mul(rstd, g.sub(g.sub(dyw, a1), g.mul(xhat, a2)));
  std::vector<G> out{cast_to(g, dx, g.type(in[1]).dtype)};
  if (p.grad_weight)
    out.push_back(cast_to(g, g.reshape(g.reduce(NodeKind::ReduceSum, g.mul(dy, xhat), p.outer), p.wshape), p.wdtype));
  if (p.grad_bias) out.push_back(cast_to(g, g.reshape(g.reduce(NodeKind::ReduceSum, dy, p.outer), p.wshape), p.wdtype));
  return out;
}

std::vector<at::Tensor> layer_norm_backward_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                                                const runtime::reference::ResultOutput&) {
  const auto& wshape = n.ints_attr("wshape");
  bool gw = n.int_attr("grad_weight"), gb = n.int_attr("grad_bias");
  std::optional<at::Tensor> w;
  if (n.int_attr("has_weight")) w = in[4];
  // ATen reads the bias only for dbias's shape and dtype: the weight's.
  at::Tensor bias_like = w ? *w : at::empty(wshape, in[1].options());
  auto [dx, dw, db] = at::native_layer_norm_backward(in[0], in[1], wshape, in[2], in[3], w, bias_like, {true, gw, gb});
  std::vector<at::Tensor> out{dx};
  if (gw) out.push_back(dw);
  if (gb) out.push_back(db);
  return out;
}
MPS_EXT_REFERENCE_MULTI_KERNEL("aten.layer_norm_backward", layer_norm_backward_cpu);

void build_layer_norm_backward(Graph& g, const GraphSpec& s) {
  LayerNormBackwardParams p{s.ints_attr("axes"), s.ints_attr("outer"), s.ints_attr("wshape"),
                            s.int_attr("has_weight") != 0, s.int_attr("grad_weight") != 0,
                            s.int_attr("grad_bias") != 0, attr_dtype(s, "compute"), attr_dtype(s, "wdtype")};
  std::vector<G> in{g.placeholder(s.input(0), "grad_out"), g.placeholder(s.input(1), "input"),
                    g.placeholder(s.input(2), "mean"), g.placeholder(s.input(3), "rstd")};
  if (p.has_weight) in.push_back(g.placeholder(s.input(4), "weight"));
  auto decomposition = [p](Graph& d, const std::vector<G>& x) { return layer_norm_backward_decomposition(d, x, p); };
  graph::Attrs attrs{{"wshape", p.wshape}, {"has_weight", int64_t{p.has_weight}},
                     {"grad_weight", int64_t{p.grad_weight}}, {"grad_bias", int64_t{p.grad_bias}}};
  // ATen's backward also wants its forward's statistics in the input's dtype.
  bool fused = fused_cpu_norm_ok(s, 0, 4 + p.has_weight) && (!(p.grad_weight || p.grad_bias) || p.wdtype == s.input(0).dtype);
  for (G r : fused ? g.kernels("aten.layer_norm_backward", in, attrs, decomposition) : decomposition(g, in))
    g.output(r);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> native_layer_norm_backward(
    const at::Tensor& grad_out, const at::Tensor& input, c10::SymIntArrayRef normalized_shape, const at::Tensor& mean,
    const at::Tensor& rstd, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    std::array<bool, 3> output_mask) {
  require(at::isFloatingType(input.scalar_type()) && graph_dtype_ok(input.scalar_type()) && input.numel() > 0);
  int64_t n = static_cast<int64_t>(normalized_shape.size());
  std::vector<int64_t> axes, outer, wshape;
  for (int64_t i = 0; i < input.dim(); ++i) (i < input.dim() - n ? outer : axes).push_back(i);
  for (int64_t a : axes) wshape.push_back(input.size(a));
  bool hw = weight && weight->defined();
  bool gw = output_mask[1] && hw, gb = output_mask[2] && bias && bias->defined();
  runtime::BorrowedTensors<5> inputs{grad_out, input, mean, rstd};
  if (hw) inputs.borrow(*weight);
  at::ScalarType wdtype = hw ? weight->scalar_type() : input.scalar_type();
  auto spec = [&] {
    GraphSpec s("aten::native_layer_norm_backward");
    for (const at::Tensor& t : inputs) s.input(t);
    s.attr("axes", axes).attr("outer", outer).attr("wshape", wshape).attr("has_weight", int64_t{hw})
        .attr("grad_weight", int64_t{gw}).attr("grad_bias", int64_t{gb}).attr("compute", dname(opmath_type(input.scalar_type())))
        .attr("wdtype", dname(wdtype));
    return s;
  };
  // The memo key: what the spec records (axes, outer and wshape follow from the input's sizes and n).
  runtime::MemoKeyWriter<24> key(build_layer_norm_backward);
  key.word(static_cast<uint64_t>(n) | uint64_t{hw} << 32 | uint64_t{gw} << 33 | uint64_t{gb} << 34);
  for (const at::Tensor& t : inputs) key.tensor(t);
  thread_local runtime::GraphMemo<24> memo;
  auto r = runtime::run_graph_memoized(memo, key.key(), spec, build_layer_norm_backward, inputs);
  size_t next = 1;
  at::Tensor dw = gw ? r[next++] : at::Tensor(), db = gb ? r[next++] : at::Tensor();
  return {output_mask[0] ? r[0] : at::Tensor(), dw, db};
}

// --- losses ------------------------------------------------------------------------
int64_t reduction_attr(int64_t reduction) { return reduction; }  // 0 none, 1 mean, 2 sum (at::Reduction)

void build_mse(Graph& g, const GraphSpec& s) {
  DType compute = attr_dtype(s, "compute");
  G x = cast_to(g, g.placeholder(s.input(0), "self"), compute);
  G t = cast_to(g, g.placeholder(s.input(1), "target"), compute);
  G d = g.sub(x, t);
  int64_t reduction = s.int_attr("reduction");
  if (s.int_attr("backward")) {
    G dy = cast_to(g, g.placeholder(s.input(2), "grad_output"), compute);
    G r = g.mul(g.mul(d, k(g, 2.0, d)), dy);
    if (reduction == 1) r = g.div(r, k(g, static_cast<double>(s.int_attr("numel")), r));
    g.output(cast_to(g, r, attr_dtype(s, "result")));
    return;
  }
  G sq = g.mul(d, d);
  if (reduction != 0) {
    std::vector<int64_t> all(g.type(sq).rank());
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
    sq = g.reshape(g.reduce(reduction == 1 ? NodeKind::ReduceMean : NodeKind::ReduceSum, sq, all), {});
  }
  g.output(cast_to(g, sq, attr_dtype(s, "result")));
}

at::Tensor mse_loss(const at::Tensor& self, const at::Tensor& target, int64_t reduction) {
  at::ScalarType r = at::result_type(self, target);
  require(at::isFloatingType(r) && graph_dtype_ok(r));
  std::vector<int64_t> shape = at::infer_size(self.sizes(), target.sizes());
  if (c10::multiply_integers(shape) == 0) require(false);
  at::Tensor x = self.expand(shape), t = target.expand(shape);
  GraphSpec spec("aten::mse_loss");
  spec.input(x).input(t).attr("reduction", reduction).attr("backward", int64_t{0})
      .attr("compute", dname(opmath_type(r))).attr("result", dname(r));
  return runtime::run_graph(spec, build_mse, {x, t})[0];
}

at::Tensor mse_loss_backward(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& target, int64_t reduction) {
  at::ScalarType r = at::result_type(self, target);
  require(at::isFloatingType(r) && graph_dtype_ok(r));
  std::vector<int64_t> shape = at::infer_size(self.sizes(), target.sizes());
  if (c10::multiply_integers(shape) == 0) require(false);
  at::Tensor x = self.expand(shape), t = target.expand(shape), dy = grad_output.expand(shape);
  GraphSpec spec("aten::mse_loss_backward");
  spec.input(x).input(t).input(dy).attr("reduction", reduction).attr("backward", int64_t{1})
      .attr("numel", c10::multiply_integers(shape)).attr("compute", dname(opmath_type(r))).attr("result", dname(r));
  return runtime::run_graph(spec, build_mse, {x, t, dy})[0];
}

struct NllParams {
  DType compute, dtype;
  bool has_weight, backward, ignored;
  int64_t n, c, reduction, ignore_index;
  std::vector<int64_t> shape;  // the loss's (forward) or grad_input's (backward)
};

// in: (self [N, C], target [N], [weight], [grad_output, total_weight]).
std::vector<G> nll_decomposition(Graph& g, const std::vector<G>& in, const NllParams& p) {
  G x = in[0], target = in[1];
  if (g.type(target).dtype != DType::Int64 && g.type(target).dtype != DType::Int32) target = g.cast(target, DType::Int64);
  DType index_type = g.type(target).dtype;
  const int64_t n = p.n, c = p.c;
  // Ignored targets pick column 0 (any valid index) and are masked after.
  std::optional<G> valid;
  if (p.ignored) {
    valid = g.binary(NodeKind::NotEqual, target, g.constant(static_cast<double>(p.ignore_index), index_type));
    target = g.select(*valid, target, g.constant(0, index_type));
  }
  G column = g.reshape(target, {n, 1});
  size_t next = 2;
  std::optional<G> w;  // per-sample class weight [N] (unmasked); none = 1
  if (p.has_weight) w = g.gather(cast_to(g, in[next++], p.compute), target, 0);
  G zero = g.constant(0, p.compute);
  // total_weight: sum of the (masked) per-sample weights.
  auto total_weight = [&]() -> G {
    if (!p.has_weight && !p.ignored) return g.constant(static_cast<double>(n), p.compute);
    G wm = p.has_weight ? (p.ignored ? g.select(*valid, *w, zero) : *w) : g.cast(*valid, p.compute);
    return g.reshape(g.reduce(NodeKind::ReduceSum, wm, {0}), {});
  };
  if (p.backward) {
    G dy = cast_to(g, in[next++], p.compute);
    G tw = cast_to(g, in[next++], p.compute);
    G scale = p.reduction == 1 ? g.div(dy, tw) : dy;  // [N] for "none", else 0-d
    G grad = g.neg(p.has_weight ? g.mul(*w, scale) : scale);
    if (p.ignored) grad = g.select(*valid, grad, zero);
    else if (g.type(grad).rank() == 0) grad = g.broadcast(grad, {n});
    grad = cast_to(g, g.reshape(grad, {n, 1}), p.dtype);
    G out = g.scatter_along_axis(g.constant(0, p.dtype, {n, c}), grad, column, 1, "set");
    return {g.reshape(out, p.shape)};
  }
  G picked = cast_to(g, g.reshape(g.gather_along_axis(x, column, 1), {n}), p.compute);
  G loss = g.neg(p.has_weight ? g.mul(picked, *w) : picked);
  if (p.ignored) loss = g.select(*valid, loss, zero);
  G total;
  if (p.reduction == 0) {
    loss = g.reshape(loss, p.shape);
    total = zero;  // torch's total_weight for reduction="none"
  } else {
    loss = g.reshape(g.reduce(NodeKind::ReduceSum, loss, {0}), {});
    total = total_weight();
    if (p.reduction == 1) loss = g.div(loss, total);
  }
  return {cast_to(g, loss, p.dtype), cast_to(g, total, p.dtype)};
}

// float32/float64 nll_loss and its backward with int64 targets are kernel
// nodes: ATen's nll_loss kernels on the reference runtime (one call instead of
// a gather, a reduction and a division), the decomposition elsewhere.
std::optional<at::Tensor> nll_weight(const graph::Node& n, const std::vector<at::Tensor>& in) {
  return n.int_attr("has_weight") ? std::optional<at::Tensor>(in[2]) : std::nullopt;
}
std::vector<at::Tensor> nll_loss_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                                     const runtime::reference::ResultOutput&) {
  auto [loss, total] = at::nll_loss_forward(in[0], in[1], nll_weight(n, in), n.int_attr("reduction"),
                                            n.int_attr("ignore_index"));
  return {loss.reshape(n.ints_attr("shape")), total};
}
at::Tensor nll_loss_backward_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                                 const runtime::reference::NewOutput&) {
  size_t next = n.int_attr("has_weight") ? 3 : 2;
  return at::nll_loss_backward(in[next], in[0], in[1], nll_weight(n, in), n.int_attr("reduction"),
                               n.int_attr("ignore_index"), in[next + 1])
      .reshape(n.ints_attr("shape"));
}
MPS_EXT_REFERENCE_MULTI_KERNEL("aten.nll_loss", nll_loss_cpu);
MPS_EXT_REFERENCE_KERNEL("aten.nll_loss_backward", nll_loss_backward_cpu);

// nll_loss over [N, C] (or [C]) log-probabilities: each sample's target
// column gathered (O(N), no [N, C] one-hot), its class weight gathered by the
// target, ignore_index masked to weight 0. "has_ignored" (read on the host by
// check_nll_targets) drops the masking when no target is ignored.
// Inputs (self, target, [weight]); outputs (loss, total_weight) or grad_input
// (-w_i * scale scattered into zeros at each target).
void build_nll(Graph& g, const GraphSpec& s) {
  const graph::TensorType& xt = s.input(0);
  bool backward = s.int_attr("backward");
  NllParams p{attr_dtype(s, "compute"), xt.dtype, s.int_attr("has_weight") != 0, backward,
              s.int_attr("has_ignored") != 0, xt.shape[0], xt.shape[1], s.int_attr("reduction"),
              s.int_attr("ignore_index"), s.ints_attr(backward ? "shape" : "loss_shape")};
  if (!backward && p.reduction != 0) p.shape = {};
  std::vector<G> in{g.placeholder(xt, "self"), g.placeholder(s.input(1), "target")};
  if (p.has_weight) in.push_back(g.placeholder(s.input(2), "weight"));
  if (backward) {
    in.push_back(g.placeholder(s.input(in.size()), "grad_output"));
    in.push_back(g.placeholder(s.input(in.size()), "total_weight"));
  }
  bool kernel = kernel_dtype(p.dtype) && p.compute == p.dtype &&
                s.input(1).dtype == DType::Int64;
  for (size_t i = 2; kernel && i < in.size(); ++i) kernel = g.type(in[i]).dtype == p.dtype;
  auto decomposition = [p](Graph& d, const std::vector<G>& x) { return nll_decomposition(d, x, p); };
  if (!kernel) {
    for (G r : decomposition(g, in)) g.output(r);
    return;
  }
  graph::Attrs attrs{{"has_weight", int64_t{p.has_weight}}, {"reduction", p.reduction},
                     {"ignore_index", p.ignore_index}, {"shape", p.shape}};
  if (backward) {
    g.output(g.kernel("aten.nll_loss_backward", in, attrs,
                      [p](Graph& d, const std::vector<G>& x) { return nll_decomposition(d, x, p)[0]; }));
    return;
  }
  for (G r : g.kernels("aten.nll_loss", in, attrs, decomposition)) g.output(r);
}

// torch's target checks: Long or Byte targets, each in [0, C) unless it is
// ignore_index (read on the host: one sync). Returns whether any target is
// ignored.
bool check_nll_targets(const at::Tensor& target, int64_t classes, int64_t ignore_index) {
  TORCH_CHECK(target.scalar_type() == at::kLong || target.scalar_type() == at::kByte,
              "expected target dtype to be Long or Byte, but got ", target.scalar_type());
  if (target.numel() == 0) return false;
  device::synchronize();
  // One pass over the (few) targets in host-visible memory: no ATen calls,
  // and no CPU view unless the targets are strided.
  at::Tensor cpu = target.is_contiguous() ? target : device::cpu_alias(target).contiguous();
  bool ignored = false;
  auto check = [&](auto* t) {
    for (int64_t i = 0, n = cpu.numel(); i < n; ++i) {
      const int64_t v = static_cast<int64_t>(t[i]);
      if (v == ignore_index) ignored = true;
      else TORCH_CHECK_INDEX(v >= 0 && v < classes, "Target ", v, " is out of bounds.");
    }
  };
  if (cpu.scalar_type() == at::kLong) check(cpu.const_data_ptr<int64_t>());
  else check(cpu.const_data_ptr<uint8_t>());
  return ignored;
}

void check_nll_weight(const std::optional<at::Tensor>& weight, int64_t classes) {
  if (!weight || !weight->defined()) return;
  TORCH_CHECK(weight->numel() == classes, "weight tensor should be defined either for all ", classes,
              " classes or no classes but got weight tensor of shape: ", weight->sizes());
}

// nll_loss, or (given grad_output and total_weight) its backward, through
// their memoized graph. The memo key holds what the spec records (the
// reshaped inputs, compute and the shapes follow from self and target).
std::vector<at::Tensor> run_nll(const at::Tensor& self, const at::Tensor& target, const std::optional<at::Tensor>& weight,
                                int64_t reduction, int64_t ignore_index, const at::Tensor* grad_output = nullptr,
                                const at::Tensor* total_weight = nullptr) {
  const bool backward = grad_output != nullptr;
  require(at::isFloatingType(self.scalar_type()) && graph_dtype_ok(self.scalar_type()) && self.numel() > 0 &&
          (self.dim() == 1 || self.dim() == 2) && target.dim() == self.dim() - 1);
  TORCH_CHECK(backward || self.dim() == 1 || self.size(0) == target.size(0), "Expected input batch_size (", self.size(0),
              ") to match target batch_size (", target.size(0), ").");
  check_nll_weight(weight, self.size(-1));
  const bool ignored = check_nll_targets(target, self.size(-1), ignore_index);
  const bool hw = weight && weight->defined();
  runtime::BorrowedTensors<5> inputs;
  if (self.dim() == 1) inputs.own(self.reshape({1, -1}));
  else inputs.borrow(self);
  inputs.own(target.reshape({-1}));
  if (hw) inputs.borrow(*weight);
  if (backward) {
    if (reduction == 0) inputs.own(grad_output->reshape({-1}));
    else inputs.borrow(*grad_output);
    inputs.borrow(*total_weight);
  }
  auto spec = [&] {
    GraphSpec s(backward ? "aten::nll_loss_backward" : "aten::nll_loss");
    for (const at::Tensor& in : inputs) s.input(in);
    s.attr("has_weight", int64_t{hw}).attr("backward", int64_t{backward}).attr("reduction", reduction)
        .attr("ignore_index", ignore_index).attr("has_ignored", int64_t{ignored})
        .attr("compute", dname(opmath_type(self.scalar_type())));
    if (backward) s.attr("shape", self.sizes().vec());
    else s.attr("loss_shape", target.sizes().vec());
    return s;
  };
  runtime::MemoKeyWriter<16> key(build_nll);
  key.tensor(self).tensor(target).word(uint64_t{hw} | uint64_t{ignored} << 1 | uint64_t{backward} << 2 |
                                       static_cast<uint64_t>(reduction) << 8);
  key.word(static_cast<uint64_t>(ignore_index));
  if (hw) key.tensor(*weight);
  if (backward) key.tensor(*grad_output).tensor(*total_weight);
  thread_local runtime::GraphMemo<16> memo;
  return runtime::run_graph_memoized(memo, key.key(), spec, build_nll, inputs);
}

std::tuple<at::Tensor, at::Tensor> nll_loss_forward(const at::Tensor& self, const at::Tensor& target,
                                                    const std::optional<at::Tensor>& weight, int64_t reduction,
                                                    int64_t ignore_index) {
  auto r = run_nll(self, target, weight, reduction, ignore_index);
  return {std::move(r[0]), std::move(r[1])};
}

at::Tensor nll_loss_backward(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& target,
                             const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index,
                             const at::Tensor& total_weight) {
  return std::move(run_nll(self, target, weight, reduction, ignore_index, &grad_output, &total_weight)[0]);
}

// nll_loss2d: [N, C, H, W] log-probabilities and [N, H, W] targets are nll_loss
// over the N*H*W positions, classes last. ATen's checks and messages.
at::Tensor classes_last(const at::Tensor& self) { return self.movedim(1, -1).reshape({-1, self.size(1)}); }

void check_nll2d(const at::Tensor& self, const at::Tensor& target, const std::optional<at::Tensor>& weight) {
  TORCH_CHECK(target.dim() == 3, "only batches of spatial targets supported (3D tensors) but got targets of dimension: ",
              target.dim());
  TORCH_CHECK(self.dim() == 4, "only batches of spatial inputs supported (4D tensors), but got input of dimension: ",
              self.dim());
  TORCH_CHECK(!weight || !weight->defined() || weight->numel() == self.size(1),
              "weight tensor should be defined either for all or no classes");
  TORCH_CHECK(self.size(0) == target.size(0) && self.size(2) == target.size(1) && self.size(3) == target.size(2),
              "size mismatch (got input: ", self.sizes(), " , target: ", target.sizes());
}

std::tuple<at::Tensor, at::Tensor> nll_loss2d_forward(const at::Tensor& self, const at::Tensor& target,
                                                      const std::optional<at::Tensor>& weight, int64_t reduction,
                                                      int64_t ignore_index) {
  check_nll2d(self, target, weight);
  require(self.numel() > 0);
  auto [loss, total] = (nll_loss_forward)(classes_last(self), target.reshape({-1}), weight, reduction, ignore_index);
  return {reduction == 0 ? loss.view(target.sizes()) : loss, total};
}

at::Tensor nll_loss2d_backward(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& target,
                               const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index,
                               const at::Tensor& total_weight) {
  check_nll2d(self, target, weight);
  require(self.numel() > 0);
  // The backward reads the scores only for their shape (its gradient is
  // scattered into zeros): an expanded stand-in, not a classes-last copy.
  at::Tensor shape_only = at::empty({1, 1}, self.options()).expand({target.numel(), self.size(1)});
  at::Tensor g = (nll_loss_backward)(grad_output, shape_only, target.reshape({-1}), weight, reduction, ignore_index,
                                     total_weight);
  return g.view({self.size(0), self.size(2), self.size(3), self.size(1)}).movedim(-1, 1).contiguous();
}

// --- arange, cat, tril/triu ---------------------------------------------------------
void build_arange(Graph& g, const GraphSpec& s) {
  G start = g.placeholder(s.input(0), "start");
  G step = g.placeholder(s.input(1), "step");
  DType compute = g.type(start).dtype;
  G i = g.cast(g.iota({s.int_attr("n")}, 0, DType::Int64), compute);
  g.output(cast_to(g, g.add(start, g.mul(i, step)), attr_dtype(s, "result")));
}

at::Tensor& arange_out(const at::Scalar& start, const at::Scalar& end, const at::Scalar& step, at::Tensor& out) {
  require(graph_dtype_ok(out.scalar_type()) && out.scalar_type() != at::kBool);
  double s = start.toDouble(), e = end.toDouble(), st = step.toDouble();
  TORCH_CHECK(st != 0, "step must be nonzero");
  TORCH_CHECK((st > 0 && e >= s) || (st < 0 && e <= s), "upper bound and larger bound inconsistent with step sign");
  int64_t n = at::isIntegralType(out.scalar_type(), false) && start.isIntegral(false) && end.isIntegral(false) && step.isIntegral(false)
                  ? (end.toLong() - start.toLong() + step.toLong() - (step.toLong() > 0 ? 1 : -1)) / step.toLong()
                  : static_cast<int64_t>(std::ceil((e - s) / st));
  at::native::resize_output(out, {n});
  if (n == 0) return out;
  at::ScalarType compute = at::isFloatingType(out.scalar_type()) ? (out.scalar_type() == at::kDouble ? at::kDouble : at::kFloat) : at::kLong;
  if (compute == at::kFloat && (start.isFloatingPoint() || step.isFloatingPoint())) compute = at::kDouble;
  require(graph_dtype_ok(compute));
  at::Tensor a = scalar_input(start, compute), b = scalar_input(step, compute);
  GraphSpec spec("aten::arange");
  spec.input(a).input(b).attr("n", n).attr("result", dname(out.scalar_type()));
  runtime::run_graph_into(spec, build_arange, {a, b}, {out});
  return out;
}

void build_cat(Graph& g, const GraphSpec& s) {
  std::vector<G> xs;
  DType r = attr_dtype(s, "result");
  for (size_t i = 0; i < s.num_inputs(); ++i) xs.push_back(cast_to(g, g.placeholder(s.input(i), "x"), r));
  g.output(g.concat(xs, s.int_attr("dim")));
}

at::Tensor cat(const at::ITensorListRef& tensors, int64_t dim) {
  runtime::BorrowedTensors<4> xs;
  for (const at::Tensor& t : tensors) {
    if (t.dim() == 1 && t.numel() == 0) continue;  // legacy empty tensors are skipped
    xs.borrow(t);
  }
  require(xs.size() != 0);
  at::native::ResultTypeState state{};
  for (const at::Tensor& t : tensors) state = at::native::update_result_type_state(t, state);
  at::ScalarType r = at::native::result_type(state);
  require(graph_dtype_ok(r));
  dim = c10::maybe_wrap_dim(dim, xs[0].dim());
  runtime::BorrowedTensors<4> inputs;
  for (const at::Tensor& t : xs) {
    require(t.is_privateuseone() && graph_dtype_ok(t.scalar_type()));
    TORCH_CHECK(t.dim() == xs[0].dim(), "Tensors must have same number of dimensions: got ", xs[0].dim(), " and ", t.dim());
    if (t.size(dim) != 0) inputs.borrow(t);
  }
  if (inputs.size() == 0) {
    std::vector<int64_t> shape = xs[0].sizes().vec();
    shape[dim] = 0;
    return at::empty(shape, device_options(xs[0], r));
  }
  auto spec = [&] {
    GraphSpec s("aten::cat");
    for (const at::Tensor& t : inputs) s.input(t, {dim});
    s.attr("dim", dim).attr("result", dname(r));
    return s;
  };
  // The memo key: the inputs' sizes (finer than the spec, whose dim is dynamic), dim and dtype.
  // Memoized up to about four inputs (an LSTM's gate gradients).
  runtime::MemoKeyWriter<16> key(build_cat);
  key.word(static_cast<uint64_t>(dim) | static_cast<uint64_t>(r) << 32);
  for (const at::Tensor& t : inputs) key.tensor(t);
  thread_local runtime::GraphMemo<16> memo;
  return std::move(runtime::run_graph_memoized(memo, key.key(), spec, build_cat, inputs)[0]);
}

void build_tri(Graph& g, const GraphSpec& s) {
  G x = g.placeholder(s.input(0), "self");
  const auto& shape = s.input(0).shape;
  int64_t rank = static_cast<int64_t>(shape.size());
  std::vector<int64_t> mshape{shape[rank - 2], shape[rank - 1]};
  G row = g.iota(mshape, 0, DType::Int64), col = g.iota(mshape, 1, DType::Int64);
  // j - i compared in float32 (exact for any realistic size): the compare
  // then fuses into the select.
  G diff = g.cast(g.sub(col, row), DType::Float32);
  G kk = g.constant(static_cast<double>(s.int_attr("diagonal")), DType::Float32);
  G keep = s.int_attr("upper") ? g.ge(diff, kk) : g.le(diff, kk);
  g.output(g.select(keep, x, g.constant(0, g.type(x).dtype)));
}

at::Tensor run_tri(const at::Tensor& self, int64_t diagonal, bool upper) {
  TORCH_CHECK(self.dim() >= 2, upper ? "triu" : "tril", ": input tensor must have at least 2 dimensions");
  require(graph_dtype_ok(self.scalar_type()) && self.numel() > 0);
  GraphSpec spec("aten::tril_triu");
  spec.input(self).attr("diagonal", diagonal).attr("upper", int64_t{upper});
  return runtime::run_graph(spec, build_tri, {self})[0];
}
at::Tensor tril(const at::Tensor& self, int64_t diagonal) { return run_tri(self, diagonal, false); }
at::Tensor triu(const at::Tensor& self, int64_t diagonal) { return run_tri(self, diagonal, true); }
at::Tensor& tril_(at::Tensor& self, int64_t diagonal) { return self.copy_(run_tri(self, diagonal, false)); }
at::Tensor& triu_(at::Tensor& self, int64_t diagonal) { return self.copy_(run_tri(self, diagonal, true)); }

// --- roll (slices + concat) and flip (kernel nodes) ---------------------------------
void build_roll(Graph& g, const GraphSpec& s) {
  G x = g.placeholder(s.input(0), "self");
  const auto& shifts = s.ints_attr("shifts");
  const auto& dims = s.ints_attr("dims");
  graph::Shape shape = s.input(0).shape;
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = dims[i], n = shape[d], sh = ((shifts[i] % n) + n) % n;
    if (sh == 0) continue;
    std::vector<int64_t> st(shape.size(), 0), en = shape, one(shape.size(), 1);
    st[d] = n - sh;
    G tail = g.slice(x, st, en, one);
    st[d] = 0;
    en[d] = n - sh;
    G head = g.slice(x, st, en, one);
    x = g.concat({tail, head}, d);
  }
  g.output(x);
}

at::Tensor roll(const at::Tensor& self, c10::SymIntArrayRef shifts, at::IntArrayRef dims) {
  require(graph_dtype_ok(self.scalar_type()) && !dims.empty() && shifts.size() == dims.size());
  if (self.numel() == 0) return self.clone();
  std::vector<int64_t> sh, ds;
  for (size_t i = 0; i < dims.size(); ++i) {
    sh.push_back(shifts[i].expect_int());
    ds.push_back(c10::maybe_wrap_dim(dims[i], self.dim()));
  }
  GraphSpec spec("aten::roll");
  spec.input(self).attr("shifts", sh).attr("dims", ds);
  return runtime::run_graph(spec, build_roll, {self})[0];
}

// Reverses `dims`: on the reference runtime ATen's flip (one pass); the
// decomposition reverses one dim at a time, moved last by a transpose, as
// x @ J (J the anti-identity).
G flip_last(Graph& d, G x) {
  graph::TensorType t = d.type(x);
  int64_t n = t.shape.back();
  G row = d.iota({n, n}, 0, DType::Int32), col = d.iota({n, n}, 1, DType::Int32);
  G j = d.cast(d.binary(NodeKind::Equal, d.add(row, col), d.constant(static_cast<double>(n - 1), DType::Int32)), t.dtype);
  return d.matmul(x, j);
}
G flip_decomposition(Graph& g, G x, const std::vector<int64_t>& dims) {
  const graph::Shape shape = g.type(x).shape;
  const int64_t rank = static_cast<int64_t>(shape.size());
  for (int64_t d : dims) {
    std::vector<int64_t> perm(rank);
    for (int64_t i = 0; i < rank; ++i) perm[i] = i;
    std::swap(perm[d], perm[rank - 1]);
    G t = d == rank - 1 ? x : g.transpose(x, perm);
    if (rank == 1) t = g.reshape(t, {1, shape[0]});
    G f = flip_last(g, t);
    if (rank == 1) f = g.reshape(f, {shape[0]});
    x = d == rank - 1 ? f : g.transpose(f, perm);
  }
  return x;
}
// (flip.out is ATen's generic out= wrapper: a flip into fresh memory and a
// copy. The fresh result becomes the device tensor's memory as it is.)
at::Tensor flip_cpu(const graph::Node& n, const std::vector<at::Tensor>& in, const runtime::reference::NewOutput&) {
  return at::flip(in[0], n.ints_attr("dims"));
}
MPS_EXT_REFERENCE_KERNEL("aten.flip", flip_cpu);

void build_flip(Graph& g, const GraphSpec& s) {
  const std::vector<int64_t> dims = s.ints_attr("dims");
  G x = g.placeholder(s.input(0), "self");
  g.output(g.kernel("aten.flip", {x}, {{"dims", dims}},
                    [dims](Graph& d, const std::vector<G>& in) { return flip_decomposition(d, in[0], dims); }));
}

at::Tensor flip(const at::Tensor& self, at::IntArrayRef dims) {
  require(at::isFloatingType(self.scalar_type()) && graph_dtype_ok(self.scalar_type()) && self.numel() > 0 && self.dim() > 0);
  std::vector<int64_t> ds;
  for (int64_t d : dims) ds.push_back(c10::maybe_wrap_dim(d, self.dim()));
  if (ds.empty()) return self.clone();
  GraphSpec spec("aten::flip");
  spec.input(self).attr("dims", ds);
  return runtime::run_graph(spec, build_flip, {self})[0];
}

// --- glu: the first half of `dim` gated by the sigmoid of the second ------------------------
// attrs: dim, backward, compute. Inputs: self (and grad_output for the backward).
void build_glu(Graph& g, const GraphSpec& s) {
  DType compute = attr_dtype(s, "compute");
  G x0 = g.placeholder(s.input(0), "self");
  G x = cast_to(g, x0, compute);
  const int64_t dim = s.int_attr("dim"), half = s.input(0).shape[dim] / 2;
  G a = slice_along(g, x, dim, 0, half), b = slice_along(g, x, dim, half, 2 * half);
  G gate = g.unary(NodeKind::Sigmoid, b);
  if (!s.int_attr("backward")) {
    g.output(cast_to(g, g.mul(a, gate), g.type(x0).dtype));
    return;
  }
  G dy = cast_to(g, g.placeholder(s.input(1), "grad_output"), compute);
  G da = g.mul(dy, gate);                                  // d(a * s) / da = s
  G db = g.mul(g.mul(da, a), g.sub(k(g, 1, gate), gate));  // d(a * s) / db = a * s * (1 - s)
  g.output(cast_to(g, g.concat({da, db}, dim), g.type(x0).dtype));
}

at::Tensor run_glu(const at::Tensor& self, int64_t dim, const at::Tensor* grad_output) {
  TORCH_CHECK(self.dim() > 0, "glu does not support scalars because halving size must be even");
  dim = c10::maybe_wrap_dim(dim, self.dim());
  TORCH_CHECK(self.size(dim) % 2 == 0, "Halving dimension must be even, but dimension ", dim, " is size ",
              self.size(dim));
  require(at::isFloatingType(self.scalar_type()) && graph_dtype_ok(self.scalar_type()));
  if (self.numel() == 0) {
    std::vector<int64_t> shape = self.sizes().vec();
    if (!grad_output) shape[dim] /= 2;
    return at::empty(shape, self.options());
  }
  GraphSpec spec("aten::glu");
  spec.input(self);
  std::vector<at::Tensor> inputs{self};
  if (grad_output) {
    require(grad_output->scalar_type() == self.scalar_type());
    spec.input(*grad_output);
    inputs.push_back(*grad_output);
  }
  spec.attr("dim", dim).attr("backward", int64_t{grad_output != nullptr})
      .attr("compute", dname(opmath_type(self.scalar_type())));
  return runtime::run_graph(spec, build_glu, inputs)[0];
}
at::Tensor glu(const at::Tensor& self, int64_t dim) { return run_glu(self, dim, nullptr); }
at::Tensor glu_backward(const at::Tensor& grad_output, const at::Tensor& self, int64_t dim) {
  return run_glu(self, dim, &grad_output);
}

// --- prelu's backward: (grad if x > 0 else weight * grad, 0 if x > 0 else x * grad), both
// of the broadcast shape (autograd sums the weight's to its shape) ------------------------
void build_prelu_backward(Graph& g, const GraphSpec& s) {
  DType compute = attr_dtype(s, "compute");
  const graph::Shape shape = s.ints_attr("shape");
  auto input = [&](size_t i, const char* name) {
    G t = cast_to(g, g.placeholder(s.input(i), name), compute);
    return g.type(t).shape == shape ? t : g.broadcast(t, shape);
  };
  G dy = input(0, "grad_output"), x = input(1, "self"), w = input(2, "weight");
  G positive = g.gt(x, k(g, 0, x));
  DType out = s.input(1).dtype;
  g.output(cast_to(g, g.select(positive, dy, g.mul(w, dy)), out));
  g.output(cast_to(g, g.select(positive, k(g, 0, x), g.mul(x, dy)), out));
}
std::tuple<at::Tensor, at::Tensor> prelu_kernel_backward(const at::Tensor& grad_output, const at::Tensor& self,
                                                         const at::Tensor& weight) {
  require(at::isFloatingType(self.scalar_type()) && graph_dtype_ok(self.scalar_type()) &&
          grad_output.scalar_type() == self.scalar_type() && weight.scalar_type() == self.scalar_type());
  std::vector<int64_t> shape = at::infer_size(at::infer_size(grad_output.sizes(), self.sizes()), weight.sizes());
  if (c10::multiply_integers(shape) == 0) return {at::empty(shape, self.options()), at::empty(shape, self.options())};
  GraphSpec spec("aten::prelu_backward");
  spec.input(grad_output).input(self).input(weight).attr("shape", shape)
      .attr("compute", dname(opmath_type(self.scalar_type())));
  auto r = runtime::run_graph(spec, build_prelu_backward, {grad_output, self, weight});
  return {r[0], r[1]};
}

// --- log_sigmoid (binary_cross_entropy_with_logits uses it) -------------------------------
// forward: min(x, 0) - log1p(exp(-|x|)); the CPU's buffer output is not needed
// by the device backward (grad * sigmoid(-x)), so it is empty.
void build_log_sigmoid(Graph& g, const GraphSpec& s) {
  DType compute = attr_dtype(s, "compute");
  G x0 = g.placeholder(s.input(0), "self");
  G x = cast_to(g, x0, compute);
  G y;
  if (s.int_attr("backward")) {
    G dy = cast_to(g, g.placeholder(s.input(1), "grad_output"), compute);
    y = g.mul(dy, g.unary(NodeKind::Sigmoid, g.neg(x)));
  } else {
    G e = g.unary(NodeKind::Exp, g.neg(g.abs(x)));
    y = g.sub(g.minimum(x, k(g, 0, x)), log1p(g, e));
  }
  g.output(cast_to(g, y, g.type(x0).dtype));
}
std::tuple<at::Tensor, at::Tensor> log_sigmoid_forward(const at::Tensor& self) {
  require(at::isFloatingType(self.scalar_type()) && graph_dtype_ok(self.scalar_type()));
  if (self.numel() == 0) return {at::empty_like(self), at::empty({0}, self.options())};
  GraphSpec spec("aten::log_sigmoid");
  spec.input_dynamic(self).attr("backward", int64_t{0}).attr("compute", dname(opmath_type(self.scalar_type())));
  return {runtime::run_graph(spec, build_log_sigmoid, {self})[0], at::empty({0}, self.options())};
}
at::Tensor log_sigmoid_backward(const at::Tensor& grad_output, const at::Tensor& self, const at::Tensor& buffer) {
  require(at::isFloatingType(self.scalar_type()) && graph_dtype_ok(self.scalar_type()) && self.numel() > 0 &&
          grad_output.sizes() == self.sizes() && grad_output.scalar_type() == self.scalar_type());
  GraphSpec spec("aten::log_sigmoid_backward");
  spec.input_dynamic(self).input_dynamic(grad_output).attr("backward", int64_t{1})
      .attr("compute", dname(opmath_type(self.scalar_type())));
  return runtime::run_graph(spec, build_log_sigmoid, {self, grad_output})[0];
}

// --- softshrink: mps_ext's own graph (csrc/ops/softshrink/) -----------------------------
at::Tensor softshrink(const at::Tensor& self, const at::Scalar& lambd) {
  require(graph_dtype_ok(self.scalar_type()));
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("mps_ext::softshrink", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Scalar&)>();
  return op.call(self, lambd);
}
at::Tensor softshrink_backward(const at::Tensor& grad, const at::Tensor& self, const at::Scalar& lambd) {
  require(graph_dtype_ok(self.scalar_type()) && graph_dtype_ok(grad.scalar_type()));
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("mps_ext::softshrink_backward", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Scalar&)>();
  return op.call(grad, self, lambd);
}

// --- registration --------------------------------------------------------------------

const std::vector<Row>& rows() {
  static const std::vector<Row> r = {
      MPS_EXT_ATEN_ROW("fill_.Scalar", fill_scalar),
      MPS_EXT_ATEN_ROW("fill_.Tensor", fill_tensor),
      MPS_EXT_ATEN_ROW("zero_", zero_),
      MPS_EXT_ATEN_ROW("sum.dim_IntList", sum_dim),
      MPS_EXT_ATEN_ROW("sum", sum_all),
      MPS_EXT_ATEN_ROW("sum.IntList_out", sum_out),
      MPS_EXT_ATEN_ROW("prod", prod_all),
      MPS_EXT_ATEN_ROW("prod.dim_int", prod_dim),
      MPS_EXT_ATEN_ROW("prod.int_out", prod_out),
      MPS_EXT_ATEN_ROW("logsumexp", logsumexp),
      MPS_EXT_ATEN_ROW("mean.dim", mean_dim),
      MPS_EXT_ATEN_ROW("mean", mean_all),
      MPS_EXT_ATEN_ROW("amax", amax),
      MPS_EXT_ATEN_ROW("amin", amin),
      MPS_EXT_ATEN_ROW("max", max_all),
      MPS_EXT_ATEN_ROW("min", min_all),
      MPS_EXT_ATEN_ROW("max.dim", max_dim),
      MPS_EXT_ATEN_ROW("min.dim", min_dim),
      MPS_EXT_ATEN_ROW("argmax", argmax),
      MPS_EXT_ATEN_ROW("argmin", argmin),
      MPS_EXT_ATEN_ROW("count_nonzero.dim_IntList", count_nonzero),
      MPS_EXT_ATEN_ROW("nansum", nansum),
      MPS_EXT_ATEN_ROW("trace", trace),
      MPS_EXT_ATEN_ROW("any", any_all),
      MPS_EXT_ATEN_ROW("all", all_all),
      MPS_EXT_ATEN_ROW("any.dims", any_dims),
      MPS_EXT_ATEN_ROW("any.dim", any_dim),
      MPS_EXT_ATEN_ROW("all.dim", all_dim),
      MPS_EXT_ATEN_ROW("all.dims", all_dims),
      MPS_EXT_ATEN_ROW("var.correction", var_correction),
      MPS_EXT_ATEN_ROW("std.correction", std_correction),
      MPS_EXT_ATEN_ROW("var_mean.correction", var_mean_correction),
      MPS_EXT_ATEN_ROW("std_mean.correction", std_mean_correction),
      MPS_EXT_ATEN_ROW("aminmax", aminmax),
      MPS_EXT_ATEN_ROW("linalg_vector_norm", vector_norm),
      MPS_EXT_ATEN_ROW("_foreach_norm.Scalar", foreach_norm),
      MPS_EXT_ATEN_ROW("cumsum", cumsum),
      MPS_EXT_ATEN_ROW("mm", mm),
      MPS_EXT_ATEN_ROW("bmm", bmm),
      MPS_EXT_ATEN_ROW("addmm", addmm),
      MPS_EXT_ATEN_ROW("addmm.out", addmm_out),
      MPS_EXT_ATEN_ROW("baddbmm", baddbmm),
      MPS_EXT_ATEN_ROW("dot", dot),
      MPS_EXT_ATEN_ROW("mv", mv),
      MPS_EXT_ATEN_ROW("addmv", addmv),
      MPS_EXT_ATEN_ROW("_softmax", softmax),
      MPS_EXT_ATEN_ROW("_log_softmax", log_softmax),
      MPS_EXT_ATEN_ROW("_softmax_backward_data", softmax_backward),
      MPS_EXT_ATEN_ROW("_log_softmax_backward_data", log_softmax_backward),
      MPS_EXT_ATEN_ROW("native_layer_norm", native_layer_norm),
      MPS_EXT_ATEN_ROW("native_layer_norm_backward", native_layer_norm_backward),
      MPS_EXT_ATEN_ROW("mse_loss", mse_loss),
      MPS_EXT_ATEN_ROW("mse_loss_backward", mse_loss_backward),
      MPS_EXT_ATEN_ROW("nll_loss_forward", nll_loss_forward),
      MPS_EXT_ATEN_ROW("nll_loss_backward", nll_loss_backward),
      MPS_EXT_ATEN_ROW("nll_loss2d_forward", nll_loss2d_forward),
      MPS_EXT_ATEN_ROW("nll_loss2d_backward", nll_loss2d_backward),
      MPS_EXT_ATEN_ROW("arange.start_out", arange_out),
      MPS_EXT_ATEN_ROW("cat", cat),
      MPS_EXT_ATEN_ROW("tril", tril),
      MPS_EXT_ATEN_ROW("triu", triu),
      MPS_EXT_ATEN_ROW("tril_", tril_),
      MPS_EXT_ATEN_ROW("triu_", triu_),
      MPS_EXT_ATEN_ROW("softshrink", softshrink),
      MPS_EXT_ATEN_ROW("roll", roll),
      MPS_EXT_ATEN_ROW("flip", flip),
      MPS_EXT_ATEN_ROW("_prelu_kernel_backward", prelu_kernel_backward),
      MPS_EXT_ATEN_ROW("glu", glu),
      MPS_EXT_ATEN_ROW("glu_backward", glu_backward),
      MPS_EXT_ATEN_ROW("log_sigmoid_forward", log_sigmoid_forward),
      MPS_EXT_ATEN_ROW("log_sigmoid_backward", log_sigmoid_backward),
      MPS_EXT_ATEN_ROW("softshrink_backward", softshrink_backward),
  };
  return r;
}
}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  for (const Row& row : rows()) register_op(m, row.op, row.kernel);
}

}  // namespace mps_ext::ops::aten
