// dequantize (int8 per tensor / per channel), dequantize_groupwise and
// dequantize_lut: graphs of the IR's Dequantize / DequantizeLUT nodes
// (formats.h), differentiable with respect to their float inputs (scales,
// zero points, tables), so quantization parameters can be trained.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops/op_utils.h"
#include "ops/quantization/formats.h"

namespace mps_ext::ops::quantization {
namespace {
using graph::Graph;
using runtime::GraphSpec;

// --- dequantize: x = scale * (q - zero_point), per tensor or along axis ---------
int64_t check_dequantize(const at::Tensor& input, const at::Tensor& scale, const at::Tensor& zero_point, int64_t axis) {
  const char* op = "dequantize";
  TORCH_CHECK_TYPE(input.scalar_type() == at::kChar || input.scalar_type() == at::kByte, op,
                   ": expected 'input' of dtype torch.int8 or torch.uint8, but got ", input.scalar_type());
  check_floating(op, "scale", scale);
  TORCH_CHECK_TYPE(zero_point.scalar_type() == scale.scalar_type(), op, ": expected 'zero_point' of the dtype of ",
                   "'scale' (", scale.scalar_type(), "), but got ", zero_point.scalar_type());
  TORCH_CHECK(zero_point.sizes() == scale.sizes(), op, ": expected 'zero_point' of the shape of 'scale' (",
              scale.sizes(), "), but got ", zero_point.sizes());
  check_same_device(op, input, "input", scale, "scale");
  check_same_device(op, input, "input", zero_point, "zero_point");
  if (scale.dim() == 0) return -1;  // per tensor
  TORCH_CHECK(scale.dim() == 1, op, ": expected 'scale' 0-d (per tensor) or 1-D (per channel), but got shape ",
              scale.sizes());
  TORCH_CHECK(input.dim() >= 1, op, ": a per-channel 'scale' needs 'input' with at least one dimension");
  int64_t ax = c10::maybe_wrap_dim(axis, input.dim());
  TORCH_CHECK(scale.size(0) == input.size(ax), op, ": expected 'scale' of ", input.size(ax), " entries (input.size(",
              ax, ")), but got ", scale.size(0));
  return ax;
}

void build_dequantize(Graph& g, const GraphSpec& s) {
  auto q = g.placeholder(s.input(0), "input");
  auto scale = g.placeholder(s.input(1), "scale");
  auto zero_point = g.placeholder(s.input(2), "zero_point");
  int64_t axis = s.int_attr("axis");
  if (axis >= 0) {
    graph::Shape b(s.input(0).rank(), 1);
    b[axis] = s.input(1).shape[0];
    scale = g.reshape(scale, b);
    zero_point = g.reshape(zero_point, b);
  }
  g.output(g.dequantize(q, scale, zero_point, s.input(1).dtype));
}

at::Tensor dequantize(const at::Tensor& input, const at::Tensor& scale, const at::Tensor& zero_point, int64_t axis) {
  int64_t ax = check_dequantize(input, scale, zero_point, axis);
  if (input.numel() == 0) return at::empty(input.sizes(), scale.options());
  GraphSpec spec("mps_ext::dequantize");
  if (ax < 0)
    spec.input_dynamic(input);
  else
    spec.input(input);
  spec.input(scale).input(zero_point).attr("axis", ax);
  return runtime::run_graph(spec, build_dequantize, {input, scale, zero_point})[0];
}

at::Tensor dequantize_meta(const at::Tensor& input, const at::Tensor& scale, const at::Tensor& zero_point,
                           int64_t axis) {
  check_dequantize(input, scale, zero_point, axis);
  return at::empty(input.sizes(), scale.options());
}

// --- dequantize_groupwise -------------------------------------------------------
struct GroupwiseShape {
  int64_t out_features, in_features;
};

GroupwiseShape check_groupwise(const char* op, const at::Tensor& qweight, const at::Tensor& scales,
                               const at::Tensor& zero_points, int64_t bits, int64_t group_size) {
  check_bits(op, bits);
  int64_t k = packed_in_features(op, "qweight", qweight, bits);
  check_group_size(op, group_size, k);
  check_floating(op, "scales", scales);
  check_affine_params(op, scales, zero_points, qweight.size(0), k, group_size, scales.scalar_type());
  check_same_device(op, qweight, "qweight", scales, "scales");
  check_same_device(op, qweight, "qweight", zero_points, "zero_points");
  return {qweight.size(0), k};
}

void build_dequantize_groupwise(Graph& g, const GraphSpec& s) {
  auto q = g.placeholder(s.input(0), "qweight");
  auto scales = g.placeholder(s.input(1), "scales");
  auto zero_points = g.placeholder(s.input(2), "zero_points");
  g.output(dequantize_groupwise_ir(g, q, scales, zero_points, s.int_attr("bits"), s.int_attr("group_size")));
}

at::Tensor dequantize_groupwise(const at::Tensor& qweight, const at::Tensor& scales, const at::Tensor& zero_points,
                                int64_t bits, int64_t group_size) {
  auto [n, k] = check_groupwise("dequantize_groupwise", qweight, scales, zero_points, bits, group_size);
  if (n * k == 0) return at::empty({n, k}, scales.options());
  GraphSpec spec("mps_ext::dequantize_groupwise");
  spec.input(qweight).input(scales).input(zero_points).attr("bits", bits).attr("group_size", group_size);
  return runtime::run_graph(spec, build_dequantize_groupwise, {qweight, scales, zero_points})[0];
}

at::Tensor dequantize_groupwise_meta(const at::Tensor& qweight, const at::Tensor& scales,
                                     const at::Tensor& zero_points, int64_t bits, int64_t group_size) {
  auto [n, k] = check_groupwise("dequantize_groupwise", qweight, scales, zero_points, bits, group_size);
  return at::empty({n, k}, scales.options());
}

// --- dequantize_lut --------------------------------------------------------------
GroupwiseShape check_dequantize_lut(const at::Tensor& indices, const at::Tensor& lut, int64_t bits) {
  const char* op = "dequantize_lut";
  check_bits(op, bits);
  int64_t k = packed_in_features(op, "indices", indices, bits);
  check_floating(op, "lut", lut);
  check_lut(op, lut, indices.size(0), bits, lut.scalar_type());
  check_same_device(op, indices, "indices", lut, "lut");
  return {indices.size(0), k};
}

void build_dequantize_lut(Graph& g, const GraphSpec& s) {
  auto indices = g.placeholder(s.input(0), "indices");
  auto lut = g.placeholder(s.input(1), "lut");
  g.output(dequantize_lut_ir(g, indices, lut, s.int_attr("bits")));
}

at::Tensor dequantize_lut(const at::Tensor& indices, const at::Tensor& lut, int64_t bits) {
  auto [n, k] = check_dequantize_lut(indices, lut, bits);
  if (n * k == 0) return at::empty({n, k}, lut.options());
  GraphSpec spec("mps_ext::dequantize_lut");
  spec.input(indices).input(lut).attr("bits", bits);
  return runtime::run_graph(spec, build_dequantize_lut, {indices, lut})[0];
}

at::Tensor dequantize_lut_meta(const at::Tensor& indices, const at::Tensor& lut, int64_t bits) {
  auto [n, k] = check_dequantize_lut(indices, lut, bits);
  return at::empty({n, k}, lut.options());
}

// --- autograd: gradients for the float inputs (codes are integers) ----------------
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

template <class Sig>
c10::TypedOperatorHandle<Sig> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

// Sums `t` down to `shape` over the dims other than `axis` (axis < 0: all).
at::Tensor sum_except(const at::Tensor& t, int64_t axis) {
  if (axis < 0) return t.sum();
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < t.dim(); ++d)
    if (d != axis) dims.push_back(d);
  return dims.empty() ? t : t.sum(dims);
}

struct DequantizeFn : torch::autograd::Function<DequantizeFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& scale,
                            const at::Tensor& zero_point, int64_t axis) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({input, scale, zero_point});
    ctx->saved_data["axis"] = axis;
    static auto op = find_op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t)>(
        "mps_ext::dequantize");
    return op.call(input, scale, zero_point, axis);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &scale = saved[1], &zp = saved[2];
    int64_t ax = scale.dim() == 0 ? -1 : c10::maybe_wrap_dim(ctx->saved_data["axis"].toInt(), q.dim());
    std::vector<int64_t> b(q.dim(), 1);
    if (ax >= 0) b[ax] = scale.size(0);
    at::Tensor g = grads[0];
    at::Tensor centered = q.to(scale.scalar_type()) - (ax >= 0 ? zp.reshape(b) : zp);
    at::Tensor d_scale = sum_except(g * centered, ax).to(scale.scalar_type());
    at::Tensor d_zero = (-sum_except(g, ax) * scale).to(zp.scalar_type());
    return {at::Tensor(), d_scale, d_zero, at::Tensor()};
  }
};

struct DequantizeGroupwiseFn : torch::autograd::Function<DequantizeGroupwiseFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& qweight, const at::Tensor& scales,
                            const at::Tensor& zero_points, int64_t bits, int64_t group_size) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({qweight, scales, zero_points});
    ctx->saved_data["bits"] = bits;
    ctx->saved_data["group_size"] = group_size;
    static auto op =
        find_op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t)>(
            "mps_ext::dequantize_groupwise");
    return op.call(qweight, scales, zero_points, bits, group_size);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &qw = saved[0], &s = saved[1], &z = saved[2];
    int64_t bits = ctx->saved_data["bits"].toInt(), gs = ctx->saved_data["group_size"].toInt();
    int64_t n = s.size(0), groups = s.size(1);
    at::Tensor g = grads[0].reshape({n, groups, gs});
    at::Tensor codes = unpack_codes(qw, bits).reshape({n, groups, gs}).to(s.scalar_type());
    at::Tensor d_scale = (g * (codes - z.unsqueeze(-1))).sum(-1);
    at::Tensor d_zero = -g.sum(-1) * s;
    return {at::Tensor(), d_scale, d_zero, at::Tensor(), at::Tensor()};
  }
};

struct DequantizeLutFn : torch::autograd::Function<DequantizeLutFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& indices, const at::Tensor& lut, int64_t bits) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({indices, lut});
    ctx->saved_data["bits"] = bits;
    static auto op = find_op<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>("mps_ext::dequantize_lut");
    return op.call(indices, lut, bits);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &indices = saved[0], &lut = saved[1];
    int64_t bits = ctx->saved_data["bits"].toInt(), tables = lut.size(0);
    at::Tensor idx = unpack_codes(indices, bits).to(at::kLong).reshape({tables, -1});
    at::Tensor d_lut = at::zeros_like(lut).scatter_add_(1, idx, grads[0].reshape({tables, -1}).to(lut.scalar_type()));
    return {at::Tensor(), d_lut, at::Tensor()};
  }
};

at::Tensor dequantize_autograd(const at::Tensor& input, const at::Tensor& scale, const at::Tensor& zero_point,
                               int64_t axis) {
  return DequantizeFn::apply(input, scale, zero_point, axis);
}
at::Tensor dequantize_groupwise_autograd(const at::Tensor& qweight, const at::Tensor& scales,
                                         const at::Tensor& zero_points, int64_t bits, int64_t group_size) {
  return DequantizeGroupwiseFn::apply(qweight, scales, zero_points, bits, group_size);
}
at::Tensor dequantize_lut_autograd(const at::Tensor& indices, const at::Tensor& lut, int64_t bits) {
  return DequantizeLutFn::apply(indices, lut, bits);
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(mps_ext, m) {
  m.def("dequantize(Tensor input, Tensor scale, Tensor zero_point, int axis=0) -> Tensor");
  m.def("dequantize_groupwise(Tensor qweight, Tensor scales, Tensor zero_points, int bits, int group_size) -> Tensor");
  m.def("dequantize_lut(Tensor indices, Tensor lut, int bits) -> Tensor");
}

TORCH_LIBRARY_IMPL(mps_ext, CPU, m) {
  m.impl("dequantize", &dequantize);
  m.impl("dequantize_groupwise", &dequantize_groupwise);
  m.impl("dequantize_lut", &dequantize_lut);
}

TORCH_LIBRARY_IMPL(mps_ext, PrivateUse1, m) {
  m.impl("dequantize", &dequantize);
  m.impl("dequantize_groupwise", &dequantize_groupwise);
  m.impl("dequantize_lut", &dequantize_lut);
}

#ifdef MPS_EXT_WITH_MPSGRAPH
TORCH_LIBRARY_IMPL(mps_ext, MPS, m) {
  m.impl("dequantize", &dequantize);
  m.impl("dequantize_groupwise", &dequantize_groupwise);
  m.impl("dequantize_lut", &dequantize_lut);
}
#endif

TORCH_LIBRARY_IMPL(mps_ext, Meta, m) {
  m.impl("dequantize", &dequantize_meta);
  m.impl("dequantize_groupwise", &dequantize_groupwise_meta);
  m.impl("dequantize_lut", &dequantize_lut_meta);
}

TORCH_LIBRARY_IMPL(mps_ext, Autograd, m) {
  m.impl("dequantize", &dequantize_autograd);
  m.impl("dequantize_groupwise", &dequantize_groupwise_autograd);
  m.impl("dequantize_lut", &dequantize_lut_autograd);
}

}  // namespace mps_ext::ops::quantization
