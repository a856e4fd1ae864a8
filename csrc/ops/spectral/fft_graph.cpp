// FFT graphs: torch.fft's transforms as IR FFT/RFFT/IRFFT nodes, with `s`
// (zero-pad or truncate) as slice/concat nodes in the same graph.
#include "ops/spectral/fft_graph.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <functional>

#include "ops/op_utils.h"

namespace mps_ext::ops::spectral {
namespace {
using graph::DType;
using graph::Graph;
using runtime::GraphSpec;

bool is_complex(DType t) { return t == DType::Complex64 || t == DType::Complex128; }
DType complex_of(DType t) { return t == DType::Float64 || t == DType::Complex128 ? DType::Complex128 : DType::Complex64; }

// Groups of <= 4 axes, the group holding axes.back() first.
std::vector<std::vector<int64_t>> axis_groups(const std::vector<int64_t>& axes) {
  std::vector<std::vector<int64_t>> groups;
  for (size_t end = axes.size(); end > 0;) {
    size_t begin = end >= 4 ? end - 4 : 0;
    groups.emplace_back(axes.begin() + begin, axes.begin() + end);
    end = begin;
  }
  return groups;
}

// fn over `group`, first moved to the last dimensions if one lies further out.
graph::Tensor on_axes(Graph& g, graph::Tensor x, const std::vector<int64_t>& group,
                      const std::function<graph::Tensor(graph::Tensor, const std::vector<int64_t>&)>& fn) {
  const int64_t rank = g.type(x).rank();
  if (std::all_of(group.begin(), group.end(), [&](int64_t a) { return a >= rank - 4; })) return fn(x, group);
  std::vector<int64_t> perm;
  for (int64_t d = 0; d < rank; ++d)
    if (std::find(group.begin(), group.end(), d) == group.end()) perm.push_back(d);
  perm.insert(perm.end(), group.begin(), group.end());
  std::vector<int64_t> moved, inverse(rank);
  for (size_t i = 0; i < group.size(); ++i) moved.push_back(rank - static_cast<int64_t>(group.size() - i));
  for (int64_t d = 0; d < rank; ++d) inverse[perm[d]] = d;
  return g.transpose(fn(g.transpose(x, perm), moved), inverse);
}
}  // namespace

graph::Tensor c2c_nodes(Graph& g, graph::Tensor x, const std::vector<int64_t>& axes, bool inverse,
                        const std::string& norm) {
  for (const auto& group : axis_groups(axes))
    x = on_axes(g, x, group, [&](graph::Tensor t, const std::vector<int64_t>& a) { return g.fft(t, a, inverse, norm); });
  return x;
}

graph::Tensor r2c_nodes(Graph& g, graph::Tensor x, const std::vector<int64_t>& axes, const std::string& norm) {
  auto groups = axis_groups(axes);
  x = on_axes(g, x, groups[0], [&](graph::Tensor t, const std::vector<int64_t>& a) { return g.rfft(t, a, norm); });
  for (size_t i = 1; i < groups.size(); ++i)
    x = on_axes(g, x, groups[i], [&](graph::Tensor t, const std::vector<int64_t>& a) { return g.fft(t, a, false, norm); });
  return x;
}

graph::Tensor c2r_nodes(Graph& g, graph::Tensor x, const std::vector<int64_t>& axes, const std::string& norm,
                        int64_t last_dim_size) {
  auto groups = axis_groups(axes);
  for (size_t i = 1; i < groups.size(); ++i)
    x = on_axes(g, x, groups[i], [&](graph::Tensor t, const std::vector<int64_t>& a) { return g.fft(t, a, true, norm); });
  return on_axes(g, x, groups[0], [&](graph::Tensor t, const std::vector<int64_t>& a) {
    return g.irfft(t, a, norm, last_dim_size);
  });
}

graph::Tensor resize_nodes(Graph& g, graph::Tensor x, const std::vector<int64_t>& axes,
                           const std::vector<int64_t>& sizes) {
  for (size_t i = 0; i < axes.size(); ++i) {
    graph::TensorType t = g.type(x);
    const int64_t axis = axes[i], have = t.shape[axis], want = sizes[i];
    if (want < have) {
      graph::Shape ends = t.shape;
      ends[axis] = want;
      x = g.slice(x, graph::Shape(t.shape.size(), 0), ends, graph::Shape(t.shape.size(), 1));
    } else if (want > have) {
      graph::Shape zeros = t.shape;
      zeros[axis] = want - have;
      x = g.concat({x, g.constant(0.0, t.dtype, zeros)}, axis);
    }
  }
  return x;
}

std::string adjoint_norm(const std::string& norm) {
  if (norm == "backward") return "forward";
  if (norm == "forward") return "backward";
  return norm;
}

std::string checked_norm(const std::optional<c10::string_view>& norm) {
  if (!norm) return "backward";
  std::string n(*norm);
  TORCH_CHECK(n == "backward" || n == "forward" || n == "ortho", "Invalid normalization mode: \"", n, "\"");
  return n;
}

namespace {
void build_fft(Graph& g, const GraphSpec& s) {
  graph::Tensor x = g.placeholder(s.input(0), "self");
  const auto kind = static_cast<Transform>(s.int_attr("kind"));
  const auto& dims = s.ints_attr("dim");
  const auto& sizes = s.ints_attr("s");
  const std::string& norm = s.str_attr("norm");
  const bool flag = s.int_attr("forward_or_onesided") != 0;
  const DType dtype = g.type(x).dtype;
  switch (kind) {
    case Transform::C2C:
      if (!is_complex(dtype)) x = g.cast(x, complex_of(dtype));
      g.output(c2c_nodes(g, resize_nodes(g, x, dims, sizes), dims, /*inverse=*/!flag, norm));
      return;
    case Transform::R2C:
      x = resize_nodes(g, x, dims, sizes);
      g.output(flag ? r2c_nodes(g, x, dims, norm) : c2c_nodes(g, g.cast(x, complex_of(dtype)), dims, false, norm));
      return;
    case Transform::C2R: {
      if (!is_complex(dtype)) x = g.cast(x, complex_of(dtype));
      std::vector<int64_t> half = sizes;
      half.back() = sizes.back() / 2 + 1;
      g.output(c2r_nodes(g, resize_nodes(g, x, dims, half), dims, norm, sizes.back()));
      return;
    }
  }
}
}  // namespace

at::Tensor empty_fft_result(Transform kind, const at::Tensor& x, const std::vector<int64_t>& dims,
                            const std::vector<int64_t>& sizes, bool forward_or_onesided) {
  std::vector<int64_t> shape = x.sizes().vec();
  for (size_t i = 0; i < dims.size(); ++i) shape[dims[i]] = sizes[i];
  if (kind == Transform::R2C && forward_or_onesided) shape[dims.back()] = sizes.back() / 2 + 1;
  at::ScalarType real = c10::toRealValueType(x.scalar_type());
  return at::empty(shape, x.options().dtype(kind == Transform::C2R ? real : c10::toComplexType(real)));
}

at::Tensor run_fft(Transform kind, const at::Tensor& x, const std::vector<int64_t>& dims,
                   const std::vector<int64_t>& sizes, const std::string& norm, bool forward_or_onesided) {
  if (x.numel() == 0) return empty_fft_result(kind, x, dims, sizes, forward_or_onesided).zero_();
  // Graphs read raw bytes: lazy conjugate/negative views are resolved first.
  at::Tensor in = x.resolve_conj().resolve_neg();
  GraphSpec spec("mps_ext::fft");
  spec.input(in)
      .attr("kind", static_cast<int64_t>(kind))
      .attr("dim", dims)
      .attr("s", sizes)
      .attr("norm", norm)
      .attr("forward_or_onesided", int64_t{forward_or_onesided ? 1 : 0});
  return runtime::run_graph(spec, build_fft, {in})[0];
}

}  // namespace mps_ext::ops::spectral
