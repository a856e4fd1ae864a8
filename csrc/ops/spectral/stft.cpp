// torch.ops.mps_ext.stft / istft: torch.stft / torch.istft (arguments,
// defaults, errors), each one graph:
//   stft:  kernel "stft_frames" (center padding, framing and the window in
//          one pass, no padded copy of the signal) -> batched r2c FFT
//   istft: c2r FFT -> kernel "istft_overlap_add" (window, overlap-add and the
//          window-envelope normalisation in one pass)
// Each kernel node carries its decomposition into IR slices/concats/multiplies
// (what the mpsgraph runtime lowers, and the CPU kernels' test oracle).
// Gradients: the same math composed from differentiable ops (unfold/col2im
// and the mps_ext FFT ops), used only when autograd records.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cmath>
#include <sstream>

#include "ops/op_utils.h"
#include "ops/spectral/fft_graph.h"
#include "ops/spectral/stft_kernels.h"
#include "runtime/reference/kernels.h"

namespace mps_ext::ops::spectral {
namespace {
using graph::DType;
using graph::Graph;
using runtime::GraphSpec;

// --- decompositions -----------------------------------------------------------
graph::Tensor slice_last(Graph& g, graph::Tensor x, int64_t begin, int64_t end) {
  graph::Shape shape = g.type(x).shape, starts(shape.size(), 0), strides(shape.size(), 1);
  starts.back() = begin;
  shape.back() = end;
  return g.slice(x, starts, shape, strides);
}

graph::Tensor zeros_like_last(Graph& g, graph::Tensor x, int64_t n) {
  graph::Shape shape = g.type(x).shape;
  shape.back() = n;
  return g.constant(0.0, g.type(x).dtype, shape);
}

// x [B, L] padded by p on both sides of its last dim (F.pad's modes). The IR
// has no reverse: reflection is p one-sample slices (p = n_fft/2).
graph::Tensor center_pad(Graph& g, graph::Tensor x, int64_t p, PadMode mode) {
  if (p == 0) return x;
  const int64_t n = g.type(x).shape.back();
  std::vector<graph::Tensor> parts;
  auto one = [&](int64_t i) { parts.push_back(slice_last(g, x, i, i + 1)); };
  switch (mode) {
    case PadMode::Constant:
      return g.concat({zeros_like_last(g, x, p), x, zeros_like_last(g, x, p)}, -1);
    case PadMode::Circular:
      return g.concat({slice_last(g, x, n - p, n), x, slice_last(g, x, 0, p)}, -1);
    case PadMode::Replicate: {
      graph::Shape shape = g.type(x).shape;
      shape.back() = p;
      return g.concat({g.broadcast(slice_last(g, x, 0, 1), shape), x, g.broadcast(slice_last(g, x, n - 1, n), shape)}, -1);
    }
    case PadMode::Reflect:
      for (int64_t i = p; i >= 1; --i) one(i);
      parts.push_back(x);
      for (int64_t i = n - 2; i >= n - 1 - p; --i) one(i);
      return g.concat(parts, -1);
  }
  return x;
}

// The window [W] zero-padded to n_fft at `offset`.
graph::Tensor padded_window(Graph& g, graph::Tensor w, int64_t n_fft, int64_t offset) {
  const int64_t len = g.type(w).shape[0];
  std::vector<graph::Tensor> parts;
  if (offset > 0) parts.push_back(g.constant(0.0, g.type(w).dtype, {offset}));
  parts.push_back(w);
  if (n_fft - offset - len > 0) parts.push_back(g.constant(0.0, g.type(w).dtype, {n_fft - offset - len}));
  return parts.size() == 1 ? w : g.concat(parts, 0);
}

// Frames [B, T, n_fft] of the padded signal as hop-sized blocks: frame t is
// blocks t .. t+R-1 (R = ceil(n_fft/hop)) cut to n_fft.
graph::Tensor frames_decomposition(Graph& d, const std::vector<graph::Tensor>& in, const FrameGeometry& geo) {
  graph::Tensor xp = center_pad(d, in[0], geo.pad, geo.mode);
  const int64_t batch = d.type(xp).shape[0], len = d.type(xp).shape[1];
  const int64_t n_frames = 1 + (len - geo.n_fft) / geo.hop, reach = (geo.n_fft + geo.hop - 1) / geo.hop;
  const int64_t need = (n_frames + reach - 1) * geo.hop;
  xp = need > len ? d.concat({xp, zeros_like_last(d, xp, need - len)}, -1) : slice_last(d, xp, 0, need);
  graph::Tensor blocks = d.reshape(xp, {batch, n_frames + reach - 1, geo.hop});
  std::vector<graph::Tensor> parts;
  for (int64_t r = 0; r < reach; ++r)
    parts.push_back(d.slice(blocks, {0, r, 0}, {batch, r + n_frames, geo.hop}, {1, 1, 1}));
  graph::Tensor frames = parts.size() == 1 ? parts[0] : d.concat(parts, -1);
  frames = slice_last(d, frames, 0, geo.n_fft);
  graph::Tensor w = padded_window(d, in[1], geo.n_fft, geo.window_offset);
  return d.mul(frames, d.reshape(w, {1, 1, geo.n_fft}));
}

// Overlap-add of frames [B, T, n_fft] * window, cropped to [start, start+length)
// (zeros past the frames), divided by the envelope [length].
graph::Tensor overlap_add_decomposition(Graph& d, const std::vector<graph::Tensor>& in, int64_t hop, int64_t start,
                                        int64_t length) {
  const graph::Shape shape = d.type(in[0]).shape;
  const int64_t batch = shape[0], n_frames = shape[1], n_fft = shape[2];
  const int64_t reach = (n_fft + hop - 1) / hop, blocks = n_frames + reach - 1;
  graph::Tensor frames = d.mul(in[0], d.reshape(in[1], {1, 1, n_fft}));
  if (reach * hop > n_fft) frames = d.concat({frames, zeros_like_last(d, frames, reach * hop - n_fft)}, -1);
  graph::Tensor sum;
  for (int64_t r = 0; r < reach; ++r) {  // piece r of every frame lands r blocks later
    graph::Tensor piece = slice_last(d, frames, r * hop, (r + 1) * hop);  // [B, T, hop]
    std::vector<graph::Tensor> parts;
    const DType dt = d.type(frames).dtype;
    if (r > 0) parts.push_back(d.constant(0.0, dt, {batch, r, hop}));
    parts.push_back(piece);
    if (reach - 1 - r > 0) parts.push_back(d.constant(0.0, dt, {batch, reach - 1 - r, hop}));
    graph::Tensor shifted = parts.size() == 1 ? piece : d.concat(parts, 1);
    sum = r == 0 ? shifted : d.add(sum, shifted);
  }
  graph::Tensor y = d.reshape(sum, {batch, blocks * hop});
  const int64_t expected = (n_frames - 1) * hop + n_fft, stop = std::min(start + length, expected);
  y = slice_last(d, y, start, stop);
  if (stop - start < length) y = d.concat({y, zeros_like_last(d, y, length - (stop - start))}, -1);
  return d.div(y, d.reshape(in[2], {1, length}));
}

// --- CPU kernels --------------------------------------------------------------
template <typename Get>
FrameGeometry frame_geometry(const Get& get) {
  return {get("n_fft"), get("hop"), get("pad"), get("window_offset"), static_cast<PadMode>(get("pad_mode"))};
}

at::Tensor stft_frames_cpu(const graph::Node& node, const std::vector<at::Tensor>& in,
                           const runtime::reference::NewOutput& new_output) {
  FrameGeometry geo = frame_geometry([&](const char* k) { return node.int_attr(k); });
  at::Tensor x = in[0].contiguous(), w = in[1].contiguous();
  const int64_t len = x.size(1) + 2 * geo.pad;
  at::Tensor frames = new_output({x.size(0), 1 + (len - geo.n_fft) / geo.hop, geo.n_fft}, x.scalar_type());
  MPS_EXT_CPU_KERNEL(stft_frames_kernel)(frames, x, w, geo);
  return frames;
}

at::Tensor istft_overlap_add_cpu(const graph::Node& node, const std::vector<at::Tensor>& in,
                                 const runtime::reference::NewOutput& new_output) {
  at::Tensor frames = in[0].contiguous(), w = in[1].contiguous(), env = in[2].contiguous();
  at::Tensor out = new_output({frames.size(0), env.size(0)}, frames.scalar_type());
  MPS_EXT_CPU_KERNEL(istft_overlap_add_kernel)(out, frames, w, env,
                                               OverlapAddGeometry{node.int_attr("hop"), node.int_attr("start")});
  return out;
}
MPS_EXT_REFERENCE_KERNEL("stft_frames", stft_frames_cpu);
MPS_EXT_REFERENCE_KERNEL("istft_overlap_add", istft_overlap_add_cpu);

// --- graphs -------------------------------------------------------------------
void build_stft(Graph& g, const GraphSpec& s) {
  graph::Tensor x = g.placeholder(s.input(0), "self");
  graph::Tensor w = g.placeholder(s.input(1), "window");
  FrameGeometry geo = frame_geometry([&](const char* k) { return s.int_attr(k); });
  graph::Attrs attrs = {{"n_fft", geo.n_fft}, {"hop", geo.hop}, {"pad", geo.pad},
                        {"window_offset", geo.window_offset}, {"pad_mode", static_cast<int64_t>(geo.mode)}};
  graph::Tensor frames = g.kernel("stft_frames", {x, w}, attrs, [geo](Graph& d, const std::vector<graph::Tensor>& in) {
    return frames_decomposition(d, in, geo);
  });
  const std::string norm = s.int_attr("normalized") ? "ortho" : "backward";
  const DType dt = g.type(frames).dtype;
  graph::Tensor spec;
  if (s.int_attr("onesided")) {
    spec = r2c_nodes(g, frames, {2}, norm);
  } else {
    if (dt == DType::Float32 || dt == DType::Float64)
      frames = g.cast(frames, dt == DType::Float64 ? DType::Complex128 : DType::Complex64);
    spec = c2c_nodes(g, frames, {2}, /*inverse=*/false, norm);
  }
  if (!s.int_attr("batched")) {  // [1, T, F] -> [T, F]: the op's result is then a single view
    graph::Shape shape = g.type(spec).shape;
    spec = g.reshape(spec, {shape[1], shape[2]});
  }
  g.output(spec);
}

void build_istft(Graph& g, const GraphSpec& s) {
  graph::Tensor spec = g.placeholder(s.input(0), "self");  // [B, F, T]
  graph::Tensor w = g.placeholder(s.input(1), "window");    // [n_fft]
  graph::Tensor env = g.placeholder(s.input(2), "envelope");
  const int64_t n_fft = s.int_attr("n_fft"), hop = s.int_attr("hop"), start = s.int_attr("start");
  const int64_t length = s.input(2).shape[0];
  const std::string norm = s.int_attr("normalized") ? "ortho" : "backward";
  graph::Tensor frames = g.transpose(spec, {0, 2, 1});
  frames = s.int_attr("return_complex") ? c2c_nodes(g, frames, {2}, /*inverse=*/true, norm)
                                        : c2r_nodes(g, frames, {2}, norm, n_fft);
  graph::Tensor y = g.kernel("istft_overlap_add", {frames, w, env}, {{"hop", hop}, {"start", start}},
                             [hop, start, length](Graph& d, const std::vector<graph::Tensor>& in) {
                               return overlap_add_decomposition(d, in, hop, start, length);
                             });
  if (!s.int_attr("batched")) y = g.reshape(y, {length});
  g.output(y);
}

// --- argument checks (torch's messages) ------------------------------------------
PadMode pad_mode_of(c10::string_view mode) {
  if (mode == "reflect") return PadMode::Reflect;
  if (mode == "constant") return PadMode::Constant;
  if (mode == "replicate") return PadMode::Replicate;
  if (mode == "circular") return PadMode::Circular;
  TORCH_CHECK_NOT_IMPLEMENTED(false, "Unrecognised padding mode ", mode);
}

void check_fft_dtype(const at::Tensor& t, const char* what) {
  at::ScalarType d = t.scalar_type();
  TORCH_CHECK(d == at::kFloat || d == at::kDouble || d == at::kComplexFloat || d == at::kComplexDouble,
              what, ": Unsupported dtype ", d, " (the FFT runs in float32/float64 and their complex types)");
}

struct StftArgs {
  at::Tensor x, window;  // x [B, L]; window [W], both of dtype (materialized only)
  int64_t batch, n;
  at::ScalarType dtype;
  FrameGeometry geo;
  bool batched, onesided, return_complex, normalized;
};

StftArgs check_stft(const at::Tensor& self, int64_t n_fft, std::optional<int64_t> hop_length,
                    std::optional<int64_t> win_length, const std::optional<at::Tensor>& window, bool center,
                    c10::string_view pad_mode, bool normalized, std::optional<bool> onesided,
                    std::optional<bool> return_complex, bool materialize = true) {
  const bool complex_input = self.is_complex() || (window && window->defined() && window->is_complex());
  TORCH_CHECK(return_complex || complex_input,
              "stft requires the return_complex parameter be given for real inputs, and will further require "
              "that return_complex=True in a future PyTorch release.");
  TORCH_CHECK(self.dim() == 1 || self.dim() == 2, "stft: expected a 1D or 2D tensor, but got ", self.dim(), "D");
  check_fft_dtype(self, "stft");
  StftArgs a;
  a.batched = self.dim() == 2;
  a.batch = a.batched ? self.size(0) : 1;
  a.n = self.size(-1);
  const int64_t hop = hop_length.value_or(n_fft / 4), win = win_length.value_or(n_fft);
  PadMode mode = pad_mode_of(pad_mode);
  const int64_t pad = center ? n_fft / 2 : 0, n = a.n;
  if (center && pad > 0) {
    if (mode == PadMode::Reflect)
      TORCH_CHECK(pad < n, "stft: reflect padding of ", pad, " (n_fft // 2) must be less than the signal length ", n);
    if (mode == PadMode::Circular)
      TORCH_CHECK(pad <= n, "stft: circular padding of ", pad, " (n_fft // 2) must be at most the signal length ", n);
    if (mode == PadMode::Replicate) TORCH_CHECK(n > 0, "stft: replicate padding needs a non-empty signal");
  }
  const int64_t len = n + 2 * pad;
  TORCH_CHECK(n_fft > 0 && n_fft <= len, "stft: expected 0 < n_fft <= ", len, " (the padded signal length), but got n_fft=", n_fft);
  TORCH_CHECK(hop > 0, "stft: expected hop_length > 0, but got hop_length=", hop);
  TORCH_CHECK(win > 0 && win <= n_fft, "stft: expected 0 < win_length <= n_fft, but got win_length=", win);
  const bool has_window = window && window->defined();
  if (has_window) {
    TORCH_CHECK(window->dim() == 1 && window->size(0) == win,
                "stft: expected a 1D window tensor of size equal to win_length=", win, ", but got window with size ",
                window->sizes());
    check_fft_dtype(*window, "stft");
  }
  a.dtype = at::promote_types(self.scalar_type(),
                              has_window ? window->scalar_type() : c10::toRealValueType(self.scalar_type()));
  if (materialize) {  // (Meta kernels touch no data: shapes only)
    a.x = (a.batched ? self : self.unsqueeze(0)).to(a.dtype).resolve_conj().resolve_neg();
    at::Tensor w = has_window ? *window : at::ones({win}, self.options().dtype(a.dtype));
    a.window = w.to(self.device(), a.dtype).resolve_conj().resolve_neg();
  }
  a.onesided = onesided.value_or(!complex_input);
  TORCH_CHECK(!(a.onesided && complex_input), "Cannot have onesided output if window or input is complex");
  a.return_complex = return_complex.value_or(complex_input);
  if (!a.return_complex)
    TORCH_WARN_ONCE("stft with return_complex=False is deprecated. In a future pytorch release, stft will return "
                    "complex tensors for all inputs, and return_complex=False will raise an error.");
  a.normalized = normalized;
  a.geo = {n_fft, hop, pad, (n_fft - win) / 2, mode};
  return a;
}

// spec [B, T, F] (or [T, F] unbatched) -> [B, F, T], frequencies contiguous like torch.stft.
at::Tensor finish_stft(at::Tensor spec, const StftArgs& a) {
  if (!a.batched && spec.dim() == 3) spec = spec.squeeze(0);
  at::Tensor out = spec.transpose(-2, -1);
  return a.return_complex ? out : at::view_as_real(out);
}

at::Tensor stft(const at::Tensor& self, int64_t n_fft, std::optional<int64_t> hop_length,
                std::optional<int64_t> win_length, const std::optional<at::Tensor>& window, bool center,
                c10::string_view pad_mode, bool normalized, std::optional<bool> onesided,
                std::optional<bool> return_complex) {
  StftArgs a = check_stft(self, n_fft, hop_length, win_length, window, center, pad_mode, normalized, onesided,
                          return_complex);
  const int64_t n_frames = 1 + (a.x.size(1) + 2 * a.geo.pad - n_fft) / a.geo.hop;
  at::Tensor spec;
  if (a.x.size(0) == 0) {
    at::ScalarType c = c10::toComplexType(c10::toRealValueType(a.x.scalar_type()));
    spec = at::zeros({0, n_frames, a.onesided ? n_fft / 2 + 1 : n_fft}, a.x.options().dtype(c));
  } else {
    GraphSpec s("mps_ext::stft");
    s.input(a.x).input(a.window)
        .attr("n_fft", n_fft).attr("hop", a.geo.hop).attr("pad", a.geo.pad)
        .attr("window_offset", a.geo.window_offset).attr("pad_mode", static_cast<int64_t>(a.geo.mode))
        .attr("normalized", int64_t{normalized}).attr("onesided", int64_t{a.onesided})
        .attr("batched", int64_t{a.batched});
    spec = runtime::run_graph(s, build_stft, {a.x, a.window})[0];
  }
  return finish_stft(spec, a);
}

// The same math from differentiable ops: gradients for input and window.
at::Tensor stft_differentiable(const at::Tensor& self, int64_t n_fft, std::optional<int64_t> hop_length,
                               std::optional<int64_t> win_length, const std::optional<at::Tensor>& window, bool center,
                               c10::string_view pad_mode, bool normalized, std::optional<bool> onesided,
                               std::optional<bool> return_complex) {
  StftArgs a = check_stft(self, n_fft, hop_length, win_length, window, center, pad_mode, normalized, onesided,
                          return_complex);
  at::Tensor x = a.x;
  if (a.geo.pad > 0) x = at::pad(x.unsqueeze(0), {a.geo.pad, a.geo.pad}, pad_mode, std::nullopt).squeeze(0);
  at::Tensor w = a.window;
  const int64_t left = a.geo.window_offset, right = n_fft - left - w.size(0);
  if (left > 0 || right > 0) w = at::constant_pad_nd(w, {left, right}, 0);
  at::Tensor frames = x.unfold(-1, n_fft, a.geo.hop) * w;
  static auto r2c = c10::Dispatcher::singleton().findSchemaOrThrow("mps_ext::fft_r2c", "").typed<at::Tensor(
      const at::Tensor&, at::OptionalIntArrayRef, at::OptionalIntArrayRef, std::optional<c10::string_view>, bool)>();
  static auto c2c = c10::Dispatcher::singleton().findSchemaOrThrow("mps_ext::fft_c2c", "").typed<at::Tensor(
      const at::Tensor&, at::OptionalIntArrayRef, at::OptionalIntArrayRef, std::optional<c10::string_view>, bool)>();
  std::vector<int64_t> last = {2};
  c10::string_view norm = normalized ? "ortho" : "backward";
  at::Tensor spec = frames.is_complex() ? c2c.call(frames, std::nullopt, last, norm, true)
                                        : r2c.call(frames, std::nullopt, last, norm, a.onesided);
  return finish_stft(spec, a);
}

// --- istft ----------------------------------------------------------------------
struct IstftArgs {
  at::Tensor spec, window;  // spec [B, F, T]; window [n_fft] (materialized only)
  int64_t batch;
  at::ScalarType out_dtype;
  int64_t n_fft, hop, start, length, expected;
  bool batched, onesided, normalized, return_complex;
};

IstftArgs check_istft(const at::Tensor& self, int64_t n_fft, std::optional<int64_t> hop_length,
                      std::optional<int64_t> win_length, const std::optional<at::Tensor>& window, bool center,
                      bool normalized, std::optional<bool> onesided, std::optional<int64_t> length,
                      bool return_complex, bool materialize = true) {
  TORCH_CHECK(self.is_complex(),
              "istft requires a complex-valued input tensor matching the output from stft with return_complex=True.");
  TORCH_CHECK(self.dim() == 2 || self.dim() == 3, "istft: expected a tensor with 2 or 3 dimensions of complex, but got ",
              self.dim());
  check_fft_dtype(self, "istft");
  IstftArgs a;
  a.batched = self.dim() == 3;
  a.batch = a.batched ? self.size(0) : 1;
  a.out_dtype = return_complex ? self.scalar_type() : c10::toRealValueType(self.scalar_type());
  const int64_t hop = hop_length.value_or(n_fft / 4), win = win_length.value_or(n_fft);
  TORCH_CHECK(0 < win && win <= n_fft, "istft: expected 0 < win_length <= n_fft, but got win_length=", win);
  TORCH_CHECK(0 < hop && hop <= win, "istft: expected 0 < hop_length <= win_length, but got hop_length=", hop);
  const int64_t n_bins = self.size(-2), n_frames = self.size(-1);
  a.onesided = onesided.value_or(n_bins != n_fft);
  if (a.onesided) {
    TORCH_CHECK(n_fft / 2 + 1 == n_bins, "istft: expected the frequency dimension (3rd to the last) of the input "
                "tensor to match n_fft / 2 + 1 when onesided=True, but got ", n_bins);
  } else {
    TORCH_CHECK(n_fft == n_bins, "istft: expected the frequency dimension (3rd to the last) of the input tensor to "
                "match n_fft when onesided=False, but got ", n_bins);
  }
  TORCH_CHECK(n_frames > 0, "istft: input tensor cannot be empty (it has no frames)");
  const bool has_window = window && window->defined();
  if (has_window) {
    TORCH_CHECK(window->dim() == 1 && window->size(0) == win,
                "istft: expected a 1D window tensor of size equal to win_length=", win,
                ", but got window with size ", window->sizes());
    check_fft_dtype(*window, "istft");
  }
  if (return_complex) {
    TORCH_CHECK(!a.onesided, "Cannot have onesided output if window or input is complex");
  } else {
    TORCH_CHECK(!(has_window && window->is_complex()), "Complex windows are incompatible with return_complex=False");
  }
  if (materialize) {
    at::Tensor w = has_window ? *window : at::ones({win}, self.options().dtype(c10::toRealValueType(self.scalar_type())));
    const int64_t left = (n_fft - win) / 2, right = n_fft - win - left;
    if (left > 0 || right > 0) w = at::constant_pad_nd(w, {left, right}, 0);
    at::ScalarType real = c10::toRealValueType(self.scalar_type());
    at::ScalarType wdt = return_complex ? at::promote_types(w.scalar_type(), self.scalar_type())
                                        : at::promote_types(w.scalar_type(), real);
    a.window = w.to(self.device(), wdt).resolve_conj().resolve_neg();
    a.spec = (a.batched ? self : self.unsqueeze(0)).resolve_conj().resolve_neg();
  }
  a.n_fft = n_fft;
  a.hop = hop;
  a.normalized = normalized;
  a.return_complex = return_complex;
  a.expected = n_fft + hop * (n_frames - 1);
  a.start = center ? n_fft / 2 : 0;
  const int64_t end = length ? a.start + *length : center ? a.expected - n_fft / 2 : a.expected;
  TORCH_CHECK(end >= a.start, "istft: length must be non-negative, but got ", end - a.start);
  a.length = end - a.start;
  if (end > a.expected)
    TORCH_WARN_ONCE("The length of signal is shorter than the length parameter. Result is being padded with zeros "
                    "in the tail. Please check your center and hop_length settings.");
  return a;
}

// The window envelope (sum of window^2 over the frames) on [start, start+length),
// 1 past the frames; host-computed because the NOLA check needs its values.
at::Tensor envelope(const IstftArgs& a) {
  at::Tensor w = a.window.cpu().contiguous();
  const int64_t n_frames = a.spec.size(2);
  at::Tensor env = at::ones({a.length}, w.options());
  double lowest = INFINITY;
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES(w.scalar_type(), "istft_envelope", [&] {
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    scalar_t* e = env.mutable_data_ptr<scalar_t>();
    const int64_t stop = std::min(a.start + a.length, a.expected);
    for (int64_t j = a.start; j < stop; ++j) {
      scalar_t sum(0);
      const int64_t t_first = std::max<int64_t>(0, (j - a.n_fft + a.hop) / a.hop);
      for (int64_t t = t_first; t < n_frames && t * a.hop <= j; ++t) {
        const int64_t k = j - t * a.hop;
        if (k < a.n_fft) sum += wp[k] * wp[k];
      }
      e[j - a.start] = sum;
      lowest = std::min<double>(lowest, std::abs(sum));
    }
  });
  TORCH_CHECK(!(lowest < 1e-11), "istft: window overlap add min: ", lowest,
              " (the squared window, overlap-added with hop_length, must be nonzero everywhere: NOLA)");
  return env.to(a.spec.device());
}

at::Tensor istft(const at::Tensor& self, int64_t n_fft, std::optional<int64_t> hop_length,
                 std::optional<int64_t> win_length, const std::optional<at::Tensor>& window, bool center,
                 bool normalized, std::optional<bool> onesided, std::optional<int64_t> length, bool return_complex) {
  IstftArgs a = check_istft(self, n_fft, hop_length, win_length, window, center, normalized, onesided, length,
                            return_complex);
  at::Tensor env = envelope(a);
  at::ScalarType out_dt = return_complex ? a.spec.scalar_type() : c10::toRealValueType(a.spec.scalar_type());
  at::Tensor y;
  if (a.spec.size(0) == 0 || a.length == 0) {
    y = at::zeros({a.spec.size(0), a.length}, a.spec.options().dtype(out_dt));
  } else {
    at::Tensor w = a.window.to(out_dt);
    env = env.to(out_dt);
    GraphSpec s("mps_ext::istft");
    s.input(a.spec).input(w).input(env)
        .attr("n_fft", n_fft).attr("hop", a.hop).attr("start", a.start)
        .attr("normalized", int64_t{normalized}).attr("return_complex", int64_t{return_complex})
        .attr("batched", int64_t{a.batched});
    return runtime::run_graph(s, build_istft, {a.spec, w, env})[0];
  }
  return a.batched ? y : y.squeeze(0);
}

at::Tensor istft_differentiable(const at::Tensor& self, int64_t n_fft, std::optional<int64_t> hop_length,
                                std::optional<int64_t> win_length, const std::optional<at::Tensor>& window,
                                bool center, bool normalized, std::optional<bool> onesided,
                                std::optional<int64_t> length, bool return_complex) {
  IstftArgs a = check_istft(self, n_fft, hop_length, win_length, window, center, normalized, onesided, length,
                            return_complex);
  envelope(a);  // the NOLA check
  static auto c2r = c10::Dispatcher::singleton().findSchemaOrThrow("mps_ext::fft_c2r", "").typed<at::Tensor(
      const at::Tensor&, at::OptionalIntArrayRef, at::OptionalIntArrayRef, std::optional<c10::string_view>)>();
  static auto c2c = c10::Dispatcher::singleton().findSchemaOrThrow("mps_ext::fft_c2c", "").typed<at::Tensor(
      const at::Tensor&, at::OptionalIntArrayRef, at::OptionalIntArrayRef, std::optional<c10::string_view>, bool)>();
  c10::string_view norm = normalized ? "ortho" : "backward";
  std::vector<int64_t> n = {n_fft}, last = {2};
  at::Tensor spec = a.spec.transpose(1, 2);
  at::Tensor frames = return_complex ? c2c.call(spec, std::nullopt, last, norm, false) : c2r.call(spec, n, last, norm);
  frames = frames * a.window;  // [B, T, n_fft]
  const int64_t n_frames = frames.size(1);
  auto fold = [&](const at::Tensor& f) {  // overlap-add [B, T, n_fft] -> [B, expected]
    return at::col2im(f.transpose(1, 2), {1, a.expected}, {1, n_fft}, {1, 1}, {0, 0}, {1, a.hop}).reshape({f.size(0), a.expected});
  };
  at::Tensor y = fold(frames);
  at::Tensor env = fold(a.window.pow(2).view({1, 1, n_fft}).expand({1, n_frames, n_fft}));
  const int64_t stop = std::min(a.start + a.length, a.expected);
  y = y.narrow(1, a.start, stop - a.start) / env.narrow(1, a.start, stop - a.start);
  if (stop - a.start < a.length) y = at::constant_pad_nd(y, {0, a.length - (stop - a.start)}, 0);
  return a.batched ? y : y.squeeze(0);
}

// --- meta ---------------------------------------------------------------------------
at::Tensor stft_meta(const at::Tensor& self, int64_t n_fft, std::optional<int64_t> hop_length,
                     std::optional<int64_t> win_length, const std::optional<at::Tensor>& window, bool center,
                     c10::string_view pad_mode, bool normalized, std::optional<bool> onesided,
                     std::optional<bool> return_complex) {
  StftArgs a = check_stft(self, n_fft, hop_length, win_length, window, center, pad_mode, normalized, onesided,
                          return_complex, /*materialize=*/false);
  const int64_t n_frames = 1 + (a.n + 2 * a.geo.pad - n_fft) / a.geo.hop;
  at::ScalarType c = c10::toComplexType(c10::toRealValueType(a.dtype));
  const int64_t bins = a.onesided ? n_fft / 2 + 1 : n_fft;
  at::Tensor spec = a.batched ? at::empty({a.batch, n_frames, bins}, self.options().dtype(c))
                              : at::empty({n_frames, bins}, self.options().dtype(c));
  return finish_stft(spec, a);
}

at::Tensor istft_meta(const at::Tensor& self, int64_t n_fft, std::optional<int64_t> hop_length,
                      std::optional<int64_t> win_length, const std::optional<at::Tensor>& window, bool center,
                      bool normalized, std::optional<bool> onesided, std::optional<int64_t> length,
                      bool return_complex) {
  // Without data there is no NOLA check: only shapes.
  IstftArgs a = check_istft(self, n_fft, hop_length, win_length, window, center, normalized, onesided, length,
                            return_complex, /*materialize=*/false);
  return a.batched ? at::empty({a.batch, a.length}, self.options().dtype(a.out_dtype))
                   : at::empty({a.length}, self.options().dtype(a.out_dtype));
}

// --- autograd: the fused graph unless autograd records -----------------------------
bool records(const at::Tensor& x, const std::optional<at::Tensor>& w) {
  return requires_grad(x) || (w && w->defined() && requires_grad(*w));
}

at::Tensor stft_autograd(const at::Tensor& self, int64_t n_fft, std::optional<int64_t> hop_length,
                         std::optional<int64_t> win_length, const std::optional<at::Tensor>& window, bool center,
                         c10::string_view pad_mode, bool normalized, std::optional<bool> onesided,
                         std::optional<bool> return_complex) {
  if (records(self, window))
    return stft_differentiable(self, n_fft, hop_length, win_length, window, center, pad_mode, normalized, onesided,
                               return_complex);
  at::AutoDispatchBelowADInplaceOrView guard;
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("mps_ext::stft", "").typed<decltype(stft)>();
  return op.call(self, n_fft, hop_length, win_length, window, center, pad_mode, normalized, onesided, return_complex);
}

at::Tensor istft_autograd(const at::Tensor& self, int64_t n_fft, std::optional<int64_t> hop_length,
                          std::optional<int64_t> win_length, const std::optional<at::Tensor>& window, bool center,
                          bool normalized, std::optional<bool> onesided, std::optional<int64_t> length,
                          bool return_complex) {
  if (records(self, window))
    return istft_differentiable(self, n_fft, hop_length, win_length, window, center, normalized, onesided, length,
                                return_complex);
  at::AutoDispatchBelowADInplaceOrView guard;
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("mps_ext::istft", "").typed<decltype(istft)>();
  return op.call(self, n_fft, hop_length, win_length, window, center, normalized, onesided, length, return_complex);
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(mps_ext, m) {
  m.def("stft(Tensor self, int n_fft, int? hop_length=None, int? win_length=None, Tensor? window=None, "
        "bool center=True, str pad_mode=\"reflect\", bool normalized=False, bool? onesided=None, "
        "bool? return_complex=None) -> Tensor");
  m.def("istft(Tensor self, int n_fft, int? hop_length=None, int? win_length=None, Tensor? window=None, "
        "bool center=True, bool normalized=False, bool? onesided=None, int? length=None, "
        "bool return_complex=False) -> Tensor");
}

TORCH_LIBRARY_IMPL(mps_ext, CPU, m) {
  m.impl("stft", &stft);
  m.impl("istft", &istft);
}

TORCH_LIBRARY_IMPL(mps_ext, PrivateUse1, m) {
  m.impl("stft", &stft);
  m.impl("istft", &istft);
}

#ifdef MPS_EXT_WITH_MPSGRAPH
TORCH_LIBRARY_IMPL(mps_ext, MPS, m) {
  m.impl("stft", &stft);
  m.impl("istft", &istft);
}
#endif

TORCH_LIBRARY_IMPL(mps_ext, Meta, m) {
  m.impl("stft", &stft_meta);
  m.impl("istft", &istft_meta);
}

TORCH_LIBRARY_IMPL(mps_ext, Autograd, m) {
  m.impl("stft", &stft_autograd);
  m.impl("istft", &istft_autograd);
}

}  // namespace mps_ext::ops::spectral
