// Convolutions on the mpsgraph device: ATen's convolution entry point sends
// PrivateUse1 tensors to convolution_overrideable (forward) and
// convolution_backward_overrideable (autograd), which build graphs from the
// IR's Convolution / ConvolutionDataGradient / ConvolutionWeightGradient.
//   conv(x, w, b)          = Convolution(x, w, b)                  (bias inside the node)
//   conv_transpose(x, w)   = ConvolutionDataGradient(x, w)          (+ bias)
//   d conv / dx, dw        = DataGradient(gy, w), WeightGradient(gy, x)
//   d conv_transpose / dx  = Convolution(gy, w)
//   d conv_transpose / dw  = WeightGradient(x, gy)  (x plays the forward's output)
// 1-D convolutions run as 2-D ones over a unit height (views, no copies).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "ops/op_utils.h"

namespace mps_ext::ops {
namespace {
using graph::Graph;
using runtime::GraphSpec;
using GTensor = graph::Tensor;

struct Conv {
  graph::ConvParams params;
  bool transposed = false;
  std::vector<int64_t> output_padding;
  bool one_d = false;  // a 1-D convolution lifted to 2-D
};

std::vector<int64_t> expand_param(c10::SymIntArrayRef v, size_t n, const char* name, int64_t fill) {
  std::vector<int64_t> out;
  for (const c10::SymInt& s : v) out.push_back(s.guard_int(__FILE__, __LINE__));
  if (out.size() == 1 && n > 1) out.assign(n, out[0]);
  if (out.empty()) out.assign(n, fill);
  TORCH_CHECK(out.size() == n, "convolution: expected ", name, " to have ", n, " entries, got ", out.size());
  return out;
}

// Checks the arguments and normalizes them to a 2-D or 3-D convolution.
Conv make_conv(const at::Tensor& input, const at::Tensor& weight, c10::SymIntArrayRef stride,
               c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation, bool transposed,
               c10::SymIntArrayRef output_padding, const c10::SymInt& groups) {
  TORCH_CHECK(input.dim() >= 3 && input.dim() <= 5, "convolution: expected a 3-D, 4-D or 5-D input on mpsgraph, got ",
              input.dim(), "-D with sizes ", input.sizes());
  TORCH_CHECK(weight.dim() == input.dim(), "convolution: weight ", weight.sizes(), " must have the input's rank ",
              input.dim());
  TORCH_CHECK(input.scalar_type() == weight.scalar_type(), "convolution: input (", input.scalar_type(),
              ") and weight (", weight.scalar_type(), ") must have the same dtype");
  check_floating("convolution", "input", input);
  size_t spatial = input.dim() - 2;
  Conv c;
  c.params.stride = expand_param(stride, spatial, "stride", 1);
  c.params.padding = expand_param(padding, spatial, "padding", 0);
  c.params.dilation = expand_param(dilation, spatial, "dilation", 1);
  c.params.groups = groups.guard_int(__FILE__, __LINE__);
  c.transposed = transposed;
  c.output_padding = expand_param(output_padding, spatial, "output_padding", 0);
  c.one_d = spatial == 1;
  if (c.one_d) {
    for (auto* v : {&c.params.stride, &c.params.dilation}) v->insert(v->begin(), 1);
    for (auto* v : {&c.params.padding, &c.output_padding}) v->insert(v->begin(), 0);
  }
  return c;
}

// Borrowed unless a 1-d convolution's operand needs its extra dim: an
// operand only Python holds (a weight) is lent to the graph run, not copied
// (a copy would take the GIL, see runtime::BorrowedTensors).
c10::MaybeOwned<at::Tensor> lift(const at::Tensor& t, const Conv& c) {
  return c.one_d ? c10::MaybeOwned<at::Tensor>::owned(t.unsqueeze(2)) : c10::MaybeOwned<at::Tensor>::borrowed(t);
}
at::Tensor lower(const at::Tensor& t, const Conv& c) { return c.one_d && t.defined() ? t.squeeze(2) : t; }

// The forward convolution's input shape for a transposed convolution of `x`.
std::vector<int64_t> transposed_output_shape(const at::Tensor& x, const at::Tensor& w, const Conv& c) {
  const auto& p = c.params;
  std::vector<int64_t> out = {x.size(0), w.size(1) * p.groups};
  for (size_t i = 0; i < p.stride.size(); ++i)
    out.push_back((x.size(i + 2) - 1) * p.stride[i] - 2 * p.padding[i] + p.dilation[i] * (w.size(i + 2) - 1) +
                  c.output_padding[i] + 1);
  return out;
}

// The spec: concrete inputs, the convolution's parameters (and, per op, the
// output shape or gradient mask the builder needs).
GraphSpec conv_spec(const char* op, const Conv& c, c10::ArrayRef<at::Tensor> ins) {
  GraphSpec spec(op);
  for (const at::Tensor& t : ins) spec.input(t);
  spec.attr("stride", c.params.stride)
      .attr("padding", c.params.padding)
      .attr("dilation", c.params.dilation)
      .attr("groups", c.params.groups)
      .attr("transposed", int64_t{c.transposed ? 1 : 0});
  return spec;
}

graph::ConvParams spec_params(const GraphSpec& s) {
  return {s.ints_attr("stride"), s.ints_attr("padding"), s.ints_attr("dilation"), s.int_attr("groups")};
}

// Bias [C] added along dim 1 of a rank-r result.
GTensor add_bias(Graph& g, GTensor y, GTensor bias, int64_t rank) {
  graph::Shape s(rank, 1);
  s[1] = g.type(bias).shape[0];
  return g.add(y, g.reshape(bias, s));
}

// A transposed convolution is the data gradient of the forward convolution
// of its output. With output_padding >= stride (allowed below the dilation)
// that forward convolution's output is larger than the transposed input:
// the missing positions hold zero gradient. Pads x (the transposed input, or
// the forward output in the weight gradient) with zeros to that size.
GTensor pad_to_forward_output(Graph& g, GTensor x, const graph::Shape& out_shape, const graph::Shape& w_shape,
                              const graph::ConvParams& p) {
  for (size_t i = 0; i < p.stride.size(); ++i) {
    const graph::Shape shape = g.type(x).shape;  // a copy: adding nodes moves types
    int64_t full = (out_shape[i + 2] + 2 * p.padding[i] - p.dilation[i] * (w_shape[i + 2] - 1) - 1) / p.stride[i] + 1;
    if (full <= shape[i + 2]) continue;
    graph::Shape zeros = shape;
    zeros[i + 2] = full - shape[i + 2];
    x = g.concat({x, g.constant(0, g.type(x).dtype, zeros)}, static_cast<int64_t>(i) + 2);
  }
  return x;
}

void build_convolution(Graph& g, const GraphSpec& s) {
  graph::ConvParams p = spec_params(s);
  GTensor x = g.placeholder(s.input(0), "input"), w = g.placeholder(s.input(1), "weight");
  bool has_bias = s.int_attr("has_bias");
  if (!s.int_attr("transposed")) {
    g.output(has_bias ? g.convolution(x, w, g.placeholder(s.input(2), "bias"), p) : g.convolution(x, w, p));
    return;
  }
  const auto& out_shape = s.ints_attr("output_shape");
  GTensor y = g.convolution_data_gradient(pad_to_forward_output(g, x, out_shape, s.input(1).shape, p), w, out_shape, p);
  if (has_bias) y = add_bias(g, y, g.placeholder(s.input(2), "bias"), s.input(0).rank());
  g.output(y);
}

at::Tensor convolution(const at::Tensor& input_, const at::Tensor& weight_, const std::optional<at::Tensor>& bias_,
                       c10::SymIntArrayRef stride, c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation,
                       bool transposed, c10::SymIntArrayRef output_padding, c10::SymInt groups) {
  Conv c = make_conv(input_, weight_, stride, padding, dilation, transposed, output_padding, groups);
  const c10::MaybeOwned<at::Tensor> input_lifted = lift(input_, c), weight_lifted = lift(weight_, c);
  const at::Tensor &input = *input_lifted, &weight = *weight_lifted;
  const at::Tensor* bias = bias_ && bias_->defined() ? &*bias_ : nullptr;
  if (bias) {
    int64_t channels = transposed ? weight.size(1) * c.params.groups : weight.size(0);
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == channels, "convolution: expected a bias of size ", channels,
                ", got ", bias->sizes());
    TORCH_CHECK(bias->scalar_type() == input.scalar_type(), "convolution: bias dtype ", bias->scalar_type(),
                " must be the input's ", input.scalar_type());
  }
  runtime::BorrowedTensors<3> ins{input, weight};
  if (bias) ins.borrow(*bias);
  std::vector<int64_t> out_shape;
  if (transposed) {
    out_shape = transposed_output_shape(input, weight, c);
  } else {
    out_shape = {input.size(0), weight.size(0)};
    for (size_t i = 0; i < c.params.stride.size(); ++i)
      out_shape.push_back((input.size(i + 2) + 2 * c.params.padding[i] - c.params.dilation[i] * (weight.size(i + 2) - 1) - 1) /
                              c.params.stride[i] + 1);
  }
  if (input.numel() == 0 || c10::multiply_integers(out_shape) == 0) {
    for (int64_t d : out_shape)
      TORCH_CHECK(d >= 0, "convolution: the kernel ", weight.sizes(), " does not fit the padded input ", input.sizes());
    at::Tensor out = at::zeros(out_shape, input.options());
    if (bias && out.numel()) {
      std::vector<int64_t> along_channels(out.dim(), 1);
      along_channels[1] = -1;
      out.add_(bias->reshape(along_channels));
    }
    return lower(out, c);
  }
  auto spec = conv_spec("aten::convolution_overrideable", c, ins);
  spec.attr("output_shape", out_shape).attr("has_bias", int64_t{bias ? 1 : 0});
  at::Tensor out = runtime::run_graph(spec, build_convolution, ins)[0];
  return lower(out, c);
}

// The gradients a convolution's backward asks for (mask: input, weight, bias),
// in that order. Two or more of a forward convolution's run as one kernel,
// "aten.convolution_backward" (its reference kernel, in convolution_nodes.cpp,
// is ATen's convolution_backward: one oneDNN pass), over these nodes.
std::vector<GTensor> convolution_gradients(Graph& g, GTensor gy, GTensor x, GTensor w, const graph::ConvParams& p,
                                           bool transposed, const std::vector<int64_t>& mask) {
  const graph::Shape x_shape = g.type(x).shape, w_shape = g.type(w).shape;  // copies: adding nodes moves types
  const int64_t rank = static_cast<int64_t>(g.type(gy).shape.size()), channels = g.type(gy).shape[1];
  std::vector<GTensor> out;
  if (transposed) {  // x is the transposed convolution's input: the forward output role
    if (mask[0]) {  // the forward convolution of gy, cut back to x's size (see pad_to_forward_output)
      GTensor dx = g.convolution(gy, w, p);
      graph::Shape full = g.type(dx).shape;
      if (full != x_shape) dx = g.slice(dx, std::vector<int64_t>(x_shape.size(), 0), x_shape,
                                        std::vector<int64_t>(x_shape.size(), 1));
      out.push_back(dx);
    }
    if (mask[1]) {
      const graph::Shape gy_shape = g.type(gy).shape;
      out.push_back(g.convolution_weight_gradient(pad_to_forward_output(g, x, gy_shape, w_shape, p), gy, w_shape, p));
    }
  } else {
    if (mask[0]) out.push_back(g.convolution_data_gradient(gy, w, x_shape, p));
    if (mask[1]) out.push_back(g.convolution_weight_gradient(gy, x, w_shape, p));
  }
  if (mask[2]) {
    std::vector<int64_t> axes = {0};
    for (int64_t d = 2; d < rank; ++d) axes.push_back(d);
    out.push_back(g.reshape(g.reduce(graph::NodeKind::ReduceSum, gy, axes), {channels}));
  }
  return out;
}

void build_convolution_backward(Graph& g, const GraphSpec& s) {
  graph::ConvParams p = spec_params(s);
  const bool transposed = s.int_attr("transposed") != 0;
  const std::vector<int64_t> mask = s.ints_attr("mask");
  GTensor gy = g.placeholder(s.input(0), "grad_output"), x = g.placeholder(s.input(1), "input"),
          w = g.placeholder(s.input(2), "weight");
  std::vector<GTensor> grads;
  if (!transposed && mask[0] + mask[1] + mask[2] >= 2) {
    graph::Attrs attrs{{"stride", p.stride}, {"padding", p.padding}, {"dilation", p.dilation},
                       {"groups", p.groups}, {"mask", mask}};
    grads = g.kernels("aten.convolution_backward", {gy, x, w}, attrs,
                      [p, mask](Graph& d, const std::vector<GTensor>& in) {
                        return convolution_gradients(d, in[0], in[1], in[2], p, false, mask);
                      });
  } else {
    grads = convolution_gradients(g, gy, x, w, p, transposed, mask);
  }
  for (GTensor t : grads) g.output(t);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> convolution_backward(
    const at::Tensor& grad_output_, const at::Tensor& input_, const at::Tensor& weight_, c10::SymIntArrayRef stride,
    c10::SymIntArrayRef padding, c10::SymIntArrayRef dilation, bool transposed, c10::SymIntArrayRef output_padding,
    c10::SymInt groups, std::array<bool, 3> mask) {
  Conv c = make_conv(input_, weight_, stride, padding, dilation, transposed, output_padding, groups);
  c10::MaybeOwned<at::Tensor> grad_lifted = lift(grad_output_, c);
  if (grad_lifted->scalar_type() != input_.scalar_type())
    grad_lifted = c10::MaybeOwned<at::Tensor>::owned(grad_lifted->to(input_.scalar_type()));
  const c10::MaybeOwned<at::Tensor> input_lifted = lift(input_, c), weight_lifted = lift(weight_, c);
  const at::Tensor &grad = *grad_lifted, &input = *input_lifted, &weight = *weight_lifted;
  TORCH_CHECK(grad.size(0) == input.size(0) && grad.dim() == input.dim(), "convolution_backward: grad_output ",
              grad_output_.sizes(), " does not match the input ", input_.sizes());
  if (!mask[0] && !mask[1] && !mask[2]) return {};
  if (grad.numel() == 0 || input.numel() == 0) {
    return {mask[0] ? lower(at::zeros_like(input), c) : at::Tensor(),
            mask[1] ? lower(at::zeros_like(weight), c) : at::Tensor(),
            mask[2] ? at::zeros({grad.size(1)}, grad.options()) : at::Tensor()};
  }
  runtime::BorrowedTensors<3> ins{grad, input, weight};
  auto spec = conv_spec("aten::convolution_backward_overrideable", c, ins);
  spec.attr("mask", std::vector<int64_t>{mask[0], mask[1], mask[2]});
  auto outs = runtime::run_graph(spec, build_convolution_backward, ins);
  size_t i = 0;
  at::Tensor gi = mask[0] ? lower(outs[i++], c) : at::Tensor();
  at::Tensor gw = mask[1] ? lower(outs[i++], c) : at::Tensor();
  at::Tensor gb = mask[2] ? outs[i++] : at::Tensor();
  return {gi, gw, gb};
}
}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("convolution_overrideable", TORCH_FN(convolution));
  m.impl("convolution_backward_overrideable", TORCH_FN(convolution_backward));
}

}  // namespace mps_ext::ops
