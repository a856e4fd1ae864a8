// Copies of conjugate/negative-bit views on the mpsgraph device (x.conj(),
// x.conj().imag): PyTorch runs _copy_from through its math-bit fallback, which
// materialises such an input with clone() -- and clone() of a device tensor
// is copy_() -> _copy_from() of the same view again: unbounded recursion, a
// stack overflow (SIGSEGV in torch.fft.ifft/hfft/ihfft on device tensors).
// Device copies already understand the bits (they copy through CPU aliases
// that carry them, and the CPU copy resolves them), so here _copy_from skips
// the fallback whenever a device tensor takes part; other devices keep it.
#include <ATen/native/MathBitsFallback.h>
#include <torch/library.h>

#include "device/device.h"

namespace mps_ext::device {
namespace {

struct ConjugateBit final : at::native::MathOpFallback {
  ConjugateBit() : MathOpFallback(c10::DispatchKey::Conjugate, "conjugate") {}
  bool is_bit_set(const at::Tensor& t) override { return t.is_conj(); }
};

struct NegativeBit final : at::native::MathOpFallback {
  NegativeBit() : MathOpFallback(c10::DispatchKey::Negative, "negation") {}
  bool is_bit_set(const at::Tensor& t) override { return t.is_neg(); }
};

bool on_device(const c10::IValue& v) { return v.isTensor() && v.toTensor().device().type() == kDeviceType; }

template <c10::DispatchKey Key, typename Fallback>
void copy_from_with_math_bits(const c10::OperatorHandle& op, c10::DispatchKeySet keys, torch::jit::Stack* stack) {
  const size_t n = stack->size();  // _copy_from(Tensor self, Tensor dst, bool non_blocking)
  if (on_device((*stack)[n - 3]) || on_device((*stack)[n - 2])) {
    c10::DispatchKeySet below = (keys & c10::DispatchKeySet(c10::DispatchKeySet::FULL_AFTER, Key))
                                    .remove(c10::DispatchKey::Conjugate)
                                    .remove(c10::DispatchKey::Negative);
    op.redispatchBoxed(below, stack);
    return;
  }
  Fallback().fallback_impl(op, keys, stack);
}
}  // namespace

TORCH_LIBRARY_IMPL(aten, Conjugate, m) {
  m.impl("_copy_from", torch::CppFunction::makeFromBoxedFunction<
                           &copy_from_with_math_bits<c10::DispatchKey::Conjugate, ConjugateBit>>());
}

TORCH_LIBRARY_IMPL(aten, Negative, m) {
  m.impl("_copy_from", torch::CppFunction::makeFromBoxedFunction<
                           &copy_from_with_math_bits<c10::DispatchKey::Negative, NegativeBit>>());
}

}  // namespace mps_ext::device
