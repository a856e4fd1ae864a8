// The STFT family's hot CPU kernels (stft_kernel.cpp, one build per CPU
// capability) and the geometry they share with their graph decompositions.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "runtime/reference/cpu_dispatch.h"

namespace mps_ext::ops::spectral {

// torch.nn.functional.pad's modes for center=True.
enum class PadMode : int64_t { Constant = 0, Reflect = 1, Replicate = 2, Circular = 3 };

struct FrameGeometry {
  int64_t n_fft, hop, pad, window_offset;  // pad: samples added on each side (center)
  PadMode mode;
};

struct OverlapAddGeometry {
  int64_t hop, start;  // start: first output sample (n_fft/2 when center=True)
};

}  // namespace mps_ext::ops::spectral

namespace mps_ext::ops {
// frames [B, T, n_fft] <- window (zero outside [offset, offset+W)) * padded
// signal [B, L] at t*hop; all contiguous, one dtype.
MPS_EXT_DECLARE_CPU_KERNEL(void, stft_frames_kernel,
                           (at::Tensor & frames, const at::Tensor& signal, const at::Tensor& window,
                            const spectral::FrameGeometry& geo))
// out [B, length] <- (overlap-add of frames [B, T, n_fft] * window [n_fft])
// at [start, start+length) / envelope [length]; zero past the frames.
MPS_EXT_DECLARE_CPU_KERNEL(void, istft_overlap_add_kernel,
                           (at::Tensor & out, const at::Tensor& frames, const at::Tensor& window,
                            const at::Tensor& envelope, const spectral::OverlapAddGeometry& geo))
}  // namespace mps_ext::ops
