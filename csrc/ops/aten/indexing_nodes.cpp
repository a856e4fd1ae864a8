// The indexing and sorting node kinds (GatherAlongAxis, ScatterAlongAxis,
// Gather, Scatter, ArgSort): their spec and their ATen evaluation. ATen's ops
// check every index against the axis size. Semantics: graph.h.
#include "graph/node_spec.h"
#include "runtime/reference/node_eval.h"

namespace mps_ext::ops::aten {
namespace {
using namespace graph;
using Types = std::vector<TensorType>;

void check_index(const TensorType& t, const char* what) {
  if (t.dtype != DType::Int32 && t.dtype != DType::Int64)
    fail(std::string(what) + ": index must be int32 or int64, got " + dtype_name(t.dtype));
}

// The scatter modes the IR knows (MPSGraphScatterMode's set/add/mul/max/min).
const std::string& scatter_mode(const Attrs& a, const char* what, bool slices) {
  const std::string& mode = str_attr(a, "mode", what);
  bool ok = mode == "set" || mode == "add" || (!slices && (mode == "mul" || mode == "max" || mode == "min"));
  if (!ok)
    fail(std::string(what) + ": mode must be " + (slices ? "\"set\" or \"add\"" : "\"set\", \"add\", \"mul\", \"max\" or \"min\"") +
         ", got \"" + mode + "\"");
  return mode;
}

// `a` and `b` agree on every dim but `axis` (dynamic matches anything).
void check_same_except(const Shape& a, const Shape& b, int64_t axis, const char* what, const char* names) {
  bool ok = a.size() == b.size();
  for (size_t d = 0; ok && d < a.size(); ++d)
    ok = static_cast<int64_t>(d) == axis || a[d] == b[d] || a[d] == kDynamic || b[d] == kDynamic;
  if (!ok)
    fail(std::string(what) + ": " + names + " shapes " + shape_str(a) + " and " + shape_str(b) +
         " must agree except along axis " + std::to_string(axis));
}

int64_t axis_of(const TensorType& t, Attrs& a, const char* what) {
  if (t.rank() < 1) fail(std::string(what) + ": expects a tensor of rank >= 1");
  int64_t axis = normalize_axis(int_attr(a, "axis", what), t.rank(), what);
  a["axis"] = axis;
  return axis;
}

// (x, index); attrs: axis.
TensorType infer_gather_along_axis(NodeKind, const Types& in, Attrs& a) {
  const char* what = "gather_along_axis";
  check_index(in[1], what);
  int64_t axis = axis_of(in[0], a, what);
  check_same_except(in[0].shape, in[1].shape, axis, what, "x and index");
  return {in[0].dtype, in[1].shape};
}

// (data, updates, index); attrs: axis, mode.
TensorType infer_scatter_along_axis(NodeKind, const Types& in, Attrs& a) {
  const char* what = "scatter_along_axis";
  check_index(in[2], what);
  scatter_mode(a, what, false);
  if (in[1].dtype != in[0].dtype) fail(std::string(what) + ": updates dtype must match data dtype");
  int64_t axis = axis_of(in[0], a, what);
  if (in[1].shape != in[2].shape)
    fail(std::string(what) + ": updates " + shape_str(in[1].shape) + " and index " + shape_str(in[2].shape) +
         " must have one shape");
  check_same_except(in[0].shape, in[2].shape, axis, what, "data and index");
  return in[0];
}

// (x, index [K]); attrs: axis.
TensorType infer_gather(NodeKind, const Types& in, Attrs& a) {
  check_index(in[1], "gather");
  if (in[1].rank() != 1) fail("gather: index must have rank 1, got " + shape_str(in[1].shape));
  int64_t axis = axis_of(in[0], a, "gather");
  Shape out = in[0].shape;
  out[axis] = in[1].shape[0];
  return {in[0].dtype, out};
}

// (data, updates, index [K]); attrs: axis, mode.
TensorType infer_scatter(NodeKind, const Types& in, Attrs& a) {
  check_index(in[2], "scatter");
  scatter_mode(a, "scatter", true);
  if (in[2].rank() != 1) fail("scatter: index must have rank 1, got " + shape_str(in[2].shape));
  if (in[1].dtype != in[0].dtype) fail("scatter: updates dtype must match data dtype");
  int64_t axis = axis_of(in[0], a, "scatter");
  check_same_except(in[0].shape, in[1].shape, axis, "scatter", "data and updates");
  int64_t k = in[2].shape[0], u = in[1].shape[axis];
  if (u != k && u != kDynamic && k != kDynamic)
    fail("scatter: updates " + shape_str(in[1].shape) + " must have the index's " + std::to_string(k) +
         " entries along axis " + std::to_string(axis));
  return in[0];
}

// (x); attrs: axis, descending (0/1, default 0).
TensorType infer_arg_sort(NodeKind, const Types& in, Attrs& a) {
  if (is_complex(in[0].dtype)) fail("arg_sort: complex tensors have no order");
  a["axis"] = normalize_axis(int_attr(a, "axis", "arg_sort"), in[0].rank(), "arg_sort");
  a["descending"] = int64_t{a.count("descending") && int_attr(a, "descending", "arg_sort") ? 1 : 0};
  return {DType::Int64, in[0].shape};
}

at::Tensor eval_gather_along_axis(const Node& n, const std::vector<at::Tensor>& a) {
  return at::gather(a[0], n.int_attr("axis"), a[1].to(at::kLong));
}

at::Tensor eval_scatter_along_axis(const Node& n, const std::vector<at::Tensor>& a) {
  const std::string& mode = n.str_attr("mode");
  int64_t axis = n.int_attr("axis");
  at::Tensor index = a[2].to(at::kLong);
  if (mode == "set") return at::scatter(a[0], axis, index, a[1]);
  const char* reduce = mode == "add" ? "sum" : mode == "mul" ? "prod" : mode == "max" ? "amax" : "amin";
  return at::scatter_reduce(a[0], axis, index, a[1], reduce, /*include_self=*/true);
}

at::Tensor eval_gather(const Node& n, const std::vector<at::Tensor>& a) {
  return at::index_select(a[0], n.int_attr("axis"), a[1]);
}

at::Tensor eval_scatter(const Node& n, const std::vector<at::Tensor>& a) {
  int64_t axis = n.int_attr("axis");
  at::Tensor index = a[2].to(at::kLong);
  return n.str_attr("mode") == "add" ? at::index_add(a[0], axis, index, a[1]) : at::index_copy(a[0], axis, index, a[1]);
}

at::Tensor eval_arg_sort(const Node& n, const std::vector<at::Tensor>& a) {
  return std::get<1>(at::sort(a[0], /*stable=*/true, n.int_attr("axis"), n.int_attr("descending") != 0));
}
}  // namespace

MPS_EXT_NODE_SPEC(GatherAlongAxis, {infer_gather_along_axis, 2, 2});
MPS_EXT_NODE_SPEC(ScatterAlongAxis, {infer_scatter_along_axis, 3, 3});
MPS_EXT_NODE_SPEC(Gather, {infer_gather, 2, 2});
MPS_EXT_NODE_SPEC(Scatter, {infer_scatter, 3, 3});
MPS_EXT_NODE_SPEC(ArgSort, {infer_arg_sort, 1, 1});
MPS_EXT_NODE_EVAL(GatherAlongAxis, eval_gather_along_axis);
MPS_EXT_NODE_EVAL(ScatterAlongAxis, eval_scatter_along_axis);
MPS_EXT_NODE_EVAL(Gather, eval_gather);
MPS_EXT_NODE_EVAL(Scatter, eval_scatter);
MPS_EXT_NODE_EVAL(ArgSort, eval_arg_sort);

}  // namespace mps_ext::ops::aten
