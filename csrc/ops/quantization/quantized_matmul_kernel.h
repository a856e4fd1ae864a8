// The quantized matmuls' CPU kernels (quantized_matmul_kernel.cpp, built per
// CPU capability): y[M, N] = x[M, K] @ W^T, W never materialised in full.
// Callers split the output features into ranges and run them in parallel
// (at::parallel_for lives in quantized_matmul.cpp, compiled with OpenMP).
#pragma once

#include <c10/core/ScalarType.h>
#include <c10/util/BFloat16.h>

#include <cstdint>

#include "runtime/reference/cpu_dispatch.h"

namespace mps_ext::ops::quantization {

// Affine group-wise weights (formats in quantization.h). x is fp32 [M, K] as
// laid out by prepare_activations (int4: each block of 2 * lanes inputs holds
// the even inputs, then the odd ones, matching how a byte's two nibbles
// unpack); xsum is x's sum per (row, group) [M, G] (the zero-point term is
// applied once per group: s * (x.q - z * sum(x))). scales and zero_points
// [N, G] of scale_dtype. Rows [n_begin, n_end) of y (fp32, [M, N]).
struct AffineMatmul {
  const float* x;
  const float* xsum;
  int64_t M, K, N;
  const uint8_t* qweight;
  const void* scales;
  const void* zero_points;
  c10::ScalarType scale_dtype;
  int64_t bits, group_size;
  float* y;
  // Optional (M == 1, int4, bfloat16 activations, where bf16_dot_supported()):
  // x as bfloat16 bits in the bf16 layout (blocks of 64: even inputs, then
  // odd), for the AVX512-BF16 dot-product GEMV; it is exact (bf16 x bf16
  // products accumulate in fp32).
  const uint16_t* x_bf16 = nullptr;
};

// LUT weights: indices [N, K * bits / 8] (4-bit: two per byte, low nibble
// first), lut [N / channels_per_table, 2^bits] fp32. x fp32 [M, K] in its
// natural order.
struct LutMatmul {
  const float* x;
  int64_t M, K, N;
  const uint8_t* indices;
  const float* lut;
  int64_t bits, channels_per_table;
  float* y;
};

// How many consecutive inputs the int4 activation layout interleaves (2 *
// the float vector width of the capability in use).
MPS_EXT_DECLARE_CPU_KERNEL(int64_t, int4_block_size, ())
// dst[M, K] = x reordered for int4 weights; K a multiple of int4_block_size().
MPS_EXT_DECLARE_CPU_KERNEL(void, reorder_for_int4, (const float* x, float* dst, int64_t M, int64_t K))
// Whether this capability and CPU run the bf16 GEMV (AVX512 with AVX512-BF16).
MPS_EXT_DECLARE_CPU_KERNEL(bool, bf16_dot_supported, ())
// dst[K] = x's bfloat16 bits in the bf16 layout; K a multiple of 64.
MPS_EXT_DECLARE_CPU_KERNEL(void, reorder_bf16_for_int4, (const c10::BFloat16* x, uint16_t* dst, int64_t K))
MPS_EXT_DECLARE_CPU_KERNEL(void, affine_matmul_rows, (const AffineMatmul& a, int64_t n_begin, int64_t n_end))
MPS_EXT_DECLARE_CPU_KERNEL(void, lut_matmul_rows, (const LutMatmul& a, int64_t n_begin, int64_t n_end))

}  // namespace mps_ext::ops::quantization
