// The packed weight formats of the quantization family, their argument
// checks, and their dequantization as IR (the decompositions every runtime can
// run and the kernels' oracle).
//
// Affine group-wise (quantize_groupwise, quantized_matmul):
//   w[n, k] = scale[n, g] * (q[n, k] - zero_point[n, g]),  g = k / group_size
//   q holds unsigned codes in [0, 2^bits - 1]. qweight is uint8:
//   bits 8: [N, K]; bits 4: [N, K / 2], byte j = q[2j] | q[2j + 1] << 4 (low
//   nibble first, along the input dimension). scales and zero_points are
//   [N, K / group_size] in the activations' dtype; zero points are integers
//   stored as floats. Symmetric mode: zero_point = 2^(bits-1) (8 or 128), i.e.
//   signed codes in [-(2^(bits-1) - 1), 2^(bits-1) - 1] stored offset-binary.
//   group_size: a multiple of 32 dividing K (tested: 32, 64, 128, 256).
// LUT / palettized (quantize_lut, lut_matmul):
//   w[n, k] = lut[n / channels_per_table, idx[n, k]]; lut [T, 2^bits],
//   T = N / channels_per_table (1 = a table per output channel); indices
//   packed like q above (bits 4 or 8).
// Per-tensor / per-channel int8 (quantize_per_tensor/_channel, dequantize):
//   x = scale * (q - zero_point); symmetric: int8 q in [-127, 127], zero
//   point 0; asymmetric: uint8 q in [0, 255]. scale/zero_point are 0-d
//   (per tensor) or [C] along `axis`, floating.
#pragma once

#include <ATen/core/Tensor.h>

#include "graph/graph.h"

namespace mps_ext::ops::quantization {

void check_bits(const char* op, int64_t bits);
// qweight/indices: uint8 [N, K * bits / 8]; returns K.
int64_t packed_in_features(const char* op, const char* arg, const at::Tensor& packed, int64_t bits);
void check_group_size(const char* op, int64_t group_size, int64_t in_features);
// scales and zero_points: [N, K / group_size] of `dtype`.
void check_affine_params(const char* op, const at::Tensor& scales, const at::Tensor& zero_points, int64_t out_features,
                         int64_t in_features, int64_t group_size, at::ScalarType dtype);
// lut: [T, 2^bits] of `dtype`, T dividing out_features.
void check_lut(const char* op, const at::Tensor& lut, int64_t out_features, int64_t bits, at::ScalarType dtype);
void check_same_device(const char* op, const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name);

// Packing on ATen tensors (CPU or any device): codes uint8 [..., K] <-> packed.
at::Tensor pack_codes(const at::Tensor& codes, int64_t bits);
at::Tensor unpack_codes(const at::Tensor& packed, int64_t bits);

// IR: packed uint8 [N, K * bits / 8] -> codes uint8 [N, K]. The IR has no
// bitwise ops, so nibbles come from exact float arithmetic (hi = floor(b/16)).
graph::Tensor unpack_codes_ir(graph::Graph& g, graph::Tensor packed, int64_t bits);
// IR: the dequantized weight [N, K] in scales' dtype.
graph::Tensor dequantize_groupwise_ir(graph::Graph& g, graph::Tensor qweight, graph::Tensor scales,
                                      graph::Tensor zero_points, int64_t bits, int64_t group_size);
graph::Tensor dequantize_lut_ir(graph::Graph& g, graph::Tensor indices, graph::Tensor lut, int64_t bits);

}  // namespace mps_ext::ops::quantization
