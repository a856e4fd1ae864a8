// The specs of the core node kinds: sources, data movement, elementwise,
// reductions, matmul, iota, random. Family kinds (dequantize, attention, FFT,
// convolution) register theirs in csrc/ops/<family>/.
#include <algorithm>
#include <array>

#include "graph/node_spec.h"

namespace mps_ext::graph {

namespace {
std::array<NodeSpec, kNumNodeKinds>& specs() {
  static std::array<NodeSpec, kNumNodeKinds> table{};
  return table;
}
}  // namespace

const NodeSpec* find_node_spec(NodeKind kind) {
  const NodeSpec& s = specs().at(static_cast<size_t>(kind));
  return s.infer ? &s : nullptr;
}

bool register_node_spec(NodeKind kind, NodeSpec spec) {
  specs().at(static_cast<size_t>(kind)) = spec;
  return true;
}

void fail(const std::string& message) { throw GraphError(message); }

int64_t normalize_axis(int64_t axis, int64_t rank, const char* what) {
  int64_t r = std::max<int64_t>(rank, 1);
  if (axis < -r || axis >= r)
    fail(std::string(what) + ": axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
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

bool broadcasts_into(const Shape& s, const Shape& target) {
  if (s.size() > target.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    int64_t d = s[i], t = target[target.size() - s.size() + i];
    if (!(d == 1 || d == t || d == kDynamic || t == kDynamic)) return false;
  }
  return true;
}

bool is_complex(DType t) { return t == DType::Complex64 || t == DType::Complex128; }

namespace {
template <typename T>
const T& get(const Attrs& a, std::string_view key, const char* what) {
  auto it = a.find(key);
  if (it == a.end() || !std::holds_alternative<T>(it->second))
    fail(std::string(what) + " node has no attribute '" + std::string(key) + "'");
  return std::get<T>(it->second);
}
}  // namespace

int64_t int_attr(const Attrs& a, std::string_view key, const char* what) { return get<int64_t>(a, key, what); }
double float_attr(const Attrs& a, std::string_view key, const char* what) {
  auto it = a.find(key);  // an integral value is accepted where a float is expected
  if (it != a.end() && std::holds_alternative<int64_t>(it->second)) return static_cast<double>(std::get<int64_t>(it->second));
  return get<double>(a, key, what);
}
const std::vector<int64_t>& ints_attr(const Attrs& a, std::string_view key, const char* what) {
  return get<std::vector<int64_t>>(a, key, what);
}
const std::string& str_attr(const Attrs& a, std::string_view key, const char* what) {
  return get<std::string>(a, key, what);
}
DType dtype_attr(const Attrs& a, const char* what) { return dtype_from_name(str_attr(a, "dtype", what)); }

namespace {
using Types = std::vector<TensorType>;

// --- sources and state --------------------------------------------------------
TensorType infer_input(NodeKind kind, const Types&, Attrs&) {
  fail(std::string(kind_name(kind)) + " nodes are made by Graph::placeholder/variable, not apply()");
}

TensorType infer_constant(NodeKind, const Types&, Attrs& a) {
  float_attr(a, "value", "constant");
  return {dtype_attr(a, "constant"), ints_attr(a, "shape", "constant")};
}

// The target is a variable node: Graph::apply checks that (it sees nodes).
TensorType infer_assign(NodeKind, const Types& in, Attrs&) {
  if (in[1].dtype != in[0].dtype)
    fail(std::string("assign: value dtype ") + dtype_name(in[1].dtype) + " does not match variable dtype " +
         dtype_name(in[0].dtype));
  return in[0];
}

// --- data movement ------------------------------------------------------------
TensorType infer_cast(NodeKind, const Types& in, Attrs& a) { return {dtype_attr(a, "cast"), in[0].shape}; }

TensorType infer_reshape(NodeKind, const Types& in, Attrs& a) {
  const Shape& shape = ints_attr(a, "shape", "reshape");
  if (std::count(shape.begin(), shape.end(), kDynamic) > 1)
    fail("reshape: at most one dimension of " + shape_str(shape) + " may be -1");
  int64_t n_in = numel_if_static(in[0].shape), n_out = numel_if_static(shape);
  if (n_in != kDynamic && n_out != kDynamic && n_in != n_out)
    fail("reshape: cannot reshape " + shape_str(in[0].shape) + " to " + shape_str(shape));
  return {in[0].dtype, shape};
}

TensorType infer_transpose(NodeKind, const Types& in, Attrs& a) {
  const TensorType& t = in[0];
  std::vector<int64_t> perm = ints_attr(a, "perm", "transpose");
  if (static_cast<int64_t>(perm.size()) != t.rank())
    fail("transpose: permutation " + shape_str(perm) + " does not match rank " + std::to_string(t.rank()));
  Shape out(perm.size());
  std::vector<bool> seen(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) {
    int64_t p = normalize_axis(perm[i], t.rank(), "transpose");
    if (seen[p]) fail("transpose: permutation " + shape_str(perm) + " repeats an axis");
    seen[p] = true;
    perm[i] = p;
    out[i] = t.shape[p];
  }
  a["perm"] = perm;
  return {t.dtype, out};
}

// Static result length of start:end:stride on a dim (dynamic stays dynamic).
int64_t slice_len(int64_t dim, int64_t start, int64_t end, int64_t stride) {
  if (stride <= 0) fail("slice: strides must be positive");
  if (dim == kDynamic) return kDynamic;
  auto clamp = [dim](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + dim : v, 0, dim); };
  int64_t s = clamp(start), e = clamp(end);
  return e > s ? (e - s + stride - 1) / stride : 0;
}

Shape sliced_shape(const TensorType& t, const Attrs& a, const char* what) {
  const auto& starts = ints_attr(a, "starts", what);
  const auto& ends = ints_attr(a, "ends", what);
  const auto& strides = ints_attr(a, "strides", what);
  if (starts.size() != t.shape.size() || ends.size() != t.shape.size() || strides.size() != t.shape.size())
    fail(std::string(what) + ": starts/ends/strides must have one entry per dimension (rank " +
         std::to_string(t.rank()) + ")");
  Shape out(t.shape.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = slice_len(t.shape[i], starts[i], ends[i], strides[i]);
  return out;
}

TensorType infer_slice(NodeKind, const Types& in, Attrs& a) { return {in[0].dtype, sliced_shape(in[0], a, "slice")}; }

// (data, update) with static starts/ends/strides attrs, or (data, update,
// starts) with an int64 [rank] starts tensor and update's shape as the region.
TensorType infer_slice_update(NodeKind, const Types& in, Attrs& a) {
  const TensorType &t = in[0], &u = in[1];
  if (u.dtype != t.dtype) fail("slice_update: update dtype must match data dtype");
  if (in.size() == 2) {
    broadcast_shapes(sliced_shape(t, a, "slice_update"), u.shape);  // update must broadcast into the region
    return t;
  }
  const TensorType& st = in[2];
  if (u.rank() != t.rank()) fail("slice_update_at: update must have data's rank " + std::to_string(t.rank()));
  for (int64_t d = 0; d < t.rank(); ++d)
    if (u.shape[d] != kDynamic && t.shape[d] != kDynamic && u.shape[d] > t.shape[d])
      fail("slice_update_at: update " + shape_str(u.shape) + " does not fit in data " + shape_str(t.shape));
  if (st.dtype != DType::Int64 || st.rank() != 1 || (st.shape[0] != kDynamic && st.shape[0] != t.rank()))
    fail("slice_update_at: starts must be an int64 tensor of shape [" + std::to_string(t.rank()) + "]");
  return t;
}

TensorType infer_concat(NodeKind, const Types& in, Attrs& a) {
  TensorType out = in[0];
  int64_t axis = normalize_axis(int_attr(a, "axis", "concat"), out.rank(), "concat");
  a["axis"] = axis;
  for (size_t i = 1; i < in.size(); ++i) {
    const TensorType& t = in[i];
    if (t.dtype != out.dtype || t.rank() != out.rank()) fail("concat: tensors differ in dtype or rank");
    for (int64_t d = 0; d < t.rank(); ++d) {
      if (d == axis) {
        out.shape[d] = (out.shape[d] == kDynamic || t.shape[d] == kDynamic) ? kDynamic : out.shape[d] + t.shape[d];
      } else if (t.shape[d] != out.shape[d] && t.shape[d] != kDynamic && out.shape[d] != kDynamic) {
        fail("concat: shapes " + shape_str(out.shape) + " and " + shape_str(t.shape) + " differ outside axis " +
             std::to_string(axis));
      }
    }
  }
  return out;
}

TensorType infer_broadcast(NodeKind, const Types& in, Attrs& a) {
  const Shape& shape = ints_attr(a, "shape", "broadcast");
  if (broadcast_shapes(in[0].shape, shape).size() != shape.size())
    fail("broadcast: cannot broadcast " + shape_str(in[0].shape) + " to " + shape_str(shape));
  return {in[0].dtype, shape};
}

// --- elementwise ----------------------------------------------------------------
TensorType infer_unary(NodeKind kind, const Types& in, Attrs&) {
  TensorType t = in[0];
  if (kind == NodeKind::LogicalNot && t.dtype != DType::Bool) fail("logical_not: expects a bool tensor");
  if (kind == NodeKind::IsNaN) t.dtype = DType::Bool;
  if (kind == NodeKind::BitwiseNot && (is_floating(t.dtype) || is_complex(t.dtype)))
    fail("bitwise_not: expects an integer or bool tensor");
  return t;
}

TensorType infer_binary(NodeKind kind, const Types& in, Attrs&) {
  const TensorType &ta = in[0], &tb = in[1];
  // No implicit promotion: op builders cast explicitly, as MPSGraph requires.
  if (ta.dtype != tb.dtype)
    fail(std::string(kind_name(kind)) + ": operand dtypes differ (" + dtype_name(ta.dtype) + " vs " +
         dtype_name(tb.dtype) + ")");
  bool logical = kind == NodeKind::LogicalAnd || kind == NodeKind::LogicalOr;
  if (logical && ta.dtype != DType::Bool) fail(std::string(kind_name(kind)) + ": expects bool tensors");
  // Bit ops take integers or bools; shifts, floor_divide and remainder integers only.
  bool bitwise = kind == NodeKind::BitwiseAnd || kind == NodeKind::BitwiseOr || kind == NodeKind::BitwiseXor;
  bool integer_only = kind == NodeKind::LeftShift || kind == NodeKind::RightShift || kind == NodeKind::FloorDivide ||
                      kind == NodeKind::Remainder;
  bool integral = !is_floating(ta.dtype) && !is_complex(ta.dtype);
  if ((bitwise && !integral) || (integer_only && (!integral || ta.dtype == DType::Bool)))
    fail(std::string(kind_name(kind)) + ": expects integer" + (bitwise ? " or bool" : "") + " tensors, got " +
         dtype_name(ta.dtype));
  return {is_compare(kind) ? DType::Bool : ta.dtype, broadcast_shapes(ta.shape, tb.shape)};
}

TensorType infer_select(NodeKind, const Types& in, Attrs&) {
  const TensorType &p = in[0], &t = in[1], &f = in[2];
  if (p.dtype != DType::Bool) fail("select: predicate must be bool");
  if (t.dtype != f.dtype) fail("select: branch dtypes differ");
  return {t.dtype, broadcast_shapes(p.shape, broadcast_shapes(t.shape, f.shape))};
}

// --- reductions and the rest ------------------------------------------------------
TensorType infer_reduce(NodeKind kind, const Types& in, Attrs& a) {
  TensorType t = in[0];
  std::vector<int64_t> axes = ints_attr(a, "axes", kind_name(kind));
  // MPSGraph reductions keep reduced dims with size 1.
  for (int64_t& ax : axes) {
    ax = normalize_axis(ax, t.rank(), kind_name(kind));
    if (t.rank() > 0) t.shape[ax] = 1;
  }
  a["axes"] = axes;
  return t;
}

TensorType infer_softmax(NodeKind, const Types& in, Attrs& a) {
  if (!is_floating(in[0].dtype)) fail("softmax: expects a floating-point tensor");
  a["axis"] = normalize_axis(int_attr(a, "axis", "softmax"), in[0].rank(), "softmax");
  return in[0];
}

TensorType infer_matmul(NodeKind, const Types& in, Attrs&) {
  const TensorType &ta = in[0], &tb = in[1];
  if (ta.rank() < 2 || tb.rank() < 2) fail("matmul: operands must have rank >= 2");
  if (ta.dtype != tb.dtype) fail("matmul: operand dtypes differ");
  int64_t k1 = ta.shape.back(), k2 = tb.shape[tb.rank() - 2];
  if (k1 != k2 && k1 != kDynamic && k2 != kDynamic)
    fail("matmul: inner dimensions differ (" + shape_str(ta.shape) + " @ " + shape_str(tb.shape) + ")");
  Shape out = broadcast_shapes(Shape(ta.shape.begin(), ta.shape.end() - 2), Shape(tb.shape.begin(), tb.shape.end() - 2));
  out.push_back(ta.shape[ta.rank() - 2]);
  out.push_back(tb.shape.back());
  return {ta.dtype, out};
}

TensorType infer_iota(NodeKind, const Types&, Attrs& a) {
  const Shape& shape = ints_attr(a, "shape", "iota");
  DType dtype = dtype_attr(a, "iota");
  if (numel_if_static(shape) == kDynamic) fail("iota: shape " + shape_str(shape) + " must be static");
  if (dtype != DType::Int32 && dtype != DType::Int64) fail("iota: dtype must be int32 or int64");
  a["axis"] = normalize_axis(int_attr(a, "axis", "iota"), static_cast<int64_t>(shape.size()), "iota");
  return {dtype, shape};
}

TensorType infer_random_uniform(NodeKind, const Types& in, Attrs& a) {
  const Shape& shape = ints_attr(a, "shape", "random_uniform");
  if (in[0].dtype != DType::Int32 || in[0].shape != Shape{7})
    fail("random_uniform: state must be an int32 tensor of shape [7]");
  if (numel_if_static(shape) == kDynamic) fail("random_uniform: shape " + shape_str(shape) + " must be static");
  return {DType::Float32, shape};
}

// Kernel nodes take their type from their decomposition (Graph::kernel).
TensorType infer_kernel(NodeKind, const Types&, Attrs&) {
  fail("kernel nodes are made by Graph::kernel, not apply()");
}
}  // namespace

MPS_EXT_NODE_SPEC(Placeholder, {infer_input, 0, 0});
MPS_EXT_NODE_SPEC(Variable, {infer_input, 0, 0});
MPS_EXT_NODE_SPEC(Constant, {infer_constant, 0, 0});
MPS_EXT_NODE_SPEC(Assign, {infer_assign, 2, 2});
MPS_EXT_NODE_SPEC(Cast, {infer_cast, 1, 1});
MPS_EXT_NODE_SPEC(Reshape, {infer_reshape, 1, 1});
MPS_EXT_NODE_SPEC(Transpose, {infer_transpose, 1, 1});
MPS_EXT_NODE_SPEC(Slice, {infer_slice, 1, 1});
MPS_EXT_NODE_SPEC(SliceUpdate, {infer_slice_update, 2, 3});
MPS_EXT_NODE_SPEC(Concat, {infer_concat, 1, -1});
MPS_EXT_NODE_SPEC(Broadcast, {infer_broadcast, 1, 1});
#define MPS_EXT_NODE(kind, name)
#define MPS_EXT_UNARY(kind, name) MPS_EXT_NODE_SPEC(kind, {infer_unary, 1, 1});
#define MPS_EXT_BINARY(kind, name) MPS_EXT_NODE_SPEC(kind, {infer_binary, 2, 2});
#define MPS_EXT_REDUCE(kind, name) MPS_EXT_NODE_SPEC(kind, {infer_reduce, 1, 1});
#include "graph/node_kinds.def"
MPS_EXT_NODE_SPEC(Select, {infer_select, 3, 3});
MPS_EXT_NODE_SPEC(Softmax, {infer_softmax, 1, 1});
MPS_EXT_NODE_SPEC(MatMul, {infer_matmul, 2, 2});
MPS_EXT_NODE_SPEC(Iota, {infer_iota, 0, 0});
MPS_EXT_NODE_SPEC(RandomUniform, {infer_random_uniform, 1, 1});
MPS_EXT_NODE_SPEC(Kernel, {infer_kernel, 0, -1});

}  // namespace mps_ext::graph
