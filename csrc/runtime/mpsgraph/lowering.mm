// One lowering per IR node kind, each a 1:1 mapping to an MPSGraph selector,
// registered with that selector and its minimum macOS in lowerings.def. The
// core kinds' lower_<Kind> are here, the families' next to their family
// (csrc/ops/<family>/*_lowering.mm); lower_node.h declares them all.
// Comments give each call's minimum macOS (Apple docs); anything newer than
// the project's macOS 14.0 floor is behind @available with a decomposed
// fallback. docs/mpsgraph-lowering.md is the reviewed table;
// tests/test_mpsgraph_lowering.py checks it, the registrations and the
// selectors clang finds in each lower_<Kind> against each other.
#import "runtime/mpsgraph/lowering.h"
#include "runtime/mpsgraph/lowering_table.h"

#include <c10/util/Exception.h>

#include <algorithm>

namespace mps_ext::runtime::mpsgraph {
namespace {
using graph::kDynamic;
using graph::Node;
using graph::NodeKind;
using graph::Shape;



// Reductions: the IR's empty axes mean "all axes", as in at::sum(x, {}).
NSArray<NSNumber*>* reduce_axes(const Node& n) {
  std::vector<int64_t> axes = n.ints_attr("axes");
  if (axes.empty())
    for (int64_t d = 0; d < n.type.rank(); ++d) axes.push_back(d);
  return ns_ints(axes);
}

// Python-style start/end on a static dim, clamped like Graph::slice.
int64_t clamp_index(int64_t v, int64_t dim) {
  if (dim == kDynamic) return v;
  return std::clamp<int64_t>(v < 0 ? v + dim : v, 0, dim);
}

std::vector<int64_t> clamped(const std::vector<int64_t>& v, const Shape& shape) {
  std::vector<int64_t> out(v.size());
  for (size_t d = 0; d < v.size(); ++d) out[d] = clamp_index(v[d], shape[d]);
  return out;
}

// Pre-14.4 sliceUpdate: rebuild `data` around the region by slicing and
// concatenating one dimension at a time (unit strides, static shapes).
MPSGraphTensor* splice(MPSGraph* g, MPSGraphTensor* data, MPSGraphTensor* update, const Shape& shape,
                       const std::vector<int64_t>& s, const std::vector<int64_t>& e, size_t d) {
  if (d == shape.size()) return update;
  NSMutableArray<MPSGraphTensor*>* parts = [NSMutableArray arrayWithCapacity:3];
  if (s[d] > 0) [parts addObject:[g sliceTensor:data dimension:d start:0 length:s[d] name:nil]];  // macOS 11.0
  MPSGraphTensor* mid = [g sliceTensor:data dimension:d start:s[d] length:e[d] - s[d] name:nil];
  [parts addObject:splice(g, mid, update, shape, s, e, d + 1)];
  if (e[d] < shape[d]) [parts addObject:[g sliceTensor:data dimension:d start:e[d] length:shape[d] - e[d] name:nil]];
  return parts.count == 1 ? parts[0] : [g concatTensors:parts dimension:d name:nil];  // macOS 11.0
}


// slice_update_at: the start comes from a tensor (one graph for every
// position); ends = starts + the update's shape.
MPSGraphTensor* slice_update_at(const LowerCtx& c, const Node& n) {
  if (@available(macOS 14.4, *)) {
    MPSGraphTensor* starts = [c.g castTensor:c.in(n, 2) toType:MPSDataTypeInt32 name:nil];  // macOS 12.0
    MPSGraphTensor* shape = [c.g shapeOfTensor:c.in(n, 1) name:nil];  // macOS 12.0; int32
    MPSGraphTensor* ends = [c.g additionWithPrimaryTensor:starts secondaryTensor:shape name:nil];  // macOS 11.0
    MPSGraphTensor* strides = [c.g constantWithScalar:1 shape:@[ @(n.type.rank()) ] dataType:MPSDataTypeInt32];  // macOS 11.0
    return [c.g sliceUpdateDataTensor:c.in(n, 0) updateTensor:c.in(n, 1) startsTensor:starts endsTensor:ends stridesTensor:strides startMask:0 endMask:0 squeezeMask:0 name:nil];  // macOS 14.4
  }
  TORCH_CHECK(false, "mps_ext: slice_update_at (a slice update at a run-time start) needs macOS 14.4 or newer");
}

}  // namespace

NSArray<NSNumber*>* ns_ints(const std::vector<int64_t>& v) {
  NSMutableArray<NSNumber*>* a = [NSMutableArray arrayWithCapacity:v.size()];
  for (int64_t x : v) [a addObject:@(x)];
  return a;
}

bool is_static(const Shape& s) {
  return std::none_of(s.begin(), s.end(), [](int64_t d) { return d == kDynamic; });
}

static std::vector<MPSGraphTensor*> lower_values(MPSGraph* g, const graph::Graph& ir,
                                                 const std::vector<MPSGraphTensor*>* bound_inputs);

// --- one function per core IR node kind (the families' kinds: csrc/ops/<family>/*_lowering.mm) --------------------------------------------------

// Sources and state. Variables are caller tensors (bound like placeholders);
// the executable writes Assign's value back into them after the graph ran.
MPSGraphTensor* lower_Placeholder(const LowerCtx& c, const Node& n) { return [c.g placeholderWithShape:mps_shape(n.type.shape) dataType:to_mps_dtype(n.type.dtype) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Constant(const LowerCtx& c, const Node& n) {
  if (n.type.dtype == graph::DType::Complex64) {  // complex zeros of FFT padding: a complex scalar, broadcast
    MPSGraphTensor* z = [c.g constantWithRealPart:n.float_attr("value") imaginaryPart:0 dataType:MPSDataTypeComplexFloat32];  // macOS 14.0
    return is_static(n.type.shape) ? [c.g broadcastTensor:z toShape:mps_shape(n.type.shape) name:nil] : z;  // macOS 12.0
  }
  if (is_static(n.type.shape)) return [c.g constantWithScalar:n.float_attr("value") shape:mps_shape(n.type.shape) dataType:to_mps_dtype(n.type.dtype)];  // macOS 11.0
  return [c.g constantWithScalar:n.float_attr("value") dataType:to_mps_dtype(n.type.dtype)];  // rank-0; consumers broadcast it
}
MPSGraphTensor* lower_Variable(const LowerCtx& c, const Node& n) { return [c.g placeholderWithShape:mps_shape(n.type.shape) dataType:to_mps_dtype(n.type.dtype) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Assign(const LowerCtx& c, const Node& n) { return [c.g identityWithTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
// Data movement.
MPSGraphTensor* lower_Cast(const LowerCtx& c, const Node& n) { return [c.g castTensor:c.in(n, 0) toType:to_mps_dtype(n.type.dtype) name:nil]; }  // macOS 12.0
MPSGraphTensor* lower_Reshape(const LowerCtx& c, const Node& n) { return [c.g reshapeTensor:c.in(n, 0) withShape:mps_shape(n.ints_attr("shape")) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Transpose(const LowerCtx& c, const Node& n) { return [c.g transposeTensor:c.in(n, 0) permutation:ns_ints(n.ints_attr("perm")) name:nil]; }  // macOS 13.0
MPSGraphTensor* lower_Slice(const LowerCtx& c, const Node& n) {
  const Shape& s = c.in_shape(n, 0);
  return [c.g sliceTensor:c.in(n, 0) starts:ns_ints(clamped(n.ints_attr("starts"), s)) ends:ns_ints(clamped(n.ints_attr("ends"), s)) strides:ns_ints(n.ints_attr("strides")) name:nil];  // macOS 11.0
}
MPSGraphTensor* lower_SliceUpdate(const LowerCtx& c, const Node& n) {
  const Shape& shape = c.in_shape(n, 0);
  if (n.inputs.size() == 3) return slice_update_at(c, n);
  auto starts = clamped(n.ints_attr("starts"), shape), ends = clamped(n.ints_attr("ends"), shape);
  const auto& strides = n.ints_attr("strides");
  MPSGraphTensor* update = c.in(n, 1);
  if (c.in_shape(n, 1) != n.type.shape && is_static(shape)) {  // the IR lets the update broadcast
    Shape region(shape.size());
    for (size_t d = 0; d < shape.size(); ++d)
      region[d] = ends[d] > starts[d] ? (ends[d] - starts[d] + strides[d] - 1) / strides[d] : 0;
    if (c.in_shape(n, 1) != region) update = [c.g broadcastTensor:update toShape:mps_shape(region) name:nil];
  }
  if (@available(macOS 14.4, *))
    return [c.g sliceUpdateDataTensor:c.in(n, 0) updateTensor:update starts:ns_ints(starts) ends:ns_ints(ends) strides:ns_ints(strides) startMask:0 endMask:0 squeezeMask:0 name:nil];  // macOS 14.4
  TORCH_CHECK(is_static(shape) && std::all_of(strides.begin(), strides.end(), [](int64_t s) { return s == 1; }),
              "mps_ext: slice_update with strides or dynamic shapes needs macOS 14.4 or newer");
  return splice(c.g, c.in(n, 0), update, shape, starts, ends, 0);
}
MPSGraphTensor* lower_Concat(const LowerCtx& c, const Node& n) {
  NSMutableArray<MPSGraphTensor*>* xs = [NSMutableArray arrayWithCapacity:n.inputs.size()];
  for (size_t i = 0; i < n.inputs.size(); ++i) [xs addObject:c.in(n, i)];
  return [c.g concatTensors:xs dimension:n.int_attr("axis") name:nil];  // macOS 11.0
}
MPSGraphTensor* lower_Broadcast(const LowerCtx& c, const Node& n) {
  TORCH_CHECK(is_static(n.ints_attr("shape")), "mps_ext: broadcast to a dynamic shape is not lowered to MPSGraph");
  return [c.g broadcastTensor:c.in(n, 0) toShape:mps_shape(n.ints_attr("shape")) name:nil];  // macOS 12.0
}
// Elementwise, unary.
MPSGraphTensor* lower_Identity(const LowerCtx& c, const Node& n) { return [c.g identityWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Abs(const LowerCtx& c, const Node& n) { return [c.g absoluteWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Negative(const LowerCtx& c, const Node& n) { return [c.g negativeWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Sign(const LowerCtx& c, const Node& n) { return [c.g signWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Exp(const LowerCtx& c, const Node& n) { return [c.g exponentWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Log(const LowerCtx& c, const Node& n) { return [c.g logarithmWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Sqrt(const LowerCtx& c, const Node& n) { return [c.g squareRootWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Rsqrt(const LowerCtx& c, const Node& n) {
  if (@available(macOS 15.0, *)) return [c.g reciprocalSquareRootWithTensor:c.in(n, 0) name:nil];  // macOS 15.0
  return [c.g reverseSquareRootWithTensor:c.in(n, 0) name:nil];  // macOS 11.0, deprecated in 15.0
}
MPSGraphTensor* lower_Reciprocal(const LowerCtx& c, const Node& n) { return [c.g reciprocalWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Square(const LowerCtx& c, const Node& n) { return [c.g squareWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Sin(const LowerCtx& c, const Node& n) { return [c.g sinWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Cos(const LowerCtx& c, const Node& n) { return [c.g cosWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Tanh(const LowerCtx& c, const Node& n) { return [c.g tanhWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Sigmoid(const LowerCtx& c, const Node& n) { return [c.g sigmoidWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Floor(const LowerCtx& c, const Node& n) { return [c.g floorWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Ceil(const LowerCtx& c, const Node& n) { return [c.g ceilWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Round(const LowerCtx& c, const Node& n) { return [c.g rintWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0; half-to-even like torch.round (round: away from 0)
MPSGraphTensor* lower_LogicalNot(const LowerCtx& c, const Node& n) { return [c.g notWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_IsNaN(const LowerCtx& c, const Node& n) { return [c.g isNaNWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Erf(const LowerCtx& c, const Node& n) { return [c.g erfWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
// Bitwise (13.0). Shifts: torch gives 0 (left) or the sign fill (right) for
// shift amounts outside [0, bit width); MPSGraph documents no such rule, so
// out-of-range amounts are selected explicitly.
MPSGraphTensor* lower_BitwiseNot(const LowerCtx& c, const Node& n) {
  if (n.type.dtype == graph::DType::Bool) return [c.g notWithTensor:c.in(n, 0) name:nil];  // macOS 11.0
  return [c.g bitwiseNOTWithTensor:c.in(n, 0) name:nil];  // macOS 13.0
}
// Elementwise, binary (MPSGraph broadcasts like numpy).
MPSGraphTensor* lower_Add(const LowerCtx& c, const Node& n) { return [c.g additionWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Subtract(const LowerCtx& c, const Node& n) { return [c.g subtractionWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Multiply(const LowerCtx& c, const Node& n) { return [c.g multiplicationWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Divide(const LowerCtx& c, const Node& n) { return [c.g divisionWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Maximum(const LowerCtx& c, const Node& n) { return [c.g maximumWithNaNPropagationWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 12.0
MPSGraphTensor* lower_Minimum(const LowerCtx& c, const Node& n) { return [c.g minimumWithNaNPropagationWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 12.0
MPSGraphTensor* lower_Power(const LowerCtx& c, const Node& n) { return [c.g powerWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_LogicalAnd(const LowerCtx& c, const Node& n) { return [c.g logicalANDWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_LogicalOr(const LowerCtx& c, const Node& n) { return [c.g logicalORWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_BitwiseAnd(const LowerCtx& c, const Node& n) {
  if (n.type.dtype == graph::DType::Bool) return [c.g logicalANDWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 11.0
  return [c.g bitwiseANDWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 13.0
}
MPSGraphTensor* lower_BitwiseOr(const LowerCtx& c, const Node& n) {
  if (n.type.dtype == graph::DType::Bool) return [c.g logicalORWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 11.0
  return [c.g bitwiseORWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 13.0
}
MPSGraphTensor* lower_BitwiseXor(const LowerCtx& c, const Node& n) {
  if (n.type.dtype == graph::DType::Bool) return [c.g notEqualWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 11.0
  return [c.g bitwiseXORWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 13.0
}
// The amount as a bool "in [0, bit width)" mask, and the amount clamped into range.
static MPSGraphTensor* shift_in_range(const LowerCtx& c, const Node& n) {
  MPSDataType t = to_mps_dtype(n.type.dtype);
  int bits = n.type.dtype == graph::DType::Int64 ? 64 : n.type.dtype == graph::DType::Int32 ? 32 : 8;
  MPSGraphTensor* ge0 = [c.g greaterThanOrEqualToWithPrimaryTensor:c.in(n, 1) secondaryTensor:[c.g constantWithScalar:0 dataType:t] name:nil];  // macOS 11.0
  MPSGraphTensor* lt_bits = [c.g lessThanWithPrimaryTensor:c.in(n, 1) secondaryTensor:[c.g constantWithScalar:bits dataType:t] name:nil];  // macOS 11.0
  return [c.g logicalANDWithPrimaryTensor:ge0 secondaryTensor:lt_bits name:nil];  // macOS 11.0
}
MPSGraphTensor* lower_LeftShift(const LowerCtx& c, const Node& n) {
  MPSGraphTensor* shifted = [c.g bitwiseLeftShiftWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 13.0
  MPSGraphTensor* zero = [c.g constantWithScalar:0 dataType:to_mps_dtype(n.type.dtype)];  // macOS 11.0
  return [c.g selectWithPredicateTensor:shift_in_range(c, n) truePredicateTensor:shifted falsePredicateTensor:zero name:nil];  // macOS 11.0
}
MPSGraphTensor* lower_RightShift(const LowerCtx& c, const Node& n) {
  MPSDataType t = to_mps_dtype(n.type.dtype);
  bool is_signed = n.type.dtype != graph::DType::UInt8;
  int bits = n.type.dtype == graph::DType::Int64 ? 64 : n.type.dtype == graph::DType::Int32 ? 32 : 8;
  MPSGraphTensor* shifted = [c.g bitwiseRightShiftWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 13.0
  // Out of range: the sign fill (x >> (bits - 1) for signed types), 0 for unsigned.
  MPSGraphTensor* fill = is_signed ? [c.g bitwiseRightShiftWithPrimaryTensor:c.in(n, 0) secondaryTensor:[c.g constantWithScalar:bits - 1 dataType:t] name:nil]  // macOS 13.0
                                   : [c.g constantWithScalar:0 dataType:t];  // macOS 11.0
  return [c.g selectWithPredicateTensor:shift_in_range(c, n) truePredicateTensor:shifted falsePredicateTensor:fill name:nil];  // macOS 11.0
}
// Integer floor division and remainder from floorModulo (documented: a -
// floor(a / b) * b, 0 for b == 0): a - remainder is an exact multiple of b,
// so the division is exact whatever rounding integer division uses. Division
// by zero cannot raise on the GPU (torch's CPU raises ZeroDivisionError): the
// remainder is 0 there, the quotient whatever MPSGraph's division gives.
MPSGraphTensor* lower_FloorDivide(const LowerCtx& c, const Node& n) {
  MPSGraphTensor* r = [c.g floorModuloWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 11.0
  MPSGraphTensor* multiple = [c.g subtractionWithPrimaryTensor:c.in(n, 0) secondaryTensor:r name:nil];  // macOS 11.0
  return [c.g divisionWithPrimaryTensor:multiple secondaryTensor:c.in(n, 1) name:nil];  // macOS 11.0
}
MPSGraphTensor* lower_Remainder(const LowerCtx& c, const Node& n) { return [c.g floorModuloWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Equal(const LowerCtx& c, const Node& n) { return [c.g equalWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_NotEqual(const LowerCtx& c, const Node& n) { return [c.g notEqualWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Less(const LowerCtx& c, const Node& n) { return [c.g lessThanWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_LessEqual(const LowerCtx& c, const Node& n) { return [c.g lessThanOrEqualToWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Greater(const LowerCtx& c, const Node& n) { return [c.g greaterThanWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_GreaterEqual(const LowerCtx& c, const Node& n) { return [c.g greaterThanOrEqualToWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Select(const LowerCtx& c, const Node& n) { return [c.g selectWithPredicateTensor:c.in(n, 0) truePredicateTensor:c.in(n, 1) falsePredicateTensor:c.in(n, 2) name:nil]; }  // macOS 11.0
// Reductions (keep dims, like the IR) and the rest.
MPSGraphTensor* lower_ReduceSum(const LowerCtx& c, const Node& n) { return [c.g reductionSumWithTensor:c.in(n, 0) axes:reduce_axes(n) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_ReduceMax(const LowerCtx& c, const Node& n) { return [c.g reductionMaximumPropagateNaNWithTensor:c.in(n, 0) axes:reduce_axes(n) name:nil]; }  // macOS 11.0; torch.amax propagates NaN
MPSGraphTensor* lower_ReduceMin(const LowerCtx& c, const Node& n) { return [c.g reductionMinimumPropagateNaNWithTensor:c.in(n, 0) axes:reduce_axes(n) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_ReduceProd(const LowerCtx& c, const Node& n) { return [c.g reductionProductWithTensor:c.in(n, 0) axes:reduce_axes(n) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_ReduceMean(const LowerCtx& c, const Node& n) { return [c.g meanOfTensor:c.in(n, 0) axes:reduce_axes(n) name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_Softmax(const LowerCtx& c, const Node& n) { return [c.g softMaxWithTensor:c.in(n, 0) axis:n.int_attr("axis") name:nil]; }  // macOS 11.0
MPSGraphTensor* lower_MatMul(const LowerCtx& c, const Node& n) { return [c.g matrixMultiplicationWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
// RandomUniform: element 0 of [values, new state]; the state is an input the
// op derives from the device generator per call.
MPSGraphTensor* lower_RandomUniform(const LowerCtx& c, const Node& n) {
  return [c.g randomUniformTensorWithShape:mps_shape(n.type.shape) stateTensor:c.in(n, 0) name:nil][0];  // macOS 11.0
}
// Iota: int32 coordinates, cast when the node wants int64.
MPSGraphTensor* lower_Iota(const LowerCtx& c, const Node& n) {
  MPSGraphTensor* t = [c.g coordinateAlongAxis:n.int_attr("axis") withShape:mps_shape(n.type.shape) name:nil];  // macOS 12.3
  return n.type.dtype == graph::DType::Int32 ? t : [c.g castTensor:t toType:to_mps_dtype(n.type.dtype) name:nil];  // macOS 12.0
}
// Kernel nodes: hand-written kernels run only as whole graphs (executable.mm);
// inside a graph, the node is its decomposition, lowered in place.
MPSGraphTensor* lower_Kernel(const LowerCtx& c, const Node& n) {
  std::vector<MPSGraphTensor*> inputs;
  for (size_t i = 0; i < n.inputs.size(); ++i) inputs.push_back(c.in(n, i));
  const graph::Graph& sub = c.ir.decomposition(n);
  return lower_values(c.g, sub, &inputs).at(sub.outputs().at(0));
}

namespace {
using LowerFn = MPSGraphTensor* (*)(const LowerCtx&, const Node&);
// Indexed by NodeKind, from the registrations (lowerings.def, checked to list
// every kind in order): a kind without a lower_<Kind> does not compile.
constexpr LowerFn kLowerings[] = {
#define MPS_EXT_LOWERING(kind, selector, macos) &lower_##kind,
#include "runtime/mpsgraph/lowerings.def"
};
static_assert(graph::lowerings_cover_every_kind(), "lowerings.def must list every node kind once, in order");

// Lowers every node of `ir`; its inputs are fresh placeholders, or the given
// tensors (a decomposition lowered inside its parent graph).
}  // namespace

static std::vector<MPSGraphTensor*> lower_values(MPSGraph* g, const graph::Graph& ir,
                                                 const std::vector<MPSGraphTensor*>* bound_inputs) {
  std::vector<MPSGraphTensor*> values(ir.nodes().size());
  LowerCtx ctx{g, ir, values};
  for (size_t id = 0; id < ir.nodes().size(); ++id) {
    const Node& n = ir.nodes()[id];
    values[id] = bound_inputs && graph::is_input(n.kind) ? bound_inputs->at(n.int_attr("index"))
                                                         : kLowerings[static_cast<size_t>(n.kind)](ctx, n);
  }
  return values;
}

MPSShape* mps_shape(c10::ArrayRef<int64_t> dims) { return ns_ints(dims.vec()); }

MPSDataType to_mps_dtype(graph::DType t) {
  switch (t) {
    case graph::DType::Bool: return MPSDataTypeBool;
    case graph::DType::UInt8: return MPSDataTypeUInt8;
    case graph::DType::Int8: return MPSDataTypeInt8;
    case graph::DType::Int32: return MPSDataTypeInt32;
    case graph::DType::Int64: return MPSDataTypeInt64;
    case graph::DType::Float16: return MPSDataTypeFloat16;
    case graph::DType::BFloat16: return MPSDataTypeBFloat16;  // macOS 14.0
    case graph::DType::Float32: return MPSDataTypeFloat32;
    case graph::DType::Complex64: return MPSDataTypeComplexFloat32;  // macOS 13.0
    case graph::DType::Float64:
    case graph::DType::Complex128: break;
  }
  TORCH_CHECK(false, "mps_ext: MPSGraph has no ", graph::dtype_name(t),
              " type; use float32 (or the 'reference' runtime) for this op");
}

Lowered lower(const graph::Graph& ir) {
  Lowered out;
  out.graph = [MPSGraph new];
  std::vector<MPSGraphTensor*> values = lower_values(out.graph, ir, nullptr);
  for (int id : ir.inputs()) out.inputs.push_back(values[id]);
  for (int id : ir.outputs()) out.outputs.push_back(values.at(id));
  out.values = std::move(values);
  return out;
}

}  // namespace mps_ext::runtime::mpsgraph
