// Spectral graph pieces shared by the FFT ops, the aten FFT kernels of the
// mpsgraph device and STFT/ISTFT: FFT nodes over any axes, and resizing
// (torch.fft's `s`: zero-pad or truncate).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "graph/graph.h"

namespace mps_ext::ops::spectral {

// The three transforms (torch's _fft_c2c / _fft_r2c / _fft_c2r).
enum class Transform : int64_t { C2C = 0, R2C = 1, C2R = 2 };

// IR FFT nodes take at most four axes among the last four dimensions
// (MPSGraph's limit); these split `axes` into such groups, moving a group
// further out to the end with a transpose and back. The norm applies per
// group, so the scalings multiply to the whole transform's.
graph::Tensor c2c_nodes(graph::Graph& g, graph::Tensor x, const std::vector<int64_t>& axes, bool inverse,
                        const std::string& norm);
// Real -> onesided complex; axes.back() shrinks to n/2+1.
graph::Tensor r2c_nodes(graph::Graph& g, graph::Tensor x, const std::vector<int64_t>& axes, const std::string& norm);
// Onesided complex (exactly last_dim_size/2+1 on axes.back()) -> real.
graph::Tensor c2r_nodes(graph::Graph& g, graph::Tensor x, const std::vector<int64_t>& axes, const std::string& norm,
                        int64_t last_dim_size);
// x zero-padded or truncated (from the end) to sizes[i] along axes[i]; x's
// shape must be concrete on those axes.
graph::Tensor resize_nodes(graph::Graph& g, graph::Tensor x, const std::vector<int64_t>& axes,
                           const std::vector<int64_t>& sizes);

// The norm whose scaling is the adjoint's: an FFT with norm "backward"
// scales nothing, so its adjoint (the unscaled inverse) is "forward".
std::string adjoint_norm(const std::string& norm);
// torch's `norm` argument (None = "backward"), checked like torch.fft does.
std::string checked_norm(const std::optional<c10::string_view>& norm);

// Runs the transform as one graph on x's runtime: x is float32/64 (complex
// for C2R/C2C, real for R2C; real input to C2C/C2R is promoted in the graph),
// dims unique and wrapped, sizes the signal sizes per dim (C2R: sizes.back()
// is the real output size). forward_or_onesided: C2C forward, R2C onesided.
at::Tensor run_fft(Transform kind, const at::Tensor& x, const std::vector<int64_t>& dims,
                   const std::vector<int64_t>& sizes, const std::string& norm, bool forward_or_onesided);
// The result's sizes and dtype (for Meta kernels and empty inputs).
at::Tensor empty_fft_result(Transform kind, const at::Tensor& x, const std::vector<int64_t>& dims,
                            const std::vector<int64_t>& sizes, bool forward_or_onesided);

}  // namespace mps_ext::ops::spectral
