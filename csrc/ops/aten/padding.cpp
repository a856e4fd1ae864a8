// Reflection and replication padding (1-d, 2-d, 3-d) and their backwards on
// the mpsgraph device: a kernel node (ATen's padding kernels on the reference
// runtime) whose decomposition is slices and concats: each padded dim gains
// width-1 slices of the input (reflect: mirrored, replicate: the edge
// broadcast); the backward adds each padded position's gradient back into
// the input position it was copied from. Constant padding is a fill and a
// copy (native already).
#include "ops/aten/native.h"
#include "ops/op_utils.h"
#include "runtime/reference/kernels.h"

namespace mps_ext::ops::aten {
namespace {

// Forward: x padded by (l, r) along d.
G pad_dim(Graph& g, G x, int64_t d, int64_t l, int64_t r, bool reflect) {
  int64_t w = g.type(x).shape[d];
  std::vector<G> parts;
  auto edge = [&](int64_t at, int64_t n) {  // replicate: x[at] repeated n times
    graph::Shape shape = g.type(x).shape;
    shape[d] = n;
    return g.broadcast(slice_along(g, x, d, at, at + 1), shape);
  };
  if (l > 0) {
    if (reflect)
      for (int64_t k = l; k >= 1; --k) parts.push_back(slice_along(g, x, d, k, k + 1));
    else
      parts.push_back(edge(0, l));
  }
  parts.push_back(x);
  if (r > 0) {
    if (reflect)
      for (int64_t k = w - 2; k >= w - 1 - r; --k) parts.push_back(slice_along(g, x, d, k, k + 1));
    else
      parts.push_back(edge(w - 1, r));
  }
  return parts.size() == 1 ? x : g.concat(parts, d);
}

// gi[at] += v along d (v has size 1 there).
G add_at(Graph& g, G gi, int64_t d, int64_t at, G v) {
  const graph::Shape& shape = g.type(gi).shape;
  std::vector<int64_t> starts(shape.size(), 0), ends = shape, strides(shape.size(), 1);
  starts[d] = at;
  ends[d] = at + 1;
  return g.slice_update(gi, g.add(slice_along(g, gi, d, at, at + 1), v), starts, ends, strides);
}

// Backward: the gradient of pad_dim for an input of size w along d.
G unpad_dim(Graph& g, G grad, int64_t d, int64_t l, int64_t r, int64_t w, bool reflect) {
  G gi = slice_along(g, grad, d, l, l + w);
  if (reflect) {
    for (int64_t p = 0; p < l; ++p) gi = add_at(g, gi, d, l - p, slice_along(g, grad, d, p, p + 1));
    for (int64_t q = 0; q < r; ++q) gi = add_at(g, gi, d, w - 2 - q, slice_along(g, grad, d, l + w + q, l + w + q + 1));
  } else {
    if (l > 0) gi = add_at(g, gi, d, 0, g.reduce(NodeKind::ReduceSum, slice_along(g, grad, d, 0, l), {d}));
    if (r > 0) gi = add_at(g, gi, d, w - 1, g.reduce(NodeKind::ReduceSum, slice_along(g, grad, d, l + w, l + w + r), {d}));
  }
  return gi;
}

// Input: self (forward) or grad_output (backward); attrs: mode, backward,
// padding (torch order: last dim first), input_shape.
// On the reference runtime ATen's padding kernels (one pass; the slices and
// concats are 3.7x slower on [32, 64, 16, 16]); the backward only for
// float32/float64, whose kernels accumulate as the decomposition does.
at::Tensor pad_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                   const runtime::reference::NewOutput& new_output) {
  const std::vector<int64_t>& pad = n.ints_attr("padding");
  const bool reflect = n.str_attr("mode") == "reflect";
  const size_t dims = pad.size() / 2;
  if (!n.int_attr("backward")) {
    if (dims == 1) return reflect ? at::reflection_pad1d(in[0], pad) : at::replication_pad1d(in[0], pad);
    if (dims == 2) return reflect ? at::reflection_pad2d(in[0], pad) : at::replication_pad2d(in[0], pad);
    return reflect ? at::reflection_pad3d(in[0], pad) : at::replication_pad3d(in[0], pad);
  }
  // The backward kernels read the input only for its sizes: the result stands
  // in for it (as in the adaptive max pool's backward).
  const at::Tensor& dy = in[0];
  at::Tensor dx = new_output(n.ints_attr("input_shape"), dy.scalar_type());
  if (dims == 1)
    return reflect ? at::reflection_pad1d_backward_out(dx, dy, dx, pad) : at::replication_pad1d_backward_out(dx, dy, dx, pad);
  if (dims == 2)
    return reflect ? at::reflection_pad2d_backward_out(dx, dy, dx, pad) : at::replication_pad2d_backward_out(dx, dy, dx, pad);
  return reflect ? at::reflection_pad3d_backward_out(dx, dy, dx, pad) : at::replication_pad3d_backward_out(dx, dy, dx, pad);
}
MPS_EXT_REFERENCE_KERNEL("aten.pad", pad_cpu);

void build_pad(Graph& g, const GraphSpec& s) {
  G x = g.placeholder(s.input(0), "x");
  const bool reflect = s.str_attr("mode") == "reflect", backward = s.int_attr("backward") != 0;
  const std::vector<int64_t> pad = s.ints_attr("padding");
  const std::vector<int64_t> in = s.ints_attr("input_shape");
  auto decomposition = [reflect, backward, pad, in](Graph& d, const std::vector<G>& xs) {
    G y = xs[0];
    int64_t rank = static_cast<int64_t>(in.size()), k = static_cast<int64_t>(pad.size()) / 2;
    // Dims are independent, so the backward may undo them in any order.
    for (int64_t i = 0; i < k; ++i) {
      int64_t dim = rank - 1 - i;
      y = backward ? unpad_dim(d, y, dim, pad[2 * i], pad[2 * i + 1], in[dim], reflect)
                   : pad_dim(d, y, dim, pad[2 * i], pad[2 * i + 1], reflect);
    }
    return y;
  };
  const bool kernel = !backward || kernel_dtype(s.input(0).dtype);
  g.output(kernel ? g.kernel("aten.pad", {x},
                             {{"mode", s.str_attr("mode")}, {"backward", int64_t{backward}}, {"padding", pad},
                              {"input_shape", in}},
                             decomposition)
                  : decomposition(g, {x}));
}

// Cases the graph covers: non-negative pads, non-empty input, reflect pads
// smaller than their dim. Others (and malformed arguments) go to the CPU
// kernel, which raises torch's own errors.
at::Tensor run_pad(const at::Tensor& x, const at::Tensor& self, c10::SymIntArrayRef padding, bool reflect, bool backward,
                   int64_t dims) {
  require(x.is_privateuseone() && graph_dtype_ok(x.scalar_type()) && self.numel() > 0);
  require(static_cast<int64_t>(padding.size()) == 2 * dims && (self.dim() == dims + 1 || self.dim() == dims + 2));
  std::vector<int64_t> pad;
  for (const c10::SymInt& p : padding) pad.push_back(p.expect_int());
  for (int64_t i = 0; i < dims; ++i) {
    int64_t w = self.size(self.dim() - 1 - i);
    for (int side = 0; side < 2; ++side) require(pad[2 * i + side] >= 0 && (!reflect || pad[2 * i + side] < w));
  }
  if (backward) {
    std::vector<int64_t> padded = self.sizes().vec();
    for (int64_t i = 0; i < dims; ++i) padded[self.dim() - 1 - i] += pad[2 * i] + pad[2 * i + 1];
    TORCH_CHECK(x.sizes() == at::IntArrayRef(padded), "grad_output has shape ", x.sizes(), ", expected ", padded);
  }
  GraphSpec spec("aten::pad");
  spec.input(x).attr("mode", reflect ? "reflect" : "replicate").attr("backward", int64_t{backward})
      .attr("padding", pad).attr("input_shape", self.sizes().vec());
  return runtime::run_graph(spec, build_pad, {x})[0];
}

// The four typed kernels (forward, out=, backward, grad_input=) of one op.
#define MPS_EXT_PAD_KERNELS(op, reflect, dims)                                                                   \
  at::Tensor op(const at::Tensor& self, c10::SymIntArrayRef padding) {                                         \
    return run_pad(self, self, padding, reflect, false, dims);                                                \
  }                                                                                                            \
  at::Tensor& op##_out(const at::Tensor& self, c10::SymIntArrayRef padding, at::Tensor& out) {                 \
    write_result(run_pad(self, self, padding, reflect, false, dims), out);                                    \
    return out;                                                                                                \
  }                                                                                                            \
  at::Tensor op##_backward(const at::Tensor& grad, const at::Tensor& self, c10::SymIntArrayRef padding) {      \
    return run_pad(grad, self, padding, reflect, true, dims);                                                 \
  }                                                                                                            \
  at::Tensor& op##_backward_out(const at::Tensor& grad, const at::Tensor& self, c10::SymIntArrayRef padding,   \
                                at::Tensor& grad_input) {                                                      \
    write_result(run_pad(grad, self, padding, reflect, true, dims), grad_input);                              \
    return grad_input;                                                                                         \
  }
MPS_EXT_PAD_KERNELS(reflection_pad1d, true, 1)
MPS_EXT_PAD_KERNELS(reflection_pad2d, true, 2)
MPS_EXT_PAD_KERNELS(reflection_pad3d, true, 3)
MPS_EXT_PAD_KERNELS(replication_pad1d, false, 1)
MPS_EXT_PAD_KERNELS(replication_pad2d, false, 2)
MPS_EXT_PAD_KERNELS(replication_pad3d, false, 3)
}  // namespace

#define MPS_EXT_PAD_ROWS(op)                                                                       \
  MPS_EXT_ATEN_ROW(#op, op), MPS_EXT_ATEN_ROW(#op ".out", op##_out), MPS_EXT_ATEN_ROW(#op "_backward", op##_backward), \
      MPS_EXT_ATEN_ROW(#op "_backward.grad_input", op##_backward_out)

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  for (const Row& row : {MPS_EXT_PAD_ROWS(reflection_pad1d), MPS_EXT_PAD_ROWS(reflection_pad2d),
                         MPS_EXT_PAD_ROWS(reflection_pad3d), MPS_EXT_PAD_ROWS(replication_pad1d),
                         MPS_EXT_PAD_ROWS(replication_pad2d), MPS_EXT_PAD_ROWS(replication_pad3d)})
    register_op(m, row.op, row.kernel);
}

}  // namespace mps_ext::ops::aten
