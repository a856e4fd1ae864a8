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
  return at::vec::vec_reduce_all<float>([](Vec& a, Vec& b) { return a + b; }, v);
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

// 2 * kLanes codes starting at code k of a row (int4: two per byte) -> floats.
template <int64_t Bits>
inline void load_codes(const uint8_t* row, int64_t k, Vec& w0, Vec& w1) {
  if constexpr (Bits == 4) {
    unpack_int4(row + k / 2, w0, w1);
  } else {
    w0 = load_u8(row + k);
    w1 = load_u8(row + k + kLanes);
  }
}

template <typename S>
inline float as_float(const void* p, int64_t i) {
  return static_cast<float>(static_cast<const S*>(p)[i]);
}

#if defined(CPU_CAPABILITY_AVX512)
// int4 GEMV on bfloat16 activations with vdpbf16ps (AVX512-BF16): a code q
// becomes the bf16 number 128 + q by OR-ing its bits into 0x4300 (exponent of
// 128, q in the mantissa), so 64 weights cost one widening load, three logic
// ops and two dot-product instructions. y += s * (acc - (128 + z) * sum(x_g)).
// Four rows at a time share the activation loads and keep 8 dot chains in flight.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) inline void dot64(const uint8_t* q, __m512bh x_lo,
                                                                          __m512bh x_hi, __m512& acc_lo,
                                                                          __m512& acc_hi) {
  const __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)));
  const __m512i nibble = _mm512_set1_epi16(0x0F), bias = _mm512_set1_epi16(0x4300);
  const __m512i lo = _mm512_or_si512(_mm512_and_si512(b, nibble), bias);
  const __m512i hi = _mm512_or_si512(_mm512_srli_epi16(b, 4), bias);
  acc_lo = _mm512_dpbf16_ps(acc_lo, (__m512bh)lo, x_lo);  // two chains per row: the dot's latency is hidden
  acc_hi = _mm512_dpbf16_ps(acc_hi, (__m512bh)hi, x_hi);
}

template <typename S, int64_t Rows>
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void int4_gemv_bf16(const AffineMatmul& a, int64_t n) {
  const int64_t gs = a.group_size, groups = a.K / gs, row_bytes = a.K / 2;
  __m512 total[Rows];
  float correction[Rows];
  for (int64_t r = 0; r < Rows; ++r) {
    total[r] = _mm512_setzero_ps();
    correction[r] = 0.f;
  }
  for (int64_t g = 0; g < groups; ++g) {
    __m512 acc_lo[Rows], acc_hi[Rows];
    for (int64_t r = 0; r < Rows; ++r) acc_lo[r] = acc_hi[r] = _mm512_setzero_ps();
    for (int64_t k = g * gs; k < (g + 1) * gs; k += 64) {
      const __m512bh x_lo = (__m512bh)_mm512_loadu_si512(a.x_bf16 + k);
      const __m512bh x_hi = (__m512bh)_mm512_loadu_si512(a.x_bf16 + k + 32);
      for (int64_t r = 0; r < Rows; ++r)
        dot64(a.qweight + (n + r) * row_bytes + k / 2, x_lo, x_hi, acc_lo[r], acc_hi[r]);
    }
    for (int64_t r = 0; r < Rows; ++r) {
      const float s = as_float<S>(a.scales, (n + r) * groups + g), z = as_float<S>(a.zero_points, (n + r) * groups + g);
      total[r] = _mm512_fmadd_ps(_mm512_add_ps(acc_lo[r], acc_hi[r]), _mm512_set1_ps(s), total[r]);
      correction[r] += s * (128.f + z) * a.xsum[g];
    }
  }
  for (int64_t r = 0; r < Rows; ++r) a.y[n + r] = _mm512_reduce_add_ps(total[r]) - correction[r];
}

bool cpu_has_avx512_bf16() {
  static const bool has = __builtin_cpu_supports("avx512bf16");
  return has;
}
#endif

// M == 1: one pass over Rows packed rows at a time (they share the
// activation loads; 2 * Rows independent FMA chains hide the FMA latency).
template <typename S, int64_t Bits, int64_t Rows>
void affine_gemv(const AffineMatmul& a, int64_t n) {
  const int64_t gs = a.group_size, groups = a.K / gs, row_bytes = a.K * Bits / 8;
  const Vec zero(0.f);
  Vec total[Rows];
  float correction[Rows];
  for (int64_t r = 0; r < Rows; ++r) {
    total[r] = zero;
    correction[r] = 0.f;
  }
  for (int64_t g = 0; g < groups; ++g) {
    Vec acc0[Rows], acc1[Rows];
    for (int64_t r = 0; r < Rows; ++r) acc0[r] = acc1[r] = zero;
    for (int64_t k = g * gs; k < (g + 1) * gs; k += 2 * kLanes) {
      const Vec x0 = Vec::loadu(a.x + k), x1 = Vec::loadu(a.x + k + kLanes);
      for (int64_t r = 0; r < Rows; ++r) {
        const uint8_t* q = a.qweight + (n + r) * row_bytes;
        Vec w0, w1;
        load_codes<Bits>(q, k, w0, w1);
        acc0[r] = at::vec::fmadd(w0, x0, acc0[r]);
        acc1[r] = at::vec::fmadd(w1, x1, acc1[r]);
      }
    }
    for (int64_t r = 0; r < Rows; ++r) {
      const float s = as_float<S>(a.scales, (n + r) * groups + g), z = as_float<S>(a.zero_points, (n + r) * groups + g);
      total[r] = at::vec::fmadd(acc0[r] + acc1[r], Vec(s), total[r]);
      correction[r] += s * z * a.xsum[g];
    }
  }
  for (int64_t r = 0; r < Rows; ++r) a.y[n + r] = hsum(total[r]) - correction[r];
}

// tile[r, k - k0] = dequantized weight (row n + r, input k) for k in [k0, k1),
// in the activations' layout (k0, k1 multiples of the layout block).
template <typename S, int64_t Bits>
void dequantize_affine_rows(const AffineMatmul& a, int64_t n, int64_t rows, int64_t k0, int64_t k1, float* tile) {
  const int64_t gs = a.group_size, groups = a.K / gs, row_bytes = a.K * Bits / 8, width = k1 - k0;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* q = a.qweight + (n + r) * row_bytes;
    float* out = tile + r * width - k0;
    for (int64_t k = k0; k < k1; k += 2 * kLanes) {  // a block never straddles groups (gs % 32 == 0)
      const Vec s(as_float<S>(a.scales, (n + r) * groups + k / gs));
      const Vec z(as_float<S>(a.zero_points, (n + r) * groups + k / gs));
      Vec w0, w1;
      load_codes<Bits>(q, k, w0, w1);
      ((w0 - z) * s).store(out + k);
      ((w1 - z) * s).store(out + k + kLanes);
    }
  }
}

void dequantize_lut_rows(const LutMatmul& a, int64_t n, int64_t rows, int64_t k0, int64_t k1, float* tile) {
  const int64_t entries = int64_t{1} << a.bits, row_bytes = a.K * a.bits / 8, width = k1 - k0;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* q = a.indices + (n + r) * row_bytes;
    const float* table = a.lut + ((n + r) / a.channels_per_table) * entries;
    float* out = tile + r * width - k0;
    if (a.bits == 8) {
      for (int64_t k = k0; k < k1; ++k) out[k] = table[q[k]];
    } else {
      for (int64_t j = k0 / 2; j < k1 / 2; ++j) {
        out[2 * j] = table[q[j] & 0x0F];
        out[2 * j + 1] = table[q[j] >> 4];
      }
    }
  }
}

// y[m, j] (+)= x[m, :K] . tile[j, :K] for MB rows of x and NB tile rows.
template <int64_t MB, int64_t NB>
void micro_kernel(const float* x, int64_t ldx, const float* tile, int64_t K, float* y, int64_t ldy, bool accumulate) {
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
      y[i * ldy + j] = accumulate ? y[i * ldy + j] + s : s;
    }
}

template <int64_t NB>
void multiply_tile_rows(const float* x, int64_t ldx, int64_t M, int64_t width, const float* tile, float* y, int64_t N,
                        bool acc) {
  int64_t m = 0;
  for (; m + kBlockM <= M; m += kBlockM) micro_kernel<kBlockM, NB>(x + m * ldx, ldx, tile, width, y + m * N, N, acc);
  switch (M - m) {
    case 3: micro_kernel<3, NB>(x + m * ldx, ldx, tile, width, y + m * N, N, acc); break;
    case 2: micro_kernel<2, NB>(x + m * ldx, ldx, tile, width, y + m * N, N, acc); break;
    case 1: micro_kernel<1, NB>(x + m * ldx, ldx, tile, width, y + m * N, N, acc); break;
    default: break;
  }
}

void multiply_tile(const float* x, int64_t ldx, int64_t M, int64_t width, const float* tile, int64_t rows, float* y,
                   int64_t N, bool acc) {
  switch (rows) {
    case 4: multiply_tile_rows<4>(x, ldx, M, width, tile, y, N, acc); break;
    case 3: multiply_tile_rows<3>(x, ldx, M, width, tile, y, N, acc); break;
    case 2: multiply_tile_rows<2>(x, ldx, M, width, tile, y, N, acc); break;
    case 1: multiply_tile_rows<1>(x, ldx, M, width, tile, y, N, acc); break;
    default: break;
  }
}
static_assert(kTileN == 4, "multiply_tile handles up to 4 rows");

// Row tiles x K blocks: the dequantized tile (kTileN x kBlockK floats) and
// kBlockM activation rows of the block stay in L1 for the micro-kernel.
constexpr int64_t kBlockK = 1024;

template <typename Dequantize>
void tiled_gemm(const float* x, int64_t M, int64_t K, int64_t N, float* y, int64_t n_begin, int64_t n_end,
                const Dequantize& dequantize) {
  const int64_t block = std::min(K, kBlockK);
  std::vector<float> tile(static_cast<size_t>(kTileN * block));
  for (int64_t n = n_begin; n < n_end; n += kTileN) {
    const int64_t rows = std::min(kTileN, n_end - n);
    for (int64_t k0 = 0; k0 < K; k0 += block) {
      const int64_t k1 = std::min(K, k0 + block);
      dequantize(n, rows, k0, k1, tile.data());
      multiply_tile(x + k0, K, M, k1 - k0, tile.data(), rows, y + n, N, k0 > 0);
    }
  }
}

template <typename S, int64_t Bits>
void affine_rows(const AffineMatmul& a, int64_t n_begin, int64_t n_end) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (Bits == 4) {
    if (a.M == 1 && a.x_bf16 != nullptr) {
      int64_t n = n_begin;
      for (; n + 4 <= n_end; n += 4) int4_gemv_bf16<S, 4>(a, n);
      for (; n < n_end; ++n) int4_gemv_bf16<S, 1>(a, n);
      return;
    }
  }
#endif
  if (a.M == 1) {
    int64_t n = n_begin;
    for (; n + 4 <= n_end; n += 4) affine_gemv<S, Bits, 4>(a, n);
    for (; n < n_end; ++n) affine_gemv<S, Bits, 1>(a, n);
    return;
  }
  tiled_gemm(a.x, a.M, a.K, a.N, a.y, n_begin, n_end,
             [&](int64_t n, int64_t rows, int64_t k0, int64_t k1, float* tile) {
               dequantize_affine_rows<S, Bits>(a, n, rows, k0, k1, tile);
             });
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

bool bf16_dot_supported() {
#if defined(CPU_CAPABILITY_AVX512)
  return cpu_has_avx512_bf16();
#else
  return false;
#endif
}

void reorder_bf16_for_int4(const c10::BFloat16* x, uint16_t* dst, int64_t K) {
  for (int64_t b = 0; b < K; b += 64)
    for (int64_t j = 0; j < 32; ++j) {
      dst[b + j] = x[b + 2 * j].x;
      dst[b + 32 + j] = x[b + 2 * j + 1].x;
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
             [&](int64_t n, int64_t rows, int64_t k0, int64_t k1, float* tile) {
               dequantize_lut_rows(a, n, rows, k0, k1, tile);
             });
}

}  // namespace mps_ext::ops::quantization::CPU_CAPABILITY
