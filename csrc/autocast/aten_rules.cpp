// Autocast rules for aten ops on the mpsgraph device (AutocastPrivateUse1).
//
// PyTorch registers op lists for AutocastCPU/CUDA/MPS/XPU but none for
// PrivateUse1, so torch.autocast("mpsgraph") failed on every op. This file
// registers a fallthrough for all ops (ops not listed run in their inputs'
// dtypes) and PyTorch's shared policy lists from ATen/autocast_mode.h (the
// CUDA/XPU lists: AT_FORALL_LOWER_PRECISION_FP, AT_FORALL_FP32, ...), with the
// additions the CPU and MPS lists make (padding convolutions, batch_norm,
// cross_entropy_loss, binary_cross_entropy, stft and the torch.fft functions
// in fp32). Both float16 (the default autocast dtype of PrivateUse1) and
// bfloat16 work: the wrappers read torch.get_autocast_dtype("mpsgraph").
//
// Each policy registers as its own library whose debug string carries the
// policy ("[autocast policy: fp32]"); mps_ext.autocast.rules() reads it back
// from the dispatcher. fp32_set_opt_dtype (softmax, sum, ...) and
// fp32_append_dtype (norm) are PyTorch's fp32 variants that compute in fp32
// without copying the input; they report as "fp32".
#include <ATen/autocast_mode.h>
#include <torch/library.h>

namespace mps_ext::autocast {
namespace {
// AT_FORALL_DIFFERENT_REDISPATCH_SIGNATURE spells signatures as inside namespace at.
using at::IntArrayRef;
using at::Scalar;
using at::ScalarType;
using at::Tensor;

// A TORCH_LIBRARY_IMPL(aten, AutocastPrivateUse1, m) block whose registration
// debug string names `policy`.
#define MPS_EXT_AUTOCAST_RULES(policy, m)                                                              \
  void rules_##policy(torch::Library&);                                                                 \
  const torch::detail::TorchLibraryInit init_##policy(                                                 \
      torch::Library::IMPL, &rules_##policy, "aten", std::make_optional(c10::DispatchKey::AutocastPrivateUse1), \
      "mps_ext csrc/autocast/aten_rules.cpp [autocast policy: " #policy "]", __LINE__);                 \
  void rules_##policy(torch::Library& m)

#define LOWER(...) KERNEL_PRIVATEUSEONE(__VA_ARGS__, lower_precision_fp)
#define FP32(...) KERNEL_PRIVATEUSEONE(__VA_ARGS__, fp32)
#define FP32_SET_OPT_DTYPE(...) KERNEL_PRIVATEUSEONE(__VA_ARGS__, fp32_set_opt_dtype)
#define PROMOTE(...) KERNEL_PRIVATEUSEONE(__VA_ARGS__, promote)

MPS_EXT_AUTOCAST_RULES(lower_precision, m) {
  AT_FORALL_LOWER_PRECISION_FP(LOWER)
  LOWER(conv1d, padding)
  LOWER(conv2d, padding)
  LOWER(conv3d, padding)
  LOWER(_addmm_activation)
}

MPS_EXT_AUTOCAST_RULES(fp32, m) {
  AT_FORALL_FP32(FP32)
  AT_FORALL_FP32_SET_OPT_DTYPE(FP32_SET_OPT_DTYPE)
  AT_FORALL_DIFFERENT_REDISPATCH_SIGNATURE(KERNEL_DIFFERENT_REDISPATCH_SIGNATURE_PRIVATEUSEONE)
  FP32(batch_norm)
  FP32(cross_entropy_loss)
  FP32(binary_cross_entropy)  // the CPU list's choice; CUDA bans it under autocast instead
  FP32(stft)
  FP32(stft, center)
  FP32(istft)
  FP32(fft_fft)
  FP32(fft_ifft)
  FP32(fft_fft2)
  FP32(fft_ifft2)
  FP32(fft_fftn)
  FP32(fft_ifftn)
  FP32(fft_rfft)
  FP32(fft_irfft)
  FP32(fft_rfft2)
  FP32(fft_irfft2)
  FP32(fft_rfftn)
  FP32(fft_irfftn)
  FP32(fft_hfft)
  FP32(fft_ihfft)
}

MPS_EXT_AUTOCAST_RULES(promote, m) {
  AT_FORALL_PROMOTE(PROMOTE)
}

}  // namespace

// Every op without a rule above runs as if autocast were off.
TORCH_LIBRARY_IMPL(_, AutocastPrivateUse1, m) {
  m.fallback(torch::CppFunction::makeFallthrough());
}

}  // namespace mps_ext::autocast
