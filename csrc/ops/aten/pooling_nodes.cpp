// The pooling node kinds (MaxPool, MaxPoolIndices, MaxPoolGradient, AvgPool,
// AvgPoolGradient): their spec and their ATen evaluation. Semantics: graph.h.
#include <ATen/ATen.h>

#include "graph/node_spec.h"
#include "runtime/reference/node_eval.h"

namespace mps_ext::ops::aten {
namespace {
using namespace graph;
using Types = std::vector<TensorType>;

PoolParams params(const Attrs& a, const char* what) {
  return {ints_attr(a, "kernel", what), ints_attr(a, "stride", what), ints_attr(a, "padding", what),
          ints_attr(a, "dilation", what), int_attr(a, "ceil_mode", what) != 0};
}

// Checks the parameters against data of `shape`; returns the pooled shape.
Shape pooled_shape(const Shape& shape, const PoolParams& p, const char* what) {
  auto msg = [&](const std::string& m) { fail(std::string(what) + ": " + m); };
  size_t k = p.kernel.size();
  if (k < 1 || k > 3) msg("pools 1 to 3 spatial dims, got a kernel of " + std::to_string(k));
  if (p.stride.size() != k || p.padding.size() != k || p.dilation.size() != k)
    msg("kernel, stride, padding and dilation need one entry per spatial dim (" + std::to_string(k) + ")");
  if (shape.size() != k + 2) msg("expects [N, C, spatial...] data of rank " + std::to_string(k + 2) + ", got " + shape_str(shape));
  for (int64_t d : shape)
    if (d < 0) msg("needs static shapes, got " + shape_str(shape));
  Shape out(shape.begin(), shape.begin() + 2);
  for (size_t i = 0; i < k; ++i) {
    if (p.kernel[i] < 1 || p.stride[i] < 1 || p.dilation[i] < 1 || p.padding[i] < 0)
      msg("kernel sizes, strides and dilations must be positive, paddings >= 0");
    if (p.padding[i] > ((p.kernel[i] - 1) * p.dilation[i] + 1) / 2)
      msg("padding " + std::to_string(p.padding[i]) + " exceeds half the effective kernel size");
    int64_t o = pool_output_size(shape[i + 2], p.kernel[i], p.stride[i], p.padding[i], p.dilation[i], p.ceil_mode);
    if (o < 1) msg("input " + shape_str(shape) + " is too small for the kernel");
    out.push_back(o);
  }
  return out;
}

void check_floating(const TensorType& t, const char* what) {
  if (!is_floating(t.dtype)) fail(std::string(what) + ": expects a floating-point tensor, got " + dtype_name(t.dtype));
}

// Average pools: no dilation (filled in when absent), divisor_override 0 = none.
PoolParams avg_params(Attrs& a, const char* what) {
  if (!a.count("dilation")) a["dilation"] = std::vector<int64_t>(ints_attr(a, "kernel", what).size(), 1);
  PoolParams p = params(a, what);
  for (int64_t d : p.dilation)
    if (d != 1) fail(std::string(what) + ": average pooling has no dilation");
  if (!a.count("count_include_pad")) a["count_include_pad"] = int64_t{1};
  if (!a.count("divisor_override")) a["divisor_override"] = int64_t{0};
  if (int_attr(a, "divisor_override", what) < 0) fail(std::string(what) + ": divisor_override must be positive (0: none)");
  return p;
}

// (x); attrs: kernel, stride, padding, dilation, ceil_mode.
TensorType infer_max_pool(NodeKind kind, const Types& in, Attrs& a) {
  const char* what = kind_name(kind);
  check_floating(in[0], what);
  Shape out = pooled_shape(in[0].shape, params(a, what), what);
  return {kind == NodeKind::MaxPoolIndices ? DType::Int64 : in[0].dtype, out};
}
// (grad_output, indices); attrs: + input_shape.
TensorType infer_max_pool_gradient(NodeKind, const Types& in, Attrs& a) {
  const char* what = "max_pool_gradient";
  check_floating(in[0], what);
  if (in[1].dtype != DType::Int64) fail(std::string(what) + ": indices must be int64");
  const Shape& input_shape = ints_attr(a, "input_shape", what);
  Shape out = pooled_shape(input_shape, params(a, what), what);
  if (in[0].shape != out || in[1].shape != out)
    fail(std::string(what) + ": grad_output " + shape_str(in[0].shape) + " and indices " + shape_str(in[1].shape) +
         " must have the pooled shape " + shape_str(out) + " of an input " + shape_str(input_shape));
  return {in[0].dtype, input_shape};
}
// (x); attrs: kernel, stride, padding, ceil_mode, count_include_pad, divisor_override.
TensorType infer_avg_pool(NodeKind, const Types& in, Attrs& a) {
  check_floating(in[0], "avg_pool");
  PoolParams p = avg_params(a, "avg_pool");
  return {in[0].dtype, pooled_shape(in[0].shape, p, "avg_pool")};
}
// (grad_output, x); attrs: as AvgPool. Only x's shape is read.
TensorType infer_avg_pool_gradient(NodeKind, const Types& in, Attrs& a) {
  const char* what = "avg_pool_gradient";
  check_floating(in[0], what);
  check_floating(in[1], what);
  if (in[0].dtype != in[1].dtype) fail(std::string(what) + ": operand dtypes differ");
  PoolParams p = avg_params(a, what);
  Shape out = pooled_shape(in[1].shape, p, what);
  if (in[0].shape != out) fail(std::string(what) + ": grad_output " + shape_str(in[0].shape) + " must have the pooled shape " + shape_str(out));
  return in[1];
}

// ATen's max_pool2d/3d and avg_pool2d/3d; 1-d pools are 2-d pools over
// [N, C, 1, L] (torch's own max_pool1d/avg_pool1d do the same).
struct Pool {
  PoolParams p;
  bool one_d;
  explicit Pool(const Node& n) : p(pool_params(n)), one_d(p.kernel.size() == 1) {
    if (!one_d) return;
    for (auto* v : {&p.kernel, &p.stride, &p.dilation}) v->insert(v->begin(), 1);
    p.padding.insert(p.padding.begin(), 0);
  }
  at::Tensor in(const at::Tensor& t) const { return one_d ? t.unsqueeze(2) : t; }
  at::Tensor out(const at::Tensor& t) const { return one_d ? t.squeeze(2) : t; }
  std::vector<int64_t> shape(std::vector<int64_t> s) const {
    if (one_d) s.insert(s.begin() + 2, 1);
    return s;
  }
  bool three_d() const { return p.kernel.size() == 3; }
};

std::tuple<at::Tensor, at::Tensor> max_pool_with_indices(const Node& n, const at::Tensor& x) {
  Pool q(n);
  const auto& p = q.p;
  if (q.three_d()) return at::max_pool3d_with_indices(x, p.kernel, p.stride, p.padding, p.dilation, p.ceil_mode);
  auto [v, i] = at::max_pool2d_with_indices(q.in(x), p.kernel, p.stride, p.padding, p.dilation, p.ceil_mode);
  return {q.out(v), q.out(i)};
}

// A MaxPool node and the MaxPoolIndices node of the same input (ops build
// them in that order) share one ATen pass: MaxPool leaves its indices here,
// and the MaxPoolIndices evaluated right after it (no node in between) over
// the same memory with the same attributes takes them. (Each evaluation gets
// its own CPU alias of a device input, so the tensors themselves differ.)
struct MaxPoolMemo {
  at::Tensor input, indices;
  uint64_t serial = 0;
  Attrs attrs;
};
thread_local MaxPoolMemo max_pool_memo;

at::Tensor eval_max_pool(const Node& n, const std::vector<at::Tensor>& a) {
  auto [values, indices] = max_pool_with_indices(n, a[0]);
  max_pool_memo = {a[0], indices, runtime::reference::evaluation_serial(), n.attrs};
  return values;
}

at::Tensor eval_max_pool_indices(const Node& n, const std::vector<at::Tensor>& a) {
  MaxPoolMemo memo = std::move(max_pool_memo);
  max_pool_memo = {};
  const at::Tensor& x = a[0];
  if (memo.input.defined() && memo.serial + 1 == runtime::reference::evaluation_serial() && memo.input.data_ptr() == x.data_ptr() &&
      memo.input.sizes() == x.sizes() && memo.input.strides() == x.strides() && memo.attrs == n.attrs)
    return memo.indices;
  return std::get<1>(max_pool_with_indices(n, x));
}

at::Tensor eval_max_pool_gradient(const Node& n, const std::vector<at::Tensor>& a) {
  Pool q(n);
  const auto& p = q.p;
  const at::Tensor &grad = a[0], &indices = a[1];
  at::Tensor self = at::empty(q.shape(n.ints_attr("input_shape")), grad.options());  // only its shape is read
  if (q.three_d())
    return at::max_pool3d_with_indices_backward(grad, self, p.kernel, p.stride, p.padding, p.dilation, p.ceil_mode, indices);
  return q.out(at::max_pool2d_with_indices_backward(q.in(grad), self, p.kernel, p.stride, p.padding, p.dilation,
                                                    p.ceil_mode, q.in(indices)));
}

std::optional<int64_t> divisor(const Node& n) {
  int64_t d = n.int_attr("divisor_override");
  return d ? std::optional<int64_t>(d) : std::nullopt;
}

at::Tensor eval_avg_pool(const Node& n, const std::vector<at::Tensor>& a) {
  Pool q(n);
  const auto& p = q.p;
  bool include = n.int_attr("count_include_pad") != 0;
  if (q.three_d()) return at::avg_pool3d(a[0], p.kernel, p.stride, p.padding, p.ceil_mode, include, divisor(n));
  return q.out(at::avg_pool2d(q.in(a[0]), p.kernel, p.stride, p.padding, p.ceil_mode, include, divisor(n)));
}

at::Tensor eval_avg_pool_gradient(const Node& n, const std::vector<at::Tensor>& a) {
  Pool q(n);
  const auto& p = q.p;
  bool include = n.int_attr("count_include_pad") != 0;
  if (q.three_d())
    return at::avg_pool3d_backward(a[0], a[1], p.kernel, p.stride, p.padding, p.ceil_mode, include, divisor(n));
  return q.out(at::avg_pool2d_backward(q.in(a[0]), q.in(a[1]), p.kernel, p.stride, p.padding, p.ceil_mode, include,
                                       divisor(n)));
}
}  // namespace

MPS_EXT_NODE_SPEC(MaxPool, {infer_max_pool, 1, 1});
MPS_EXT_NODE_SPEC(MaxPoolIndices, {infer_max_pool, 1, 1});
MPS_EXT_NODE_SPEC(MaxPoolGradient, {infer_max_pool_gradient, 2, 2});
MPS_EXT_NODE_SPEC(AvgPool, {infer_avg_pool, 1, 1});
MPS_EXT_NODE_SPEC(AvgPoolGradient, {infer_avg_pool_gradient, 2, 2});
MPS_EXT_NODE_EVAL(MaxPool, eval_max_pool);
MPS_EXT_NODE_EVAL(MaxPoolIndices, eval_max_pool_indices);
MPS_EXT_NODE_EVAL(MaxPoolGradient, eval_max_pool_gradient);
MPS_EXT_NODE_EVAL(AvgPool, eval_avg_pool);
MPS_EXT_NODE_EVAL(AvgPoolGradient, eval_avg_pool_gradient);

}  // namespace mps_ext::ops::aten
