// Indexing and sorting on the mpsgraph device, each op a graph of the IR's
// gather/scatter/arg_sort nodes (MPSGraph's gather/scatter/top-k 1:1; no
// one-hot matmuls): gather, scatter/scatter_add/scatter_reduce, index_select
// (embedding), embedding_dense_backward, index_add, index_copy, advanced
// indexing x[i, j] (index.Tensor) and x[i, j] = v / += v (_index_put_impl_),
// sort, topk, nonzero/masked_select (and so x[mask]). Indices are checked on the host before a graph runs (torch's
// messages; nothing is written on error); negative indices wrap where torch
// wraps them (advanced indexing), in the graph.
#include <ATen/native/Resize.h>

#include "device/device.h"
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

// --- shared helpers ---------------------------------------------------------------

bool is_index_type(at::ScalarType t) { return t == at::kLong || t == at::kInt; }

// Min and max of an index tensor (read on the host: one sync).
std::pair<int64_t, int64_t> index_range(const at::Tensor& index) {
  at::Tensor cpu = device::cpu_alias(index);
  device::synchronize();
  auto mm = at::aminmax(cpu);
  return {std::get<0>(mm).item<int64_t>(), std::get<1>(mm).item<int64_t>()};
}

// Indices must lie in [lowest, size): the offending value named as torch does.
enum class Bounds { NonNegative, Wrapping };
void check_bounds(const at::Tensor& index, int64_t dim, int64_t size, Bounds bounds, bool index_error) {
  if (index.numel() == 0) return;
  auto [lo, hi] = index_range(index);
  int64_t lowest = bounds == Bounds::Wrapping ? -size : 0;
  int64_t bad = lo < lowest ? lo : hi >= size ? hi : 0;
  if (lo >= lowest && hi < size) return;
  if (index_error)
    TORCH_CHECK_INDEX(false, "index ", bad, " is out of bounds for dimension ", dim, " with size ", size);
  TORCH_CHECK(false, "index ", bad, " is out of bounds for dimension ", dim, " with size ", size);
}

// index_select/index_add/embedding's message.
void check_in_self(const at::Tensor& index, int64_t size) {
  if (index.numel() == 0) return;
  auto [lo, hi] = index_range(index);
  TORCH_CHECK_INDEX(lo >= 0 && hi < size, "index out of range in self");
}

bool graph_ok(const at::Tensor& t) { return t.is_privateuseone() && graph_dtype_ok(t.scalar_type()); }

G wrap_negative(Graph& g, G index, int64_t size) {
  G zero = g.constant(0, g.type(index).dtype), n = g.constant(static_cast<double>(size), g.type(index).dtype);
  return g.select(g.lt(index, zero), g.add(index, n), index);
}

std::vector<int64_t> iota_vec(int64_t n, int64_t v = 0) { return std::vector<int64_t>(static_cast<size_t>(n), v); }

// --- gather (torch.gather) ------------------------------------------------------------
// x is sliced to the index's sizes off the axis (torch allows a smaller index).
void build_gather(Graph& g, const GraphSpec& s) {
  G x = g.placeholder(s.input(0), "self");
  G idx = g.placeholder(s.input(1), "index");
  int64_t dim = s.int_attr("dim");
  const graph::Shape &xs = s.input(0).shape, &is = s.input(1).shape;
  if (xs != is) {
    std::vector<int64_t> ends = is;
    ends[dim] = xs[dim];
    x = g.slice(x, iota_vec(xs.size()), ends, iota_vec(xs.size(), 1));
  }
  g.output(g.gather_along_axis(x, idx, dim));
}

void check_scatter_gather_shapes(const char* op, const at::Tensor& self, int64_t dim, const at::Tensor& index,
                                 const at::Tensor* src) {
  TORCH_CHECK(index.dim() == self.dim() || index.numel() == 0,
              "Index tensor must have the same number of dimensions as ", src ? "self tensor" : "input tensor");
  for (int64_t d = 0; d < self.dim() && index.numel() > 0; ++d) {
    TORCH_CHECK(d == dim || index.size(d) <= self.size(d), "Size does not match at dimension ", d,
                " expected index ", index.sizes(), " to be no larger than self ", self.sizes(), " apart from dimension ", dim);
    if (src)
      TORCH_CHECK(index.size(d) <= src->size(d), "Size does not match at dimension ", d, " expected index ",
                  index.sizes(), " to be no larger than src ", src->sizes());
  }
  (void)op;
}

at::Tensor gather(const at::Tensor& self, int64_t dim, const at::Tensor& index, bool sparse_grad) {
  require(graph_ok(self) && index.is_privateuseone() && self.dim() > 0 && !sparse_grad);
  TORCH_CHECK(is_index_type(index.scalar_type()), "gather(): Expected dtype int32/int64 for index");
  dim = c10::maybe_wrap_dim(dim, self.dim());
  check_scatter_gather_shapes("gather", self, dim, index, nullptr);
  if (index.numel() == 0) return at::empty(index.sizes(), self.options());
  check_bounds(index, dim, self.size(dim), Bounds::NonNegative, /*index_error=*/false);
  GraphSpec spec("aten::gather");
  spec.input(self).input(index).attr("dim", dim);
  return runtime::run_graph(spec, build_gather, {self, index})[0];
}

// --- scatter / scatter_add / scatter_reduce (torch.scatter semantics) --------------------
// data's region covered by the index (off the axis) is scattered into and
// written back, so the IR node sees data and index of one shape off the axis.
void build_scatter(Graph& g, const GraphSpec& s) {
  G data = g.placeholder(s.input(0), "self");
  G idx = g.placeholder(s.input(1), "index");
  G src = g.placeholder(s.input(2), "src");
  int64_t dim = s.int_attr("dim");
  const graph::Shape &ds = s.input(0).shape, &is = s.input(1).shape, &ss = s.input(2).shape;
  size_t rank = ds.size();
  DType dt = s.input(0).dtype;
  if (ss.empty() && !is.empty()) src = g.broadcast(src, is);  // the value form: a 0-d src
  else if (ss != is) src = g.slice(src, iota_vec(rank), is, iota_vec(rank, 1));
  src = cast_to(g, src, dt);
  std::vector<int64_t> ends = is;
  ends[dim] = ds[dim];
  bool partial = ends != ds;
  G region = partial ? g.slice(data, iota_vec(rank), ends, iota_vec(rank, 1)) : data;
  G r = g.scatter_along_axis(region, src, idx, dim, s.str_attr("mode"));
  g.output(partial ? g.slice_update(data, r, iota_vec(rank), ends, iota_vec(rank, 1)) : r);
}

// `src` undefined: `value` is scattered (a 0-d input). Returns the result;
// in-place callers copy it into self.
at::Tensor scatter_impl(const at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Tensor& src,
                        const at::Scalar* value, const std::string& mode) {
  require(graph_ok(self) && index.is_privateuseone() && self.dim() > 0 && index.dim() > 0);
  require(!src.defined() || (src.is_privateuseone() && src.dim() == self.dim()));
  TORCH_CHECK(index.scalar_type() == at::kLong, "scatter(): Expected dtype int64 for index");
  if (src.defined())
    TORCH_CHECK(src.scalar_type() == self.scalar_type(), "scatter(): Expected self.dtype to be equal to src.dtype");
  dim = c10::maybe_wrap_dim(dim, self.dim());
  check_scatter_gather_shapes("scatter", self, dim, index, src.defined() ? &src : nullptr);
  if (index.numel() == 0) return self.clone();
  check_bounds(index, dim, self.size(dim), Bounds::NonNegative, /*index_error=*/false);
  at::Tensor s = src.defined() ? src : scalar_input(*value, self.scalar_type()).to(self.device());
  GraphSpec spec("aten::scatter");
  spec.input(self).input(index).input(s).attr("dim", dim).attr("mode", mode);
  return runtime::run_graph(spec, build_scatter, {self, index, s})[0];
}

std::string reduce_mode(c10::string_view reduce) {
  if (reduce == "add") return "add";
  TORCH_CHECK(reduce == "multiply", "reduce argument must be either add or multiply.");
  return "mul";
}

at::Tensor scatter_src(const at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Tensor& src) {
  return scatter_impl(self, dim, index, src, nullptr, "set");
}
at::Tensor scatter_value(const at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Scalar& value) {
  return scatter_impl(self, dim, index, {}, &value, "set");
}
at::Tensor scatter_reduce_src(const at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Tensor& src,
                              c10::string_view reduce) {
  return scatter_impl(self, dim, index, src, nullptr, reduce_mode(reduce));
}
at::Tensor scatter_reduce_value(const at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Scalar& value,
                                c10::string_view reduce) {
  return scatter_impl(self, dim, index, {}, &value, reduce_mode(reduce));
}
at::Tensor& scatter_src_(at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Tensor& src) {
  return self.copy_(scatter_src(self, dim, index, src));
}
at::Tensor& scatter_value_(at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Scalar& value) {
  return self.copy_(scatter_value(self, dim, index, value));
}
at::Tensor& scatter_reduce_src_(at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Tensor& src,
                                c10::string_view reduce) {
  return self.copy_(scatter_reduce_src(self, dim, index, src, reduce));
}
at::Tensor& scatter_reduce_value_(at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Scalar& value,
                                  c10::string_view reduce) {
  return self.copy_(scatter_reduce_value(self, dim, index, value, reduce));
}
at::Tensor scatter_add_op(const at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Tensor& src) {
  return scatter_impl(self, dim, index, src, nullptr, "add");
}
at::Tensor& scatter_add_(at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Tensor& src) {
  return self.copy_(scatter_add_op(self, dim, index, src));
}
// scatter_reduce.two with include_self: sum/prod/amax/amin (mean and
// include_self=False go to the CPU).
at::Tensor scatter_reduce_two(const at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Tensor& src,
                              c10::string_view reduce, bool include_self) {
  require(include_self && (reduce == "sum" || reduce == "prod" || reduce == "amax" || reduce == "amin"));
  std::string mode = reduce == "sum" ? "add" : reduce == "prod" ? "mul" : reduce == "amax" ? "max" : "min";
  return scatter_impl(self, dim, index, src, nullptr, mode);
}
at::Tensor& scatter_reduce_two_(at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Tensor& src,
                                c10::string_view reduce, bool include_self) {
  return self.copy_(scatter_reduce_two(self, dim, index, src, reduce, include_self));
}

// --- index_select (embedding) --------------------------------------------------------
void build_index_select(Graph& g, const GraphSpec& s) {
  G x = g.placeholder(s.input(0), "self");
  G idx = g.placeholder(s.input(1), "index");
  g.output(g.gather(x, idx, s.int_attr("dim")));
}

at::Tensor index_select(const at::Tensor& self, int64_t dim, const at::Tensor& index) {
  require(graph_ok(self) && index.is_privateuseone());
  TORCH_CHECK_INDEX(index.dim() <= 1, "index_select(): Index is supposed to be a vector");
  TORCH_CHECK_INDEX(is_index_type(index.scalar_type()), "index_select(): Expected dtype int32 or int64 for index");
  if (self.dim() == 0) {  // a scalar: its one value, selected by one index 0
    c10::maybe_wrap_dim(dim, 1);
    TORCH_CHECK(index.numel() == 1, "index_select(): Index to scalar can have only 1 value, got ", index.numel(),
                " value(s)");
    return (index_select)(self.reshape({1}), 0, index.reshape({1})).reshape({});
  }
  dim = c10::maybe_wrap_dim(dim, self.dim());
  at::Tensor idx = index.reshape({-1});
  std::vector<int64_t> shape = self.sizes().vec();
  shape[dim] = idx.numel();
  check_in_self(idx, self.size(dim));
  if (idx.numel() == 0 || self.numel() == 0) return at::empty(shape, self.options());
  GraphSpec spec("aten::index_select");
  spec.input(self).input(idx).attr("dim", dim);
  return runtime::run_graph(spec, build_index_select, {self, idx})[0];
}

// --- embedding_dense_backward: grad rows added into a zero table -------------------------
void build_embedding_backward(Graph& g, const GraphSpec& s) {
  G grad = g.placeholder(s.input(0), "grad");
  G idx = g.placeholder(s.input(1), "indices");
  DType dt = s.input(0).dtype;
  int64_t rows = s.int_attr("num_weights"), pad = s.int_attr("padding_idx");
  if (pad >= 0) {  // rows of padding_idx get no gradient
    G is_pad = g.binary(NodeKind::Equal, idx, g.constant(static_cast<double>(pad), g.type(idx).dtype));
    G col = g.reshape(is_pad, {s.input(1).shape[0], 1});
    grad = g.select(col, g.constant(0, dt), grad);
  }
  G zeros = g.constant(0, dt, {rows, s.input(0).shape[1]});
  g.output(g.scatter(zeros, grad, idx, 0, "add"));
}

at::Tensor embedding_dense_backward(const at::Tensor& grad_output, const at::Tensor& indices, c10::SymInt num_weights,
                                    c10::SymInt padding_idx, bool scale_grad_by_freq) {
  require(!scale_grad_by_freq && at::isFloatingType(grad_output.scalar_type()) && graph_ok(grad_output) &&
          indices.is_privateuseone() && is_index_type(indices.scalar_type()) && grad_output.dim() >= 1);
  int64_t v = num_weights.expect_int(), pad = padding_idx.expect_int();
  int64_t d = grad_output.size(-1);
  if (indices.numel() == 0 || v == 0 || d == 0) return at::zeros({v, d}, grad_output.options());
  at::Tensor grad = grad_output.reshape({-1, d});
  at::Tensor idx = indices.reshape({-1});
  GraphSpec spec("aten::embedding_dense_backward");
  spec.input(grad).input(idx).attr("num_weights", v).attr("padding_idx", pad);
  return runtime::run_graph(spec, build_embedding_backward, {grad, idx})[0];
}

// --- index_add / index_copy (Scatter along one axis) ----------------------------------------
// inputs: self, index, source[, alpha (0-d)]; attrs dim, mode.
void build_index_scatter(Graph& g, const GraphSpec& s) {
  G data = g.placeholder(s.input(0), "self");
  G idx = g.placeholder(s.input(1), "index");
  G src = g.placeholder(s.input(2), "source");
  if (s.num_inputs() > 3) src = g.mul(src, cast_to(g, g.placeholder(s.input(3), "alpha"), s.input(2).dtype));
  g.output(g.scatter(data, src, idx, s.int_attr("dim"), s.str_attr("mode")));
}

at::Tensor index_scatter(const char* op, const at::Tensor& self, int64_t dim, const at::Tensor& index,
                         const at::Tensor& source, const at::Scalar* alpha) {
  require(graph_ok(self) && index.is_privateuseone() && source.is_privateuseone() && self.dim() >= 1 &&
          source.dim() == self.dim());
  TORCH_CHECK_INDEX(index.dim() <= 1, op, "(): Index is supposed to be a vector");
  TORCH_CHECK_INDEX(is_index_type(index.scalar_type()), op, "(): Expected dtype int32/int64 for index");
  dim = c10::maybe_wrap_dim(dim, self.dim());
  at::Tensor idx = index.reshape({-1});
  TORCH_CHECK(source.scalar_type() == self.scalar_type(), op, "(): self (", self.scalar_type(), ") and source (",
              source.scalar_type(), ") must have the same scalar type");
  TORCH_CHECK(source.size(dim) == idx.numel(), op, "(): Number of indices (", idx.numel(),
              ") should be equal to source.size(dim) (", source.size(dim), ")");
  for (int64_t d = 0; d < self.dim(); ++d)
    TORCH_CHECK(d == dim || source.size(d) == self.size(d), op, "(): source ", source.sizes(),
                " and self ", self.sizes(), " must agree off dimension ", dim);
  bool add = alpha != nullptr;
  if (add) check_in_self(idx, self.size(dim));
  else check_bounds(idx, dim, self.size(dim), Bounds::NonNegative, /*index_error=*/true);
  if (idx.numel() == 0 || self.numel() == 0) return self.clone();
  GraphSpec spec(add ? "aten::index_add" : "aten::index_copy");
  std::vector<at::Tensor> inputs{self, idx, source};
  spec.input(self).input(idx).input(source).attr("dim", dim).attr("mode", std::string(add ? "add" : "set"));
  if (add && !(alpha->isIntegral(false) && alpha->toLong() == 1)) {
    at::Tensor a = scalar_input(*alpha, self.scalar_type()).to(self.device());
    spec.input(a);
    inputs.push_back(a);
  }
  return runtime::run_graph(spec, build_index_scatter, inputs)[0];
}

at::Tensor index_add_op(const at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Tensor& source,
                     const at::Scalar& alpha) {
  return index_scatter("index_add", self, dim, index, source, &alpha);
}
at::Tensor& index_add_(at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Tensor& source,
                       const at::Scalar& alpha) {
  return self.copy_(index_add_op(self, dim, index, source, alpha));
}
at::Tensor index_copy_op(const at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Tensor& source) {
  TORCH_CHECK_INDEX(index.scalar_type() == at::kLong, "index_copy_(): Expected a long tensor for index, but got ",
                    index.scalar_type());
  return index_scatter("index_copy_", self, dim, index, source, nullptr);
}
at::Tensor& index_copy_(at::Tensor& self, int64_t dim, const at::Tensor& index, const at::Tensor& source) {
  return self.copy_(index_copy_op(self, dim, index, source));
}

// --- advanced indexing: x[i, j] and x[i, j] = v / += v ------------------------------------
// The indexed dims (their index tensors broadcast to one shape B) collapse to
// one axis of size prod(sizes) and a linear index: x[i, j] is a Gather on it,
// x[i, j] = v a Scatter. Non-adjacent indexed dims move to the front first (the
// result's B dims go there, as torch). Layout attrs: perm (self's dims, indexed
// ones first when moved), pre (dims before the collapsed axis), sizes of the
// indexed dims, B.
struct IndexPlan {
  std::vector<at::Tensor> indices;  // the defined index tensors, in dim order
  std::vector<int64_t> dims;        // their dims in self
  std::vector<int64_t> perm;        // self's dims, permuted so the indexed ones are adjacent
  int64_t pre = 0;                  // dims before the collapsed axis (after perm)
  std::vector<int64_t> broadcast;   // B
  std::vector<int64_t> result;      // the indexing result's shape
};

IndexPlan plan_index(const at::Tensor& self, const c10::List<std::optional<at::Tensor>>& indices) {
  IndexPlan p;
  int64_t dim = 0;  // self's dim the next index applies to (a mask spans several)
  for (size_t i = 0; i < indices.size(); ++i) {
    std::optional<at::Tensor> t = indices.get(i);
    if (!t || !t->defined()) {
      ++dim;
      continue;
    }
    bool mask = t->scalar_type() == at::kBool || t->scalar_type() == at::kByte;
    require((is_index_type(t->scalar_type()) || mask) && (t->is_privateuseone() || t->is_cpu()));
    at::Tensor index = t->to(self.device());  // CPU index tensors are allowed, as torch
    if (mask) {  // a mask is the index tensors of its nonzero coordinates (torch's expandTensors)
      TORCH_CHECK_INDEX(dim + index.dim() <= self.dim(), "too many indices for tensor of dimension ", self.dim());
      for (int64_t j = 0; j < index.dim(); ++j)
        TORCH_CHECK_INDEX(index.size(j) == self.size(dim + j), "The shape of the mask ", index.sizes(), " at index ", j,
                          " does not match the shape of the indexed tensor ", self.sizes(), " at index ", dim + j);
      at::Tensor nz = at::nonzero(index);
      for (int64_t j = 0; j < index.dim(); ++j) {
        p.indices.push_back(nz.select(1, j).contiguous());
        p.dims.push_back(dim++);
      }
      continue;
    }
    p.indices.push_back(index);
    p.dims.push_back(dim++);
  }
  require(!p.indices.empty());
  TORCH_CHECK_INDEX(dim <= self.dim(), "too many indices for tensor of dimension ", self.dim(), " (got ", dim, ")");
  p.broadcast = p.indices[0].sizes().vec();
  for (const at::Tensor& t : p.indices) p.broadcast = at::infer_size(p.broadcast, t.sizes());
  bool adjacent = p.dims.back() - p.dims.front() + 1 == static_cast<int64_t>(p.dims.size());
  if (adjacent) {
    for (int64_t d = 0; d < self.dim(); ++d) p.perm.push_back(d);
    p.pre = p.dims.front();
  } else {
    p.perm = p.dims;
    for (int64_t d = 0; d < self.dim(); ++d)
      if (std::find(p.dims.begin(), p.dims.end(), d) == p.dims.end()) p.perm.push_back(d);
    p.pre = 0;
  }
  for (int64_t i = 0; i < p.pre; ++i) p.result.push_back(self.size(p.perm[i]));
  p.result.insert(p.result.end(), p.broadcast.begin(), p.broadcast.end());
  for (size_t i = p.pre + p.dims.size(); i < p.perm.size(); ++i) p.result.push_back(self.size(p.perm[i]));
  for (size_t k = 0; k < p.indices.size(); ++k)
    check_bounds(p.indices[k], p.dims[k], self.size(p.dims[k]), Bounds::Wrapping, /*index_error=*/true);
  return p;
}

void plan_attrs(GraphSpec& spec, const IndexPlan& p) {
  spec.attr("perm", p.perm).attr("pre", p.pre).attr("dims", p.dims).attr("broadcast", p.broadcast);
}

// self permuted and reshaped to [pre..., M, post...], and the linear index [K].
struct Collapsed {
  G x, index;
  graph::Shape permuted;  // self's shape after perm
  int64_t pre, n;         // n = number of indexed dims
};

Collapsed collapse(Graph& g, G self, const std::vector<G>& indices, const GraphSpec& s) {
  const auto& perm = s.ints_attr("perm");
  const auto& dims = s.ints_attr("dims");
  const auto& b = s.ints_attr("broadcast");
  const graph::Shape& shape = s.input(0).shape;
  Collapsed c;
  c.pre = s.int_attr("pre");
  c.n = static_cast<int64_t>(dims.size());
  bool identity = true;
  for (size_t i = 0; i < perm.size(); ++i) {
    identity = identity && perm[i] == static_cast<int64_t>(i);
    c.permuted.push_back(shape[perm[i]]);
  }
  G x = identity ? self : g.transpose(self, perm);
  graph::Shape collapsed(c.permuted.begin(), c.permuted.begin() + c.pre);
  int64_t m = 1;
  for (int64_t i = 0; i < c.n; ++i) m *= c.permuted[c.pre + i];
  collapsed.push_back(m);
  collapsed.insert(collapsed.end(), c.permuted.begin() + c.pre + c.n, c.permuted.end());
  c.x = g.reshape(x, collapsed);
  int64_t numel = 1;
  for (int64_t d : b) numel *= d;
  G lin;
  int64_t stride = 1;
  for (int64_t k = c.n - 1; k >= 0; --k) {  // row-major over the indexed dims
    int64_t size = shape[dims[k]];
    G v = g.broadcast(cast_to(g, indices[k], DType::Int64), b);
    v = wrap_negative(g, v, size);
    if (stride != 1) v = g.mul(v, g.constant(static_cast<double>(stride), DType::Int64));
    lin = k == c.n - 1 ? v : g.add(lin, v);
    stride *= size;
  }
  c.index = g.reshape(lin, {numel});
  return c;
}

std::vector<G> index_placeholders(Graph& g, const GraphSpec& s, size_t first, size_t count) {
  std::vector<G> out;
  for (size_t i = 0; i < count; ++i) out.push_back(g.placeholder(s.input(first + i), "index"));
  return out;
}

void build_index(Graph& g, const GraphSpec& s) {
  G self = g.placeholder(s.input(0), "self");
  size_t n = s.ints_attr("dims").size();
  Collapsed c = collapse(g, self, index_placeholders(g, s, 1, n), s);
  G r = g.gather(c.x, c.index, c.pre);
  graph::Shape out(c.permuted.begin(), c.permuted.begin() + c.pre);
  const auto& b = s.ints_attr("broadcast");
  out.insert(out.end(), b.begin(), b.end());
  out.insert(out.end(), c.permuted.begin() + c.pre + c.n, c.permuted.end());
  g.output(g.reshape(r, out));
}

at::Tensor index_tensor(const at::Tensor& self, const c10::List<std::optional<at::Tensor>>& indices) {
  require(graph_ok(self));
  IndexPlan p = plan_index(self, indices);
  int64_t numel = 1;
  for (int64_t d : p.result) numel *= d;
  if (numel == 0) return at::empty(p.result, self.options());
  GraphSpec spec("aten::index");
  spec.input(self);
  std::vector<at::Tensor> inputs{self};
  for (const at::Tensor& t : p.indices) {
    spec.input(t);
    inputs.push_back(t);
  }
  plan_attrs(spec, p);
  return runtime::run_graph(spec, build_index, inputs)[0];
}

// values broadcast to the indexing result, scattered (set or add) into the
// collapsed self; the result is self's new value.
void build_index_put(Graph& g, const GraphSpec& s) {
  G self = g.placeholder(s.input(0), "self");
  size_t n = s.ints_attr("dims").size();
  std::vector<G> idx = index_placeholders(g, s, 1, n);
  G values = g.placeholder(s.input(1 + n), "values");
  Collapsed c = collapse(g, self, idx, s);
  graph::Shape result(c.permuted.begin(), c.permuted.begin() + c.pre);
  const auto& b = s.ints_attr("broadcast");
  result.insert(result.end(), b.begin(), b.end());
  result.insert(result.end(), c.permuted.begin() + c.pre + c.n, c.permuted.end());
  graph::Shape updates_shape = g.type(c.x).shape;
  updates_shape[c.pre] = g.type(c.index).shape[0];
  G updates = g.reshape(g.broadcast(values, result), updates_shape);
  G r = g.reshape(g.scatter(c.x, updates, c.index, c.pre, s.str_attr("mode")), c.permuted);
  const auto& perm = s.ints_attr("perm");
  std::vector<int64_t> inverse(perm.size());
  bool identity = true;
  for (size_t i = 0; i < perm.size(); ++i) {
    inverse[perm[i]] = static_cast<int64_t>(i);
    identity = identity && perm[i] == static_cast<int64_t>(i);
  }
  g.output(identity ? r : g.transpose(r, inverse));
}

at::Tensor& index_put_impl_(at::Tensor& self, const c10::List<std::optional<at::Tensor>>& indices,
                            const at::Tensor& values, bool accumulate, bool unsafe) {
  require(graph_ok(self) && (values.is_privateuseone() || (values.is_cpu() && values.dim() == 0)));
  TORCH_CHECK(values.scalar_type() == self.scalar_type(), "Index put requires the source and destination dtypes match, got ",
              self.scalar_type(), " for the destination and ", values.scalar_type(), " for the source.");
  IndexPlan p = plan_index(self, indices);
  int64_t numel = 1;
  for (int64_t d : p.result) numel *= d;
  TORCH_CHECK(at::is_expandable_to(values.sizes(), p.result), "shape mismatch: value tensor of shape ", values.sizes(),
              " cannot be broadcast to indexing result of shape ", c10::IntArrayRef(p.result));
  if (numel == 0) return self;
  GraphSpec spec("aten::index_put");
  spec.input(self);
  std::vector<at::Tensor> inputs{self};
  for (const at::Tensor& t : p.indices) {
    spec.input(t);
    inputs.push_back(t);
  }
  at::Tensor v = values.to(self.device());
  spec.input(v);
  inputs.push_back(v);
  plan_attrs(spec, p);
  spec.attr("mode", std::string(accumulate ? "add" : "set"));
  (void)unsafe;
  return self.copy_(runtime::run_graph(spec, build_index_put, inputs)[0]);
}

// --- nonzero / masked_select: data-dependent sizes ----------------------------------------
// One graph of static shapes: the positions of the selected elements come
// first in an ascending arg_sort of unique keys (!selected * N + position:
// no reliance on a stable sort), every position's coordinates/values are
// gathered in that order, and the count is a second output. The op reads the
// count (one sync) and returns the first `count` rows.
std::vector<G> select_positions_decomposition(Graph& g, const std::vector<G>& in, bool nonzero) {
  G x = in[0];
  const graph::Shape shape = g.type(x).shape;  // a copy: adding nodes moves the graph's storage
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  G selected = g.reshape(nonzero ? g.binary(NodeKind::NotEqual, x, g.constant(0, g.type(x).dtype)) : cast_to(g, in[1], DType::Bool),
                         {n});
  G rejected = g.cast(g.unary(NodeKind::LogicalNot, selected), DType::Int64);
  G key = g.add(g.mul(rejected, g.constant(static_cast<double>(n), DType::Int64)), g.iota({n}, 0, DType::Int64));
  G order = g.arg_sort(key, 0, false);
  G picked;
  if (nonzero) {
    std::vector<G> coords;
    for (size_t d = 0; d < shape.size(); ++d)
      coords.push_back(g.reshape(g.gather(g.reshape(g.iota(shape, static_cast<int64_t>(d), DType::Int64), {n}), order, 0),
                                 {n, 1}));
    picked = g.concat(coords, 1);
  } else {
    picked = g.gather(g.reshape(x, {n}), order, 0);
  }
  return {picked, g.reduce(NodeKind::ReduceSum, g.cast(selected, DType::Int64), {0})};
}

// On the reference runtime ATen's nonzero / masked_select (one pass) fill the
// first `count` rows; the decomposition's sort is O(n log n) (20x on 128K
// elements). The rows after `count` are never read.
std::vector<at::Tensor> select_positions_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                                             const runtime::reference::ResultOutput& new_output) {
  const bool nonzero = n.str_attr("what") == "nonzero";
  at::Tensor picked = nonzero ? at::nonzero(in[0]) : at::masked_select(in[0].reshape({-1}), in[1].reshape({-1}).to(at::kBool));
  std::vector<int64_t> sizes = picked.sizes().vec();
  sizes[0] = in[0].numel();
  at::Tensor all = new_output(0, sizes, picked.scalar_type());
  all.narrow(0, 0, picked.size(0)).copy_(picked);
  at::Tensor count = new_output(1, {1}, at::kLong);
  count.fill_(picked.size(0));
  return {all, count};
}
MPS_EXT_REFERENCE_MULTI_KERNEL("aten.select_positions", select_positions_cpu);

void build_select_positions(Graph& g, const GraphSpec& s) {
  std::vector<G> in{g.placeholder(s.input(0), "self")};
  const bool nonzero = s.str_attr("what") == "nonzero";
  if (!nonzero) in.push_back(g.placeholder(s.input(1), "mask"));
  std::vector<G> r = g.kernels("aten.select_positions", in, {{"what", s.str_attr("what")}},
                               [nonzero](Graph& d, const std::vector<G>& xs) {
                                 return select_positions_decomposition(d, xs, nonzero);
                               });
  g.output(r[0]);
  g.output(r[1]);
}

at::Tensor select_positions(const char* what, const at::Tensor& x, const at::Tensor& mask) {
  GraphSpec spec("aten::select_positions");
  std::vector<at::Tensor> inputs{x};
  spec.input(x);
  if (mask.defined()) {
    spec.input(mask);
    inputs.push_back(mask);
  }
  spec.attr("what", std::string(what));
  auto r = runtime::run_graph(spec, build_select_positions, inputs);
  at::Tensor count = device::cpu_alias(r[1]);
  device::synchronize();
  return r[0].narrow(0, 0, count.item<int64_t>()).clone();
}

at::Tensor nonzero(const at::Tensor& self) {
  require(graph_ok(self) && !at::isComplexType(self.scalar_type()));
  TORCH_CHECK(self.numel() < (int64_t{1} << 31), "nonzero is not supported for tensors with more than INT_MAX elements");
  if (self.numel() == 0) return at::empty({0, self.dim()}, self.options().dtype(at::kLong));
  if (self.dim() == 0) return (nonzero)(self.reshape({1})).narrow(1, 0, 0);  // one row of no coordinates, or none
  return select_positions("nonzero", self, {});
}

at::Tensor masked_select(const at::Tensor& self, const at::Tensor& mask) {
  require(graph_ok(self) && mask.is_privateuseone());
  TORCH_CHECK(mask.scalar_type() == at::kBool, "masked_select: expected BoolTensor for mask");
  auto shape = at::infer_size(self.sizes(), mask.sizes());
  at::Tensor x = self.expand(shape).contiguous(), m = mask.expand(shape).contiguous();
  if (x.numel() == 0) return at::empty({0}, self.options());
  if (x.dim() == 0) {
    x = x.reshape({1});
    m = m.reshape({1});
  }
  return select_positions("masked_select", x, m);
}

// --- sort / topk: ArgSort, then the values gathered along the axis -------------------------
// topk's indices are a kernel node: the reference runtime runs ATen's partial
// top-k (not a full sort); the decomposition (what MPSGraph runs) is the
// ArgSort's first k. Ties may come in either order, as torch allows.
at::Tensor topk_indices_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                            const runtime::reference::NewOutput& new_output) {
  int64_t dim = n.int_attr("dim");
  auto r = at::topk(in[0], n.int_attr("k"), dim, n.int_attr("descending") != 0, /*sorted=*/true);
  at::Tensor out = new_output(std::get<1>(r).sizes(), at::kLong);
  return out.copy_(std::get<1>(r));
}
MPS_EXT_REFERENCE_KERNEL("aten.topk_indices", topk_indices_cpu);

void build_sort(Graph& g, const GraphSpec& s) {
  G x = g.placeholder(s.input(0), "self");
  int64_t dim = s.int_attr("dim"), k = s.int_attr("k");
  bool descending = s.int_attr("descending") != 0;
  const graph::Shape& shape = s.input(0).shape;
  G order;
  if (!shape.empty() && k < shape[dim]) {  // topk: the first k
    graph::Attrs attrs{{"dim", dim}, {"k", k}, {"descending", int64_t{descending}}};
    order = g.kernel("aten.topk_indices", {x}, attrs, [dim, k, descending](Graph& d, const std::vector<G>& in) {
      const graph::Shape& sh = d.type(in[0]).shape;
      std::vector<int64_t> ends = sh;
      ends[dim] = k;
      return d.slice(d.arg_sort(in[0], dim, descending), iota_vec(sh.size()), ends, iota_vec(sh.size(), 1));
    });
  } else {
    order = g.arg_sort(x, dim, descending);
  }
  G values = shape.empty() ? x : g.gather_along_axis(x, order, dim);
  g.output(values);
  g.output(order);
}

std::tuple<at::Tensor, at::Tensor> sort_impl(const at::Tensor& self, int64_t dim, bool descending, int64_t k) {
  GraphSpec spec("aten::sort");
  spec.input(self).attr("dim", dim).attr("descending", int64_t{descending}).attr("k", k);
  auto r = runtime::run_graph(spec, build_sort, {self});
  return {r[0], r[1]};
}

std::tuple<at::Tensor, at::Tensor> sort_stable(const at::Tensor& self, std::optional<bool> stable, int64_t dim,
                                               bool descending) {
  require(graph_ok(self) && !at::isComplexType(self.scalar_type()));
  dim = c10::maybe_wrap_dim(dim, self.dim());
  if (self.numel() == 0)
    return {at::empty(self.sizes(), self.options()), at::empty(self.sizes(), self.options().dtype(at::kLong))};
  return sort_impl(self, dim, descending, self.dim() == 0 ? 1 : self.size(dim));
}

std::tuple<at::Tensor, at::Tensor> sort(const at::Tensor& self, int64_t dim, bool descending) {
  return sort_stable(self, false, dim, descending);
}

std::tuple<at::Tensor, at::Tensor> topk(const at::Tensor& self, c10::SymInt k_, int64_t dim, bool largest, bool sorted) {
  require(graph_ok(self) && !at::isComplexType(self.scalar_type()) && self.scalar_type() != at::kBool);
  int64_t k = k_.expect_int();
  dim = c10::maybe_wrap_dim(dim, self.dim());
  int64_t size = self.dim() == 0 ? 1 : self.size(dim);
  TORCH_CHECK(k >= 0 && k <= size, "selected index k out of range");
  std::vector<int64_t> shape = self.sizes().vec();
  if (self.dim() > 0) shape[dim] = k;
  if (k == 0 || self.numel() == 0)
    return {at::empty(shape, self.options()), at::empty(shape, self.options().dtype(at::kLong))};
  (void)sorted;  // always sorted: a valid answer for sorted=False too
  return sort_impl(self, dim, largest, k);
}

// --- registration --------------------------------------------------------------------------
const std::vector<Row>& rows() {
  static const std::vector<Row> r = {
      MPS_EXT_ATEN_ROW("gather", gather),
      MPS_EXT_ATEN_ROW("scatter.src", scatter_src),
      MPS_EXT_ATEN_ROW("scatter.value", scatter_value),
      MPS_EXT_ATEN_ROW("scatter.reduce", scatter_reduce_src),
      MPS_EXT_ATEN_ROW("scatter.value_reduce", scatter_reduce_value),
      MPS_EXT_ATEN_ROW("scatter_.src", scatter_src_),
      MPS_EXT_ATEN_ROW("scatter_.value", scatter_value_),
      MPS_EXT_ATEN_ROW("scatter_.reduce", scatter_reduce_src_),
      MPS_EXT_ATEN_ROW("scatter_.value_reduce", scatter_reduce_value_),
      MPS_EXT_ATEN_ROW("scatter_add", scatter_add_op),
      MPS_EXT_ATEN_ROW("scatter_add_", scatter_add_),
      MPS_EXT_ATEN_ROW("scatter_reduce.two", scatter_reduce_two),
      MPS_EXT_ATEN_ROW("scatter_reduce_.two", scatter_reduce_two_),
      MPS_EXT_ATEN_ROW("index_select", index_select),
      MPS_EXT_ATEN_ROW("embedding_dense_backward", embedding_dense_backward),
      MPS_EXT_ATEN_ROW("index_add", index_add_op),
      MPS_EXT_ATEN_ROW("index_add_", index_add_),
      MPS_EXT_ATEN_ROW("index_copy", index_copy_op),
      MPS_EXT_ATEN_ROW("index_copy_", index_copy_),
      MPS_EXT_ATEN_ROW("index.Tensor", index_tensor),
      MPS_EXT_ATEN_ROW("_index_put_impl_", index_put_impl_),
      MPS_EXT_ATEN_ROW("sort.stable", sort_stable),
      MPS_EXT_ATEN_ROW("sort", sort),
      MPS_EXT_ATEN_ROW("topk", topk),
      MPS_EXT_ATEN_ROW("nonzero", nonzero),
      MPS_EXT_ATEN_ROW("masked_select", masked_select),
  };
  return r;
}
}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  for (const Row& row : rows()) register_op(m, row.op, row.kernel);
}

}  // namespace mps_ext::ops::aten
