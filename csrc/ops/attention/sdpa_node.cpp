// The ScaledDotProductAttention node kind: its spec and its ATen evaluation.
// Semantics: graph.h (Graph::scaled_dot_product_attention).
#include <cmath>
#include <limits>

#include "graph/node_spec.h"
#include "runtime/reference/node_eval.h"

namespace mps_ext::ops::attention {
namespace {
using namespace graph;
using Types = std::vector<TensorType>;
constexpr const char* kWhat = "scaled_dot_product_attention";

// (q, k, v[, mask]); attrs: scale (default 1/sqrt(E)), is_causal (default 0);
// has_mask is derived from the inputs.
TensorType infer_sdpa(NodeKind, const Types& in, Attrs& a) {
  const TensorType &tq = in[0], &tk = in[1], &tv = in[2];
  if (tq.rank() != 4 || tk.rank() != 4 || tv.rank() != 4)
    fail(std::string(kWhat) + ": q, k, v must have rank 4 ([B, H, L, E], [B, H, S, E], [B, H, S, Ev]), got " +
         shape_str(tq.shape) + ", " + shape_str(tk.shape) + ", " + shape_str(tv.shape));
  if (!is_floating(tq.dtype)) fail(std::string(kWhat) + ": expects floating-point tensors");
  if (tk.dtype != tq.dtype || tv.dtype != tq.dtype) fail(std::string(kWhat) + ": q, k, v dtypes differ");
  auto dims_match = [&](const char* msg, int64_t x, int64_t y) {
    if (!(x == y || x == kDynamic || y == kDynamic))
      fail(std::string(kWhat) + ": " + msg + " (q " + shape_str(tq.shape) + ", k " + shape_str(tk.shape) + ", v " +
           shape_str(tv.shape) + ")");
  };
  dims_match("batch dims of q, k, v differ", tq.shape[0], tk.shape[0]);
  dims_match("batch dims of q, k, v differ", tq.shape[0], tv.shape[0]);
  dims_match("k and v differ in their head dim", tk.shape[1], tv.shape[1]);
  // Grouped-query attention: k/v heads divide q heads.
  int64_t hq = tq.shape[1], hkv = tk.shape[1];
  if (hq != kDynamic && hkv != kDynamic && (hkv == 0 ? hq != 0 : hq % hkv != 0))
    fail(std::string(kWhat) + ": the number of k/v heads must divide the number of q heads (q " + shape_str(tq.shape) +
         ", k " + shape_str(tk.shape) + ")");
  dims_match("q and k differ in their last (embedding) dim", tq.shape[3], tk.shape[3]);
  dims_match("k and v differ in their sequence dim", tk.shape[2], tv.shape[2]);
  Shape scores = {tq.shape[0], tq.shape[1], tq.shape[2], tk.shape[2]};
  if (in.size() == 4) {
    const TensorType& tm = in[3];
    if (tm.dtype != tq.dtype)
      fail(std::string(kWhat) + ": mask dtype " + dtype_name(tm.dtype) + " must be q's " + dtype_name(tq.dtype) +
           " (an additive mask; turn a bool mask into 0/-inf first)");
    if (!broadcasts_into(tm.shape, scores))
      fail(std::string(kWhat) + ": mask shape " + shape_str(tm.shape) + " does not broadcast to the scores' shape " +
           shape_str(scores) + " [B, H, L, S]");
  }
  if (!a.count("scale")) {
    if (tq.shape[3] == kDynamic) fail(std::string(kWhat) + ": pass a scale when the embedding dim is dynamic");
    a["scale"] = 1.0 / std::sqrt(static_cast<double>(tq.shape[3]));
  }
  a["scale"] = float_attr(a, "scale", kWhat);
  a["has_mask"] = int64_t{in.size() == 4 ? 1 : 0};
  a["is_causal"] = int64_t{a.count("is_causal") && int_attr(a, "is_causal", kWhat) != 0 ? 1 : 0};
  return {tq.dtype, {tq.shape[0], tq.shape[1], tq.shape[2], tv.shape[3]}};
}

// The mask as [.., .., L|1, S|1]: ATen's SDPA wants a rank >= 2 mask, the IR
// lets any mask broadcast.
at::Tensor rank4(const at::Tensor& mask) {
  std::vector<int64_t> shape(4 - mask.dim(), 1);
  shape.insert(shape.end(), mask.sizes().begin(), mask.sizes().end());
  return mask.reshape(shape);
}

// ATen's SDPA (its CPU flash kernel where it applies). ATen takes either a
// mask or is_causal: with both, the causal part joins the mask.
at::Tensor eval_sdpa(const Node& n, const std::vector<at::Tensor>& a) {
  bool is_causal = n.int_attr("is_causal") != 0;
  std::optional<at::Tensor> mask;
  if (n.int_attr("has_mask")) mask = rank4(a[3]);
  if (mask && is_causal) {
    int64_t l = a[0].size(2), s = a[1].size(2);
    at::Tensor future = at::ones({l, s}, a[0].options().dtype(at::kBool)).triu(1);
    mask = at::where(future, at::scalar_tensor(-std::numeric_limits<double>::infinity(), mask->options()), *mask);
    is_causal = false;
  }
  bool gqa = a[1].size(1) != a[0].size(1);
  return at::scaled_dot_product_attention(a[0], a[1], a[2], mask, /*dropout_p=*/0.0, is_causal, n.float_attr("scale"),
                                          gqa);
}
}  // namespace

MPS_EXT_NODE_SPEC(ScaledDotProductAttention, {infer_sdpa, 3, 4});
MPS_EXT_NODE_EVAL(ScaledDotProductAttention, eval_sdpa);

}  // namespace mps_ext::ops::attention
