// torch.fft.* and torch.stft/istft on mpsgraph tensors: the aten FFT
// primitives every torch.fft function lowers to (_fft_c2c, _fft_r2c,
// _fft_c2r) run as mps_ext FFT graphs on the device instead of the CPU
// fallback. torch's own autograd formulas stay in charge of gradients.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "ops/spectral/fft_graph.h"

namespace mps_ext::ops::spectral {
namespace {

// aten's normalization enum (fft_norm_mode): 0 none, 1 1/sqrt(n), 2 1/n; as a
// torch `norm` string for the given direction.
std::string norm_name(int64_t normalization, bool forward) {
  TORCH_CHECK(normalization >= 0 && normalization <= 2, "Invalid normalization mode: ", normalization);
  if (normalization == 1) return "ortho";
  return (normalization == 0) == forward ? "backward" : "forward";
}

std::vector<int64_t> wrapped(const at::Tensor& t, c10::SymIntArrayRef dim) {
  std::vector<int64_t> dims;
  for (const c10::SymInt& d : dim) dims.push_back(at::maybe_wrap_dim(d.expect_int(), t.dim()));
  return dims;
}

std::vector<int64_t> sizes_on(const at::Tensor& t, const std::vector<int64_t>& dims) {
  std::vector<int64_t> s;
  for (int64_t d : dims) s.push_back(t.size(d));
  return s;
}

at::Tensor fft_c2c(const at::Tensor& self, c10::SymIntArrayRef dim, int64_t normalization, bool forward) {
  auto dims = wrapped(self, dim);
  if (dims.empty()) return self.clone();
  return run_fft(Transform::C2C, self, dims, sizes_on(self, dims), norm_name(normalization, forward), forward);
}

at::Tensor fft_r2c(const at::Tensor& self, at::IntArrayRef dim, int64_t normalization, bool onesided) {
  auto dims = wrapped(self, c10::fromIntArrayRefSlow(dim));
  return run_fft(Transform::R2C, self, dims, sizes_on(self, dims), norm_name(normalization, true), onesided);
}

at::Tensor fft_c2r(const at::Tensor& self, at::IntArrayRef dim, int64_t normalization, c10::SymInt last_dim_size) {
  auto dims = wrapped(self, c10::fromIntArrayRefSlow(dim));
  auto sizes = sizes_on(self, dims);
  sizes.back() = last_dim_size.expect_int();
  return run_fft(Transform::C2R, self, dims, sizes, norm_name(normalization, false), false);
}
// torch.stft / torch.istft are composite ops (they would decompose into pad,
// as_strided, mul and _fft_r2c before reaching the device); on device tensors
// they run as mps_ext's fused graphs instead, gradients included.
using OptInt = std::optional<int64_t>;
using OptTensor = std::optional<at::Tensor>;

at::Tensor call_stft(const at::Tensor& self, int64_t n_fft, OptInt hop, OptInt win, const OptTensor& window,
                     bool center, c10::string_view pad_mode, bool normalized, std::optional<bool> onesided,
                     std::optional<bool> return_complex, std::optional<bool> align_to_window) {
  TORCH_CHECK(!center || !align_to_window.has_value(), "stft align_to_window should only be set when center = false");
  TORCH_CHECK_NOT_IMPLEMENTED(!align_to_window.value_or(false) || win.value_or(n_fft) == n_fft,
                              "mpsgraph: stft with align_to_window=True and win_length < n_fft is not supported");
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mps_ext::stft", "")
                       .typed<at::Tensor(const at::Tensor&, int64_t, OptInt, OptInt, const OptTensor&, bool,
                                         c10::string_view, bool, std::optional<bool>, std::optional<bool>)>();
  return op.call(self, n_fft, hop, win, window, center, pad_mode, normalized, onesided, return_complex);
}

at::Tensor aten_stft(const at::Tensor& self, int64_t n_fft, OptInt hop, OptInt win, const OptTensor& window,
                     bool normalized, std::optional<bool> onesided, std::optional<bool> return_complex,
                     std::optional<bool> align_to_window) {
  return call_stft(self, n_fft, hop, win, window, /*center=*/false, "reflect", normalized, onesided, return_complex,
                   align_to_window);
}

at::Tensor aten_stft_center(const at::Tensor& self, int64_t n_fft, OptInt hop, OptInt win, const OptTensor& window,
                            bool center, c10::string_view pad_mode, bool normalized, std::optional<bool> onesided,
                            std::optional<bool> return_complex, std::optional<bool> align_to_window) {
  return call_stft(self, n_fft, hop, win, window, center, pad_mode, normalized, onesided, return_complex,
                   align_to_window);
}

at::Tensor aten_istft(const at::Tensor& self, int64_t n_fft, OptInt hop, OptInt win, const OptTensor& window,
                      bool center, bool normalized, std::optional<bool> onesided, OptInt length, bool return_complex) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mps_ext::istft", "")
                       .typed<at::Tensor(const at::Tensor&, int64_t, OptInt, OptInt, const OptTensor&, bool, bool,
                                         std::optional<bool>, OptInt, bool)>();
  return op.call(self, n_fft, hop, win, window, center, normalized, onesided, length, return_complex);
}
}  // namespace

TORCH_LIBRARY_IMPL(aten, AutogradPrivateUse1, m) {
  m.impl("stft", TORCH_FN(aten_stft));
  m.impl("stft.center", TORCH_FN(aten_stft_center));
  m.impl("istft", TORCH_FN(aten_istft));
}

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("_fft_c2c", TORCH_FN(fft_c2c));
  m.impl("_fft_r2c", TORCH_FN(fft_r2c));
  m.impl("_fft_c2r", TORCH_FN(fft_c2r));
}

}  // namespace mps_ext::ops::spectral
