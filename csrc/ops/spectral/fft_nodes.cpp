// The FFT node kinds (FFT, RFFT, IRFFT): their spec (shape/dtype rules, the
// MPSGraphFFTDescriptor fields they lower to) and their ATen evaluation.
#include "graph/node_spec.h"
#include "runtime/reference/node_eval.h"

namespace mps_ext::ops::spectral {
namespace {
using namespace graph;
using Types = std::vector<TensorType>;

const char* scaling_name(FFTScaling s) {
  return s == FFTScaling::None ? "none" : s == FFTScaling::Size ? "size" : "unitary";
}

// Normalized FFT axes: non-empty, unique, among the last four dimensions.
std::vector<int64_t> fft_axes(const Attrs& a, int64_t rank, const char* what) {
  std::vector<int64_t> axes = ints_attr(a, "axes", what);
  if (axes.empty()) fail(std::string(what) + ": needs at least one axis");
  if (rank < 1) fail(std::string(what) + ": expects a tensor of rank >= 1");
  std::vector<bool> seen(rank);
  for (int64_t& ax : axes) {
    ax = normalize_axis(ax, rank, what);
    if (seen[ax]) fail(std::string(what) + ": axes " + shape_str(axes) + " repeat an axis");
    seen[ax] = true;
    if (ax < rank - 4)
      fail(std::string(what) + ": axis " + std::to_string(ax) + " of a rank-" + std::to_string(rank) +
           " tensor is not among the last 4 dimensions (MPSGraph transforms only those; transpose first)");
  }
  return axes;
}

// Stores the normalised axes and the descriptor fields for `inverse`.
void set_fft_attrs(Attrs& a, std::vector<int64_t> axes, bool inverse, const char* what) {
  if (!a.count("norm")) a["norm"] = std::string("backward");
  FFTScaling scaling = fft_scaling(str_attr(a, "norm", what), inverse);  // validates norm
  a["axes"] = std::move(axes);
  a["inverse"] = int64_t{inverse ? 1 : 0};
  a["scaling"] = std::string(scaling_name(scaling));
}

// attrs: axes, inverse (default 0), norm (default "backward").
TensorType infer_fft(NodeKind, const Types& in, Attrs& a) {
  const TensorType& t = in[0];
  if (!is_complex(t.dtype)) fail(std::string("fft: expects a complex64 tensor, got ") + dtype_name(t.dtype));
  bool inverse = a.count("inverse") && int_attr(a, "inverse", "fft") != 0;
  set_fft_attrs(a, fft_axes(a, t.rank(), "fft"), inverse, "fft");
  return t;
}

// attrs: axes, norm. The last axis shrinks to n/2+1.
TensorType infer_rfft(NodeKind, const Types& in, Attrs& a) {
  TensorType t = in[0];
  if (t.dtype != DType::Float32 && t.dtype != DType::Float64)
    fail(std::string("rfft: expects a float32 tensor, got ") + dtype_name(t.dtype));
  std::vector<int64_t> axes = fft_axes(a, t.rank(), "rfft");
  int64_t& last = t.shape[axes.back()];
  if (last != kDynamic) last = last / 2 + 1;
  t.dtype = t.dtype == DType::Float64 ? DType::Complex128 : DType::Complex64;
  set_fft_attrs(a, std::move(axes), false, "rfft");
  return t;
}

// attrs: axes, norm, last_dim_size: the last axis grows to last_dim_size.
TensorType infer_irfft(NodeKind, const Types& in, Attrs& a) {
  TensorType t = in[0];
  if (!is_complex(t.dtype)) fail(std::string("irfft: expects a complex64 tensor, got ") + dtype_name(t.dtype));
  std::vector<int64_t> axes = fft_axes(a, t.rank(), "irfft");
  int64_t last_dim_size = int_attr(a, "last_dim_size", "irfft");
  if (last_dim_size < 1) fail("irfft: last_dim_size must be positive, got " + std::to_string(last_dim_size));
  int64_t& last = t.shape[axes.back()];
  if (last != kDynamic && last != last_dim_size / 2 + 1)
    fail("irfft: a real output of size " + std::to_string(last_dim_size) + " along axis " +
         std::to_string(axes.back()) + " needs " + std::to_string(last_dim_size / 2 + 1) +
         " Hermitean inputs there, got " + std::to_string(last));
  last = last_dim_size;
  t.dtype = t.dtype == DType::Complex128 ? DType::Float64 : DType::Float32;
  set_fft_attrs(a, std::move(axes), true, "irfft");
  a["round_to_odd"] = int64_t{last_dim_size % 2};
  return t;
}

at::Tensor eval_fft(const Node& n, const std::vector<at::Tensor>& a) {
  return n.int_attr("inverse") ? at::fft_ifftn(a[0], std::nullopt, n.ints_attr("axes"), n.str_attr("norm"))
                               : at::fft_fftn(a[0], std::nullopt, n.ints_attr("axes"), n.str_attr("norm"));
}

at::Tensor eval_rfft(const Node& n, const std::vector<at::Tensor>& a) {
  return at::fft_rfftn(a[0], std::nullopt, n.ints_attr("axes"), n.str_attr("norm"));
}

// torch.fft.irfftn's `s`: the input's sizes on `axes`, last_dim_size last.
at::Tensor eval_irfft(const Node& n, const std::vector<at::Tensor>& a) {
  std::vector<int64_t> s;
  for (int64_t ax : n.ints_attr("axes")) s.push_back(a[0].size(ax));
  s.back() = n.int_attr("last_dim_size");
  return at::fft_irfftn(a[0], s, n.ints_attr("axes"), n.str_attr("norm"));
}
}  // namespace

MPS_EXT_NODE_SPEC(FFT, {infer_fft, 1, 1});
MPS_EXT_NODE_SPEC(RFFT, {infer_rfft, 1, 1});
MPS_EXT_NODE_SPEC(IRFFT, {infer_irfft, 1, 1});
MPS_EXT_NODE_EVAL(FFT, eval_fft);
MPS_EXT_NODE_EVAL(RFFT, eval_rfft);
MPS_EXT_NODE_EVAL(IRFFT, eval_irfft);

}  // namespace mps_ext::ops::spectral
