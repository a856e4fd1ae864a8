// quantized_matmul (affine int4/int8 group-wise) and lut_matmul: y = x @ W^T
// with W packed (formats.h). Each is one kernel node whose decomposition is
// Dequantize -> MatMul (the oracle, and what runtimes without the kernel run:
// MPSGraph gets dequantizeTensor feeding matrixMultiplication). The reference
// runtime's kernels (quantized_matmul_kernel.cpp) never build the float W.
// Backward w.r.t. x: grad_x = grad_y @ W, a Dequantize -> MatMul graph.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops/op_utils.h"
#include "ops/quantization/formats.h"
#include "ops/quantization/quantized_matmul_kernel.h"
#include "runtime/reference/kernels.h"

namespace mps_ext::ops::quantization {
namespace {
using graph::Graph;
using runtime::GraphSpec;

void check_activations(const char* op, const char* name, const at::Tensor& x, int64_t in_features) {
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf,
                   op, ": expected '", name, "' of dtype float32, bfloat16 or float16, but got ", x.scalar_type());
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == in_features, op, ": expected '", name, "' with last dimension ",
              in_features, " (in_features), but got shape ", x.sizes());
}

std::vector<int64_t> out_shape(const at::Tensor& x, int64_t last) {
  std::vector<int64_t> s = x.sizes().vec();
  s.back() = last;
  return s;
}

// --- quantized_matmul ---------------------------------------------------------------
struct Shape2 {
  int64_t out_features, in_features;
};

// x [..., K] (or grad [..., N] when `backward`), qweight, scales, zero_points.
Shape2 check_quantized_matmul(const char* op, const at::Tensor& x, const at::Tensor& qweight, const at::Tensor& scales,
                              const at::Tensor& zero_points, int64_t bits, int64_t group_size, bool backward) {
  check_bits(op, bits);
  int64_t k = packed_in_features(op, "qweight", qweight, bits), n = qweight.size(0);
  check_group_size(op, group_size, k);
  const char* xname = backward ? "grad_output" : "x";
  check_activations(op, xname, x, backward ? n : k);
  check_affine_params(op, scales, zero_points, n, k, group_size, x.scalar_type());
  check_same_device(op, x, xname, qweight, "qweight");
  check_same_device(op, x, xname, scales, "scales");
  check_same_device(op, x, xname, zero_points, "zero_points");
  return {n, k};
}

graph::Tensor quantized_matmul_decomposition(Graph& d, const std::vector<graph::Tensor>& in, int64_t bits,
                                             int64_t group_size) {
  graph::Tensor w = dequantize_groupwise_ir(d, in[1], in[2], in[3], bits, group_size);  // [N, K]
  return d.matmul(in[0], d.transpose(w, {1, 0}));
}

void build_quantized_matmul(Graph& g, const GraphSpec& s) {
  auto x = g.placeholder(s.input(0), "x");
  auto q = g.placeholder(s.input(1), "qweight");
  auto scales = g.placeholder(s.input(2), "scales");
  auto zero_points = g.placeholder(s.input(3), "zero_points");
  int64_t bits = s.int_attr("bits"), group_size = s.int_attr("group_size");
  g.output(g.kernel("quantized_matmul", {x, q, scales, zero_points}, {{"bits", bits}, {"group_size", group_size}},
                    [bits, group_size](Graph& d, const std::vector<graph::Tensor>& in) {
                      return quantized_matmul_decomposition(d, in, bits, group_size);
                    }));
}

// Work per parallel task: at least ~64K multiply-adds, in whole row tiles.
int64_t grain_rows(int64_t m, int64_t k) {
  constexpr int64_t kTile = 4;
  int64_t rows = (int64_t{1} << 16) / std::max<int64_t>(1, m * k);
  return std::max<int64_t>(kTile, (rows + kTile - 1) / kTile * kTile);
}

// fp32 y [M, N] into the node's output (dtype of x).
at::Tensor finish(const at::Tensor& y, at::ScalarType dtype, const at::Tensor& out) {
  if (!out.is_same(y)) out.copy_(y);
  return out;
}

at::Tensor quantized_matmul_cpu(const graph::Node& node, const std::vector<at::Tensor>& in,
                                const runtime::reference::NewOutput& new_output) {
  const int64_t bits = node.int_attr("bits"), gs = node.int_attr("group_size");
  const at::ScalarType dtype = in[0].scalar_type();
  const int64_t m = in[0].size(0), k = in[0].size(1), n = in[1].size(0);
  at::Tensor out = new_output({m, n}, dtype);
  if (m == 0 || n == 0) return out;
  at::Tensor x = in[0].to(at::kFloat).contiguous();
  // bfloat16 GEMV on AVX512-BF16: the activations stay bf16 (exact products).
  at::Tensor x_bf16;
  if (m == 1 && bits == 4 && gs % 64 == 0 && dtype == at::kBFloat16 && MPS_EXT_CPU_KERNEL(bf16_dot_supported)()) {
    at::Tensor xb = in[0].contiguous();
    x_bf16 = at::empty({k}, in[0].options().dtype(at::kShort));
    MPS_EXT_CPU_KERNEL(reorder_bf16_for_int4)(xb.const_data_ptr<c10::BFloat16>(),
                                              reinterpret_cast<uint16_t*>(x_bf16.mutable_data_ptr<int16_t>()), k);
  }
  if (bits == 4) {
    at::Tensor reordered = at::empty_like(x);
    MPS_EXT_CPU_KERNEL(reorder_for_int4)(x.const_data_ptr<float>(), reordered.mutable_data_ptr<float>(), m, k);
    x = reordered;
  }
  // The zero-point term of the GEMV: sum of x per group (layout-independent).
  at::Tensor xsum = m == 1 ? x.view({m, k / gs, gs}).sum(-1).contiguous() : at::Tensor();
  at::Tensor q = in[1].contiguous(), s = in[2].contiguous(), z = in[3].contiguous();
  at::Tensor y = dtype == at::kFloat && out.is_contiguous() ? out : at::empty({m, n}, x.options());
  AffineMatmul a{x.const_data_ptr<float>(), xsum.defined() ? xsum.const_data_ptr<float>() : nullptr, m, k, n,
                 q.const_data_ptr<uint8_t>(), s.const_data_ptr(), z.const_data_ptr(), s.scalar_type(), bits, gs,
                 y.mutable_data_ptr<float>()};
  if (x_bf16.defined()) a.x_bf16 = reinterpret_cast<const uint16_t*>(x_bf16.const_data_ptr<int16_t>());
  auto kernel = MPS_EXT_CPU_KERNEL(affine_matmul_rows);
  at::parallel_for(0, n, grain_rows(m, k), [&](int64_t begin, int64_t end) { kernel(a, begin, end); });
  return finish(y, dtype, out);
}
MPS_EXT_REFERENCE_KERNEL("quantized_matmul", quantized_matmul_cpu);

at::Tensor quantized_matmul(const at::Tensor& x, const at::Tensor& qweight, const at::Tensor& scales,
                            const at::Tensor& zero_points, int64_t bits, int64_t group_size) {
  auto [n, k] = check_quantized_matmul("quantized_matmul", x, qweight, scales, zero_points, bits, group_size, false);
  if (x.numel() == 0 || n == 0) return at::zeros(out_shape(x, n), x.options());
  at::Tensor x2 = x.reshape({-1, k});
  GraphSpec spec("mps_ext::quantized_matmul");
  spec.input(x2, {0}).input(qweight).input(scales).input(zero_points).attr("bits", bits).attr("group_size", group_size);
  return runtime::run_graph(spec, build_quantized_matmul, {x2, qweight, scales, zero_points})[0].view(out_shape(x, n));
}

at::Tensor quantized_matmul_meta(const at::Tensor& x, const at::Tensor& qweight, const at::Tensor& scales,
                                 const at::Tensor& zero_points, int64_t bits, int64_t group_size) {
  auto [n, k] = check_quantized_matmul("quantized_matmul", x, qweight, scales, zero_points, bits, group_size, false);
  return at::empty(out_shape(x, n), x.options());
}

void build_quantized_matmul_backward(Graph& g, const GraphSpec& s) {
  auto grad = g.placeholder(s.input(0), "grad_output");
  auto q = g.placeholder(s.input(1), "qweight");
  auto scales = g.placeholder(s.input(2), "scales");
  auto zero_points = g.placeholder(s.input(3), "zero_points");
  g.output(g.matmul(grad, dequantize_groupwise_ir(g, q, scales, zero_points, s.int_attr("bits"),
                                                  s.int_attr("group_size"))));
}

at::Tensor quantized_matmul_backward(const at::Tensor& grad_output, const at::Tensor& qweight,
                                     const at::Tensor& scales, const at::Tensor& zero_points, int64_t bits,
                                     int64_t group_size) {
  auto [n, k] = check_quantized_matmul("quantized_matmul_backward", grad_output, qweight, scales, zero_points, bits,
                                       group_size, true);
  if (grad_output.numel() == 0 || k == 0) return at::zeros(out_shape(grad_output, k), grad_output.options());
  at::Tensor g2 = grad_output.reshape({-1, n});
  GraphSpec spec("mps_ext::quantized_matmul_backward");
  spec.input(g2, {0}).input(qweight).input(scales).input(zero_points).attr("bits", bits).attr("group_size",
                                                                                            group_size);
  return runtime::run_graph(spec, build_quantized_matmul_backward, {g2, qweight, scales, zero_points})[0].view(
      out_shape(grad_output, k));
}

at::Tensor quantized_matmul_backward_meta(const at::Tensor& grad_output, const at::Tensor& qweight,
                                          const at::Tensor& scales, const at::Tensor& zero_points, int64_t bits,
                                          int64_t group_size) {
  auto [n, k] = check_quantized_matmul("quantized_matmul_backward", grad_output, qweight, scales, zero_points, bits,
                                       group_size, true);
  return at::empty(out_shape(grad_output, k), grad_output.options());
}

// --- lut_matmul ---------------------------------------------------------------------
Shape2 check_lut_matmul(const char* op, const at::Tensor& x, const at::Tensor& indices, const at::Tensor& lut,
                        int64_t bits, bool backward) {
  check_bits(op, bits);
  int64_t k = packed_in_features(op, "indices", indices, bits), n = indices.size(0);
  const char* xname = backward ? "grad_output" : "x";
  check_activations(op, xname, x, backward ? n : k);
  check_lut(op, lut, n, bits, x.scalar_type());
  check_same_device(op, x, xname, indices, "indices");
  check_same_device(op, x, xname, lut, "lut");
  return {n, k};
}

void build_lut_matmul(Graph& g, const GraphSpec& s) {
  auto x = g.placeholder(s.input(0), "x");
  auto indices = g.placeholder(s.input(1), "indices");
  auto lut = g.placeholder(s.input(2), "lut");
  int64_t bits = s.int_attr("bits");
  g.output(g.kernel("lut_matmul", {x, indices, lut}, {{"bits", bits}},
                    [bits](Graph& d, const std::vector<graph::Tensor>& in) {
                      graph::Tensor w = dequantize_lut_ir(d, in[1], in[2], bits);
                      return d.matmul(in[0], d.transpose(w, {1, 0}));
                    }));
}

at::Tensor lut_matmul_cpu(const graph::Node& node, const std::vector<at::Tensor>& in,
                          const runtime::reference::NewOutput& new_output) {
  const int64_t bits = node.int_attr("bits");
  const at::ScalarType dtype = in[0].scalar_type();
  const int64_t m = in[0].size(0), k = in[0].size(1), n = in[1].size(0);
  at::Tensor out = new_output({m, n}, dtype);
  if (m == 0 || n == 0) return out;
  at::Tensor x = in[0].to(at::kFloat).contiguous(), idx = in[1].contiguous();
  at::Tensor lut = in[2].to(at::kFloat).contiguous();
  at::Tensor y = dtype == at::kFloat && out.is_contiguous() ? out : at::empty({m, n}, x.options());
  LutMatmul a{x.const_data_ptr<float>(), m, k, n, idx.const_data_ptr<uint8_t>(), lut.const_data_ptr<float>(),
              bits, n / lut.size(0), y.mutable_data_ptr<float>()};
  auto kernel = MPS_EXT_CPU_KERNEL(lut_matmul_rows);
  at::parallel_for(0, n, grain_rows(m, k), [&](int64_t begin, int64_t end) { kernel(a, begin, end); });
  return finish(y, dtype, out);
}
MPS_EXT_REFERENCE_KERNEL("lut_matmul", lut_matmul_cpu);

at::Tensor lut_matmul(const at::Tensor& x, const at::Tensor& indices, const at::Tensor& lut, int64_t bits) {
  auto [n, k] = check_lut_matmul("lut_matmul", x, indices, lut, bits, false);
  if (x.numel() == 0 || n == 0) return at::zeros(out_shape(x, n), x.options());
  at::Tensor x2 = x.reshape({-1, k});
  GraphSpec spec("mps_ext::lut_matmul");
  spec.input(x2, {0}).input(indices).input(lut).attr("bits", bits);
  return runtime::run_graph(spec, build_lut_matmul, {x2, indices, lut})[0].view(out_shape(x, n));
}

at::Tensor lut_matmul_meta(const at::Tensor& x, const at::Tensor& indices, const at::Tensor& lut, int64_t bits) {
  auto [n, k] = check_lut_matmul("lut_matmul", x, indices, lut, bits, false);
  return at::empty(out_shape(x, n), x.options());
}

void build_lut_matmul_backward(Graph& g, const GraphSpec& s) {
  auto grad = g.placeholder(s.input(0), "grad_output");
  auto indices = g.placeholder(s.input(1), "indices");
  auto lut = g.placeholder(s.input(2), "lut");
  g.output(g.matmul(grad, dequantize_lut_ir(g, indices, lut, s.int_attr("bits"))));
}

at::Tensor lut_matmul_backward(const at::Tensor& grad_output, const at::Tensor& indices, const at::Tensor& lut,
                               int64_t bits) {
  auto [n, k] = check_lut_matmul("lut_matmul_backward", grad_output, indices, lut, bits, true);
  if (grad_output.numel() == 0 || k == 0) return at::zeros(out_shape(grad_output, k), grad_output.options());
  at::Tensor g2 = grad_output.reshape({-1, n});
  GraphSpec spec("mps_ext::lut_matmul_backward");
  spec.input(g2, {0}).input(indices).input(lut).attr("bits", bits);
  return runtime::run_graph(spec, build_lut_matmul_backward, {g2, indices, lut})[0].view(out_shape(grad_output, k));
}

at::Tensor lut_matmul_backward_meta(const at::Tensor& grad_output, const at::Tensor& indices, const at::Tensor& lut,
                                    int64_t bits) {
  auto [n, k] = check_lut_matmul("lut_matmul_backward", grad_output, indices, lut, bits, true);
  return at::empty(out_shape(grad_output, k), grad_output.options());
}

// --- autograd: w.r.t. x only (the weight is frozen; adapters train on top) -------------
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

template <class Sig>
c10::TypedOperatorHandle<Sig> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

void check_frozen(const char* op, std::initializer_list<std::pair<const at::Tensor*, const char*>> args) {
  for (auto [t, name] : args)
    TORCH_CHECK(!requires_grad(*t), op, ": differentiating with respect to '", name,
                "' is not supported (only x); dequantize the weight and use a float matmul to train it");
}

using QmmSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t);
using LutSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t);

// Each op and its backward are linear in their first argument (x, or
// grad_output) with the weights frozen, so each is the other's gradient: one
// Function per family, instantiated with the op it runs (Op) and the op its
// gradient runs (Grad).
constexpr char kQmm[] = "mps_ext::quantized_matmul";
constexpr char kQmmBackward[] = "mps_ext::quantized_matmul_backward";
constexpr char kLut[] = "mps_ext::lut_matmul";
constexpr char kLutBackward[] = "mps_ext::lut_matmul_backward";
// "mps_ext::quantized_matmul" -> "quantized_matmul", for error messages.
constexpr const char* short_name(const char* op) { return op + sizeof("mps_ext::") - 1; }

template <const char* Op, const char* Grad>
struct QuantizedMatmulFn : torch::autograd::Function<QuantizedMatmulFn<Op, Grad>> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& qweight,
                            const at::Tensor& scales, const at::Tensor& zero_points, int64_t bits,
                            int64_t group_size) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({qweight, scales, zero_points});
    ctx->saved_data["bits"] = bits;
    ctx->saved_data["group_size"] = group_size;
    static auto op = find_op<QmmSig>(Op);
    return op.call(a, qweight, scales, zero_points, bits, group_size);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    static auto op = find_op<QmmSig>(Grad);
    at::Tensor g = op.call(grads[0], saved[0], saved[1], saved[2], ctx->saved_data["bits"].toInt(),
                           ctx->saved_data["group_size"].toInt());
    return {g, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

template <const char* Op, const char* Grad>
struct LutMatmulFn : torch::autograd::Function<LutMatmulFn<Op, Grad>> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& indices,
                            const at::Tensor& lut, int64_t bits) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({indices, lut});
    ctx->saved_data["bits"] = bits;
    static auto op = find_op<LutSig>(Op);
    return op.call(a, indices, lut, bits);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    static auto op = find_op<LutSig>(Grad);
    return {op.call(grads[0], saved[0], saved[1], ctx->saved_data["bits"].toInt()), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

template <const char* Op, const char* Grad>
at::Tensor quantized_matmul_autograd(const at::Tensor& a, const at::Tensor& qweight, const at::Tensor& scales,
                                     const at::Tensor& zero_points, int64_t bits, int64_t group_size) {
  check_frozen(short_name(Op), {{&scales, "scales"}, {&zero_points, "zero_points"}});
  if (!requires_grad(a)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = find_op<QmmSig>(Op);
    return op.call(a, qweight, scales, zero_points, bits, group_size);
  }
  return QuantizedMatmulFn<Op, Grad>::apply(a, qweight, scales, zero_points, bits, group_size);
}

template <const char* Op, const char* Grad>
at::Tensor lut_matmul_autograd(const at::Tensor& a, const at::Tensor& indices, const at::Tensor& lut, int64_t bits) {
  check_frozen(short_name(Op), {{&lut, "lut"}});
  if (!requires_grad(a)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = find_op<LutSig>(Op);
    return op.call(a, indices, lut, bits);
  }
  return LutMatmulFn<Op, Grad>::apply(a, indices, lut, bits);
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(mps_ext, m) {
  m.def("quantized_matmul(Tensor x, Tensor qweight, Tensor scales, Tensor zero_points, int bits, int group_size) "
        "-> Tensor");
  m.def("quantized_matmul_backward(Tensor grad_output, Tensor qweight, Tensor scales, Tensor zero_points, int bits, "
        "int group_size) -> Tensor");
  m.def("lut_matmul(Tensor x, Tensor indices, Tensor lut, int bits) -> Tensor");
  m.def("lut_matmul_backward(Tensor grad_output, Tensor indices, Tensor lut, int bits) -> Tensor");
}

TORCH_LIBRARY_IMPL(mps_ext, CPU, m) {
  m.impl("quantized_matmul", &quantized_matmul);
  m.impl("quantized_matmul_backward", &quantized_matmul_backward);
  m.impl("lut_matmul", &lut_matmul);
  m.impl("lut_matmul_backward", &lut_matmul_backward);
}

TORCH_LIBRARY_IMPL(mps_ext, PrivateUse1, m) {
  m.impl("quantized_matmul", &quantized_matmul);
  m.impl("quantized_matmul_backward", &quantized_matmul_backward);
  m.impl("lut_matmul", &lut_matmul);
  m.impl("lut_matmul_backward", &lut_matmul_backward);
}

#ifdef MPS_EXT_WITH_MPSGRAPH
TORCH_LIBRARY_IMPL(mps_ext, MPS, m) {
  m.impl("quantized_matmul", &quantized_matmul);
  m.impl("quantized_matmul_backward", &quantized_matmul_backward);
  m.impl("lut_matmul", &lut_matmul);
  m.impl("lut_matmul_backward", &lut_matmul_backward);
}
#endif

TORCH_LIBRARY_IMPL(mps_ext, Meta, m) {
  m.impl("quantized_matmul", &quantized_matmul_meta);
  m.impl("quantized_matmul_backward", &quantized_matmul_backward_meta);
  m.impl("lut_matmul", &lut_matmul_meta);
  m.impl("lut_matmul_backward", &lut_matmul_backward_meta);
}

TORCH_LIBRARY_IMPL(mps_ext, Autograd, m) {
  m.impl("quantized_matmul", &quantized_matmul_autograd<kQmm, kQmmBackward>);
  m.impl("quantized_matmul_backward", &quantized_matmul_autograd<kQmmBackward, kQmm>);
  m.impl("lut_matmul", &lut_matmul_autograd<kLut, kLutBackward>);
  m.impl("lut_matmul_backward", &lut_matmul_autograd<kLutBackward, kLut>);
}

}  // namespace mps_ext::ops::quantization
