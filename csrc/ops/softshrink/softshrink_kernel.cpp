// softshrink's compiled CPU kernels (one build per CPU capability).
#include "ops/softshrink/softshrink_math.h"
#include "runtime/reference/elementwise_kernel.h"

namespace mps_ext::ops::CPU_CAPABILITY {

void softshrink_forward_kernel(at::TensorIteratorBase& iter, double lambd) {
  ew::unary_kernel(iter, lambd, [](auto x, auto l) { return softshrink_value(x, l); });
}

void softshrink_backward_kernel(at::TensorIteratorBase& iter, double lambd) {
  ew::binary_kernel(iter, lambd, [](auto grad, auto x, auto l) { return softshrink_gradient(grad, x, l); });
}

}  // namespace mps_ext::ops::CPU_CAPABILITY
