// The dequantization kinds lowered to MPSGraph: the macOS 15 blockwise and LUT
// forms where they fit, decompositions (cast, subtract, multiply; a gather)
// otherwise.
// Registered in runtime/mpsgraph/lowerings.def; comments give each call's
// minimum macOS (Apple docs). Compiled on macOS only (tools/check_objc.py
// checks it on Linux).
#import "runtime/mpsgraph/lower_node.h"

#include <c10/util/Exception.h>

#include <algorithm>

namespace mps_ext::runtime::mpsgraph {
using graph::kDynamic;
using graph::Node;
using graph::NodeKind;
using graph::Shape;

namespace {
// Dequantize: the macOS 15 blockwise form takes int8/uint8 q with a zero
// point of q's type, and scale/zero point shaped like q with the last dim
// divided into blocks. The IR's broadcasting layouts that fit: scale and
// zero point of q's rank, equal to q on every leading dim, last dim 1 (one
// block) or q's (block size 1). Everything else is decomposed.
bool fits_blockwise_dequantize(const LowerCtx& c, const Node& n) {
  const Node& q = c.ir.node(n.inputs[0]);
  const Shape &sq = q.type.shape, &ss = c.in_shape(n, 1), &sz = c.in_shape(n, 2);
  if (q.type.dtype != graph::DType::Int8 && q.type.dtype != graph::DType::UInt8) return false;
  if (c.ir.node(n.inputs[2]).type.dtype != q.type.dtype) return false;
  if (sq.empty() || !is_static(sq) || ss != sz || ss.size() != sq.size()) return false;
  for (size_t d = 0; d + 1 < sq.size(); ++d)
    if (ss[d] != sq[d]) return false;
  return ss.back() == 1 || ss.back() == sq.back();
}

// DequantizeLUT: Apple's LUT form needs 256 entries for uint8 indices, the
// indices to be a graph constant, and LUT groups within the indices' last 3
// dims.
bool fits_native_lut(const LowerCtx& c, const Node& n) {
  const Shape &si = c.in_shape(n, 0), &sl = c.in_shape(n, 1);
  if (sl.back() != 256 || c.ir.node(n.inputs[0]).kind != NodeKind::Constant) return false;
  size_t groups = sl.size() - 1;
  for (size_t i = 0; i < groups; ++i)
    if (sl[i] != 1 && si.size() - groups + i + 3 < si.size()) return false;
  return true;
}

// The gather fallback: the LUT's groups become the leading batch dims of a
// gather along the entries axis (batch dims up to the last grouped dim; the
// LUT is broadcast over the ungrouped ones among them).
MPSGraphTensor* lut_gather(const LowerCtx& c, const Node& n) {
  const Shape &si = c.in_shape(n, 0), &sl = c.in_shape(n, 1);
  size_t rank = si.size(), groups = sl.size() - 1;
  Shape padded(rank, 1);
  for (size_t i = 0; i < groups; ++i) padded[rank - groups + i] = sl[i];
  size_t batch = 0;
  for (size_t d = 0; d < rank; ++d)
    if (padded[d] != 1) batch = d + 1;
  Shape table_shape(padded.begin(), padded.begin() + batch), full(si.begin(), si.begin() + batch);
  table_shape.push_back(sl.back());
  full.push_back(sl.back());
  TORCH_CHECK(std::count(table_shape.begin(), table_shape.end(), kDynamic) <= 1,
              "mps_ext: dequantize_lut needs a LUT with at most one dynamic dimension on MPSGraph");
  MPSGraphTensor* table = [c.g reshapeTensor:c.in(n, 1) withShape:mps_shape(table_shape) name:nil];  // macOS 11.0
  if (table_shape != full) {
    TORCH_CHECK(is_static(full), "mps_ext: dequantize_lut broadcasting a LUT over dynamic dims is not lowered to MPSGraph");
    table = [c.g broadcastTensor:table toShape:mps_shape(full) name:nil];  // macOS 12.0
  }
  MPSGraphTensor* indices = [c.g castTensor:c.in(n, 0) toType:MPSDataTypeInt32 name:nil];  // macOS 12.0
  return [c.g gatherWithUpdatesTensor:table indicesTensor:indices axis:batch batchDimensions:batch name:nil];  // macOS 11.0
}
}  // namespace

MPSGraphTensor* lower_Dequantize(const LowerCtx& c, const Node& n) {
  MPSDataType dtype = to_mps_dtype(n.type.dtype);
  if (@available(macOS 15.0, *)) {
    if (fits_blockwise_dequantize(c, n))
      return [c.g dequantizeTensor:c.in(n, 0) scaleTensor:c.in(n, 1) zeroPointTensor:c.in(n, 2) dataType:dtype name:nil];  // macOS 15.0
  }
  MPSGraphTensor* q = [c.g castTensor:c.in(n, 0) toType:dtype name:nil];  // macOS 12.0
  MPSGraphTensor* zero_point = [c.g castTensor:c.in(n, 2) toType:dtype name:nil];  // macOS 12.0
  MPSGraphTensor* centered = [c.g subtractionWithPrimaryTensor:q secondaryTensor:zero_point name:nil];  // macOS 11.0
  return [c.g multiplicationWithPrimaryTensor:centered secondaryTensor:c.in(n, 1) name:nil];  // macOS 11.0
}
MPSGraphTensor* lower_DequantizeLUT(const LowerCtx& c, const Node& n) {
  if (@available(macOS 15.0, *)) {
    if (fits_native_lut(c, n)) return [c.g dequantizeTensor:c.in(n, 0) LUTTensor:c.in(n, 1) name:nil];  // macOS 15.0
  }
  return lut_gather(c, n);
}

}  // namespace mps_ext::runtime::mpsgraph
