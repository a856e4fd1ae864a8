// The reference runtime's "sdpa_decode" kernel node: argument plumbing around
// the split-K kernel (sdpa_decode_kernel.cpp, one build per CPU capability).
#include <ATen/ATen.h>

#include "runtime/reference/cpu_dispatch.h"
#include "runtime/reference/kernels.h"

namespace mps_ext::ops::attention {
MPS_EXT_DECLARE_CPU_KERNEL(void, sdpa_decode_kernel,
                           (const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                            bool is_causal, double scale, const at::Tensor& out))

namespace {
at::Tensor rows_contiguous(const at::Tensor& t) { return t.stride(-1) == 1 ? t : t.contiguous(); }

// inputs (q, k, v[, additive mask]); attrs scale, is_causal.
at::Tensor sdpa_decode_cpu(const graph::Node& node, const std::vector<at::Tensor>& in,
                           const runtime::reference::NewOutput& new_output) {
  at::Tensor q = rows_contiguous(in[0]), k = rows_contiguous(in[1]), v = rows_contiguous(in[2]);
  std::vector<int64_t> scores = {q.size(0), q.size(1), q.size(2), k.size(2)};
  at::Tensor mask;
  if (in.size() > 3) {
    std::vector<int64_t> padded(4 - in[3].dim(), 1);
    padded.insert(padded.end(), in[3].sizes().begin(), in[3].sizes().end());
    mask = in[3].reshape(padded).expand(scores);
  }
  at::Tensor out = new_output({q.size(0), q.size(1), q.size(2), v.size(3)}, q.scalar_type());
  TORCH_INTERNAL_ASSERT(out.is_contiguous());
  MPS_EXT_CPU_KERNEL(sdpa_decode_kernel)(q, k, v, mask, node.int_attr("is_causal") != 0, node.float_attr("scale"),
                                         out);
  return out;
}
MPS_EXT_REFERENCE_KERNEL("sdpa_decode", sdpa_decode_cpu);
}  // namespace
}  // namespace mps_ext::ops::attention
