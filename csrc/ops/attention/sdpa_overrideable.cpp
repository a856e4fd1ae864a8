// F.scaled_dot_product_attention on the mpsgraph device. aten's SDPA asks the
// device's _fused_sdp_choice for a backend; for PrivateUse1 we answer
// "overrideable" and implement _scaled_dot_product_fused_attention_overrideable
// (and its backward, which aten's autograd formula calls) with this family's
// graphs. nn.MultiheadAttention and nn.TransformerEncoderLayer then use them
// unchanged. Dropout goes to aten's math path (it draws its own mask on the
// device), as do shapes aten's math path handles and we do not (rank != 4).
#include <ATen/ATen.h>
#include <ATen/native/DispatchStub.h>
#include <ATen/native/transformers/attention.h>
#include <torch/library.h>

#include <array>

#include "ops/attention/attention.h"

namespace mps_ext::ops::attention {
// at::SDPBackend's values (aten/src/ATen/native/transformers/sdp_utils_cpp.h).
constexpr int64_t kMathBackend = 0;
constexpr int64_t kOverrideableBackend = 4;

int64_t fused_sdp_choice(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                         const std::optional<at::Tensor>& attn_mask, double dropout_p, bool is_causal,
                         std::optional<double> scale, bool enable_gqa) {
  bool rank4 = query.dim() == 4 && key.dim() == 4 && value.dim() == 4;
  bool heads_ok = rank4 && (key.size(1) == query.size(1) || enable_gqa);
  bool mask_ok = !(attn_mask && attn_mask->defined() && attn_mask->dim() > 4);
  return rank4 && heads_ok && mask_ok && dropout_p == 0.0 ? kOverrideableBackend : kMathBackend;
}

namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, c10::SymInt, c10::SymInt, at::Tensor, at::Tensor,
           at::Tensor>
fused_attention(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                const std::optional<at::Tensor>& attn_bias, double dropout_p, bool is_causal, bool return_debug_mask,
                std::optional<double> scale) {
  TORCH_CHECK(dropout_p == 0.0, "_scaled_dot_product_fused_attention_overrideable (mpsgraph): dropout is served by ",
              "the math backend, got dropout_p=", dropout_p);
  // aten only gets here for heads that divide (GQA) or match.
  bool gqa = query.size(1) != key.size(1);
  Attention4d a = normalize("scaled_dot_product_attention", query, key, value, attn_bias, 0.0, is_causal, scale, gqa);
  at::Tensor out = forward(a.q, a.k, a.v, a.mask, std::nullopt, is_causal, a.scale, 0.0).view(a.out_shape);
  // The backward recomputes the probabilities: no logsumexp is kept.
  at::Tensor none = at::empty({0}, query.options().dtype(at::kFloat));
  at::Tensor seed = at::empty({0}, query.options().dtype(at::kLong));
  return {out, none, at::Tensor(), at::Tensor(), c10::SymInt(query.size(2)), c10::SymInt(key.size(2)), seed, seed,
          at::empty({0}, query.options())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> fused_attention_backward(
    const at::Tensor& grad_out, const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
    const at::Tensor& attn_bias, std::array<bool, 4> grad_input_mask, const at::Tensor& out,
    const at::Tensor& logsumexp, const at::Tensor& cum_seq_q, const at::Tensor& cum_seq_k, c10::SymInt max_q,
    c10::SymInt max_k, double dropout_p, bool is_causal, const at::Tensor& philox_seed,
    const at::Tensor& philox_offset, std::optional<double> scale) {
  bool gqa = query.size(1) != key.size(1);
  std::optional<at::Tensor> bias;
  if (attn_bias.defined()) bias = attn_bias;
  Attention4d a = normalize("scaled_dot_product_attention", query, key, value, bias, 0.0, is_causal, scale, gqa);
  bool mask_grad = grad_input_mask[3] && a.mask && a.mask->scalar_type() != at::kBool;
  auto [dq, dk, dv, dm] =
      backward(grad_out.reshape(a.out_shape.size() == 4 ? at::IntArrayRef(a.out_shape) : grad_out.sizes()), a.q,
               a.k, a.v, a.mask, std::nullopt, is_causal, a.scale, 0.0, mask_grad);
  at::Tensor dbias;
  if (mask_grad) dbias = at::sum_to(dm, attn_bias.sizes()).reshape(attn_bias.sizes());
  return {dq.view(query.sizes()), dk.view(key.sizes()), dv.view(value.sizes()), dbias};
}
}  // namespace

}  // namespace mps_ext::ops::attention

// aten's SDPA asks the device's stub (not the _fused_sdp_choice op) which
// backend to run; the op kernel serves direct calls.
namespace at::native {
REGISTER_PRIVATEUSE1_DISPATCH(_fused_sdp_choice_stub, &mps_ext::ops::attention::fused_sdp_choice);
}  // namespace at::native

namespace mps_ext::ops::attention {
TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("_fused_sdp_choice", &fused_sdp_choice);
  m.impl("_scaled_dot_product_fused_attention_overrideable", &fused_attention);
  m.impl("_scaled_dot_product_fused_attention_overrideable_backward", &fused_attention_backward);
}

}  // namespace mps_ext::ops::attention
