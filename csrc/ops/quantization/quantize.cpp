// Weight quantizers: float tensors -> codes and their scales/zero points or
// lookup tables (formats.h). They run once per model, offline, so they are
// plain ATen on the CPU (tensors on other devices are quantized there and the
// results moved back), not graphs; the hot path is dequantize/matmul.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <limits>

#include "ops/op_utils.h"
#include "ops/quantization/formats.h"

namespace mps_ext::ops::quantization {
namespace {

// Reduced-precision scales are rounded up, so the stored scale still covers
// the range (the error bound scale / 2 holds for the stored scale).
at::Tensor store_scale(const at::Tensor& scale, at::ScalarType dtype) {
  if (scale.scalar_type() == dtype) return scale;
  double eps = dtype == at::kBFloat16 ? 1.0 / 128 : dtype == at::kHalf ? 1.0 / 1024 : 0.0;
  return (scale * (1 + eps)).to(dtype);
}

struct Affine {
  at::Tensor codes, scale, zero_point;  // codes in opmath (integer-valued), scale/zero point in dtype
};

// Min/max affine quantization over the last dimension of `x` (opmath):
// [..., n] -> per-row scale and zero point ([..., 1]). Asymmetric: the range
// includes 0, codes fill [0, qmax] with an integer zero point, and the scale
// is widened so no value clamps. Symmetric: codes in [-(half - 1), half - 1]
// around `offset` (0 for signed storage, `half` for unsigned).
Affine affine_rows(const at::Tensor& x, int64_t bits, bool symmetric, double offset, at::ScalarType dtype) {
  const double qmax = static_cast<double>((int64_t{1} << bits) - 1), half = static_cast<double>(int64_t{1} << (bits - 1));
  at::Tensor lo = at::clamp_max(std::get<0>(x.min(-1, true)), 0), hi = at::clamp_min(std::get<0>(x.max(-1, true)), 0);
  at::Tensor scale, zero_point;
  if (symmetric) {
    scale = at::maximum(lo.abs(), hi) / (half - 1);
  } else {
    scale = (hi - lo) / qmax;
  }
  scale = at::where(scale > 0, scale, at::ones_like(scale));  // an all-zero row: any scale is exact
  if (symmetric) {
    zero_point = at::full_like(scale, offset);
  } else {
    zero_point = at::clamp(at::round(-lo / scale), 0, qmax);
    // Widen the scale so [-zp, qmax - zp] * scale covers [lo, hi].
    at::Tensor up = at::where(zero_point < qmax, hi / (qmax - zero_point).clamp_min(1), at::zeros_like(hi));
    at::Tensor down = at::where(zero_point > 0, -lo / zero_point.clamp_min(1), at::zeros_like(lo));
    scale = at::maximum(scale, at::maximum(up, down));
  }
  at::Tensor stored = store_scale(scale, dtype);
  at::Tensor s = stored.to(x.scalar_type());
  at::Tensor codes = symmetric ? at::clamp(at::round(x / s), -(half - 1), half - 1) + offset
                               : at::clamp(at::round(x / s) + zero_point, 0, qmax);
  return {codes, stored, zero_point.to(dtype)};
}

at::Tensor to_opmath_cpu(const at::Tensor& t) {
  return t.to(at::kCPU).to(t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat).contiguous();
}

void check_weight(const char* op, const at::Tensor& w, const char* name, int64_t dim) {
  check_floating(op, name, w);
  TORCH_CHECK(dim < 0 || w.dim() == dim, op, ": expected '", name, "' to be ", dim, "-D, but got shape ", w.sizes());
}

// The argument checks of quantize_groupwise and of its Meta kernel; returns
// the weight's (out_features, in_features).
std::pair<int64_t, int64_t> check_groupwise_args(const at::Tensor& w, int64_t bits, int64_t group_size) {
  const char* op = "quantize_groupwise";
  check_weight(op, w, "w", 2);
  check_bits(op, bits);
  int64_t n = w.size(0), k = w.size(1);
  TORCH_CHECK_VALUE(bits != 4 || k % 2 == 0, op, ": int4 packs two values per byte, so in_features must be even, "
                    "but got ", k);
  check_group_size(op, group_size, k);
  return {n, k};
}

// The same for quantize_lut (group_size: output channels per table).
std::pair<int64_t, int64_t> check_lut_args(const at::Tensor& w, int64_t bits, int64_t group_size) {
  const char* op = "quantize_lut";
  check_weight(op, w, "w", 2);
  check_bits(op, bits);
  int64_t n = w.size(0), k = w.size(1);
  TORCH_CHECK_VALUE(bits != 4 || k % 2 == 0, op, ": 4-bit indices pack two per byte, so in_features must be even, "
                    "but got ", k);
  TORCH_CHECK_VALUE(group_size > 0 && n % group_size == 0, op, ": group_size (output channels per table) must be "
                    "positive and divide out_features (", n, "), but got ", group_size);
  return {n, k};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_per_tensor(const at::Tensor& input, bool symmetric) {
  check_weight("quantize_per_tensor", input, "input", -1);
  at::Tensor x = to_opmath_cpu(input).reshape({1, -1});
  if (x.numel() == 0) x = at::zeros({1, 1}, x.options());
  Affine a = affine_rows(x, 8, symmetric, 0.0, input.scalar_type());
  at::Tensor q = input.numel() == 0 ? at::empty(input.sizes(), at::kFloat) : a.codes.reshape(input.sizes());
  auto dev = input.device();
  return {q.to(symmetric ? at::kChar : at::kByte).to(dev), a.scale.reshape({}).to(dev),
          a.zero_point.reshape({}).to(dev)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_per_channel(const at::Tensor& input, int64_t axis,
                                                                    bool symmetric) {
  check_weight("quantize_per_channel", input, "input", -1);
  TORCH_CHECK(input.dim() >= 1, "quantize_per_channel: expected 'input' with at least one dimension");
  int64_t ax = c10::maybe_wrap_dim(axis, input.dim());
  at::Tensor xm = to_opmath_cpu(input).movedim(ax, 0);
  int64_t channels = xm.size(0);
  if (channels == 0)
    return {at::empty(input.sizes(), input.options().dtype(symmetric ? at::kChar : at::kByte)),
            at::empty({0}, input.options()), at::empty({0}, input.options())};
  at::Tensor rows = xm.reshape({channels, -1});
  if (rows.size(1) == 0) rows = at::zeros({channels, 1}, rows.options());
  Affine a = affine_rows(rows, 8, symmetric, 0.0, input.scalar_type());
  at::Tensor q = xm.numel() == 0 ? at::empty(xm.sizes(), at::kFloat) : a.codes.reshape(xm.sizes());
  auto dev = input.device();
  return {q.movedim(0, ax).contiguous().to(symmetric ? at::kChar : at::kByte).to(dev),
          a.scale.reshape({channels}).to(dev), a.zero_point.reshape({channels}).to(dev)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_groupwise(const at::Tensor& w, int64_t bits, int64_t group_size,
                                                                  bool symmetric) {
  auto [n, k] = check_groupwise_args(w, bits, group_size);
  at::Tensor x = to_opmath_cpu(w).reshape({n, k / group_size, group_size});
  Affine a = affine_rows(x, bits, symmetric, static_cast<double>(int64_t{1} << (bits - 1)), w.scalar_type());
  auto dev = w.device();
  at::Tensor packed = pack_codes(a.codes.reshape({n, k}), bits);
  return {packed.to(dev), a.scale.reshape({n, k / group_size}).to(dev),
          a.zero_point.reshape({n, k / group_size}).to(dev)};
}

// Lloyd's k-means per table: rows of `v` [T, n] from `centroids` [T, E]
// (sorted) -> sorted centroids. Each step assigns by the midpoints between
// sorted centroids; an empty cluster keeps its centroid. No step increases
// the squared error.
at::Tensor nearest_entry(const at::Tensor& v, const at::Tensor& c) {
  int64_t entries = c.size(1);
  at::Tensor mids = ((c.slice(1, 0, entries - 1) + c.slice(1, 1, entries)) / 2).contiguous();
  return at::searchsorted(mids, v);
}

at::Tensor lloyd(const at::Tensor& v, at::Tensor centroids, int64_t iterations) {
  for (int64_t it = 0; it < iterations; ++it) {
    at::Tensor idx = nearest_entry(v, centroids);
    at::Tensor sums = at::zeros_like(centroids).scatter_add_(1, idx, v);
    at::Tensor counts = at::zeros_like(centroids).scatter_add_(1, idx, at::ones_like(v));
    centroids = std::get<0>(at::where(counts > 0, sums / counts.clamp_min(1), centroids).sort(1));
  }
  return centroids;
}

at::Tensor squared_error(const at::Tensor& v, const at::Tensor& c) {
  return (c.gather(1, nearest_entry(v, c)) - v).pow(2).sum(1, true);
}

// Tables for the rows of `v` [T, n] (contiguous): k-means seeded from the
// quantiles (i + 0.5) / E, which resolves the dense centre; heavy tails are
// better served by a uniform grid over [min, max], so that seed runs too and
// each table keeps whichever ends with the smaller squared error (never worse
// than the uniform grid).
at::Tensor kmeans_tables(const at::Tensor& v, int64_t entries, int64_t iterations) {
  int64_t n = v.size(1);
  at::Tensor sorted = std::get<0>(v.sort(1));
  at::Tensor pos = ((at::arange(entries, v.options()) + 0.5) * (static_cast<double>(n) / entries))
                       .to(at::kLong).clamp_max(n - 1);
  at::Tensor from_quantiles = lloyd(v, sorted.index_select(1, pos).contiguous(), iterations);
  at::Tensor lo = sorted.select(1, 0).unsqueeze(1), hi = sorted.select(1, n - 1).unsqueeze(1);
  at::Tensor grid = lo + (hi - lo) * (at::arange(entries, v.options()) / static_cast<double>(entries - 1));
  at::Tensor from_grid = lloyd(v, grid.contiguous(), iterations);
  return at::where(squared_error(v, from_quantiles) <= squared_error(v, from_grid), from_quantiles, from_grid);
}

std::tuple<at::Tensor, at::Tensor> quantize_lut(const at::Tensor& w, int64_t bits, int64_t group_size) {
  auto [n, k] = check_lut_args(w, bits, group_size);
  int64_t entries = int64_t{1} << bits;
  TORCH_CHECK_VALUE(k > 0, "quantize_lut: expected in_features > 0");
  at::Tensor v = to_opmath_cpu(w).reshape({n / group_size, group_size * k});
  at::Tensor lut = kmeans_tables(v, entries, /*iterations=*/8).to(w.scalar_type());
  // Index against the stored (possibly rounded) table: nearest entry.
  at::Tensor idx = nearest_entry(v, lut.to(v.scalar_type()));
  at::Tensor packed = pack_codes(idx.reshape({n, k}), bits);
  return {packed.to(w.device()), lut.to(w.device())};
}

// --- Meta: shapes only -----------------------------------------------------
std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_per_tensor_meta(const at::Tensor& input, bool symmetric) {
  check_weight("quantize_per_tensor", input, "input", -1);
  auto o = input.options();
  return {at::empty(input.sizes(), o.dtype(symmetric ? at::kChar : at::kByte)), at::empty({}, o), at::empty({}, o)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_per_channel_meta(const at::Tensor& input, int64_t axis,
                                                                         bool symmetric) {
  check_weight("quantize_per_channel", input, "input", -1);
  TORCH_CHECK(input.dim() >= 1, "quantize_per_channel: expected 'input' with at least one dimension");
  int64_t c = input.size(c10::maybe_wrap_dim(axis, input.dim()));
  auto o = input.options();
  return {at::empty(input.sizes(), o.dtype(symmetric ? at::kChar : at::kByte)), at::empty({c}, o), at::empty({c}, o)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_groupwise_meta(const at::Tensor& w, int64_t bits,
                                                                       int64_t group_size, bool symmetric) {
  auto [n, k] = check_groupwise_args(w, bits, group_size);
  auto o = w.options();
  return {at::empty({n, k * bits / 8}, o.dtype(at::kByte)), at::empty({n, k / group_size}, o),
          at::empty({n, k / group_size}, o)};
}

std::tuple<at::Tensor, at::Tensor> quantize_lut_meta(const at::Tensor& w, int64_t bits, int64_t group_size) {
  auto [n, k] = check_lut_args(w, bits, group_size);
  auto o = w.options();
  return {at::empty({n, k * bits / 8}, o.dtype(at::kByte)), at::empty({n / group_size, int64_t{1} << bits}, o)};
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(mps_ext, m) {
  m.def("quantize_per_tensor(Tensor input, bool symmetric=False) -> (Tensor, Tensor, Tensor)");
  m.def("quantize_per_channel(Tensor input, int axis=0, bool symmetric=False) -> (Tensor, Tensor, Tensor)");
  m.def("quantize_groupwise(Tensor w, int bits, int group_size, bool symmetric=False) -> "
        "(Tensor qweight, Tensor scales, Tensor zero_points)");
  m.def("quantize_lut(Tensor w, int bits, int group_size=1) -> (Tensor indices, Tensor lut)");
}

// Quantizers are not differentiable (codes are integers).
TORCH_LIBRARY_IMPL(mps_ext, CPU, m) {
  m.impl("quantize_per_tensor", &quantize_per_tensor);
  m.impl("quantize_per_channel", &quantize_per_channel);
  m.impl("quantize_groupwise", &quantize_groupwise);
  m.impl("quantize_lut", &quantize_lut);
}

TORCH_LIBRARY_IMPL(mps_ext, PrivateUse1, m) {
  m.impl("quantize_per_tensor", &quantize_per_tensor);
  m.impl("quantize_per_channel", &quantize_per_channel);
  m.impl("quantize_groupwise", &quantize_groupwise);
  m.impl("quantize_lut", &quantize_lut);
}

#ifdef MPS_EXT_WITH_MPSGRAPH
TORCH_LIBRARY_IMPL(mps_ext, MPS, m) {
  m.impl("quantize_per_tensor", &quantize_per_tensor);
  m.impl("quantize_per_channel", &quantize_per_channel);
  m.impl("quantize_groupwise", &quantize_groupwise);
  m.impl("quantize_lut", &quantize_lut);
}
#endif

TORCH_LIBRARY_IMPL(mps_ext, Meta, m) {
  m.impl("quantize_per_tensor", &quantize_per_tensor_meta);
  m.impl("quantize_per_channel", &quantize_per_channel_meta);
  m.impl("quantize_groupwise", &quantize_groupwise_meta);
  m.impl("quantize_lut", &quantize_lut_meta);
}

}  // namespace mps_ext::ops::quantization
