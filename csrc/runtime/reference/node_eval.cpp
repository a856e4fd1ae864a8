// Node-by-node evaluation with ATen of the core node kinds: the semantics
// every runtime must match (family kinds register theirs in csrc/ops/).
#include "runtime/reference/node_eval.h"

#include <ATen/CPUGeneratorImpl.h>

#include <array>

#include "runtime/reference/executor.h"

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
at::Tensor reduce(NodeKind kind, const at::Tensor& x, std::vector<int64_t> axes) {
  if (x.dim() == 0) axes.clear();
  switch (kind) {
    case NodeKind::ReduceSum: return at::sum(x, axes, /*keepdim=*/true);
    case NodeKind::ReduceMax: return at::amax(x, axes, true);
    case NodeKind::ReduceMin: return at::amin(x, axes, true);
    case NodeKind::ReduceMean: return at::mean(x, axes, true);
    case NodeKind::ReduceProd: {
      at::Tensor r = x;
      for (int64_t ax : axes) r = at::prod(r, ax, true);
      return r;
    }
    default: TORCH_INTERNAL_ASSERT(false);
  }
}

at::Tensor eval_reduce(const Node& n, const Args& a) { return reduce(n.kind, a[0], n.ints_attr("axes")); }

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
EVAL(Reshape, a[0].reshape(n.ints_attr("shape")));
EVAL(Transpose, a[0].permute(n.ints_attr("perm")));
MPS_EXT_NODE_EVAL(Slice, eval_slice);
EVAL(SliceUpdate, slice_update(n, a[0].clone(), a));
EVAL(Concat, at::cat(a, n.int_attr("axis")));
EVAL(Broadcast, a[0].expand(n.ints_attr("shape")));
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
#define MPS_EXT_REDUCE(kind, name) MPS_EXT_NODE_EVAL(kind, eval_reduce);
#include "graph/node_kinds.def"
EVAL(Softmax, at::softmax(a[0], n.int_attr("axis")));
EVAL(MatMul, at::matmul(a[0], a[1]));
MPS_EXT_NODE_EVAL_INTO(MatMul, [](const Node&, const Args& a, at::Tensor& out) { at::matmul_out(out, a[0], a[1]); });
MPS_EXT_NODE_EVAL(RandomUniform, eval_random_uniform);
MPS_EXT_NODE_EVAL(Iota, eval_iota);
#undef EVAL

}  // namespace mps_ext::runtime::reference
