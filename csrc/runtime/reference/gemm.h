// The reference runtime's matrix products (MatMul nodes, the aten.addmm
// kernel) call the BLAS GEMM that ATen's CPU addmm calls, directly.
#pragma once

#include <ATen/core/Tensor.h>

namespace mps_ext::runtime::reference {

// out = beta * c + alpha * (a @ b) for 2-D float32/float64 a [m, k] and
// b [k, n], into a contiguous out [m, n]; c is nullptr or a contiguous [n],
// [1, n] or [m, n] (ignored when beta == 0, as ATen ignores self).
//
// The same sgemm_/dgemm_ call with the same arguments as at::addmm on the
// CPU (addmm_impl_cpu_ and at::native::cpublas::gemm: row-major C computed
// as C^T = B^T A^T, a transposed operand passed as a BLAS transpose, the
// bias copied into C first), so results match torch bit for bit. What it
// skips is ATen's setup around that call: the structured kernel's checks and
// the TensorIterator copy of the bias, which cost a [16, 32] x [32, 256]
// linear more than the device layer's own dispatch.
//
// Returns false, writing nothing, when ATen would do something else: other
// dtypes or layouts (an operand it would copy, n == 1), an empty product,
// reduced-precision float32 matmul (torch.set_float32_matmul_precision,
// oneDNN's bf16/tf32 modes), or a libtorch without a Fortran BLAS. The
// caller then calls ATen.
bool gemm_into(const at::Tensor& out, const at::Tensor& a, const at::Tensor& b, const at::Tensor* c, double alpha,
               double beta);

}  // namespace mps_ext::runtime::reference
