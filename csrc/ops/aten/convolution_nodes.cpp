// The convolution node kinds (Convolution and its data and weight
// gradients): their spec and their ATen evaluation. Semantics: graph.h.
#include "graph/node_spec.h"
#include "runtime/reference/kernels.h"
#include "runtime/reference/node_eval.h"

namespace mps_ext::ops::aten {
namespace {
using namespace graph;
using Types = std::vector<TensorType>;

ConvParams params(const Attrs& a, const char* what) {
  return {ints_attr(a, "stride", what), ints_attr(a, "padding", what), ints_attr(a, "dilation", what),
          a.count("groups") ? int_attr(a, "groups", what) : 1};
}

// Checks data and weight shapes against each other and the parameters; returns
// the forward convolution's output shape.
Shape conv_output_shape(const Shape& data, const Shape& weight, const ConvParams& p, const char* what) {
  auto msg = [&](const std::string& m) { fail(std::string(what) + ": " + m); };
  if (data.size() != 4 && data.size() != 5) msg("expects rank-4 (NCHW) or rank-5 (NCDHW) data, got " + shape_str(data));
  if (weight.size() != data.size())
    msg("weight " + shape_str(weight) + " must have the data's rank " + std::to_string(data.size()));
  for (int64_t d : data)
    if (d < 0) msg("needs static shapes, got " + shape_str(data));
  for (int64_t d : weight)
    if (d <= 0) msg("needs a static, non-empty weight, got " + shape_str(weight));
  size_t spatial = data.size() - 2;
  if (p.stride.size() != spatial || p.padding.size() != spatial || p.dilation.size() != spatial)
    msg("stride, padding and dilation need one entry per spatial dim (" + std::to_string(spatial) + ")");
  if (p.groups < 1 || weight[0] % p.groups != 0)
    msg("groups must be positive and divide the output channels " + std::to_string(weight[0]));
  if (data[1] != weight[1] * p.groups)
    msg("data has " + std::to_string(data[1]) + " channels, the weight " + shape_str(weight) + " with groups=" +
        std::to_string(p.groups) + " expects " + std::to_string(weight[1] * p.groups));
  Shape out = {data[0], weight[0]};
  for (size_t i = 0; i < spatial; ++i) {
    if (p.stride[i] < 1 || p.dilation[i] < 1 || p.padding[i] < 0)
      msg("strides and dilations must be positive, paddings >= 0");
    int64_t span = p.dilation[i] * (weight[i + 2] - 1) + 1;
    int64_t padded = data[i + 2] + 2 * p.padding[i];
    if (padded < span) msg("kernel " + shape_str(weight) + " is larger than the padded input " + shape_str(data));
    out.push_back((padded - span) / p.stride[i] + 1);
  }
  return out;
}

void check_dtypes(const TensorType& x, const TensorType& y, const char* what) {
  if (!is_floating(x.dtype)) fail(std::string(what) + ": expects floating-point tensors");
  if (x.dtype != y.dtype) fail(std::string(what) + ": operand dtypes differ");
}

// The gradient's type is `shape_attr`'s shape; grad_output must be the
// forward's output for it.
TensorType infer_gradient(const Types& in, Attrs& a, const char* what, const char* shape_attr, bool data_gradient) {
  check_dtypes(in[0], in[1], what);
  ConvParams p = params(a, what);
  const Shape& shape = ints_attr(a, shape_attr, what);
  const Shape& data = data_gradient ? shape : in[1].shape;
  const Shape& weight = data_gradient ? in[1].shape : shape;
  if (conv_output_shape(data, weight, p, what) != in[0].shape)
    fail(std::string(what) + ": grad_output " + shape_str(in[0].shape) + " is not the output shape of a convolution of " +
         shape_str(data) + " by " + shape_str(weight));
  a["groups"] = p.groups;
  return {in[0].dtype, shape};
}

// (input, weight[, bias]); attrs: stride, padding, dilation, groups (default 1).
// The bias [C_out] is added along the output's channel dim (ATen/oneDNN fuse it).
TensorType infer_convolution(NodeKind, const Types& in, Attrs& a) {
  check_dtypes(in[0], in[1], "convolution");
  ConvParams p = params(a, "convolution");
  a["groups"] = p.groups;
  if (in.size() == 3) {
    if (in[2].dtype != in[0].dtype) fail("convolution: bias dtype differs from the input's");
    if (in[2].shape != Shape{in[1].shape.empty() ? 0 : in[1].shape[0]})
      fail("convolution: bias " + shape_str(in[2].shape) + " must be [C_out] for the weight " + shape_str(in[1].shape));
  }
  return {in[0].dtype, conv_output_shape(in[0].shape, in[1].shape, p, "convolution")};
}
// (grad_output, weight); attrs: + input_shape.
TensorType infer_data_gradient(NodeKind, const Types& in, Attrs& a) {
  return infer_gradient(in, a, "convolution_data_gradient", "input_shape", true);
}
// (grad_output, input); attrs: + weight_shape.
TensorType infer_weight_gradient(NodeKind, const Types& in, Attrs& a) {
  return infer_gradient(in, a, "convolution_weight_gradient", "weight_shape", false);
}

at::Tensor eval_convolution(const Node& n, const std::vector<at::Tensor>& a) {
  ConvParams p = conv_params(n);
  std::optional<at::Tensor> bias = a.size() == 3 ? std::optional<at::Tensor>(a[2]) : std::nullopt;
  return at::convolution(a[0], a[1], bias, p.stride, p.padding, p.dilation, /*transposed=*/false,
                         std::vector<int64_t>(p.stride.size(), 0), p.groups);
}

// ATen's backward of a (non-transposed) convolution for the gradients in
// `mask`: what the two gradient kinds and the "aten.convolution_backward"
// kernel all evaluate. An operand no requested gradient reads (the input for
// the data gradient, the weight for the weight gradient) is only its shape.
std::tuple<at::Tensor, at::Tensor, at::Tensor> aten_convolution_backward(const at::Tensor& grad, const at::Tensor& input,
                                                                         const at::Tensor& weight, const ConvParams& p,
                                                                         std::array<bool, 3> mask) {
  std::vector<int64_t> bias_sizes{weight.size(0)}, no_padding(p.stride.size(), 0);
  return at::convolution_backward(grad, input, weight, bias_sizes, p.stride, p.padding, p.dilation,
                                  /*transposed=*/false, no_padding, p.groups, mask);
}

// The data gradient through ATen's backward is a few % faster than the
// equivalent transposed at::convolution (145.6 vs 149.2 us for grad
// [16,16,16,16] by [16,3,3,3]; 114.4 vs 120.0 us for [16,32,8,8] by [32,16,3,3]).
at::Tensor eval_data_gradient(const Node& n, const std::vector<at::Tensor>& a) {
  const at::Tensor &grad = a[0], &weight = a[1];
  at::Tensor input = at::empty(n.ints_attr("input_shape"), weight.options());  // only its shape is read
  return std::get<0>(aten_convolution_backward(grad, input, weight, conv_params(n), {true, false, false}));
}

at::Tensor eval_weight_gradient(const Node& n, const std::vector<at::Tensor>& a) {
  const at::Tensor &grad = a[0], &input = a[1];
  at::Tensor weight = at::empty(n.ints_attr("weight_shape"), input.options());  // only its shape is read
  return std::get<1>(aten_convolution_backward(grad, input, weight, conv_params(n), {false, true, false}));
}

// Graph::kernels' "aten.convolution_backward" (ops/aten/convolution.cpp):
// inputs (grad_output, input, weight), attrs + mask; the masked gradients in
// one oneDNN pass.
std::vector<at::Tensor> convolution_backward_kernel(const Node& n, const std::vector<at::Tensor>& in,
                                                    const runtime::reference::ResultOutput&) {
  const auto& mask = n.ints_attr("mask");
  auto [gi, gw, gb] =
      aten_convolution_backward(in[0], in[1], in[2], conv_params(n), {mask[0] != 0, mask[1] != 0, mask[2] != 0});
  std::vector<at::Tensor> out;
  for (const at::Tensor& t : {gi, gw, gb})
    if (t.defined()) out.push_back(t);
  return out;
}
}  // namespace

MPS_EXT_NODE_SPEC(Convolution, {infer_convolution, 2, 3});
MPS_EXT_NODE_SPEC(ConvolutionDataGradient, {infer_data_gradient, 2, 2});
MPS_EXT_NODE_SPEC(ConvolutionWeightGradient, {infer_weight_gradient, 2, 2});
MPS_EXT_NODE_EVAL(Convolution, eval_convolution);
MPS_EXT_NODE_EVAL(ConvolutionDataGradient, eval_data_gradient);
MPS_EXT_NODE_EVAL(ConvolutionWeightGradient, eval_weight_gradient);
MPS_EXT_REFERENCE_MULTI_KERNEL("aten.convolution_backward", convolution_backward_kernel);

}  // namespace mps_ext::ops::aten
