// Quantized matmul CPU kernels, one build per CPU capability. The weight is
// read packed and turned into floats in registers (GEMV) or one small tile at
// a time (GEMM), so memory traffic is the packed weight plus its scales.
//
// GEMV (M == 1, affine): per row and group, acc = x_g . q_g on the raw codes,
// then y += s * (acc - z * sum(x_g)): no per-element scale or zero point.
// GEMM (M > 1, and LUT weights): a tile of TILE_N rows is dequantized into an
// fp32 buffer (L2-resident) and multiplied against every row block of x by a
// register-blocked dot-product micro-kernel.
#include "ops/quantization/quantized_matmul_kernel.h"

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <vector>

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

namespace mps_ext::ops::quantization::CPU_CAPABILITY {
namespace {
using Vec = at::vec::Vectorized<float>;
constexpr int64_t kLanes = Vec::size();
constexpr int64_t kTileN = 4;  // weight rows dequantized together (GEMM)
constexpr int64_t kBlockM = 4;  // activation rows per micro-kernel call

float hsum(const Vec& v) {
  alignas(64) float lanes[kLanes];
  v.store(lanes);
  float s = 0;
  for (int64_t i = 0; i < kLanes; ++i) s += lanes[i];
  return s;
}

// kLanes packed bytes (2 * kLanes int4 codes) -> lo (even inputs) and hi (odd
// inputs) as floats: the int4 activation layout puts the even inputs of a
// block first.
inline void unpack_int4(const uint8_t* p, Vec& lo, Vec& hi) {
#if defined(CPU_CAPABILITY_AVX512)
  __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  lo = _mm512_cvtepi32_ps(_mm512_and_si512(b, _mm512_set1_epi32(0x0F)));
  hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(b, 4));
#elif defined(CPU_CAPABILITY_AVX2)
  __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  lo = _mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(0x0F)));
  hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
#else
  alignas(64) float l[kLanes], h[kLanes];
  for (int64_t i = 0; i < kLanes; ++i) {
    l[i] = static_cast<float>(p[i] & 0x0F);
    h[i] = static_cast<float>(p[i] >> 4);
  }
  lo = Vec::loadu(l);
  hi = Vec::loadu(h);
#endif
}

// kLanes uint8 codes -> floats.
inline Vec load_u8(const uint8_t* p) {
#if defined(CPU_CAPABILITY_AVX512)
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#elif defined(CPU_CAPABILITY_AVX2)
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#else
  alignas(64) float v[kLanes];
  for (int64_t i = 0; i < kLanes; ++i) v[i] = static_cast<float>(p[i]);
  return Vec::loadu(v);
#endif
}

template <typename S>
inline float as_float(const void* p, int64_t i) {
  return static_cast<float>(static_cast<const S*>(p)[i]);
}

// M == 1: one pass over each packed row.
template <typename S, int64_t Bits>
void affine_gemv(const AffineMatmul& a, int64_t n_begin, int64_t n_end) {
  const int64_t gs = a.group_size, groups = a.K / gs, row_bytes = a.K * Bits / 8;
  const Vec zero(0.f);
  for (int64_t n = n_begin; n < n_end; ++n) {
    const uint8_t* q = a.qweight + n * row_bytes;
    Vec total = zero;
    float correction = 0.f;
    for (int64_t g = 0; g < groups; ++g) {
      const float* xg = a.x + g * gs;
      const uint8_t* qg = q + g * gs * Bits / 8;
      Vec acc0 = zero, acc1 = zero;
      for (int64_t b = 0; b < gs; b += 2 * kLanes) {
        Vec w0, w1;
        if constexpr (Bits == 4) {
          unpack_int4(qg + b / 2, w0, w1);
        } else {
          w0 = load_u8(qg + b);
          w1 = load_u8(qg + b + kLanes);
        }
        acc0 = at::vec::fmadd(w0, Vec::loadu(xg + b), acc0);
        acc1 = at::vec::fmadd(w1, Vec::loadu(xg + b + kLanes), acc1);
      }
      const float s = as_float<S>(a.scales, n * groups + g), z = as_float<S>(a.zero_points, n * groups + g);
      total = at::vec::fmadd(acc0 + acc1, Vec(s), total);
      correction += s * z * a.xsum[g];
    }
    a.y[n] = hsum(total) - correction;
  }
}

// tile[r, :] = dequantized weight row n + r, in the activations' layout.
template <typename S, int64_t Bits>
void dequantize_affine_rows(const AffineMatmul& a, int64_t n, int64_t rows, float* tile) {
  const int64_t gs = a.group_size, groups = a.K / gs, row_bytes = a.K * Bits / 8;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* q = a.qweight + (n + r) * row_bytes;
    float* out = tile + r * a.K;
    for (int64_t g = 0; g < groups; ++g) {
      const Vec s(as_float<S>(a.scales, (n + r) * groups + g));
      const Vec z(as_float<S>(a.zero_points, (n + r) * groups + g));
      for (int64_t k = g * gs; k < (g + 1) * gs; k += 2 * kLanes) {
        Vec w0, w1;
        if constexpr (Bits == 4) {
          unpack_int4(q + k / 2, w0, w1);
        } else {
          w0 = load_u8(q + k);
          w1 = load_u8(q + k + kLanes);
        }
        ((w0 - z) * s).store(out + k);
        ((w1 - z) * s).store(out + k + kLanes);
      }
    }
  }
}

void dequantize_lut_rows(const LutMatmul& a, int64_t n, int64_t rows, float* tile) {
  const int64_t entries = int64_t{1} << a.bits, row_bytes = a.K * a.bits / 8;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* q = a.indices + (n + r) * row_bytes;
    const float* table = a.lut + ((n + r) / a.channels_per_table) * entries;
    float* out = tile + r * a.K;
    if (a.bits == 8) {
      for (int64_t k = 0; k < a.K; ++k) out[k] = table[q[k]];
    } else {
      for (int64_t j = 0; j < a.K / 2; ++j) {
        out[2 * j] = table[q[j] & 0x0F];
        out[2 * j + 1] = table[q[j] >> 4];
      }
    }
  }
}

// y[m, n0 + j] = x[m, :] . tile[j, :] for MB rows of x and NB rows of the tile.
template <int64_t MB, int64_t NB>
void micro_kernel(const float* x, int64_t ldx, const float* tile, int64_t K, float* y, int64_t ldy) {
  Vec acc[MB][NB];
  for (int64_t i = 0; i < MB; ++i)
    for (int64_t j = 0; j < NB; ++j) acc[i][j] = Vec(0.f);
  int64_t k = 0;
  for (; k + kLanes <= K; k += kLanes) {
    Vec w[NB];
    for (int64_t j = 0; j < NB; ++j) w[j] = Vec::loadu(tile + j * K + k);
    for (int64_t i = 0; i < MB; ++i) {
      const Vec xv = Vec::loadu(x + i * ldx + k);
      for (int64_t j = 0; j < NB; ++j) acc[i][j] = at::vec::fmadd(xv, w[j], acc[i][j]);
    }
  }
  for (int64_t i = 0; i < MB; ++i)
    for (int64_t j = 0; j < NB; ++j) {
      float s = hsum(acc[i][j]);
      for (int64_t kk = k; kk < K; ++kk) s += x[i * ldx + kk] * tile[j * K + kk];
      y[i * ldy + j] = s;
    }
}

template <int64_t NB>
void multiply_tile_rows(const float* x, int64_t M, int64_t K, const float* tile, float* y, int64_t N) {
  int64_t m = 0;
  for (; m + kBlockM <= M; m += kBlockM) micro_kernel<kBlockM, NB>(x + m * K, K, tile, K, y + m * N, N);
  switch (M - m) {
    case 3: micro_kernel<3, NB>(x + m * K, K, tile, K, y + m * N, N); break;
    case 2: micro_kernel<2, NB>(x + m * K, K, tile, K, y + m * N, N); break;
    case 1: micro_kernel<1, NB>(x + m * K, K, tile, K, y + m * N, N); break;
    default: break;
  }
}

void multiply_tile(const float* x, int64_t M, int64_t K, const float* tile, int64_t rows, float* y, int64_t N) {
  switch (rows) {
    case 4: multiply_tile_rows<4>(x, M, K, tile, y, N); break;
    case 3: multiply_tile_rows<3>(x, M, K, tile, y, N); break;
    case 2: multiply_tile_rows<2>(x, M, K, tile, y, N); break;
    case 1: multiply_tile_rows<1>(x, M, K, tile, y, N); break;
    default: break;
  }
}
static_assert(kTileN == 4, "multiply_tile handles up to 4 rows");

template <typename Dequantize>
void tiled_gemm(const float* x, int64_t M, int64_t K, int64_t N, float* y, int64_t n_begin, int64_t n_end,
                const Dequantize& dequantize) {
  std::vector<float> tile(static_cast<size_t>(kTileN * K));
  for (int64_t n = n_begin; n < n_end; n += kTileN) {
    const int64_t rows = std::min(kTileN, n_end - n);
    dequantize(n, rows, tile.data());
    multiply_tile(x, M, K, tile.data(), rows, y + n, N);
  }
}

template <typename S, int64_t Bits>
void affine_rows(const AffineMatmul& a, int64_t n_begin, int64_t n_end) {
  if (a.M == 1) return affine_gemv<S, Bits>(a, n_begin, n_end);
  tiled_gemm(a.x, a.M, a.K, a.N, a.y, n_begin, n_end,
             [&](int64_t n, int64_t rows, float* tile) { dequantize_affine_rows<S, Bits>(a, n, rows, tile); });
}

template <typename S>
void affine_rows_bits(const AffineMatmul& a, int64_t n_begin, int64_t n_end) {
  if (a.bits == 4)
    affine_rows<S, 4>(a, n_begin, n_end);
  else
    affine_rows<S, 8>(a, n_begin, n_end);
}
}  // namespace

int64_t int4_block_size() { return 2 * kLanes; }

void reorder_for_int4(const float* x, float* dst, int64_t M, int64_t K) {
  const int64_t block = 2 * kLanes;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t b = 0; b < K; b += block) {
      const float* src = x + m * K + b;
      float* out = dst + m * K + b;
      for (int64_t j = 0; j < kLanes; ++j) {
        out[j] = src[2 * j];
        out[kLanes + j] = src[2 * j + 1];
      }
    }
}

void affine_matmul_rows(const AffineMatmul& a, int64_t n_begin, int64_t n_end) {
  switch (a.scale_dtype) {
    case c10::ScalarType::BFloat16: return affine_rows_bits<c10::BFloat16>(a, n_begin, n_end);
    case c10::ScalarType::Half: return affine_rows_bits<c10::Half>(a, n_begin, n_end);
    default: return affine_rows_bits<float>(a, n_begin, n_end);
  }
}

void lut_matmul_rows(const LutMatmul& a, int64_t n_begin, int64_t n_end) {
  tiled_gemm(a.x, a.M, a.K, a.N, a.y, n_begin, n_end,
             [&](int64_t n, int64_t rows, float* tile) { dequantize_lut_rows(a, n, rows, tile); });
}

}  // namespace mps_ext::ops::quantization::CPU_CAPABILITY
