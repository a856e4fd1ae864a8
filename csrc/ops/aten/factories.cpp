// Factories on the mpsgraph device that fill a fresh out= tensor from
// coordinates: eye (an Iota comparison) and linspace (Iota arithmetic, the
// CPU kernel's two-sided formula). arange, full and zeros are in nn.cpp.
#include <ATen/native/Resize.h>

#include "ops/aten/native.h"
#include "ops/op_utils.h"

namespace mps_ext::ops::aten {
namespace {

// The out= tensor is the graph's variable (it also tells the runtime which
// device runs the graph); attrs: n, m.
void build_eye(Graph& g, const GraphSpec& s) {
  G out = g.variable(s.input(0), "out");
  const graph::TensorType& t = s.input(0);
  G diagonal = g.binary(NodeKind::Equal, g.iota(t.shape, 0, DType::Int32), g.iota(t.shape, 1, DType::Int32));
  g.output(g.assign(out, g.cast(diagonal, t.dtype)));
}

at::Tensor& eye_m_out(int64_t n, int64_t m, at::Tensor& out) {
  TORCH_CHECK(n >= 0, "n must be greater or equal to 0, got ", n);
  TORCH_CHECK(m >= 0, "m must be greater or equal to 0, got ", m);
  require(graph_dtype_ok(out.scalar_type()) && out.is_privateuseone());
  at::native::resize_output(out, {n, m});
  if (n == 0 || m == 0) return out;
  GraphSpec spec("aten::eye");
  spec.input(out);
  runtime::run_graph(spec, build_eye, {out});
  return out;
}
at::Tensor& eye_out(int64_t n, at::Tensor& out) { return eye_m_out(n, n, out); }

// Inputs: start, end, step (0-d, compute dtype), out (the variable). Like
// the CPU kernel: the first half counts up from start, the rest down from end.
void build_linspace(Graph& g, const GraphSpec& s) {
  G start = g.placeholder(s.input(0), "start"), end = g.placeholder(s.input(1), "end");
  G step = g.placeholder(s.input(2), "step");
  G out = g.variable(s.input(3), "out");
  int64_t n = s.input(3).shape[0];
  DType compute = g.type(start).dtype;
  G i = g.cast(g.iota({n}, 0, DType::Int64), compute);
  G up = g.add(start, g.mul(step, i));
  G down = g.sub(end, g.mul(step, g.sub(k(g, static_cast<double>(n - 1), i), i)));
  G first_half = g.lt(i, k(g, static_cast<double>(n / 2), i));
  g.output(g.assign(out, cast_to(g, g.select(first_half, up, down), s.input(3).dtype)));
}

at::Tensor& linspace_out(const at::Scalar& start, const at::Scalar& end, int64_t steps, at::Tensor& out) {
  TORCH_CHECK(steps >= 0, "number of steps must be non-negative");
  at::ScalarType r = out.scalar_type();
  // Floating results compute in their own precision (float for fp16/bf16),
  // integral ones in double and truncate, as the CPU kernel.
  at::ScalarType compute = at::isFloatingType(r) ? (r == at::kDouble ? at::kDouble : at::kFloat) : at::kDouble;
  require(out.is_privateuseone() && graph_dtype_ok(r) && graph_dtype_ok(compute) && !at::isComplexType(r) && r != at::kBool);
  at::native::resize_output(out, {steps});
  if (steps == 0) return out;
  if (steps == 1) return out.fill_(start);
  // The ends are first converted to the result type (integers truncate).
  at::Tensor a = scalar_input(start, r).to(compute), b = scalar_input(end, r).to(compute);
  at::Tensor st = (b - a) / static_cast<double>(steps - 1);
  GraphSpec spec("aten::linspace");
  spec.input(a).input(b).input(st).input(out);
  runtime::run_graph(spec, build_linspace, {a, b, st, out});
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  for (const Row& row : {MPS_EXT_ATEN_ROW("eye.m_out", eye_m_out), MPS_EXT_ATEN_ROW("eye.out", eye_out),
                         MPS_EXT_ATEN_ROW("linspace.out", linspace_out)})
    register_op(m, row.op, row.kernel);
}

}  // namespace mps_ext::ops::aten
