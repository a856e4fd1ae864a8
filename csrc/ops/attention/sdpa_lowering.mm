// ScaledDotProductAttention lowered to MPSGraph: the macOS 15 fused op where
// it fits, the matmul/softmax chain otherwise.
// Registered in runtime/mpsgraph/lowerings.def; comments give each call's
// minimum macOS (Apple docs). Compiled on macOS only (tools/check_objc.py
// checks it on Linux).
#import "runtime/mpsgraph/lower_node.h"

#include <c10/util/Exception.h>

#include <cmath>

namespace mps_ext::runtime::mpsgraph {
using graph::kDynamic;
using graph::Node;
using graph::NodeKind;
using graph::Shape;

namespace {
// is_causal as an additive [L, S] mask built in the graph (never fed):
// bandPart keeps j <= i of a ones matrix (upper-left aligned, as torch), select
// turns the rest into -inf. Added to the caller's mask when there is one.
MPSGraphTensor* causal_additive_mask(const LowerCtx& c, const Node& n, MPSGraphTensor* mask) {
  int64_t l = c.in_shape(n, 0)[2], s = c.in_shape(n, 1)[2];
  MPSDataType dtype = to_mps_dtype(n.type.dtype);
  MPSGraphTensor* ones = [c.g constantWithScalar:1 shape:mps_shape({l, s}) dataType:dtype];  // macOS 11.0
  MPSGraphTensor* lower = [c.g bandPartWithTensor:ones numLower:-1 numUpper:0 name:nil];  // macOS 12.3
  MPSGraphTensor* keep = [c.g castTensor:lower toType:MPSDataTypeBool name:nil];  // macOS 12.0
  MPSGraphTensor* zero = [c.g constantWithScalar:0 dataType:dtype];  // macOS 11.0
  MPSGraphTensor* ninf = [c.g constantWithScalar:-INFINITY dataType:dtype];  // macOS 11.0
  MPSGraphTensor* causal = [c.g selectWithPredicateTensor:keep truePredicateTensor:zero falsePredicateTensor:ninf name:nil];  // macOS 11.0
  return mask ? [c.g additionWithPrimaryTensor:mask secondaryTensor:causal name:nil] : causal;  // macOS 11.0
}

// softmax(q k^T * scale + mask) v as matmuls. Grouped-query attention views q
// as [B, Hkv, G, L, E] against k/v as [B, Hkv, 1, S, E]: matmul broadcasts the
// group dim, so K/V are never expanded.
MPSGraphTensor* sdpa_chain(const LowerCtx& c, const Node& n, MPSGraphTensor* mask) {
  MPSGraphTensor *q = c.in(n, 0), *k = c.in(n, 1), *v = c.in(n, 2);
  const Shape &sq = c.in_shape(n, 0), &sk = c.in_shape(n, 1), &sv = c.in_shape(n, 2);
  bool gqa = sq[1] != sk[1];
  if (gqa) {
    int64_t groups = sq[1] / sk[1];
    q = [c.g reshapeTensor:q withShape:mps_shape({sq[0], sk[1], groups, sq[2], sq[3]}) name:nil];  // macOS 11.0
    k = [c.g reshapeTensor:k withShape:mps_shape({sk[0], sk[1], 1, sk[2], sk[3]}) name:nil];  // macOS 11.0
    v = [c.g reshapeTensor:v withShape:mps_shape({sv[0], sv[1], 1, sv[2], sv[3]}) name:nil];  // macOS 11.0
    if (mask) {  // [B|1, H|1, L|1, S|1] -> [B|1, Hkv|1, G|1, L|1, S|1]
      Shape sm = n.int_attr("has_mask") ? c.in_shape(n, 3) : Shape{};
      if (!n.int_attr("has_mask")) sm = {sq[2], sk[2]};  // the causal mask alone
      while (sm.size() < 4) sm.insert(sm.begin(), 1);
      bool per_head = sm[1] != 1;
      Shape s5 = {sm[0], per_head ? sk[1] : 1, per_head ? groups : 1, sm[2], sm[3]};
      mask = [c.g reshapeTensor:mask withShape:mps_shape(s5) name:nil];  // macOS 11.0
    }
  }
  int64_t r = gqa ? 5 : 4;
  NSArray<NSNumber*>* perm = gqa ? @[ @0, @1, @2, @4, @3 ] : @[ @0, @1, @3, @2 ];
  MPSGraphTensor* kt = [c.g transposeTensor:k permutation:perm name:nil];  // macOS 13.0
  MPSGraphTensor* scores = [c.g matrixMultiplicationWithPrimaryTensor:q secondaryTensor:kt name:nil];  // macOS 11.0
  scores = [c.g multiplicationWithPrimaryTensor:scores secondaryTensor:[c.g constantWithScalar:n.float_attr("scale") dataType:to_mps_dtype(n.type.dtype)] name:nil];  // macOS 11.0
  if (mask) scores = [c.g additionWithPrimaryTensor:scores secondaryTensor:mask name:nil];  // macOS 11.0
  MPSGraphTensor* weights = [c.g softMaxWithTensor:scores axis:r - 1 name:nil];  // macOS 11.0
  MPSGraphTensor* out = [c.g matrixMultiplicationWithPrimaryTensor:weights secondaryTensor:v name:nil];  // macOS 11.0
  if (gqa) out = [c.g reshapeTensor:out withShape:mps_shape(n.type.shape) name:nil];  // macOS 11.0
  return out;
}
}  // namespace

MPSGraphTensor* lower_ScaledDotProductAttention(const LowerCtx& c, const Node& n) {
  MPSGraphTensor *q = c.in(n, 0), *k = c.in(n, 1), *v = c.in(n, 2);
  MPSGraphTensor* mask = n.int_attr("has_mask") ? c.in(n, 3) : nil;
  if (n.attrs.count("is_causal") && n.int_attr("is_causal")) mask = causal_additive_mask(c, n, mask);
  // Apple documents V as [B, Hv, Nkv, F] with the query's F and heads equal
  // (no grouped-query broadcast documented): anything else takes the chain.
  int64_t e = c.in_shape(n, 0)[3];
  bool native_fits = e != kDynamic && e == c.in_shape(n, 2)[3] && c.in_shape(n, 0)[1] == c.in_shape(n, 1)[1];
  if (@available(macOS 15.0, *)) {
    if (native_fits && mask) return [c.g scaledDotProductAttentionWithQueryTensor:q keyTensor:k valueTensor:v maskTensor:mask scale:static_cast<float>(n.float_attr("scale")) name:nil];  // macOS 15.0
    if (native_fits) return [c.g scaledDotProductAttentionWithQueryTensor:q keyTensor:k valueTensor:v scale:static_cast<float>(n.float_attr("scale")) name:nil];  // macOS 15.0
  }
  return sdpa_chain(c, n, mask);
}

}  // namespace mps_ext::runtime::mpsgraph
