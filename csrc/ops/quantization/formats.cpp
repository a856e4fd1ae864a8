// Argument checks, packing and the IR dequantizations of the packed formats
// (formats.h documents them).
#include "ops/quantization/formats.h"

#include <ATen/ATen.h>

namespace mps_ext::ops::quantization {
using graph::DType;
using graph::Graph;

void check_bits(const char* op, int64_t bits) {
  TORCH_CHECK_VALUE(bits == 4 || bits == 8, op, ": bits must be 4 or 8, but got ", bits);
}

int64_t packed_in_features(const char* op, const char* arg, const at::Tensor& packed, int64_t bits) {
  TORCH_CHECK_TYPE(packed.scalar_type() == at::kByte, op, ": expected '", arg, "' of dtype torch.uint8, but got ",
                   packed.scalar_type());
  TORCH_CHECK(packed.dim() == 2, op, ": expected '", arg, "' to be 2-D [out_features, in_features",
              bits == 4 ? " / 2" : "", "], but got shape ", packed.sizes());
  return packed.size(1) * 8 / bits;
}

void check_group_size(const char* op, int64_t group_size, int64_t in_features) {
  TORCH_CHECK_VALUE(group_size > 0 && group_size % 32 == 0, op,
                    ": group_size must be a positive multiple of 32 (32, 64, 128, 256, ...), but got ", group_size);
  TORCH_CHECK_VALUE(in_features % group_size == 0, op, ": group_size ", group_size,
                    " must divide in_features, but in_features is ", in_features);
}

void check_affine_params(const char* op, const at::Tensor& scales, const at::Tensor& zero_points, int64_t out_features,
                         int64_t in_features, int64_t group_size, at::ScalarType dtype) {
  std::vector<int64_t> expected{out_features, in_features / group_size};
  for (auto [t, name] : {std::pair{&scales, "scales"}, std::pair{&zero_points, "zero_points"}}) {
    TORCH_CHECK_TYPE(t->scalar_type() == dtype, op, ": expected '", name, "' of dtype ", dtype,
                     " (the activations' dtype), but got ", t->scalar_type());
    TORCH_CHECK(t->sizes() == at::IntArrayRef(expected), op, ": expected '", name, "' of shape ",
                at::IntArrayRef(expected), " [out_features, in_features / group_size], but got ", t->sizes());
  }
}

void check_lut(const char* op, const at::Tensor& lut, int64_t out_features, int64_t bits, at::ScalarType dtype) {
  TORCH_CHECK_TYPE(lut.scalar_type() == dtype, op, ": expected 'lut' of dtype ", dtype, ", but got ",
                   lut.scalar_type());
  TORCH_CHECK(lut.dim() == 2 && lut.size(1) == (int64_t{1} << bits), op, ": expected 'lut' of shape [tables, ",
              int64_t{1} << bits, "] for bits=", bits, ", but got ", lut.sizes());
  TORCH_CHECK(lut.size(0) > 0 && out_features % lut.size(0) == 0, op, ": the number of tables in 'lut' (",
              lut.size(0), ") must divide out_features (", out_features, ")");
}

void check_same_device(const char* op, const at::Tensor& a, const char* a_name, const at::Tensor& b,
                       const char* b_name) {
  TORCH_CHECK(a.device() == b.device(), op, ": expected '", a_name, "' and '", b_name,
              "' on the same device, but got ", a.device(), " and ", b.device());
}

at::Tensor pack_codes(const at::Tensor& codes, int64_t bits) {
  at::Tensor c = codes.to(at::kByte);
  if (bits == 8) return c.contiguous();
  at::Tensor lo = c.slice(-1, 0, c.size(-1), 2), hi = c.slice(-1, 1, c.size(-1), 2);
  return at::bitwise_or(lo, at::bitwise_left_shift(hi, 4)).contiguous();
}

at::Tensor unpack_codes(const at::Tensor& packed, int64_t bits) {
  if (bits == 8) return packed;
  at::Tensor lo = at::bitwise_and(packed, 0x0F), hi = at::bitwise_right_shift(packed, 4);
  std::vector<int64_t> shape = packed.sizes().vec();
  shape.back() *= 2;
  return at::stack({lo, hi}, -1).reshape(shape);
}

graph::Tensor unpack_codes_ir(Graph& g, graph::Tensor packed, int64_t bits) {
  if (bits == 8) return packed;
  const graph::Shape& s = g.type(packed).shape;  // [N, K / 2], concrete
  int64_t n = s[0], half = s[1];
  graph::Tensor b = g.cast(packed, DType::Float32);
  graph::Tensor hi = g.unary(graph::NodeKind::Floor, g.mul(b, g.constant(1.0 / 16, DType::Float32)));
  graph::Tensor lo = g.sub(b, g.mul(hi, g.constant(16.0, DType::Float32)));
  graph::Tensor pairs = g.concat({g.reshape(lo, {n, half, 1}), g.reshape(hi, {n, half, 1})}, 2);
  return g.cast(g.reshape(pairs, {n, 2 * half}), DType::UInt8);
}

graph::Tensor dequantize_groupwise_ir(Graph& g, graph::Tensor qweight, graph::Tensor scales,
                                      graph::Tensor zero_points, int64_t bits, int64_t group_size) {
  graph::Tensor q = unpack_codes_ir(g, qweight, bits);
  const graph::Shape& s = g.type(q).shape;
  int64_t n = s[0], k = s[1], groups = k / group_size;
  DType dtype = g.type(scales).dtype;
  graph::Tensor w = g.dequantize(g.reshape(q, {n, groups, group_size}), g.reshape(scales, {n, groups, 1}),
                                 g.reshape(zero_points, {n, groups, 1}), dtype);
  return g.reshape(w, {n, k});
}

graph::Tensor dequantize_lut_ir(Graph& g, graph::Tensor indices, graph::Tensor lut, int64_t bits) {
  graph::Tensor idx = unpack_codes_ir(g, indices, bits);
  const graph::Shape& s = g.type(idx).shape;
  const graph::Shape& ls = g.type(lut).shape;  // [T, E]
  int64_t n = s[0], k = s[1], tables = ls[0];
  if (tables == n) return g.dequantize_lut(idx, g.reshape(lut, {n, 1, ls[1]}));
  graph::Tensor w = g.dequantize_lut(g.reshape(idx, {tables, n / tables, k}), g.reshape(lut, {tables, 1, 1, ls[1]}));
  return g.reshape(w, {n, k});
}

}  // namespace mps_ext::ops::quantization
