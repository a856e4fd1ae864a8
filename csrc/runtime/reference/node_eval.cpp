// Node-by-node evaluation with ATen: the semantics every runtime must match.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <limits>

#include "runtime/reference/executor.h"

namespace mps_ext::runtime::reference {
using graph::NodeKind;

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
      for (int64_t a : axes) r = at::prod(r, a, true);
      return r;
    }
    default: TORCH_INTERNAL_ASSERT(false);
  }
}

// lut [g..., N] gathered by indices [d...]: the groups broadcast into [d...].
at::Tensor dequantize_lut(const at::Tensor& indices, const at::Tensor& lut) {
  std::vector<int64_t> padded(indices.dim() + 1 - lut.dim(), 1);
  padded.insert(padded.end(), lut.sizes().begin(), lut.sizes().end());
  std::vector<int64_t> full = indices.sizes().vec();
  full.push_back(lut.size(-1));
  at::Tensor table = lut.reshape(padded).expand(full);
  return table.gather(-1, indices.to(at::kLong).unsqueeze(-1)).squeeze(-1);
}

// The mask as [.., .., L|1, S|1]: ATen's SDPA wants a rank >= 2 mask, the IR
// lets any mask broadcast.
at::Tensor rank4(const at::Tensor& mask) {
  std::vector<int64_t> shape(4 - mask.dim(), 1);
  shape.insert(shape.end(), mask.sizes().begin(), mask.sizes().end());
  return mask.reshape(shape);
}

// ATen's SDPA (its CPU flash kernel where it applies). ATen takes either a
// mask or is_causal: with both, the causal part joins the mask.
at::Tensor sdpa(const graph::Node& n, const std::vector<at::Tensor>& a) {
  bool is_causal = n.attrs.count("is_causal") && n.int_attr("is_causal") != 0;
  std::optional<at::Tensor> mask;
  if (n.int_attr("has_mask")) mask = rank4(a[3]);
  if (mask && is_causal) {
    int64_t l = a[0].size(2), s = a[1].size(2);
    at::Tensor future = at::ones({l, s}, a[0].options().dtype(at::kBool)).triu(1);
    mask = at::where(future, at::scalar_tensor(-std::numeric_limits<double>::infinity(), mask->options()), *mask);
    is_causal = false;
  }
  bool gqa = a[1].size(1) != a[0].size(1);
  return at::scaled_dot_product_attention(a[0], a[1], a[2], mask, /*dropout_p=*/0.0, is_causal, n.float_attr("scale"),
                                          gqa);
}

// torch.fft.irfftn's `s`: the input's sizes on `axes`, last_dim_size last.
std::vector<int64_t> irfft_sizes(const graph::Node& n, const at::Tensor& x) {
  std::vector<int64_t> s;
  for (int64_t a : n.ints_attr("axes")) s.push_back(x.size(a));
  s.back() = n.int_attr("last_dim_size");
  return s;
}
// The transposed convolution that is the data gradient: its output_padding
// restores the sizes a strided forward convolution rounded away.
at::Tensor conv_data_gradient(const graph::Node& n, const at::Tensor& grad, const at::Tensor& weight) {
  graph::ConvParams p = graph::conv_params(n);
  const auto& in = n.ints_attr("input_shape");
  std::vector<int64_t> output_padding;
  for (size_t i = 0; i < p.stride.size(); ++i) {
    int64_t covered = (grad.size(i + 2) - 1) * p.stride[i] - 2 * p.padding[i] + p.dilation[i] * (weight.size(i + 2) - 1) + 1;
    output_padding.push_back(in[i + 2] - covered);
  }
  return at::convolution(grad, weight, std::nullopt, p.stride, p.padding, p.dilation, /*transposed=*/true,
                         output_padding, p.groups);
}

at::Tensor conv_weight_gradient(const graph::Node& n, const at::Tensor& grad, const at::Tensor& input) {
  graph::ConvParams p = graph::conv_params(n);
  at::Tensor weight = at::empty(n.ints_attr("weight_shape"), input.options());  // only its shape is read
  std::vector<int64_t> no_padding(p.stride.size(), 0);
  return std::get<1>(at::convolution_backward(grad, input, weight, std::nullopt, p.stride, p.padding, p.dilation,
                                              /*transposed=*/false, no_padding, p.groups, {false, true, false}));
}

// Pooling through ATen's max_pool2d/3d and avg_pool2d/3d; 1-d pools are 2-d
// pools over [N, C, 1, L] (torch's own max_pool1d/avg_pool1d do the same).
struct Pool {
  graph::PoolParams p;
  bool one_d;
  explicit Pool(const graph::Node& n) : p(graph::pool_params(n)), one_d(p.kernel.size() == 1) {
    if (one_d)
      for (auto* v : {&p.kernel, &p.stride, &p.dilation}) v->insert(v->begin(), 1);
    if (one_d) p.padding.insert(p.padding.begin(), 0);
  }
  at::Tensor in(const at::Tensor& t) const { return one_d ? t.unsqueeze(2) : t; }
  at::Tensor out(const at::Tensor& t) const { return one_d ? t.squeeze(2) : t; }
  std::vector<int64_t> shape(std::vector<int64_t> s) const {
    if (one_d) s.insert(s.begin() + 2, 1);
    return s;
  }
  bool three_d() const { return p.kernel.size() == 3; }
};

std::tuple<at::Tensor, at::Tensor> max_pool_with_indices(const graph::Node& n, const at::Tensor& x) {
  Pool q(n);
  const auto& p = q.p;
  if (q.three_d()) return at::max_pool3d_with_indices(x, p.kernel, p.stride, p.padding, p.dilation, p.ceil_mode);
  auto [v, i] = at::max_pool2d_with_indices(q.in(x), p.kernel, p.stride, p.padding, p.dilation, p.ceil_mode);
  return {q.out(v), q.out(i)};
}

// A MaxPool node and the MaxPoolIndices node of the same input (ops build
// them in that order) share one ATen pass: MaxPool leaves its indices here
// for the next MaxPoolIndices of the same tensor (same impl and version,
// held alive by the memo) and attributes.
struct MaxPoolMemo {
  at::Tensor input, indices;
  int64_t version = -1;
  graph::Attrs attrs;
};
thread_local MaxPoolMemo max_pool_memo;

at::Tensor max_pool(const graph::Node& n, const at::Tensor& x) {
  auto [values, indices] = max_pool_with_indices(n, x);
  max_pool_memo = {x, indices, static_cast<int64_t>(x._version()), n.attrs};
  return values;
}

at::Tensor max_pool_indices(const graph::Node& n, const at::Tensor& x) {
  MaxPoolMemo memo = std::move(max_pool_memo);
  max_pool_memo = {};
  if (memo.input.defined() && memo.input.is_same(x) && memo.version == static_cast<int64_t>(x._version()) &&
      memo.attrs == n.attrs)
    return memo.indices;
  return std::get<1>(max_pool_with_indices(n, x));
}

at::Tensor max_pool_gradient(const graph::Node& n, const at::Tensor& grad, const at::Tensor& indices) {
  Pool q(n);
  const auto& p = q.p;
  at::Tensor self = at::empty(q.shape(n.ints_attr("input_shape")), grad.options());  // only its shape is read
  if (q.three_d())
    return at::max_pool3d_with_indices_backward(grad, self, p.kernel, p.stride, p.padding, p.dilation, p.ceil_mode, indices);
  return q.out(at::max_pool2d_with_indices_backward(q.in(grad), self, p.kernel, p.stride, p.padding, p.dilation,
                                                    p.ceil_mode, q.in(indices)));
}

std::optional<int64_t> divisor(const graph::Node& n) {
  int64_t d = n.int_attr("divisor_override");
  return d ? std::optional<int64_t>(d) : std::nullopt;
}

at::Tensor avg_pool(const graph::Node& n, const at::Tensor& x) {
  Pool q(n);
  const auto& p = q.p;
  bool include = n.int_attr("count_include_pad") != 0;
  if (q.three_d()) return at::avg_pool3d(x, p.kernel, p.stride, p.padding, p.ceil_mode, include, divisor(n));
  return q.out(at::avg_pool2d(q.in(x), p.kernel, p.stride, p.padding, p.ceil_mode, include, divisor(n)));
}

at::Tensor avg_pool_gradient(const graph::Node& n, const at::Tensor& grad, const at::Tensor& x) {
  Pool q(n);
  const auto& p = q.p;
  bool include = n.int_attr("count_include_pad") != 0;
  if (q.three_d()) return at::avg_pool3d_backward(grad, x, p.kernel, p.stride, p.padding, p.ceil_mode, include, divisor(n));
  return q.out(at::avg_pool2d_backward(q.in(grad), q.in(x), p.kernel, p.stride, p.padding, p.ceil_mode, include, divisor(n)));
}
}  // namespace

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

at::Tensor eval_node(const graph::Node& n, const std::vector<at::Tensor>& a) {
  auto dtype = to_scalar_type(n.type.dtype);
  switch (n.kind) {
    case NodeKind::Placeholder:
    case NodeKind::Variable:
      TORCH_INTERNAL_ASSERT(false, "inputs are bound by the executor");
    case NodeKind::Constant:
      return at::full(n.type.shape, n.float_attr("value"), at::TensorOptions().dtype(dtype));
    case NodeKind::Assign: return a[0].copy_(a[1]);
    case NodeKind::Kernel: TORCH_INTERNAL_ASSERT(false, "kernel nodes run through the kernel registry");
    case NodeKind::Cast: return a[0].to(dtype);
    case NodeKind::Reshape: return a[0].reshape(n.ints_attr("shape"));
    case NodeKind::Transpose: return a[0].permute(n.ints_attr("perm"));
    case NodeKind::Slice: {
      const auto& starts = n.ints_attr("starts");
      const auto& ends = n.ints_attr("ends");
      const auto& strides = n.ints_attr("strides");
      at::Tensor view = a[0];
      for (int64_t d = 0; d < view.dim(); ++d) view = view.slice(d, starts[d], ends[d], strides[d]);
      return view;
    }
    case NodeKind::SliceUpdate: return slice_update(n, a[0].clone(), a);
    case NodeKind::Concat: return at::cat(a, n.int_attr("axis"));
    case NodeKind::Broadcast: return a[0].expand(n.ints_attr("shape"));
    case NodeKind::Identity: return a[0];
    case NodeKind::Abs: return at::abs(a[0]);
    case NodeKind::Negative: return at::neg(a[0]);
    case NodeKind::Sign: return at::sign(a[0]);
    case NodeKind::Exp: return at::exp(a[0]);
    case NodeKind::Log: return at::log(a[0]);
    case NodeKind::Sqrt: return at::sqrt(a[0]);
    case NodeKind::Rsqrt: return at::rsqrt(a[0]);
    case NodeKind::Reciprocal: return at::reciprocal(a[0]);
    case NodeKind::Square: return at::square(a[0]);
    case NodeKind::Sin: return at::sin(a[0]);
    case NodeKind::Cos: return at::cos(a[0]);
    case NodeKind::Tanh: return at::tanh(a[0]);
    case NodeKind::Sigmoid: return at::sigmoid(a[0]);
    case NodeKind::Floor: return at::floor(a[0]);
    case NodeKind::Ceil: return at::ceil(a[0]);
    case NodeKind::Round: return at::round(a[0]);
    case NodeKind::LogicalNot: return at::logical_not(a[0]);
    case NodeKind::IsNaN: return at::isnan(a[0]);
    case NodeKind::Erf: return at::erf(a[0]);
    case NodeKind::BitwiseNot: return at::bitwise_not(a[0]);
    case NodeKind::BitwiseAnd: return at::bitwise_and(a[0], a[1]);
    case NodeKind::BitwiseOr: return at::bitwise_or(a[0], a[1]);
    case NodeKind::BitwiseXor: return at::bitwise_xor(a[0], a[1]);
    // A shift by >= the bit width (or < 0): 0 left, the sign fill right (ATen's rule).
    case NodeKind::LeftShift: return at::bitwise_left_shift(a[0], a[1]);
    case NodeKind::RightShift: return at::bitwise_right_shift(a[0], a[1]);
    // Integer division by zero raises ZeroDivisionError, as torch on the CPU.
    case NodeKind::FloorDivide: return at::floor_divide(a[0], a[1]);
    case NodeKind::Remainder: return at::remainder(a[0], a[1]);
    case NodeKind::Add: return at::add(a[0], a[1]);
    case NodeKind::Subtract: return at::sub(a[0], a[1]);
    case NodeKind::Multiply: return at::mul(a[0], a[1]);
    case NodeKind::Divide: return at::div(a[0], a[1]);
    case NodeKind::Maximum: return at::maximum(a[0], a[1]);
    case NodeKind::Minimum: return at::minimum(a[0], a[1]);
    case NodeKind::Power: return at::pow(a[0], a[1]);
    case NodeKind::LogicalAnd: return at::logical_and(a[0], a[1]);
    case NodeKind::LogicalOr: return at::logical_or(a[0], a[1]);
    case NodeKind::Equal: return at::eq(a[0], a[1]);
    case NodeKind::NotEqual: return at::ne(a[0], a[1]);
    case NodeKind::Less: return at::lt(a[0], a[1]);
    case NodeKind::LessEqual: return at::le(a[0], a[1]);
    case NodeKind::Greater: return at::gt(a[0], a[1]);
    case NodeKind::GreaterEqual: return at::ge(a[0], a[1]);
    case NodeKind::Select: return at::where(a[0], a[1], a[2]);
    case NodeKind::ReduceSum:
    case NodeKind::ReduceMax:
    case NodeKind::ReduceMin:
    case NodeKind::ReduceProd:
    case NodeKind::ReduceMean: return reduce(n.kind, a[0], n.ints_attr("axes"));
    case NodeKind::Softmax: return at::softmax(a[0], n.int_attr("axis"));
    case NodeKind::MatMul: return at::matmul(a[0], a[1]);
    case NodeKind::RandomUniform: {
      // A stream determined by the state (the reference runtime's stand-in
      // for Philox; RNG ops run CPU kernels on the device generator instead).
      at::Tensor st = a[0].contiguous();
      const int32_t* s = st.const_data_ptr<int32_t>();
      uint64_t seed = 0;
      for (int i = 0; i < 7; ++i) seed = seed * 1000003u + static_cast<uint32_t>(s[i]);
      auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
      return at::rand(n.ints_attr("shape"), gen, at::TensorOptions().dtype(at::kFloat));
    }
    case NodeKind::Iota: {
      const auto& shape = n.ints_attr("shape");
      int64_t axis = n.int_attr("axis");
      std::vector<int64_t> along(shape.size(), 1);
      along[axis] = shape[axis];
      return at::arange(shape[axis], at::TensorOptions().dtype(dtype)).reshape(along).expand(shape).contiguous();
    }
    case NodeKind::Dequantize: return at::mul(at::sub(a[0].to(dtype), a[2].to(dtype)), a[1]);
    case NodeKind::DequantizeLUT: return dequantize_lut(a[0], a[1]);
    case NodeKind::ScaledDotProductAttention: return sdpa(n, a);
    case NodeKind::FFT:
      return n.int_attr("inverse") ? at::fft_ifftn(a[0], std::nullopt, n.ints_attr("axes"), n.str_attr("norm"))
                                   : at::fft_fftn(a[0], std::nullopt, n.ints_attr("axes"), n.str_attr("norm"));
    case NodeKind::RFFT: return at::fft_rfftn(a[0], std::nullopt, n.ints_attr("axes"), n.str_attr("norm"));
    case NodeKind::IRFFT:
      return at::fft_irfftn(a[0], irfft_sizes(n, a[0]), n.ints_attr("axes"), n.str_attr("norm"));
    case NodeKind::Convolution: {
      graph::ConvParams p = graph::conv_params(n);
      return at::convolution(a[0], a[1], std::nullopt, p.stride, p.padding, p.dilation, /*transposed=*/false,
                             std::vector<int64_t>(p.stride.size(), 0), p.groups);
    }
    case NodeKind::ConvolutionDataGradient: return conv_data_gradient(n, a[0], a[1]);
    case NodeKind::ConvolutionWeightGradient: return conv_weight_gradient(n, a[0], a[1]);
    case NodeKind::MaxPool: return max_pool(n, a[0]);
    case NodeKind::MaxPoolIndices: return max_pool_indices(n, a[0]);
    case NodeKind::MaxPoolGradient: return max_pool_gradient(n, a[0], a[1]);
    case NodeKind::AvgPool: return avg_pool(n, a[0]);
    case NodeKind::AvgPoolGradient: return avg_pool_gradient(n, a[0], a[1]);
  }
  TORCH_INTERNAL_ASSERT(false, "unhandled node kind ", graph::kind_name(n.kind));
}

}  // namespace mps_ext::runtime::reference
