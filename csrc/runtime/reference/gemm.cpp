#include "runtime/reference/gemm.h"

#include <ATen/Context.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "runtime/reference/fused_elementwise.h"  // torch_cpu_symbol

namespace mps_ext::runtime::reference {
namespace {

// Fortran BLAS: every argument by pointer. The integers are MKL_INT/blasint,
// 32 or 64 bits by build: 64-bit values below 2^31 read right as either on a
// little-endian CPU (the VML calls in fused_elementwise.h rely on the same).
template <typename T>
using Gemm = void (*)(const char* transa, const char* transb, const int64_t* m, const int64_t* n, const int64_t* k,
                      const T* alpha, const T* a, const int64_t* lda, const T* b, const int64_t* ldb, const T* beta,
                      T* c, const int64_t* ldc);

template <typename T>
Gemm<T> blas_gemm() {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  static const Gemm<T> f = reinterpret_cast<Gemm<T>>(torch_cpu_symbol(sizeof(T) == 4 ? "sgemm_" : "dgemm_"));
  return f;
#else
  return nullptr;
#endif
}

// float32 products ATen computes in IEEE float32 (no oneDNN bf16/tf32 mode).
bool ieee_float32_matmul() {
  const at::Context& ctx = at::globalContext();
  const at::Float32Precision p = ctx.float32Precision(at::Float32Backend::MKLDNN, at::Float32Op::MATMUL);
  return ctx.float32MatmulPrecision() == at::Float32MatmulPrecision::HIGHEST && p != at::Float32Precision::BF16 &&
         p != at::Float32Precision::TF32;
}

// One BLAS operand, as addmm_impl_cpu_ casts it: used as it lies when one of
// its strides is 1 and the other a valid leading dimension, else (ATen would
// copy it) not at all. rows/cols are its BLAS (column-major) shape.
bool blas_operand(const at::Tensor& t, int64_t rows, int64_t cols, char& trans, int64_t& ld) {
  // t is a row-major [cols, rows] matrix: its column-major reading is [rows, cols].
  if (t.stride(1) == 1 && t.stride(0) >= std::max<int64_t>(1, rows)) {
    trans = 'n';
    ld = t.stride(0);
    return true;
  }
  if (t.stride(0) == 1 && t.stride(1) >= std::max<int64_t>(1, cols)) {
    trans = 't';
    ld = t.stride(1);
    return true;
  }
  return false;
}

// The bias copied into every row of out (ATen: result.copy_(self)).
void copy_bias(const at::Tensor& out, const at::Tensor& c) {
  const int64_t rows = out.size(0), row_bytes = out.size(1) * static_cast<int64_t>(out.element_size());
  char* dst = static_cast<char*>(out.mutable_data_ptr());
  const char* src = static_cast<const char*>(c.const_data_ptr());
  const bool full = c.dim() == 2 && c.size(0) == rows && rows > 1;
  for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * row_bytes, src + (full ? r * row_bytes : 0), row_bytes);
}

template <typename T>
bool gemm(const at::Tensor& out, const at::Tensor& a, const at::Tensor& b, const at::Tensor* c, double alpha,
          double beta) {
  const Gemm<T> f = blas_gemm<T>();
  if (!f) return false;
  if (sizeof(T) == 4 && !ieee_float32_matmul()) return false;
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  // A row-major result C [M, N] is BLAS's column-major C^T [N, M] = B^T A^T.
  // (N == 1 makes ATen take C as column-major itself: left to ATen.)
  const int64_t m = N, n = M, k = K;
  char transa, transb;
  int64_t lda, ldb, ldc = N;
  if (!blas_operand(b, m, k, transa, lda) || !blas_operand(a, k, n, transb, ldb)) return false;
  // at::native::cpublas::gemm's normalize_last_dims, then its use_blas_gemm bounds.
  if (n == 1) ldc = m;
  if (transa != 'n') {
    if (m == 1) lda = k;
  } else if (k == 1) {
    lda = m;
  }
  if (transb != 'n') {
    if (k == 1) ldb = n;
  } else if (n == 1) {
    ldb = k;
  }
  const bool fits = std::max({m, n, k, lda, ldb, ldc}) <= INT_MAX && lda >= std::max<int64_t>(1, transa != 'n' ? k : m) &&
                    ldb >= std::max<int64_t>(1, transb != 'n' ? n : k) && ldc >= std::max<int64_t>(1, m);
  if (!fits) return false;
  if (c && beta != 0) copy_bias(out, *c);
  const T alpha_t = static_cast<T>(alpha), beta_t = static_cast<T>(beta);
  f(&transa, &transb, &m, &n, &k, &alpha_t, b.const_data_ptr<T>(), &lda, a.const_data_ptr<T>(), &ldb, &beta_t,
    out.mutable_data_ptr<T>(), &ldc);
  return true;
}
}  // namespace

bool gemm_into(const at::Tensor& out, const at::Tensor& a, const at::Tensor& b, const at::Tensor* c, double alpha,
               double beta) {
  const at::ScalarType dtype = out.scalar_type();
  if ((dtype != at::kFloat && dtype != at::kDouble) || a.scalar_type() != dtype || b.scalar_type() != dtype) return false;
  if (a.dim() != 2 || b.dim() != 2 || out.dim() != 2 || !out.is_contiguous()) return false;
  if (a.is_conj() || b.is_conj() || a.is_neg() || b.is_neg() || out.is_neg()) return false;
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  if (b.size(0) != K || out.size(0) != M || out.size(1) != N || M == 0 || N <= 1 || K == 0) return false;
  if (c && beta != 0) {
    const bool row = c->numel() == N && (c->dim() == 1 || (c->dim() == 2 && c->size(0) == 1));
    const bool full = c->dim() == 2 && c->size(0) == M && c->size(1) == N;
    if (c->scalar_type() != dtype || !c->is_contiguous() || c->is_neg() || c->is_conj() || !(row || full) ||
        c->const_data_ptr() == out.const_data_ptr())
      return false;
  }
  return dtype == at::kFloat ? gemm<float>(out, a, b, c, alpha, beta) : gemm<double>(out, a, b, c, alpha, beta);
}

}  // namespace mps_ext::runtime::reference
