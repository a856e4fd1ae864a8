// STFT framing and ISTFT overlap-add, the two passes over memory around the
// FFTs (one build per CPU capability).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "ops/spectral/stft_kernels.h"

namespace mps_ext::ops::CPU_CAPABILITY {
namespace {
// Index of padded position j in a signal of length n (torch.nn.functional.pad modes).
inline int64_t source_index(int64_t j, int64_t n, spectral::PadMode mode) {
  if (j >= 0 && j < n) return j;
  switch (mode) {
    case spectral::PadMode::Reflect: return j < 0 ? -j : 2 * (n - 1) - j;
    case spectral::PadMode::Replicate: return j < 0 ? 0 : n - 1;
    case spectral::PadMode::Circular: return ((j % n) + n) % n;
    case spectral::PadMode::Constant: return -1;
  }
  return -1;
}
}  // namespace

void stft_frames_kernel(at::Tensor& frames, const at::Tensor& signal, const at::Tensor& window,
                        const spectral::FrameGeometry& geo) {
  const int64_t batch = signal.size(0), n = signal.size(1), n_frames = frames.size(1);
  const int64_t n_fft = geo.n_fft, w_len = window.size(0), off = geo.window_offset;
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES(frames.scalar_type(), "stft_frames", [&] {
    const scalar_t* x = signal.const_data_ptr<scalar_t>();
    const scalar_t* w = window.const_data_ptr<scalar_t>();
    scalar_t* out = frames.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, batch * n_frames, std::max<int64_t>(1, 16384 / n_fft), [&](int64_t begin, int64_t end) {
      for (int64_t f = begin; f < end; ++f) {
        const int64_t b = f / n_frames, t = f % n_frames;
        const scalar_t* row = x + b * n;
        scalar_t* dst = out + f * n_fft;
        std::fill(dst, dst + off, scalar_t(0));
        std::fill(dst + off + w_len, dst + n_fft, scalar_t(0));
        const int64_t first = t * geo.hop - geo.pad + off;  // signal index of dst[off]
        scalar_t* d = dst + off;
        if (first >= 0 && first + w_len <= n) {  // inside the signal: the hot loop
          const scalar_t* s = row + first;
          for (int64_t k = 0; k < w_len; ++k) d[k] = s[k] * w[k];
        } else {  // touches the padding
          for (int64_t k = 0; k < w_len; ++k) {
            int64_t i = source_index(first + k, n, geo.mode);
            d[k] = i < 0 ? scalar_t(0) : row[i] * w[k];
          }
        }
      }
    });
  });
}

void istft_overlap_add_kernel(at::Tensor& out, const at::Tensor& frames, const at::Tensor& window,
                              const at::Tensor& envelope, const spectral::OverlapAddGeometry& geo) {
  const int64_t batch = frames.size(0), n_frames = frames.size(1), n_fft = frames.size(2);
  const int64_t hop = geo.hop, length = out.size(1);
  const int64_t reach = (n_fft + hop - 1) / hop;       // frames overlapping one hop-sized block
  const int64_t blocks = n_frames + reach - 1;          // hop-sized blocks of the full signal
  const int64_t expected = (n_frames - 1) * hop + n_fft;  // samples the frames cover
  const int64_t q_first = geo.start / hop, q_last = std::min(blocks, (geo.start + length + hop - 1) / hop);
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES(frames.scalar_type(), "istft_overlap_add", [&] {
    const scalar_t* fr = frames.const_data_ptr<scalar_t>();
    const scalar_t* w = window.const_data_ptr<scalar_t>();
    const scalar_t* env = envelope.const_data_ptr<scalar_t>();
    scalar_t* y = out.mutable_data_ptr<scalar_t>();
    std::fill(y, y + out.numel(), scalar_t(0));  // the tail past the frames stays zero
    const int64_t nq = std::max<int64_t>(0, q_last - q_first);
    at::parallel_for(0, batch * nq, std::max<int64_t>(1, 8192 / hop), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> acc(hop);
      for (int64_t i = begin; i < end; ++i) {
        const int64_t b = i / nq, q = q_first + i % nq;
        std::fill(acc.begin(), acc.end(), scalar_t(0));
        for (int64_t r = 0; r < reach; ++r) {  // frame q - r contributes its samples r*hop ...
          const int64_t t = q - r;
          if (t < 0 || t >= n_frames) continue;
          const int64_t k0 = r * hop, len = std::min(hop, n_fft - k0);
          const scalar_t* src = fr + (b * n_frames + t) * n_fft + k0;
          const scalar_t* wk = w + k0;
          for (int64_t k = 0; k < len; ++k) acc[k] += src[k] * wk[k];
        }
        // Block q covers signal samples q*hop ...; keep those in [start, start+length) that the frames cover.
        const int64_t lo = std::max(q * hop, geo.start), hi = std::min({(q + 1) * hop, geo.start + length, expected});
        scalar_t* dst = y + b * length - geo.start;
        for (int64_t j = lo; j < hi; ++j) dst[j] = acc[j - q * hop] / env[j - geo.start];
      }
    });
  });
}

}  // namespace mps_ext::ops::CPU_CAPABILITY
