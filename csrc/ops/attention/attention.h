// Scaled-dot-product attention: the pieces shared by the mps_ext ops
// (attention.cpp) and the PrivateUse1 hooks behind F.scaled_dot_product_attention
// (sdpa_overrideable.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <optional>
#include <tuple>
#include <vector>

namespace mps_ext::ops::attention {

// torch's argument checks for (N..., L, E) / (N..., S, E) / (N..., S, Ev)
// inputs, then views them as rank 4: q [B, H, L, E], k/v [B, Hkv, S, E|Ev]
// (Hkv divides H with enable_gqa) and the mask as [B|1, H|1, L|1, S|1].
// Batch dims broadcast like torch's math path; broadcast views are not copied
// unless a reshape must.
struct Attention4d {
  at::Tensor q, k, v;
  std::optional<at::Tensor> mask;  // bool (True takes part) or q's dtype (additive)
  std::vector<int64_t> out_shape;  // (N..., L, Ev)
  double scale = 0;
};
Attention4d normalize(const char* op, const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                      const std::optional<at::Tensor>& attn_mask, double dropout_p, bool is_causal,
                      std::optional<double> scale, bool enable_gqa);

// The forward on rank-4 inputs (no autograd). dropout_mask: [B, H, L, S] of
// q's dtype, 1 = keep (scaled by 1/(1-dropout_p) in the graph).
at::Tensor forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                   const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& dropout_mask,
                   bool is_causal, double scale, double dropout_p);

// Gradients for q, k, v and (when want_mask_grad and the mask is additive)
// the mask, summed to the mask's rank-4 shape. Recomputes the probabilities.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& dropout_mask, bool is_causal,
    double scale, double dropout_p, bool want_mask_grad);

// Largest query length served by the split-K decode kernel.
constexpr int64_t kMaxDecodeQueries = 8;

}  // namespace mps_ext::ops::attention
