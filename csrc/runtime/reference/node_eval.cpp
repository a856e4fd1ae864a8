// Node-by-node evaluation with ATen of the core node kinds: the semantics
// every runtime must match (family kinds register theirs in csrc/ops/).
#include "runtime/reference/node_eval.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/_local_scalar_dense_native.h>
#include <ATen/ops/amax_cpu_dispatch.h>
#include <ATen/ops/amin_cpu_dispatch.h>
#include <ATen/ops/bmm_cpu_dispatch.h>
#include <ATen/ops/cat_cpu_dispatch.h>
#include <ATen/ops/mean_cpu_dispatch.h>
#include <ATen/ops/mm_cpu_dispatch.h>
#include <ATen/ops/sum_cpu_dispatch.h>
#include <ATen/ops/view_native.h>

#include <algorithm>
#include <array>

#include "runtime/reference/executor.h"
#include "runtime/reference/gemm.h"
#include "runtime/reference/output_allocator.h"

namespace mps_ext::runtime::reference {
using graph::NodeKind;
using graph::Node;
using Args = std::vector<at::Tensor>;

namespace {
// Per kind: its evaluation, and its evaluation into given memory if it has one.
struct KindEvals {
  NodeEval eval = nullptr;
  NodeEvalInto into = nullptr;
};
KindEvals& evals(NodeKind kind) {
  static std::array<KindEvals, graph::kNumNodeKinds> table{};
  return table.at(static_cast<size_t>(kind));
}
}  // namespace

bool register_node_eval(NodeKind kind, NodeEval eval) {
  evals(kind).eval = eval;
  return true;
}

bool register_node_eval_into(NodeKind kind, NodeEvalInto eval) {
  evals(kind).into = eval;
  return true;
}

bool has_node_eval(NodeKind kind) { return evals(kind).eval != nullptr; }
NodeEvalInto find_node_eval_into(NodeKind kind) { return evals(kind).into; }

namespace {
thread_local uint64_t serial = 0;
}  // namespace

uint64_t evaluation_serial() { return serial; }

at::Tensor eval_node(const Node& n, const Args& a) {
  ++serial;
  NodeEval eval = evals(n.kind).eval;
  TORCH_INTERNAL_ASSERT(eval, "no reference evaluation registered for node kind ", graph::kind_name(n.kind));
  return eval(n, a);
}

at::Tensor slice_update(const graph::Node& n, at::Tensor data, const std::vector<at::Tensor>& a) {
  at::Tensor view = data;
  if (a.size() == 3) {  // dynamic start: the region is the update's shape
    TORCH_CHECK(a[2].is_cpu() && a[2].numel() == data.dim(), "slice_update_at: starts must be ", data.dim(),
                " int64 values on the CPU");
    at::Tensor starts_t = a[2].contiguous();
    const int64_t* starts = starts_t.const_data_ptr<int64_t>();
    for (int64_t d = 0; d < data.dim(); ++d) {
      int64_t len = a[1].size(d);
      TORCH_CHECK(starts[d] >= 0 && starts[d] + len <= data.size(d), "slice_update_at: an update of size ", len,
                  " at ", starts[d], " does not fit in dim ", d, " of size ", data.size(d));
      view = view.narrow(d, starts[d], len);
    }
  } else {
    const auto& starts = n.ints_attr("starts");
    const auto& ends = n.ints_attr("ends");
    const auto& strides = n.ints_attr("strides");
    for (int64_t d = 0; d < view.dim(); ++d) view = view.slice(d, starts[d], ends[d], strides[d]);
  }
  view.copy_(a[1]);
  return data;
}


namespace {
// ATen's view kernel called directly where a view does (no dispatcher round
// trip: reshapes run on nearly every op).
at::Tensor view_or_reshape(const at::Tensor& x, at::IntArrayRef shape) {
  return x.is_contiguous() && x.is_cpu() ? at::native::view(x, shape) : x.reshape(shape);
}

// A kind's plain evaluation where ATen's into-form is the whole of it: the
// same call into fresh memory.
const NewOutput& fresh_memory() {
  static const NewOutput fresh = [](at::IntArrayRef sizes, at::ScalarType dtype) { return empty_output(sizes, dtype); };
  return fresh;
}
template <NodeEvalInto Into>
at::Tensor into_fresh(const Node& n, const Args& a) {
  return Into(n, a, fresh_memory());
}

// Reductions keep the reduced dims (MPSGraph's form).
at::Tensor reduce_into(const Node& n, const Args& a, const NewOutput& new_output) {
  const at::Tensor& x = a[0];
  std::vector<int64_t> axes = x.dim() == 0 ? std::vector<int64_t>{} : n.ints_attr("axes");
  c10::SmallVector<int64_t, 6> shape(x.sizes().begin(), x.sizes().end());
  for (int64_t ax : axes) shape[ax] = 1;
  at::Tensor out = new_output(shape, x.scalar_type());
  switch (n.kind) {
    case NodeKind::ReduceSum: at::cpu::sum_out(out, x, axes, /*keepdim=*/true); break;
    case NodeKind::ReduceMax: at::cpu::amax_out(out, x, axes, true); break;
    case NodeKind::ReduceMin: at::cpu::amin_out(out, x, axes, true); break;
    case NodeKind::ReduceMean: at::cpu::mean_out(out, x, axes, true); break;
    case NodeKind::ReduceProd: {  // ATen's prod takes one dim, or all (its order of products differs)
      at::Tensor r = x;
      if (x.dim() > 1 && static_cast<int64_t>(axes.size()) == x.dim()) r = at::prod(x);
      else
        for (int64_t ax : axes) r = at::prod(r, ax, true);
      out.copy_(r.view(out.sizes()));
      break;
    }
    default: TORCH_INTERNAL_ASSERT(false, "not a reduction: ", graph::kind_name(n.kind));
  }
  return out;
}

// The BLAS call ATen's mm makes (gemm.h), else ATen's 2-D and batched
// kernels directly: at::matmul's shape dispatch costs as much as a small product.
at::Tensor matmul_into(const Node&, const Args& a, const NewOutput& new_output) {
  const at::Tensor &x = a[0], &y = a[1];
  std::vector<int64_t> shape = at::infer_size(x.sizes().slice(0, x.dim() - 2), y.sizes().slice(0, y.dim() - 2));
  shape.push_back(x.size(-2));
  shape.push_back(y.size(-1));
  at::Tensor out = new_output(shape, x.scalar_type());
  if (x.dim() == 2 && y.dim() == 2) {
    if (!gemm_into(out, x, y, nullptr, 1, 0)) at::cpu::mm_out(out, x, y);
  } else if (x.dim() == 3 && y.dim() == 3 && x.size(0) == y.size(0)) at::cpu::bmm_out(out, x, y);
  else at::matmul_out(out, x, y);
  return out;
}

at::Tensor concat_into(const Node& n, const Args& a, const NewOutput& new_output) {
  const int64_t axis = n.int_attr("axis");
  c10::SmallVector<int64_t, 6> shape(a[0].sizes().begin(), a[0].sizes().end());
  shape[axis] = 0;
  for (const at::Tensor& t : a) shape[axis] += t.size(axis);
  at::Tensor out = new_output(shape, a[0].scalar_type());
  at::cpu::cat_out(out, a, axis);
  return out;
}

// One value everywhere (fill_, zeros, full): ATen's fill_ with that value
// (no expanded view, no copy), else a strided copy.
at::Tensor broadcast_into(const Node& n, const Args& a, const NewOutput& new_output) {
  const std::vector<int64_t>& shape = n.ints_attr("shape");
  if (a[0].numel() == 1 && std::all_of(shape.begin(), shape.end(), [](int64_t d) { return d >= 0; })) {
    at::Tensor out = new_output(shape, a[0].scalar_type());
    out.fill_(at::native::_local_scalar_dense_cpu(on_host(a[0])));
    return out;
  }
  at::Tensor value = a[0].expand(shape);
  at::Tensor out = new_output(value.sizes(), value.scalar_type());
  out.copy_(value);
  return out;
}

// Results that are another value's elements in a new layout or dtype.
at::Tensor copy_into(const Node& n, const at::Tensor& value, const NewOutput& new_output) {
  at::Tensor out = new_output(value.sizes(), to_scalar_type(n.type.dtype));
  out.copy_(value);
  return out;
}

at::Tensor eval_slice(const Node& n, const Args& a) {
  const auto& starts = n.ints_attr("starts");
  const auto& ends = n.ints_attr("ends");
  const auto& strides = n.ints_attr("strides");
  at::Tensor view = a[0];
  for (int64_t d = 0; d < view.dim(); ++d) view = view.slice(d, starts[d], ends[d], strides[d]);
  return view;
}

// A stream determined by the state (the reference runtime's stand-in for
// Philox; RNG ops run CPU kernels on the device generator instead).
at::Tensor eval_random_uniform(const Node& n, const Args& a) {
  at::Tensor st = a[0].contiguous();
  const int32_t* s = st.const_data_ptr<int32_t>();
  uint64_t seed = 0;
  for (int i = 0; i < 7; ++i) seed = seed * 1000003u + static_cast<uint32_t>(s[i]);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::rand(n.ints_attr("shape"), gen, at::TensorOptions().dtype(at::kFloat));
}

at::Tensor eval_iota(const Node& n, const Args&) {
  const auto& shape = n.ints_attr("shape");
  int64_t axis = n.int_attr("axis");
  std::vector<int64_t> along(shape.size(), 1);
  along[axis] = shape[axis];
  return at::arange(shape[axis], at::TensorOptions().dtype(to_scalar_type(n.type.dtype))).reshape(along).expand(shape).contiguous();
}

at::Tensor inputs_are_bound(const Node&, const Args&) {
  TORCH_INTERNAL_ASSERT(false, "inputs are bound by the executor");
}
at::Tensor kernels_run_elsewhere(const Node&, const Args&) {
  TORCH_INTERNAL_ASSERT(false, "kernel nodes run through the kernel registry");
}
}  // namespace

#define EVAL(Kind, expr) MPS_EXT_NODE_EVAL(Kind, [](const Node& n, const Args& a) -> at::Tensor { (void)n; (void)a; return expr; })
MPS_EXT_NODE_EVAL(Placeholder, inputs_are_bound);
MPS_EXT_NODE_EVAL(Variable, inputs_are_bound);
MPS_EXT_NODE_EVAL(Kernel, kernels_run_elsewhere);
EVAL(Constant, at::full(n.type.shape, n.float_attr("value"), at::TensorOptions().dtype(to_scalar_type(n.type.dtype))));
EVAL(Assign, a[0].copy_(a[1]));
EVAL(Cast, a[0].to(to_scalar_type(n.type.dtype)));
EVAL(Reshape, view_or_reshape(a[0], n.ints_attr("shape")));
EVAL(Transpose, a[0].permute(n.ints_attr("perm")));
MPS_EXT_NODE_EVAL(Slice, eval_slice);
EVAL(SliceUpdate, slice_update(n, a[0].clone(), a));
EVAL(Concat, at::cat(a, n.int_attr("axis")));
EVAL(Broadcast, a[0].expand(n.ints_attr("shape")));
MPS_EXT_NODE_EVAL_INTO(Broadcast, broadcast_into);
MPS_EXT_NODE_EVAL_INTO(Concat, concat_into);
MPS_EXT_NODE_EVAL_INTO(Cast, [](const Node& n, const Args& a, const NewOutput& out) { return copy_into(n, a[0], out); });
MPS_EXT_NODE_EVAL_INTO(Transpose, [](const Node& n, const Args& a, const NewOutput& out) {
  return copy_into(n, a[0].permute(n.ints_attr("perm")), out);
});
EVAL(Identity, a[0]);
EVAL(Abs, at::abs(a[0]));
EVAL(Negative, at::neg(a[0]));
EVAL(Sign, at::sign(a[0]));
EVAL(Exp, at::exp(a[0]));
EVAL(Log, at::log(a[0]));
EVAL(Sqrt, at::sqrt(a[0]));
EVAL(Rsqrt, at::rsqrt(a[0]));
EVAL(Reciprocal, at::reciprocal(a[0]));
EVAL(Square, at::square(a[0]));
EVAL(Sin, at::sin(a[0]));
EVAL(Cos, at::cos(a[0]));
EVAL(Tanh, at::tanh(a[0]));
EVAL(Sigmoid, at::sigmoid(a[0]));
EVAL(Floor, at::floor(a[0]));
EVAL(Ceil, at::ceil(a[0]));
EVAL(Round, at::round(a[0]));
EVAL(LogicalNot, at::logical_not(a[0]));
EVAL(IsNaN, at::isnan(a[0]));
EVAL(Erf, at::erf(a[0]));
EVAL(BitwiseNot, at::bitwise_not(a[0]));
EVAL(BitwiseAnd, at::bitwise_and(a[0], a[1]));
EVAL(BitwiseOr, at::bitwise_or(a[0], a[1]));
EVAL(BitwiseXor, at::bitwise_xor(a[0], a[1]));
// A shift by >= the bit width (or < 0): 0 left, the sign fill right (ATen's rule).
EVAL(LeftShift, at::bitwise_left_shift(a[0], a[1]));
EVAL(RightShift, at::bitwise_right_shift(a[0], a[1]));
// Integer division by zero raises ZeroDivisionError, as torch on the CPU.
EVAL(FloorDivide, at::floor_divide(a[0], a[1]));
EVAL(Remainder, at::remainder(a[0], a[1]));
EVAL(Add, at::add(a[0], a[1]));
EVAL(Subtract, at::sub(a[0], a[1]));
EVAL(Multiply, at::mul(a[0], a[1]));
EVAL(Divide, at::div(a[0], a[1]));
EVAL(Maximum, at::maximum(a[0], a[1]));
EVAL(Minimum, at::minimum(a[0], a[1]));
EVAL(Power, at::pow(a[0], a[1]));
EVAL(LogicalAnd, at::logical_and(a[0], a[1]));
EVAL(LogicalOr, at::logical_or(a[0], a[1]));
EVAL(Equal, at::eq(a[0], a[1]));
EVAL(NotEqual, at::ne(a[0], a[1]));
EVAL(Less, at::lt(a[0], a[1]));
EVAL(LessEqual, at::le(a[0], a[1]));
EVAL(Greater, at::gt(a[0], a[1]));
EVAL(GreaterEqual, at::ge(a[0], a[1]));
EVAL(Select, at::where(a[0], a[1], a[2]));
#define MPS_EXT_NODE(kind, name)
#define MPS_EXT_REDUCE(kind, name)             \
  MPS_EXT_NODE_EVAL(kind, into_fresh<reduce_into>); \
  MPS_EXT_NODE_EVAL_INTO(kind, reduce_into);
#include "graph/node_kinds.def"
EVAL(Softmax, at::softmax(a[0], n.int_attr("axis")));
MPS_EXT_NODE_EVAL(MatMul, into_fresh<matmul_into>);
MPS_EXT_NODE_EVAL_INTO(MatMul, matmul_into);
MPS_EXT_NODE_EVAL(RandomUniform, eval_random_uniform);
MPS_EXT_NODE_EVAL(Iota, eval_iota);
#undef EVAL

}  // namespace mps_ext::runtime::reference
