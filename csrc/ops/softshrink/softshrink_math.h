// softshrink's elementwise math, written once. Instantiated on graph::Expr it
// emits the op's IR graph (the decomposition every runtime can run); on
// ew::Vec/ew::Scalar it is the compiled CPU kernel (softshrink_kernel.cpp).
// One statement per node keeps the emitted node order fixed.
//   forward  = x - clamp(x, -l, l): +0 in the dead zone for every finite x and
//              NaN propagates (NaN-propagating min/max), like torch's
//              vectorized CPU and CUDA kernels
//   backward = 0 where |x| <= l, else grad (NaN x passes the gradient)
#pragma once

namespace mps_ext::ops {

template <typename V>
V softshrink_value(V x, V lambd) {
  V neg_lambd = -lambd;
  V upper = minimum(x, lambd);
  V clamped = maximum(upper, neg_lambd);
  return x - clamped;
}

template <typename V>
V softshrink_gradient(V grad, V x, V lambd) {
  V magnitude = abs(x);
  auto inside = magnitude <= lambd;
  V zero = zeros_like(grad);
  return where(inside, zero, grad);
}

}  // namespace mps_ext::ops
