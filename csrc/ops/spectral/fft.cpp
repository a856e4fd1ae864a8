// torch.ops.mps_ext.fft_c2c / fft_r2c / fft_c2r: torch.fft.fftn/ifftn,
// rfftn (and fftn of real input) and irfftn, with torch's `s` (zero-pad or
// truncate), `dim` and `norm` semantics and errors. Each call is one graph
// (fft_graph.cpp); CPU, Meta, PrivateUse1 and Autograd kernels.
#include <ATen/ATen.h>
#include <ATen/WrapDimUtils.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops/op_utils.h"
#include "ops/spectral/fft_graph.h"

namespace mps_ext::ops::spectral {
namespace {

// torch's promote_type_fft: integers -> the default float dtype; float32/64
// only (the CPU FFT's dtypes); complex stays.
at::Tensor promoted(const at::Tensor& t) {
  at::ScalarType type = t.scalar_type();
  if (at::isComplexType(type)) {
    TORCH_CHECK(type == at::kComplexFloat || type == at::kComplexDouble, "Unsupported dtype ", type);
    return t;
  }
  if (!at::isFloatingType(type)) type = c10::typeMetaToScalarType(c10::get_default_dtype());
  TORCH_CHECK(type == at::kFloat || type == at::kDouble, "Unsupported dtype ", type);
  return t.to(type);
}

struct Shape {
  std::vector<int64_t> dims, sizes;
};

// torch's canonicalize_fft_shape_and_dim_args (and the c2r fixup of the last
// size: its default is 2 * (m - 1) from the m Hermitean inputs).
Shape canonical(const at::Tensor& x, at::OptionalIntArrayRef s, at::OptionalIntArrayRef dim, Transform kind) {
  const int64_t ndim = x.dim();
  Shape out;
  if (dim) {
    for (int64_t d : *dim) out.dims.push_back(at::maybe_wrap_dim(d, ndim, /*wrap_scalar=*/false));
    std::vector<int64_t> sorted = out.dims;
    std::sort(sorted.begin(), sorted.end());
    TORCH_CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(), "FFT dims must be unique");
  }
  if (s) {
    TORCH_CHECK(!dim || dim->size() == s->size(), "When given, dim and shape arguments must have the same length");
    TORCH_CHECK(static_cast<int64_t>(s->size()) <= ndim, "Got shape with ", s->size(),
                " values but input tensor only has ", ndim, " dimensions.");
    if (!dim)
      for (int64_t d = ndim - static_cast<int64_t>(s->size()); d < ndim; ++d) out.dims.push_back(d);
    for (size_t i = 0; i < s->size(); ++i) {
      int64_t n = (*s)[i] == -1 ? x.size(out.dims[i]) : (*s)[i];
      // c2r's last size defaults from the Hermitean half below.
      if (!(kind == Transform::C2R && i + 1 == s->size() && (*s)[i] == -1))
        TORCH_CHECK(n > 0, "Invalid number of data points (", n, ") specified");
      out.sizes.push_back(n);
    }
  } else {
    if (!dim)
      for (int64_t d = 0; d < ndim; ++d) out.dims.push_back(d);
    for (int64_t d : out.dims) out.sizes.push_back(x.size(d));
  }
  if (kind != Transform::C2C) TORCH_CHECK(!out.dims.empty(), "fft_", kind == Transform::R2C ? "r2c" : "c2r",
                                          " must transform at least one axis");
  if (kind == Transform::C2R && (!s || s->back() == -1)) out.sizes.back() = 2 * (x.size(out.dims.back()) - 1);
  for (int64_t n : out.sizes) TORCH_CHECK(n > 0, "Invalid number of data points (", n, ") specified");
  return out;
}

// --- forward kernels (CPU and the mpsgraph device) ----------------------------
at::Tensor fft_c2c(const at::Tensor& self, at::OptionalIntArrayRef s, at::OptionalIntArrayRef dim,
                   std::optional<c10::string_view> norm, bool forward) {
  std::string n = checked_norm(norm);
  at::Tensor x = promoted(self);
  Shape sh = canonical(x, s, dim, Transform::C2C);
  return run_fft(Transform::C2C, x, sh.dims, sh.sizes, n, forward);
}

at::Tensor fft_r2c(const at::Tensor& self, at::OptionalIntArrayRef s, at::OptionalIntArrayRef dim,
                   std::optional<c10::string_view> norm, bool onesided) {
  TORCH_CHECK(!self.is_complex(), "fft_r2c expects a real input tensor, but got ", self.scalar_type());
  std::string n = checked_norm(norm);
  at::Tensor x = promoted(self);
  Shape sh = canonical(x, s, dim, Transform::R2C);
  return run_fft(Transform::R2C, x, sh.dims, sh.sizes, n, onesided);
}

at::Tensor fft_c2r(const at::Tensor& self, at::OptionalIntArrayRef s, at::OptionalIntArrayRef dim,
                   std::optional<c10::string_view> norm) {
  std::string n = checked_norm(norm);
  at::Tensor x = promoted(self);
  Shape sh = canonical(x, s, dim, Transform::C2R);
  return run_fft(Transform::C2R, x, sh.dims, sh.sizes, n, false);
}

// Meta: the same checks, no data.
at::Tensor meta_result(Transform kind, const at::Tensor& self, at::OptionalIntArrayRef s, at::OptionalIntArrayRef dim,
                       std::optional<c10::string_view> norm, bool flag) {
  checked_norm(norm);
  if (kind == Transform::R2C)
    TORCH_CHECK(!self.is_complex(), "fft_r2c expects a real input tensor, but got ", self.scalar_type());
  at::Tensor x = promoted(self);
  Shape sh = canonical(x, s, dim, kind);
  return empty_fft_result(kind, x, sh.dims, sh.sizes, flag);
}

at::Tensor fft_c2c_meta(const at::Tensor& self, at::OptionalIntArrayRef s, at::OptionalIntArrayRef dim,
                        std::optional<c10::string_view> norm, bool forward) {
  return meta_result(Transform::C2C, self, s, dim, norm, forward);
}
at::Tensor fft_r2c_meta(const at::Tensor& self, at::OptionalIntArrayRef s, at::OptionalIntArrayRef dim,
                        std::optional<c10::string_view> norm, bool onesided) {
  return meta_result(Transform::R2C, self, s, dim, norm, onesided);
}
at::Tensor fft_c2r_meta(const at::Tensor& self, at::OptionalIntArrayRef s, at::OptionalIntArrayRef dim,
                        std::optional<c10::string_view> norm) {
  return meta_result(Transform::C2R, self, s, dim, norm, false);
}

// --- autograd -----------------------------------------------------------------
// Through the dispatcher, so gradients of gradients are recorded too.
using OptNorm = std::optional<c10::string_view>;
at::Tensor call_fft(Transform kind, const at::Tensor& x, at::OptionalIntArrayRef s, at::OptionalIntArrayRef dim,
                    OptNorm norm, bool flag) {
  using Sig = at::Tensor(const at::Tensor&, at::OptionalIntArrayRef, at::OptionalIntArrayRef, OptNorm, bool);
  static auto c2c = c10::Dispatcher::singleton().findSchemaOrThrow("mps_ext::fft_c2c", "").typed<Sig>();
  static auto r2c = c10::Dispatcher::singleton().findSchemaOrThrow("mps_ext::fft_r2c", "").typed<Sig>();
  static auto c2r = c10::Dispatcher::singleton()
                        .findSchemaOrThrow("mps_ext::fft_c2r", "")
                        .typed<at::Tensor(const at::Tensor&, at::OptionalIntArrayRef, at::OptionalIntArrayRef, OptNorm)>();
  switch (kind) {
    case Transform::C2C: return c2c.call(x, s, dim, norm, flag);
    case Transform::R2C: return r2c.call(x, s, dim, norm, flag);
    case Transform::C2R: return c2r.call(x, s, dim, norm);
  }
  TORCH_INTERNAL_ASSERT(false);
}

// The adjoint of `s` (pad <-> truncate): t brought back to `sizes` on dims.
at::Tensor resized(at::Tensor t, const std::vector<int64_t>& dims, const std::vector<int64_t>& sizes) {
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t have = t.size(dims[i]);
    if (sizes[i] < have) t = t.narrow(dims[i], 0, sizes[i]);
    if (sizes[i] > have) {
      std::vector<int64_t> pad(2 * (t.dim() - dims[i]), 0);
      pad[pad.size() - 1] = sizes[i] - have;  // constant_pad_nd lists the last dim first
      t = at::constant_pad_nd(t, pad, 0);
    }
  }
  return t;
}

std::vector<int64_t> sizes_on(const at::Tensor& t, const std::vector<int64_t>& dims) {
  std::vector<int64_t> s;
  for (int64_t d : dims) s.push_back(t.size(d));
  return s;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct FFTFn : torch::autograd::Function<FFTFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& self, int64_t kind, std::vector<int64_t> dims,
                            std::vector<int64_t> sizes, std::string norm, bool flag) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["dims"] = dims;
    ctx->saved_data["sizes"] = sizes;
    ctx->saved_data["in_sizes"] = sizes_on(self, dims);
    ctx->saved_data["norm"] = norm;
    ctx->saved_data["flag"] = flag;
    ctx->saved_data["real_input"] = !self.is_complex();
    return call_fft(static_cast<Transform>(kind), self, sizes, dims, c10::string_view(norm), flag);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto kind = static_cast<Transform>(ctx->saved_data["kind"].toInt());
    const auto dims = ctx->saved_data["dims"].toIntVector();
    const auto sizes = ctx->saved_data["sizes"].toIntVector();
    const auto in_sizes = ctx->saved_data["in_sizes"].toIntVector();
    const std::string norm = adjoint_norm(ctx->saved_data["norm"].toStringRef());
    const bool flag = ctx->saved_data["flag"].toBool();
    const bool real_input = ctx->saved_data["real_input"].toBool();
    at::Tensor g = grads[0], gi;
    switch (kind) {
      case Transform::C2C: gi = call_fft(Transform::C2C, g, sizes, dims, c10::string_view(norm), !flag); break;
      // A onesided gradient is zero-extended to the full spectrum (c2c's s pads it).
      case Transform::R2C: gi = call_fft(Transform::C2C, g, sizes, dims, c10::string_view(norm), /*forward=*/false); break;
      case Transform::C2R: {
        // rfft of the real gradient; the bins that stand for two conjugate
        // bins of the full spectrum count twice.
        gi = call_fft(Transform::R2C, g, sizes, dims, c10::string_view(norm), /*onesided=*/true);
        const int64_t n = sizes.back(), half = n / 2 + 1, twice = n - half;
        if (twice > 0) {
          at::Tensor w = at::ones({half}, g.options().dtype(c10::toRealValueType(gi.scalar_type())).device(at::kCPU));
          w.narrow(0, 1, twice).fill_(2);
          std::vector<int64_t> shape(gi.dim() - dims.back(), 1);
          shape[0] = half;
          gi = gi * w.view(shape).to(gi.device());
        }
        break;
      }
    }
    if (real_input) gi = at::real(gi);
    return {resized(gi, dims, in_sizes), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor autograd_fft(Transform kind, const at::Tensor& self, at::OptionalIntArrayRef s, at::OptionalIntArrayRef dim,
                        std::optional<c10::string_view> norm, bool flag) {
  if (!requires_grad(self)) {  // skip building an autograd node nobody needs
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_fft(kind, self, s, dim, norm, flag);
  }
  std::string n = checked_norm(norm);
  if (kind == Transform::R2C)
    TORCH_CHECK(!self.is_complex(), "fft_r2c expects a real input tensor, but got ", self.scalar_type());
  Shape sh = canonical(self, s, dim, kind);
  return FFTFn::apply(self, static_cast<int64_t>(kind), sh.dims, sh.sizes, n, flag);
}

at::Tensor fft_c2c_autograd(const at::Tensor& self, at::OptionalIntArrayRef s, at::OptionalIntArrayRef dim,
                            OptNorm norm, bool forward) {
  return autograd_fft(Transform::C2C, self, s, dim, norm, forward);
}
at::Tensor fft_r2c_autograd(const at::Tensor& self, at::OptionalIntArrayRef s, at::OptionalIntArrayRef dim,
                            OptNorm norm, bool onesided) {
  return autograd_fft(Transform::R2C, self, s, dim, norm, onesided);
}
at::Tensor fft_c2r_autograd(const at::Tensor& self, at::OptionalIntArrayRef s, at::OptionalIntArrayRef dim,
                            OptNorm norm) {
  return autograd_fft(Transform::C2R, self, s, dim, norm, false);
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(mps_ext, m) {
  // torch.fft.fftn / ifftn (forward=False) of any input; rfftn (onesided) or
  // fftn of a real input; irfftn. s: signal sizes (-1 keeps a size), dim:
  // transformed dims (default: the last len(s), else all), norm: "backward"
  // (default), "forward" or "ortho".
  m.def("fft_c2c(Tensor self, int[]? s=None, int[]? dim=None, str? norm=None, bool forward=True) -> Tensor");
  m.def("fft_r2c(Tensor self, int[]? s=None, int[]? dim=None, str? norm=None, bool onesided=True) -> Tensor");
  m.def("fft_c2r(Tensor self, int[]? s=None, int[]? dim=None, str? norm=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(mps_ext, CPU, m) {
  m.impl("fft_c2c", &fft_c2c);
  m.impl("fft_r2c", &fft_r2c);
  m.impl("fft_c2r", &fft_c2r);
}

// The mpsgraph device: run_graph picks its runtime.
TORCH_LIBRARY_IMPL(mps_ext, PrivateUse1, m) {
  m.impl("fft_c2c", &fft_c2c);
  m.impl("fft_r2c", &fft_r2c);
  m.impl("fft_c2r", &fft_c2r);
}

#ifdef MPS_EXT_WITH_MPSGRAPH
TORCH_LIBRARY_IMPL(mps_ext, MPS, m) {
  m.impl("fft_c2c", &fft_c2c);
  m.impl("fft_r2c", &fft_r2c);
  m.impl("fft_c2r", &fft_c2r);
}
#endif

TORCH_LIBRARY_IMPL(mps_ext, Meta, m) {
  m.impl("fft_c2c", &fft_c2c_meta);
  m.impl("fft_r2c", &fft_r2c_meta);
  m.impl("fft_c2r", &fft_c2r_meta);
}

TORCH_LIBRARY_IMPL(mps_ext, Autograd, m) {
  m.impl("fft_c2c", &fft_c2c_autograd);
  m.impl("fft_r2c", &fft_r2c_autograd);
  m.impl("fft_c2r", &fft_c2r_autograd);
}

}  // namespace mps_ext::ops::spectral
