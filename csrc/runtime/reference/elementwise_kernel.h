// Compiled elementwise kernels: an op's math, written once as a template over
// its value type (csrc/ops/<family>/*_math.h), runs here on at::vec vectors
// under TensorIterator's cpu_kernel_vec (strides, broadcasting, threading,
// vectorized fp16/bf16 conversion: reduced types compute in float like ATen's
// own kernels). The same template emits the op's IR graph through
// graph::Expr. Include only from *_kernel.cpp files (one build per CPU
// capability, see cpu_dispatch.h).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/TensorIterator.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/native/cpu/Loops.h>

#include <cmath>

namespace mps_ext::ew {
using at::vec::Vectorized;

// One lane of the scalar tail loop.
template <typename T>
struct Scalar {
  T v;
};
template <typename T>
Scalar<T> operator+(Scalar<T> a, Scalar<T> b) { return {a.v + b.v}; }
template <typename T>
Scalar<T> operator-(Scalar<T> a, Scalar<T> b) { return {a.v - b.v}; }
template <typename T>
Scalar<T> operator*(Scalar<T> a, Scalar<T> b) { return {a.v * b.v}; }
template <typename T>
Scalar<T> operator/(Scalar<T> a, Scalar<T> b) { return {a.v / b.v}; }
template <typename T>
Scalar<T> operator-(Scalar<T> a) { return {-a.v}; }
template <typename T>
bool operator<=(Scalar<T> a, Scalar<T> b) { return a.v <= b.v; }
template <typename T>
bool operator<(Scalar<T> a, Scalar<T> b) { return a.v < b.v; }
template <typename T>
bool operator>=(Scalar<T> a, Scalar<T> b) { return a.v >= b.v; }
template <typename T>
bool operator>(Scalar<T> a, Scalar<T> b) { return a.v > b.v; }
// NaN-propagating, as torch.minimum/maximum and the IR's Minimum/Maximum.
template <typename T>
Scalar<T> minimum(Scalar<T> a, Scalar<T> b) { return {std::isnan(a.v) ? a.v : std::isnan(b.v) ? b.v : (a.v < b.v ? a.v : b.v)}; }
template <typename T>
Scalar<T> maximum(Scalar<T> a, Scalar<T> b) { return {std::isnan(a.v) ? a.v : std::isnan(b.v) ? b.v : (a.v > b.v ? a.v : b.v)}; }
template <typename T>
Scalar<T> abs(Scalar<T> a) { return {std::abs(a.v)}; }
template <typename T>
Scalar<T> where(bool cond, Scalar<T> a, Scalar<T> b) { return cond ? a : b; }
template <typename T>
Scalar<T> zeros_like(Scalar<T>) { return {T(0)}; }

// A vector of lanes; comparisons give a lane mask.
template <typename T>
struct Vec {
  Vectorized<T> v;
};
template <typename T>
struct Mask {
  Vectorized<T> m;
};
template <typename T>
Vec<T> operator+(Vec<T> a, Vec<T> b) { return {a.v + b.v}; }
template <typename T>
Vec<T> operator-(Vec<T> a, Vec<T> b) { return {a.v - b.v}; }
template <typename T>
Vec<T> operator*(Vec<T> a, Vec<T> b) { return {a.v * b.v}; }
template <typename T>
Vec<T> operator/(Vec<T> a, Vec<T> b) { return {a.v / b.v}; }
template <typename T>
Vec<T> operator-(Vec<T> a) { return {a.v.neg()}; }
template <typename T>
Mask<T> operator<=(Vec<T> a, Vec<T> b) { return {a.v <= b.v}; }
template <typename T>
Mask<T> operator<(Vec<T> a, Vec<T> b) { return {a.v < b.v}; }
template <typename T>
Mask<T> operator>=(Vec<T> a, Vec<T> b) { return {a.v >= b.v}; }
template <typename T>
Mask<T> operator>(Vec<T> a, Vec<T> b) { return {a.v > b.v}; }
template <typename T>
Vec<T> minimum(Vec<T> a, Vec<T> b) { return {at::vec::minimum(a.v, b.v)}; }  // propagates NaN
template <typename T>
Vec<T> maximum(Vec<T> a, Vec<T> b) { return {at::vec::maximum(a.v, b.v)}; }  // propagates NaN
template <typename T>
Vec<T> abs(Vec<T> a) { return {a.v.abs()}; }
template <typename T>
Vec<T> where(Mask<T> cond, Vec<T> a, Vec<T> b) { return {Vectorized<T>::blendv(b.v, a.v, cond.m)}; }
template <typename T>
Vec<T> zeros_like(Vec<T>) { return {Vectorized<T>(T(0))}; }

// out = math(x..., u) elementwise over the tensor operands of `iter` (all of
// one floating dtype) and one uniform value u. `math` is a generic callable:
// math(Scalar<opmath>..., Scalar<opmath>) and math(Vec<opmath>..., Vec<opmath>).
// (Templates, so `if constexpr` discards the branch a dtype does not take.)
template <typename scalar_t, typename Math>
void unary_loop(at::TensorIteratorBase& iter, double u, const Math& math) {
  using opmath_t = at::opmath_type<scalar_t>;
  const opmath_t us = static_cast<opmath_t>(u);
  const Vectorized<opmath_t> uv(us);
  if constexpr (std::is_same_v<opmath_t, scalar_t>) {
    at::native::cpu_kernel_vec(
        iter, [=](scalar_t a) -> scalar_t { return math(Scalar<scalar_t>{a}, Scalar<scalar_t>{us}).v; },
        [=](Vectorized<scalar_t> a) { return math(Vec<scalar_t>{a}, Vec<scalar_t>{uv}).v; });
  } else {
    at::native::cpu_kernel_vec(
        iter,
        [=](scalar_t a) -> scalar_t {
          return static_cast<scalar_t>(math(Scalar<opmath_t>{static_cast<opmath_t>(a)}, Scalar<opmath_t>{us}).v);
        },
        [=](Vectorized<scalar_t> a) {
          auto [a0, a1] = at::vec::convert_to_float<scalar_t>(a);
          return at::vec::convert_from_float<scalar_t>(math(Vec<opmath_t>{a0}, Vec<opmath_t>{uv}).v,
                                                       math(Vec<opmath_t>{a1}, Vec<opmath_t>{uv}).v);
        });
  }
}

template <typename scalar_t, typename Math>
void binary_loop(at::TensorIteratorBase& iter, double u, const Math& math) {
  using opmath_t = at::opmath_type<scalar_t>;
  const opmath_t us = static_cast<opmath_t>(u);
  const Vectorized<opmath_t> uv(us);
  if constexpr (std::is_same_v<opmath_t, scalar_t>) {
    at::native::cpu_kernel_vec(
        iter,
        [=](scalar_t a, scalar_t b) -> scalar_t {
          return math(Scalar<scalar_t>{a}, Scalar<scalar_t>{b}, Scalar<scalar_t>{us}).v;
        },
        [=](Vectorized<scalar_t> a, Vectorized<scalar_t> b) {
          return math(Vec<scalar_t>{a}, Vec<scalar_t>{b}, Vec<scalar_t>{uv}).v;
        });
  } else {
    at::native::cpu_kernel_vec(
        iter,
        [=](scalar_t a, scalar_t b) -> scalar_t {
          return static_cast<scalar_t>(math(Scalar<opmath_t>{static_cast<opmath_t>(a)},
                                            Scalar<opmath_t>{static_cast<opmath_t>(b)}, Scalar<opmath_t>{us})
                                           .v);
        },
        [=](Vectorized<scalar_t> a, Vectorized<scalar_t> b) {
          auto [a0, a1] = at::vec::convert_to_float<scalar_t>(a);
          auto [b0, b1] = at::vec::convert_to_float<scalar_t>(b);
          return at::vec::convert_from_float<scalar_t>(math(Vec<opmath_t>{a0}, Vec<opmath_t>{b0}, Vec<opmath_t>{uv}).v,
                                                       math(Vec<opmath_t>{a1}, Vec<opmath_t>{b1}, Vec<opmath_t>{uv}).v);
        });
  }
}

template <typename Math>
void unary_kernel(at::TensorIteratorBase& iter, double u, const Math& math) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, iter.common_dtype(), "mps_ext_elementwise",
                                  [&] { unary_loop<scalar_t>(iter, u, math); });
}

template <typename Math>
void binary_kernel(at::TensorIteratorBase& iter, double u, const Math& math) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, iter.common_dtype(), "mps_ext_elementwise",
                                  [&] { binary_loop<scalar_t>(iter, u, math); });
}

}  // namespace mps_ext::ew
