#include "graph/graph.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace mps_ext::graph {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::Bool: return "bool";
    case DType::UInt8: return "uint8";
    case DType::Int8: return "int8";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Complex64: return "complex64";
    case DType::Complex128: return "complex128";
  }
  return "?";
}

bool is_floating(DType t) {
  return t == DType::Float16 || t == DType::BFloat16 || t == DType::Float32 ||
         t == DType::Float64;
}

DType dtype_from_name(const std::string& name) {
  for (DType t : {DType::Bool, DType::UInt8, DType::Int8, DType::Int32, DType::Int64, DType::Float16,
                  DType::BFloat16, DType::Float32, DType::Float64, DType::Complex64, DType::Complex128})
    if (name == dtype_name(t)) return t;
  throw GraphError("unknown dtype '" + name + "'");
}

FFTScaling fft_scaling(const std::string& norm, bool inverse) {
  if (norm == "ortho") return FFTScaling::Unitary;
  if (norm == "backward") return inverse ? FFTScaling::Size : FFTScaling::None;
  if (norm == "forward") return inverse ? FFTScaling::None : FFTScaling::Size;
  throw GraphError("fft: norm must be \"backward\", \"forward\" or \"ortho\", got \"" + norm + "\"");
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? "," : "") << s[i];
  os << ']';
  return os.str();
}

const char* kind_name(NodeKind k) {
  switch (k) {
#define MPS_EXT_NODE(kind, name) \
  case NodeKind::kind:           \
    return name;
#include "graph/node_kinds.def"
  }
  return "?";
}

NodeKind kind_from_name(const std::string& name) {
#define MPS_EXT_NODE(kind, str) \
  if (name == str) return NodeKind::kind;
#include "graph/node_kinds.def"
  throw GraphError("unknown node kind '" + name + "'");
}

bool is_unary(NodeKind k) {
  switch (k) {
#define MPS_EXT_UNARY(kind, name) case NodeKind::kind:
#include "graph/node_kinds.def"
    return true;
    default: return false;
  }
}
bool is_binary(NodeKind k) {
  switch (k) {
#define MPS_EXT_BINARY(kind, name) case NodeKind::kind:
#include "graph/node_kinds.def"
    return true;
    default: return false;
  }
}
bool is_compare(NodeKind k) {
  switch (k) {
#define MPS_EXT_COMPARE(kind, name) case NodeKind::kind:
#include "graph/node_kinds.def"
    return true;
    default: return false;
  }
}
bool is_reduce(NodeKind k) {
  switch (k) {
#define MPS_EXT_REDUCE(kind, name) case NodeKind::kind:
#include "graph/node_kinds.def"
    return true;
    default: return false;
  }
}

namespace {
template <typename T>
const T& get_attr(const Node& n, const std::string& key) {
  auto it = n.attrs.find(key);
  if (it == n.attrs.end() || !std::holds_alternative<T>(it->second))
    throw GraphError(std::string(kind_name(n.kind)) + " node has no attribute '" + key + "'");
  return std::get<T>(it->second);
}

[[noreturn]] void fail(const std::string& msg) { throw GraphError(msg); }

int64_t normalize_axis(int64_t axis, int64_t rank, const char* what) {
  int64_t r = std::max<int64_t>(rank, 1);
  if (axis < -r || axis >= r)
    fail(std::string(what) + ": axis " + std::to_string(axis) + " is out of range for rank " +
         std::to_string(rank));
  return axis < 0 ? axis + r : axis;
}

int64_t numel_if_static(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d == kDynamic) return kDynamic;
    n *= d;
  }
  return n;
}
}  // namespace

int64_t Node::int_attr(const std::string& key) const { return get_attr<int64_t>(*this, key); }
double Node::float_attr(const std::string& key) const { return get_attr<double>(*this, key); }
const std::vector<int64_t>& Node::ints_attr(const std::string& key) const {
  return get_attr<std::vector<int64_t>>(*this, key);
}
const std::string& Node::str_attr(const std::string& key) const { return get_attr<std::string>(*this, key); }

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da == db || db == 1) out[i] = da;
    else if (da == 1) out[i] = db;
    else if (da == kDynamic) out[i] = db;
    else if (db == kDynamic) out[i] = da;
    else fail("shapes " + shape_str(a) + " and " + shape_str(b) + " cannot be broadcast");
  }
  return out;
}

const Node& Graph::checked(Tensor t, const char* what) const {
  if (t.id < 0 || t.id >= static_cast<int>(nodes_.size()))
    fail(std::string(what) + ": tensor does not belong to this graph");
  return nodes_[t.id];
}

Tensor Graph::add_node(NodeKind kind, std::vector<int> inputs, TensorType type, Attrs attrs,
                       std::string name) {
  nodes_.push_back(Node{kind, std::move(inputs), std::move(type), std::move(attrs), std::move(name)});
  return Tensor{static_cast<int>(nodes_.size()) - 1};
}

Tensor Graph::placeholder(Shape shape, DType dtype, std::string name) {
  Tensor t = add_node(NodeKind::Placeholder, {}, {dtype, std::move(shape)},
                      {{"index", int64_t{num_inputs()}}}, std::move(name));
  inputs_.push_back(t.id);
  return t;
}

Tensor Graph::variable(Shape shape, DType dtype, std::string name) {
  Tensor t = add_node(NodeKind::Variable, {}, {dtype, std::move(shape)},
                      {{"index", int64_t{num_inputs()}}}, std::move(name));
  inputs_.push_back(t.id);
  return t;
}

Tensor Graph::constant(double value, DType dtype, Shape shape) {
  return add_node(NodeKind::Constant, {}, {dtype, std::move(shape)}, {{"value", value}});
}

Tensor Graph::assign(Tensor variable, Tensor value) {
  const Node& var = checked(variable, "assign");
  const Node& val = checked(value, "assign");
  if (var.kind != NodeKind::Variable) fail("assign: target must be a variable");
  if (val.type.dtype != var.type.dtype)
    fail(std::string("assign: value dtype ") + dtype_name(val.type.dtype) +
         " does not match variable dtype " + dtype_name(var.type.dtype));
  return add_node(NodeKind::Assign, {variable.id, value.id}, var.type);
}

Tensor Graph::cast(Tensor x, DType dtype) {
  Shape s = checked(x, "cast").type.shape;
  return add_node(NodeKind::Cast, {x.id}, {dtype, std::move(s)});
}

Tensor Graph::reshape(Tensor x, Shape shape) {
  const TensorType& t = checked(x, "reshape").type;
  if (std::count(shape.begin(), shape.end(), kDynamic) > 1)
    fail("reshape: at most one dimension of " + shape_str(shape) + " may be -1");
  int64_t in = numel_if_static(t.shape), out = numel_if_static(shape);
  if (in != kDynamic && out != kDynamic && in != out)
    fail("reshape: cannot reshape " + shape_str(t.shape) + " to " + shape_str(shape));
  return add_node(NodeKind::Reshape, {x.id}, {t.dtype, shape}, {{"shape", shape}});
}

Tensor Graph::transpose(Tensor x, std::vector<int64_t> perm) {
  const TensorType& t = checked(x, "transpose").type;
  if (static_cast<int64_t>(perm.size()) != t.rank())
    fail("transpose: permutation " + shape_str(perm) + " does not match rank " +
         std::to_string(t.rank()));
  Shape out(perm.size());
  std::vector<bool> seen(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) {
    int64_t p = normalize_axis(perm[i], t.rank(), "transpose");
    if (seen[p]) fail("transpose: permutation " + shape_str(perm) + " repeats an axis");
    seen[p] = true;
    perm[i] = p;
    out[i] = t.shape[p];
  }
  return add_node(NodeKind::Transpose, {x.id}, {t.dtype, out}, {{"perm", perm}});
}

namespace {
// Static result length of start:end:stride on a dim (dynamic stays dynamic).
int64_t slice_len(int64_t dim, int64_t start, int64_t end, int64_t stride) {
  if (stride <= 0) fail("slice: strides must be positive");
  if (dim == kDynamic) return kDynamic;
  auto clamp = [dim](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + dim : v, 0, dim); };
  int64_t s = clamp(start), e = clamp(end);
  return e > s ? (e - s + stride - 1) / stride : 0;
}

Shape sliced_shape(const TensorType& t, const std::vector<int64_t>& starts,
                   const std::vector<int64_t>& ends, const std::vector<int64_t>& strides,
                   const char* what) {
  if (starts.size() != t.shape.size() || ends.size() != t.shape.size() ||
      strides.size() != t.shape.size())
    fail(std::string(what) + ": starts/ends/strides must have one entry per dimension (rank " +
         std::to_string(t.rank()) + ")");
  Shape out(t.shape.size());
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = slice_len(t.shape[i], starts[i], ends[i], strides[i]);
  return out;
}
}  // namespace

Tensor Graph::slice(Tensor x, std::vector<int64_t> starts, std::vector<int64_t> ends,
                    std::vector<int64_t> strides) {
  const TensorType& t = checked(x, "slice").type;
  Shape out = sliced_shape(t, starts, ends, strides, "slice");
  return add_node(NodeKind::Slice, {x.id}, {t.dtype, out},
                  {{"starts", starts}, {"ends", ends}, {"strides", strides}});
}

Tensor Graph::slice_update(Tensor data, Tensor update, std::vector<int64_t> starts,
                           std::vector<int64_t> ends, std::vector<int64_t> strides) {
  const TensorType& t = checked(data, "slice_update").type;
  const TensorType& u = checked(update, "slice_update").type;
  if (u.dtype != t.dtype) fail("slice_update: update dtype must match data dtype");
  Shape region = sliced_shape(t, starts, ends, strides, "slice_update");
  broadcast_shapes(region, u.shape);  // update must broadcast into the region
  return add_node(NodeKind::SliceUpdate, {data.id, update.id}, t,
                  {{"starts", starts}, {"ends", ends}, {"strides", strides}});
}

Tensor Graph::slice_update_at(Tensor data, Tensor update, Tensor starts) {
  const TensorType& t = checked(data, "slice_update_at").type;
  const TensorType& u = checked(update, "slice_update_at").type;
  const TensorType& st = checked(starts, "slice_update_at").type;
  if (u.dtype != t.dtype) fail("slice_update_at: update dtype must match data dtype");
  if (u.rank() != t.rank()) fail("slice_update_at: update must have data's rank " + std::to_string(t.rank()));
  for (int64_t d = 0; d < t.rank(); ++d)
    if (u.shape[d] != kDynamic && t.shape[d] != kDynamic && u.shape[d] > t.shape[d])
      fail("slice_update_at: update " + shape_str(u.shape) + " does not fit in data " + shape_str(t.shape));
  if (st.dtype != DType::Int64 || st.rank() != 1 || (st.shape[0] != kDynamic && st.shape[0] != t.rank()))
    fail("slice_update_at: starts must be an int64 tensor of shape [" + std::to_string(t.rank()) + "]");
  return add_node(NodeKind::SliceUpdate, {data.id, update.id, starts.id}, t);
}

Tensor Graph::concat(const std::vector<Tensor>& xs, int64_t axis) {
  if (xs.empty()) fail("concat: needs at least one tensor");
  TensorType out = checked(xs[0], "concat").type;
  axis = normalize_axis(axis, out.rank(), "concat");
  std::vector<int> ids;
  for (size_t i = 0; i < xs.size(); ++i) {
    const TensorType& t = checked(xs[i], "concat").type;
    ids.push_back(xs[i].id);
    if (i == 0) continue;
    if (t.dtype != out.dtype || t.rank() != out.rank()) fail("concat: tensors differ in dtype or rank");
    for (int64_t d = 0; d < t.rank(); ++d) {
      if (d == axis) {
        out.shape[d] = (out.shape[d] == kDynamic || t.shape[d] == kDynamic)
                           ? kDynamic : out.shape[d] + t.shape[d];
      } else if (t.shape[d] != out.shape[d] && t.shape[d] != kDynamic && out.shape[d] != kDynamic) {
        fail("concat: shapes " + shape_str(out.shape) + " and " + shape_str(t.shape) +
             " differ outside axis " + std::to_string(axis));
      }
    }
  }
  return add_node(NodeKind::Concat, std::move(ids), out, {{"axis", axis}});
}

Tensor Graph::broadcast(Tensor x, Shape shape) {
  const TensorType& t = checked(x, "broadcast").type;
  if (broadcast_shapes(t.shape, shape).size() != shape.size())
    fail("broadcast: cannot broadcast " + shape_str(t.shape) + " to " + shape_str(shape));
  return add_node(NodeKind::Broadcast, {x.id}, {t.dtype, shape}, {{"shape", shape}});
}

Tensor Graph::unary(NodeKind kind, Tensor x) {
  if (!is_unary(kind)) fail(std::string(kind_name(kind)) + " is not a unary op");
  TensorType t = checked(x, kind_name(kind)).type;
  bool logical = kind == NodeKind::LogicalNot;
  if (logical && t.dtype != DType::Bool) fail("logical_not: expects a bool tensor");
  if (kind == NodeKind::IsNaN) t.dtype = DType::Bool;
  if (kind == NodeKind::BitwiseNot && (is_floating(t.dtype) || t.dtype == DType::Complex64 || t.dtype == DType::Complex128))
    fail("bitwise_not: expects an integer or bool tensor");
  return add_node(kind, {x.id}, std::move(t));
}

Tensor Graph::binary(NodeKind kind, Tensor a, Tensor b) {
  if (!is_binary(kind)) fail(std::string(kind_name(kind)) + " is not a binary op");
  const TensorType& ta = checked(a, kind_name(kind)).type;
  const TensorType& tb = checked(b, kind_name(kind)).type;
  // No implicit promotion: op builders cast explicitly, as MPSGraph requires.
  if (ta.dtype != tb.dtype)
    fail(std::string(kind_name(kind)) + ": operand dtypes differ (" + dtype_name(ta.dtype) +
         " vs " + dtype_name(tb.dtype) + ")");
  bool logical = kind == NodeKind::LogicalAnd || kind == NodeKind::LogicalOr;
  if (logical && ta.dtype != DType::Bool)
    fail(std::string(kind_name(kind)) + ": expects bool tensors");
  bool bitwise = kind == NodeKind::BitwiseAnd || kind == NodeKind::BitwiseOr || kind == NodeKind::BitwiseXor;
  bool shift = kind == NodeKind::LeftShift || kind == NodeKind::RightShift || kind == NodeKind::FloorDivide ||
               kind == NodeKind::Remainder;  // (integer-only kinds)
  bool integral = !is_floating(ta.dtype) && ta.dtype != DType::Complex64 && ta.dtype != DType::Complex128;
  if ((bitwise && !integral) || (shift && (!integral || ta.dtype == DType::Bool)))
    fail(std::string(kind_name(kind)) + ": expects integer" + (bitwise ? " or bool" : "") + " tensors, got " +
         dtype_name(ta.dtype));
  DType out = is_compare(kind) ? DType::Bool : ta.dtype;
  return add_node(kind, {a.id, b.id}, {out, broadcast_shapes(ta.shape, tb.shape)});
}

Tensor Graph::select(Tensor predicate, Tensor on_true, Tensor on_false) {
  const TensorType& p = checked(predicate, "select").type;
  const TensorType& t = checked(on_true, "select").type;
  const TensorType& f = checked(on_false, "select").type;
  if (p.dtype != DType::Bool) fail("select: predicate must be bool");
  if (t.dtype != f.dtype) fail("select: branch dtypes differ");
  Shape s = broadcast_shapes(p.shape, broadcast_shapes(t.shape, f.shape));
  return add_node(NodeKind::Select, {predicate.id, on_true.id, on_false.id}, {t.dtype, s});
}

Tensor Graph::reduce(NodeKind kind, Tensor x, std::vector<int64_t> axes) {
  if (!is_reduce(kind)) fail(std::string(kind_name(kind)) + " is not a reduction");
  TensorType t = checked(x, kind_name(kind)).type;
  // MPSGraph reductions keep reduced dims with size 1.
  for (int64_t& a : axes) {
    a = normalize_axis(a, t.rank(), kind_name(kind));
    if (t.rank() > 0) t.shape[a] = 1;
  }
  return add_node(kind, {x.id}, std::move(t), {{"axes", axes}});
}

Tensor Graph::softmax(Tensor x, int64_t axis) {
  TensorType t = checked(x, "softmax").type;
  if (!is_floating(t.dtype)) fail("softmax: expects a floating-point tensor");
  axis = normalize_axis(axis, t.rank(), "softmax");
  return add_node(NodeKind::Softmax, {x.id}, std::move(t), {{"axis", axis}});
}

Tensor Graph::matmul(Tensor a, Tensor b) {
  const TensorType& ta = checked(a, "matmul").type;
  const TensorType& tb = checked(b, "matmul").type;
  if (ta.rank() < 2 || tb.rank() < 2) fail("matmul: operands must have rank >= 2");
  if (ta.dtype != tb.dtype) fail("matmul: operand dtypes differ");
  int64_t k1 = ta.shape.back(), k2 = tb.shape[tb.rank() - 2];
  if (k1 != k2 && k1 != kDynamic && k2 != kDynamic)
    fail("matmul: inner dimensions differ (" + shape_str(ta.shape) + " @ " + shape_str(tb.shape) + ")");
  Shape batch = broadcast_shapes(Shape(ta.shape.begin(), ta.shape.end() - 2),
                                 Shape(tb.shape.begin(), tb.shape.end() - 2));
  batch.push_back(ta.shape[ta.rank() - 2]);
  batch.push_back(tb.shape.back());
  return add_node(NodeKind::MatMul, {a.id, b.id}, {ta.dtype, batch});
}

Tensor Graph::iota(Shape shape, int64_t axis, DType dtype) {
  if (numel_if_static(shape) == kDynamic) fail("iota: shape " + shape_str(shape) + " must be static");
  if (dtype != DType::Int32 && dtype != DType::Int64) fail("iota: dtype must be int32 or int64");
  axis = normalize_axis(axis, static_cast<int64_t>(shape.size()), "iota");
  return add_node(NodeKind::Iota, {}, {dtype, shape}, {{"shape", shape}, {"axis", axis}});
}

Tensor Graph::random_uniform(Tensor state, Shape shape) {
  const TensorType& st = checked(state, "random_uniform").type;
  if (st.dtype != DType::Int32 || st.shape != Shape{7}) fail("random_uniform: state must be an int32 tensor of shape [7]");
  if (numel_if_static(shape) == kDynamic) fail("random_uniform: shape " + shape_str(shape) + " must be static");
  return add_node(NodeKind::RandomUniform, {state.id}, {DType::Float32, shape}, {{"shape", shape}});
}

namespace {
// `s` broadcasts into `target` without expanding it (numpy rules; a dynamic
// size matches anything).
// SDPA nodes made before is_causal existed have no such attr.
bool causal(const Node& n) { return n.attrs.count("is_causal") && n.int_attr("is_causal") != 0; }

bool broadcasts_into(const Shape& s, const Shape& target) {
  if (s.size() > target.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    int64_t d = s[i], t = target[target.size() - s.size() + i];
    if (!(d == 1 || d == t || d == kDynamic || t == kDynamic)) return false;
  }
  return true;
}

// Normalized FFT axes: non-empty, unique, among the last four dimensions.
std::vector<int64_t> fft_axes(std::vector<int64_t> axes, int64_t rank, const char* what) {
  if (axes.empty()) fail(std::string(what) + ": needs at least one axis");
  if (rank < 1) fail(std::string(what) + ": expects a tensor of rank >= 1");
  std::vector<bool> seen(rank);
  for (int64_t& a : axes) {
    a = normalize_axis(a, rank, what);
    if (seen[a]) fail(std::string(what) + ": axes " + shape_str(axes) + " repeat an axis");
    seen[a] = true;
    if (a < rank - 4)
      fail(std::string(what) + ": axis " + std::to_string(a) + " of a rank-" + std::to_string(rank) +
           " tensor is not among the last 4 dimensions (MPSGraph transforms only those; transpose first)");
  }
  return axes;
}
}  // namespace

Tensor Graph::dequantize(Tensor q, Tensor scale, Tensor zero_point, DType dtype) {
  const TensorType& tq = checked(q, "dequantize").type;
  const TensorType& ts = checked(scale, "dequantize").type;
  const TensorType& tz = checked(zero_point, "dequantize").type;
  if (tq.dtype != DType::UInt8 && tq.dtype != DType::Int8 && tq.dtype != DType::Int32)
    fail(std::string("dequantize: q must be uint8, int8 or int32, got ") + dtype_name(tq.dtype));
  if (!is_floating(dtype)) fail(std::string("dequantize: output dtype must be floating, got ") + dtype_name(dtype));
  if (ts.dtype != dtype)
    fail(std::string("dequantize: scale dtype ") + dtype_name(ts.dtype) + " must be the output dtype " +
         dtype_name(dtype));
  if (tz.dtype != tq.dtype && tz.dtype != dtype)
    fail(std::string("dequantize: zero_point dtype ") + dtype_name(tz.dtype) + " must be q's (" +
         dtype_name(tq.dtype) + ") or the output dtype (" + dtype_name(dtype) + ")");
  if (!broadcasts_into(ts.shape, tq.shape))
    fail("dequantize: scale shape " + shape_str(ts.shape) + " does not broadcast into q's shape " + shape_str(tq.shape));
  if (!broadcasts_into(tz.shape, tq.shape))
    fail("dequantize: zero_point shape " + shape_str(tz.shape) + " does not broadcast into q's shape " +
         shape_str(tq.shape));
  return add_node(NodeKind::Dequantize, {q.id, scale.id, zero_point.id}, {dtype, tq.shape},
                  {{"dtype", std::string(dtype_name(dtype))}});
}

Tensor Graph::dequantize_lut(Tensor indices, Tensor lut) {
  const TensorType& ti = checked(indices, "dequantize_lut").type;
  const TensorType& tl = checked(lut, "dequantize_lut").type;
  if (ti.dtype != DType::UInt8) fail(std::string("dequantize_lut: indices must be uint8, got ") + dtype_name(ti.dtype));
  if (!is_floating(tl.dtype)) fail(std::string("dequantize_lut: lut must be floating, got ") + dtype_name(tl.dtype));
  if (tl.rank() < 1) fail("dequantize_lut: lut must have rank >= 1 (its last dimension holds the entries)");
  if (tl.shape.back() == 0) fail("dequantize_lut: lut has no entries");
  Shape groups(tl.shape.begin(), tl.shape.end() - 1);
  if (!broadcasts_into(groups, ti.shape))
    fail("dequantize_lut: lut groups " + shape_str(groups) + " (lut shape " + shape_str(tl.shape) +
         " without its entries) do not broadcast into the indices' shape " + shape_str(ti.shape));
  return add_node(NodeKind::DequantizeLUT, {indices.id, lut.id}, {tl.dtype, ti.shape});
}

Tensor Graph::scaled_dot_product_attention(Tensor q, Tensor k, Tensor v, std::optional<Tensor> mask,
                                           std::optional<double> scale, bool is_causal) {
  const char* what = "scaled_dot_product_attention";
  const TensorType& tq = checked(q, what).type;
  const TensorType& tk = checked(k, what).type;
  const TensorType& tv = checked(v, what).type;
  if (tq.rank() != 4 || tk.rank() != 4 || tv.rank() != 4)
    fail(std::string(what) + ": q, k, v must have rank 4 ([B, H, L, E], [B, H, S, E], [B, H, S, Ev]), got " +
         shape_str(tq.shape) + ", " + shape_str(tk.shape) + ", " + shape_str(tv.shape));
  if (!is_floating(tq.dtype)) fail(std::string(what) + ": expects floating-point tensors");
  if (tk.dtype != tq.dtype || tv.dtype != tq.dtype) fail(std::string(what) + ": q, k, v dtypes differ");
  auto same = [](int64_t a, int64_t b) { return a == b || a == kDynamic || b == kDynamic; };
  auto dims_match = [&](const char* msg, int64_t a, int64_t b) {
    if (!same(a, b))
      fail(std::string(what) + ": " + msg + " (q " + shape_str(tq.shape) + ", k " + shape_str(tk.shape) +
           ", v " + shape_str(tv.shape) + ")");
  };
  dims_match("batch dims of q, k, v differ", tq.shape[0], tk.shape[0]);
  dims_match("batch dims of q, k, v differ", tq.shape[0], tv.shape[0]);
  dims_match("k and v differ in their head dim", tk.shape[1], tv.shape[1]);
  // Grouped-query attention: k/v heads divide q heads.
  int64_t hq = tq.shape[1], hkv = tk.shape[1];
  if (hq != kDynamic && hkv != kDynamic && (hkv == 0 ? hq != 0 : hq % hkv != 0))
    fail(std::string(what) + ": the number of k/v heads must divide the number of q heads (q " + shape_str(tq.shape) +
         ", k " + shape_str(tk.shape) + ")");
  dims_match("q and k differ in their last (embedding) dim", tq.shape[3], tk.shape[3]);
  dims_match("k and v differ in their sequence dim", tk.shape[2], tv.shape[2]);
  Shape scores = {tq.shape[0], tq.shape[1], tq.shape[2], tk.shape[2]};
  std::vector<int> inputs = {q.id, k.id, v.id};
  if (mask) {
    const TensorType& tm = checked(*mask, what).type;
    if (tm.dtype != tq.dtype)
      fail(std::string(what) + ": mask dtype " + dtype_name(tm.dtype) + " must be q's " + dtype_name(tq.dtype) +
           " (an additive mask; turn a bool mask into 0/-inf first)");
    if (!broadcasts_into(tm.shape, scores))
      fail(std::string(what) + ": mask shape " + shape_str(tm.shape) + " does not broadcast to the scores' shape " +
           shape_str(scores) + " [B, H, L, S]");
    inputs.push_back(mask->id);
  }
  if (!scale) {
    if (tq.shape[3] == kDynamic) fail(std::string(what) + ": pass a scale when the embedding dim is dynamic");
    scale = 1.0 / std::sqrt(static_cast<double>(tq.shape[3]));
  }
  Shape out = {tq.shape[0], tq.shape[1], tq.shape[2], tv.shape[3]};
  return add_node(NodeKind::ScaledDotProductAttention, std::move(inputs), {tq.dtype, out},
                  {{"scale", *scale}, {"has_mask", int64_t{mask ? 1 : 0}}, {"is_causal", int64_t{is_causal ? 1 : 0}}});
}

namespace {
const char* scaling_name(FFTScaling s) {
  return s == FFTScaling::None ? "none" : s == FFTScaling::Size ? "size" : "unitary";
}
bool is_complex(DType t) { return t == DType::Complex64 || t == DType::Complex128; }
}  // namespace

Tensor Graph::fft(Tensor x, std::vector<int64_t> axes, bool inverse, const std::string& norm) {
  const TensorType& t = checked(x, "fft").type;
  if (!is_complex(t.dtype)) fail(std::string("fft: expects a complex64 tensor, got ") + dtype_name(t.dtype));
  axes = fft_axes(std::move(axes), t.rank(), "fft");
  FFTScaling scaling = fft_scaling(norm, inverse);  // validates norm
  return add_node(NodeKind::FFT, {x.id}, t,
                  {{"axes", axes}, {"inverse", int64_t{inverse ? 1 : 0}}, {"norm", norm},
                   {"scaling", std::string(scaling_name(scaling))}});
}

Tensor Graph::rfft(Tensor x, std::vector<int64_t> axes, const std::string& norm) {
  TensorType t = checked(x, "rfft").type;
  if (t.dtype != DType::Float32 && t.dtype != DType::Float64)
    fail(std::string("rfft: expects a float32 tensor, got ") + dtype_name(t.dtype));
  axes = fft_axes(std::move(axes), t.rank(), "rfft");
  FFTScaling scaling = fft_scaling(norm, false);
  int64_t& last = t.shape[axes.back()];
  if (last != kDynamic) last = last / 2 + 1;
  t.dtype = t.dtype == DType::Float64 ? DType::Complex128 : DType::Complex64;
  return add_node(NodeKind::RFFT, {x.id}, std::move(t),
                  {{"axes", axes}, {"norm", norm}, {"inverse", int64_t{0}},
                   {"scaling", std::string(scaling_name(scaling))}});
}

Tensor Graph::irfft(Tensor x, std::vector<int64_t> axes, const std::string& norm, int64_t last_dim_size) {
  TensorType t = checked(x, "irfft").type;
  if (!is_complex(t.dtype)) fail(std::string("irfft: expects a complex64 tensor, got ") + dtype_name(t.dtype));
  axes = fft_axes(std::move(axes), t.rank(), "irfft");
  FFTScaling scaling = fft_scaling(norm, true);
  if (last_dim_size < 1) fail("irfft: last_dim_size must be positive, got " + std::to_string(last_dim_size));
  int64_t& last = t.shape[axes.back()];
  if (last != kDynamic && last != last_dim_size / 2 + 1)
    fail("irfft: a real output of size " + std::to_string(last_dim_size) + " along axis " +
         std::to_string(axes.back()) + " needs " + std::to_string(last_dim_size / 2 + 1) +
         " Hermitean inputs there, got " + std::to_string(last));
  last = last_dim_size;
  t.dtype = t.dtype == DType::Complex128 ? DType::Float64 : DType::Float32;
  return add_node(NodeKind::IRFFT, {x.id}, std::move(t),
                  {{"axes", axes}, {"norm", norm}, {"last_dim_size", last_dim_size}, {"inverse", int64_t{1}},
                   {"scaling", std::string(scaling_name(scaling))},
                   {"round_to_odd", int64_t{last_dim_size % 2}}});
}

ConvParams conv_params(const Node& n) {
  return {n.ints_attr("stride"), n.ints_attr("padding"), n.ints_attr("dilation"), n.int_attr("groups")};
}

namespace {
Attrs conv_attrs(const ConvParams& p) {
  return {{"stride", p.stride}, {"padding", p.padding}, {"dilation", p.dilation}, {"groups", p.groups}};
}

// Checks data and weight shapes against each other and the parameters; returns
// the forward convolution's output shape.
Shape conv_output_shape(const Shape& data, const Shape& weight, const ConvParams& p, const char* what) {
  auto msg = [&](const std::string& m) { fail(std::string(what) + ": " + m); };
  if (data.size() != 4 && data.size() != 5)
    msg("expects rank-4 (NCHW) or rank-5 (NCDHW) data, got " + shape_str(data));
  if (weight.size() != data.size()) msg("weight " + shape_str(weight) + " must have the data's rank " + std::to_string(data.size()));
  for (int64_t d : data)
    if (d < 0) msg("needs static shapes, got " + shape_str(data));
  for (int64_t d : weight)
    if (d <= 0) msg("needs a static, non-empty weight, got " + shape_str(weight));
  size_t spatial = data.size() - 2;
  if (p.stride.size() != spatial || p.padding.size() != spatial || p.dilation.size() != spatial)
    msg("stride, padding and dilation need one entry per spatial dim (" + std::to_string(spatial) + ")");
  if (p.groups < 1 || weight[0] % p.groups != 0) msg("groups must be positive and divide the output channels " + std::to_string(weight[0]));
  if (data[1] != weight[1] * p.groups)
    msg("data has " + std::to_string(data[1]) + " channels, the weight " + shape_str(weight) + " with groups=" +
        std::to_string(p.groups) + " expects " + std::to_string(weight[1] * p.groups));
  Shape out = {data[0], weight[0]};
  for (size_t i = 0; i < spatial; ++i) {
    if (p.stride[i] < 1 || p.dilation[i] < 1 || p.padding[i] < 0) msg("strides and dilations must be positive, paddings >= 0");
    int64_t span = p.dilation[i] * (weight[i + 2] - 1) + 1;
    int64_t padded = data[i + 2] + 2 * p.padding[i];
    if (padded < span) msg("kernel " + shape_str(weight) + " is larger than the padded input " + shape_str(data));
    out.push_back((padded - span) / p.stride[i] + 1);
  }
  return out;
}

void check_conv_dtypes(const TensorType& a, const TensorType& b, const char* what) {
  if (!is_floating(a.dtype)) fail(std::string(what) + ": expects floating-point tensors");
  if (a.dtype != b.dtype) fail(std::string(what) + ": operand dtypes differ");
}
}  // namespace

Tensor Graph::convolution(Tensor input, Tensor weight, const ConvParams& p) {
  const TensorType& ti = checked(input, "convolution").type;
  const TensorType& tw = checked(weight, "convolution").type;
  check_conv_dtypes(ti, tw, "convolution");
  Shape out = conv_output_shape(ti.shape, tw.shape, p, "convolution");
  return add_node(NodeKind::Convolution, {input.id, weight.id}, {ti.dtype, out}, conv_attrs(p));
}

Tensor Graph::convolution_data_gradient(Tensor grad_output, Tensor weight, Shape input_shape, const ConvParams& p) {
  const char* what = "convolution_data_gradient";
  const TensorType& tg = checked(grad_output, what).type;
  const TensorType& tw = checked(weight, what).type;
  check_conv_dtypes(tg, tw, what);
  if (conv_output_shape(input_shape, tw.shape, p, what) != tg.shape)
    fail(std::string(what) + ": grad_output " + shape_str(tg.shape) + " is not the output shape of a convolution of " +
         shape_str(input_shape) + " by " + shape_str(tw.shape));
  Attrs attrs = conv_attrs(p);
  attrs["input_shape"] = input_shape;
  return add_node(NodeKind::ConvolutionDataGradient, {grad_output.id, weight.id}, {tg.dtype, input_shape}, attrs);
}

Tensor Graph::convolution_weight_gradient(Tensor grad_output, Tensor input, Shape weight_shape, const ConvParams& p) {
  const char* what = "convolution_weight_gradient";
  const TensorType& tg = checked(grad_output, what).type;
  const TensorType& ti = checked(input, what).type;
  check_conv_dtypes(tg, ti, what);
  if (conv_output_shape(ti.shape, weight_shape, p, what) != tg.shape)
    fail(std::string(what) + ": grad_output " + shape_str(tg.shape) + " is not the output shape of a convolution of " +
         shape_str(ti.shape) + " by " + shape_str(weight_shape));
  Attrs attrs = conv_attrs(p);
  attrs["weight_shape"] = weight_shape;
  return add_node(NodeKind::ConvolutionWeightGradient, {grad_output.id, input.id}, {tg.dtype, weight_shape}, attrs);
}

// --- pooling ---------------------------------------------------------------------------
int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation, bool ceil_mode) {
  int64_t span = in + 2 * padding - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int64_t out = (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;  // floor division
  if (ceil_mode && (out - 1) * stride >= in + padding) --out;
  return out;
}

PoolParams pool_params(const Node& n) {
  return {n.ints_attr("kernel"), n.ints_attr("stride"), n.ints_attr("padding"), n.ints_attr("dilation"),
          n.int_attr("ceil_mode") != 0};
}

namespace {
Attrs pool_attrs(const PoolParams& p) {
  return {{"kernel", p.kernel}, {"stride", p.stride}, {"padding", p.padding}, {"dilation", p.dilation},
          {"ceil_mode", int64_t{p.ceil_mode ? 1 : 0}}};
}

// Checks the parameters against data of `shape`; returns the pooled shape.
Shape pool_output_shape(const Shape& shape, const PoolParams& p, const char* what) {
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

const TensorType& floating_input(const Graph& g, Tensor t, const char* what) {
  const TensorType& ty = g.type(t);
  if (!is_floating(ty.dtype)) fail(std::string(what) + ": expects a floating-point tensor, got " + dtype_name(ty.dtype));
  return ty;
}

Attrs avg_attrs(const PoolParams& p, bool count_include_pad, int64_t divisor_override, const char* what) {
  for (int64_t d : p.dilation)
    if (d != 1) fail(std::string(what) + ": average pooling has no dilation");
  if (divisor_override < 0) fail(std::string(what) + ": divisor_override must be positive (0: none)");
  Attrs a = pool_attrs(p);
  a["count_include_pad"] = int64_t{count_include_pad ? 1 : 0};
  a["divisor_override"] = divisor_override;
  return a;
}
}  // namespace

Tensor Graph::max_pool(Tensor x, const PoolParams& p) {
  const TensorType& t = floating_input(*this, x, "max_pool");
  Shape out = pool_output_shape(t.shape, p, "max_pool");
  return add_node(NodeKind::MaxPool, {x.id}, {t.dtype, out}, pool_attrs(p));
}

Tensor Graph::max_pool_indices(Tensor x, const PoolParams& p) {
  const TensorType& t = floating_input(*this, x, "max_pool_indices");
  Shape out = pool_output_shape(t.shape, p, "max_pool_indices");
  return add_node(NodeKind::MaxPoolIndices, {x.id}, {DType::Int64, out}, pool_attrs(p));
}

Tensor Graph::max_pool_gradient(Tensor grad_output, Tensor indices, Shape input_shape, const PoolParams& p) {
  const char* what = "max_pool_gradient";
  const TensorType& tg = floating_input(*this, grad_output, what);
  const TensorType& ti = checked(indices, what).type;
  if (ti.dtype != DType::Int64) fail(std::string(what) + ": indices must be int64");
  Shape out = pool_output_shape(input_shape, p, what);
  if (tg.shape != out || ti.shape != out)
    fail(std::string(what) + ": grad_output " + shape_str(tg.shape) + " and indices " + shape_str(ti.shape) +
         " must have the pooled shape " + shape_str(out) + " of an input " + shape_str(input_shape));
  Attrs attrs = pool_attrs(p);
  attrs["input_shape"] = input_shape;
  return add_node(NodeKind::MaxPoolGradient, {grad_output.id, indices.id}, {tg.dtype, input_shape}, attrs);
}

Tensor Graph::avg_pool(Tensor x, const PoolParams& p, bool count_include_pad, int64_t divisor_override) {
  const TensorType& t = floating_input(*this, x, "avg_pool");
  Attrs attrs = avg_attrs(p, count_include_pad, divisor_override, "avg_pool");
  Shape out = pool_output_shape(t.shape, p, "avg_pool");
  return add_node(NodeKind::AvgPool, {x.id}, {t.dtype, out}, attrs);
}

Tensor Graph::avg_pool_gradient(Tensor grad_output, Tensor x, const PoolParams& p, bool count_include_pad,
                                int64_t divisor_override) {
  const char* what = "avg_pool_gradient";
  const TensorType& tg = floating_input(*this, grad_output, what);
  const TensorType& tx = floating_input(*this, x, what);
  if (tg.dtype != tx.dtype) fail(std::string(what) + ": operand dtypes differ");
  Attrs attrs = avg_attrs(p, count_include_pad, divisor_override, what);
  Shape out = pool_output_shape(tx.shape, p, what);
  if (tg.shape != out)
    fail(std::string(what) + ": grad_output " + shape_str(tg.shape) + " must have the pooled shape " + shape_str(out));
  return add_node(NodeKind::AvgPoolGradient, {grad_output.id, x.id}, tx, attrs);
}

Tensor Graph::kernel(const std::string& name, const std::vector<Tensor>& inputs, Attrs attrs,
                     const Decomposition& decomposition) {
  if (name.empty()) fail("kernel: needs a name");
  auto sub = std::make_shared<Graph>();
  std::vector<Tensor> sub_inputs;
  std::vector<int> ids;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TensorType& t = checked(inputs[i], "kernel").type;
    sub_inputs.push_back(sub->placeholder(t, "in" + std::to_string(i)));
    ids.push_back(inputs[i].id);
  }
  Tensor result = decomposition(*sub, sub_inputs);
  sub->output(result);
  TensorType type = sub->type(result);
  attrs["kernel"] = name;
  attrs["decomposition"] = static_cast<int64_t>(subgraphs_.size());
  subgraphs_.push_back(std::move(sub));
  return add_node(NodeKind::Kernel, std::move(ids), std::move(type), std::move(attrs));
}

const Graph& Graph::decomposition(const Node& n) const {
  if (n.kind != NodeKind::Kernel) fail("decomposition: not a kernel node");
  return *subgraphs_.at(static_cast<size_t>(n.int_attr("decomposition")));
}

Graph Graph::inline_kernels(const std::function<bool(const std::string&)>& keep) const {
  Graph g;
  // Copies `src`'s nodes into g; `bound` gives the ids its inputs map to
  // (empty: src's own inputs become g's inputs). Returns src's id map.
  std::function<std::vector<int>(const Graph&, const std::vector<int>*)> copy =
      [&](const Graph& src, const std::vector<int>* bound) {
        std::vector<int> id(src.nodes_.size(), -1);
        for (size_t i = 0; i < src.nodes_.size(); ++i) {
          Node n = src.nodes_[i];
          if (bound && is_input(n.kind)) {
            id[i] = (*bound)[n.int_attr("index")];
            continue;
          }
          for (int& in : n.inputs) in = id[in];
          if (n.kind == NodeKind::Kernel) {
            const Graph& sub = src.decomposition(n);
            if (!keep(n.str_attr("kernel"))) {
              std::vector<int> sub_id = copy(sub, &n.inputs);
              id[i] = sub_id[sub.outputs_.at(0)];
              continue;
            }
            n.attrs["decomposition"] = static_cast<int64_t>(g.subgraphs_.size());
            g.subgraphs_.push_back(src.subgraphs_.at(static_cast<size_t>(src.nodes_[i].int_attr("decomposition"))));
          }
          bool input = is_input(n.kind);
          g.nodes_.push_back(std::move(n));
          id[i] = static_cast<int>(g.nodes_.size()) - 1;
          if (input) g.inputs_.push_back(id[i]);
        }
        return id;
      };
  std::vector<int> id = copy(*this, nullptr);
  for (int o : outputs_) g.outputs_.push_back(id[o]);
  return g;
}

Graph Graph::with_input_shapes(const std::vector<Shape>& shapes) const {
  if (static_cast<int>(shapes.size()) != num_inputs())
    fail("with_input_shapes: the graph has " + std::to_string(num_inputs()) + " inputs, got " +
         std::to_string(shapes.size()) + " shapes");
  Graph g;
  for (const Node& n : nodes_) {
    auto in = [&](size_t i) { return Tensor{n.inputs.at(i)}; };
    switch (n.kind) {
      case NodeKind::Placeholder:
      case NodeKind::Variable: {
        const Shape& s = shapes[n.int_attr("index")];
        const Shape& declared = n.type.shape;
        bool fits = s.size() == declared.size();
        for (size_t d = 0; fits && d < s.size(); ++d) fits = declared[d] == kDynamic || declared[d] == s[d];
        if (!fits) fail("input '" + n.name + "' has shape " + shape_str(s) + ", the graph expects " + shape_str(declared));
        if (n.kind == NodeKind::Placeholder) g.placeholder(s, n.type.dtype, n.name);
        else g.variable(s, n.type.dtype, n.name);
        break;
      }
      case NodeKind::Constant: g.constant(n.float_attr("value"), n.type.dtype, n.type.shape); break;
      case NodeKind::Assign: g.assign(in(0), in(1)); break;
      case NodeKind::Cast: g.cast(in(0), n.type.dtype); break;
      case NodeKind::Reshape: g.reshape(in(0), n.ints_attr("shape")); break;
      case NodeKind::Transpose: g.transpose(in(0), n.ints_attr("perm")); break;
      case NodeKind::Slice: g.slice(in(0), n.ints_attr("starts"), n.ints_attr("ends"), n.ints_attr("strides")); break;
      case NodeKind::SliceUpdate:
        if (n.inputs.size() == 3) g.slice_update_at(in(0), in(1), in(2));
        else g.slice_update(in(0), in(1), n.ints_attr("starts"), n.ints_attr("ends"), n.ints_attr("strides"));
        break;
      case NodeKind::Kernel: {
        // The decomposition, re-inferred for the new shapes, gives the type.
        std::vector<Shape> sub_shapes;
        for (int id : n.inputs) sub_shapes.push_back(g.nodes_[id].type.shape);
        auto sub = std::make_shared<Graph>(decomposition(n).with_input_shapes(sub_shapes));
        Attrs attrs = n.attrs;
        attrs["decomposition"] = static_cast<int64_t>(g.subgraphs_.size());
        TensorType type = sub->type(Tensor{sub->outputs_.at(0)});
        g.subgraphs_.push_back(std::move(sub));
        g.add_node(NodeKind::Kernel, n.inputs, std::move(type), std::move(attrs));
        break;
      }
      case NodeKind::Concat: {
        std::vector<Tensor> xs;
        for (size_t i = 0; i < n.inputs.size(); ++i) xs.push_back(in(i));
        g.concat(xs, n.int_attr("axis"));
        break;
      }
      case NodeKind::Broadcast: g.broadcast(in(0), n.ints_attr("shape")); break;
      case NodeKind::Select: g.select(in(0), in(1), in(2)); break;
      case NodeKind::Softmax: g.softmax(in(0), n.int_attr("axis")); break;
      case NodeKind::MatMul: g.matmul(in(0), in(1)); break;
      case NodeKind::RandomUniform: g.random_uniform(in(0), n.ints_attr("shape")); break;
      case NodeKind::Iota: g.iota(n.ints_attr("shape"), n.int_attr("axis"), n.type.dtype); break;
      case NodeKind::Dequantize: g.dequantize(in(0), in(1), in(2), dtype_from_name(n.str_attr("dtype"))); break;
      case NodeKind::DequantizeLUT: g.dequantize_lut(in(0), in(1)); break;
      case NodeKind::ScaledDotProductAttention:
        g.scaled_dot_product_attention(in(0), in(1), in(2),
                                       n.int_attr("has_mask") ? std::optional<Tensor>(in(3)) : std::nullopt,
                                       n.float_attr("scale"), causal(n));
        break;
      case NodeKind::FFT: g.fft(in(0), n.ints_attr("axes"), n.int_attr("inverse") != 0, n.str_attr("norm")); break;
      case NodeKind::RFFT: g.rfft(in(0), n.ints_attr("axes"), n.str_attr("norm")); break;
      case NodeKind::IRFFT:
        g.irfft(in(0), n.ints_attr("axes"), n.str_attr("norm"), n.int_attr("last_dim_size"));
        break;
      case NodeKind::Convolution: g.convolution(in(0), in(1), conv_params(n)); break;
      case NodeKind::ConvolutionDataGradient:
        g.convolution_data_gradient(in(0), in(1), n.ints_attr("input_shape"), conv_params(n));
        break;
      case NodeKind::ConvolutionWeightGradient:
        g.convolution_weight_gradient(in(0), in(1), n.ints_attr("weight_shape"), conv_params(n));
        break;
      case NodeKind::MaxPool: g.max_pool(in(0), pool_params(n)); break;
      case NodeKind::MaxPoolIndices: g.max_pool_indices(in(0), pool_params(n)); break;
      case NodeKind::MaxPoolGradient: g.max_pool_gradient(in(0), in(1), n.ints_attr("input_shape"), pool_params(n)); break;
      case NodeKind::AvgPool:
        g.avg_pool(in(0), pool_params(n), n.int_attr("count_include_pad") != 0, n.int_attr("divisor_override"));
        break;
      case NodeKind::AvgPoolGradient:
        g.avg_pool_gradient(in(0), in(1), pool_params(n), n.int_attr("count_include_pad") != 0,
                            n.int_attr("divisor_override"));
        break;
      default:
        if (is_unary(n.kind)) g.unary(n.kind, in(0));
        else if (is_binary(n.kind)) g.binary(n.kind, in(0), in(1));
        else if (is_reduce(n.kind)) g.reduce(n.kind, in(0), n.ints_attr("axes"));
        else fail(std::string("with_input_shapes: unhandled node kind ") + kind_name(n.kind));
    }
  }
  g.outputs_ = outputs_;
  return g;
}

}  // namespace mps_ext::graph
