// One lowering per IR node kind, each a 1:1 mapping to an MPSGraph selector,
// registered with that selector and its minimum macOS in lowerings.def.
// Comments give each call's minimum macOS (Apple docs); anything newer than
// the project's macOS 14.0 floor is behind @available with a decomposed
// fallback. docs/mpsgraph-lowering.md is the reviewed table;
// tests/test_mpsgraph_lowering.py checks it, the registrations and the
// selectors clang finds in each lower_<Kind> against each other.
#import "runtime/mpsgraph/lowering.h"
#include "runtime/mpsgraph/lowering_table.h"
#include "runtime/mpsgraph/pool_plan.h"

#include <c10/util/Exception.h>

#include <algorithm>

namespace mps_ext::runtime::mpsgraph {
namespace {
using graph::kDynamic;
using graph::Node;
using graph::NodeKind;
using graph::Shape;

std::vector<MPSGraphTensor*> lower_values(MPSGraph* g, const graph::Graph& ir,
                                          const std::vector<MPSGraphTensor*>* bound_inputs);

struct LowerCtx {
  MPSGraph* g;
  const graph::Graph& ir;
  const std::vector<MPSGraphTensor*>& values;  // by node id
  MPSGraphTensor* in(const Node& n, size_t i) const { return values.at(n.inputs.at(i)); }
  const Shape& in_shape(const Node& n, size_t i) const { return ir.node(n.inputs.at(i)).type.shape; }
};

NSArray<NSNumber*>* ns_ints(const std::vector<int64_t>& v) {
  NSMutableArray<NSNumber*>* a = [NSMutableArray arrayWithCapacity:v.size()];
  for (int64_t x : v) [a addObject:@(x)];
  return a;
}

bool is_static(const Shape& s) {
  return std::none_of(s.begin(), s.end(), [](int64_t d) { return d == kDynamic; });
}

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

// The node carries the descriptor's fields (graph.cpp derives them from norm).
MPSGraphFFTDescriptor* fft_descriptor(const Node& n) {
  MPSGraphFFTDescriptor* d = [MPSGraphFFTDescriptor descriptor];  // macOS 14.0
  d.inverse = n.int_attr("inverse") != 0;
  const std::string& scaling = n.str_attr("scaling");
  d.scalingMode = scaling == "none" ? MPSGraphFFTScalingModeNone
                  : scaling == "size" ? MPSGraphFFTScalingModeSize : MPSGraphFFTScalingModeUnitary;
  return d;
}

// Convolution descriptors in PyTorch's layouts with its symmetric explicit
// padding; x is the last spatial dim (width), z the first of three (depth).
MPSGraphConvolution2DOpDescriptor* conv2d_descriptor(const graph::ConvParams& p) {
  return [MPSGraphConvolution2DOpDescriptor descriptorWithStrideInX:p.stride[1] strideInY:p.stride[0] dilationRateInX:p.dilation[1] dilationRateInY:p.dilation[0] groups:p.groups paddingLeft:p.padding[1] paddingRight:p.padding[1] paddingTop:p.padding[0] paddingBottom:p.padding[0] paddingStyle:MPSGraphPaddingStyleExplicit dataLayout:MPSGraphTensorNamedDataLayoutNCHW weightsLayout:MPSGraphTensorNamedDataLayoutOIHW];  // macOS 11.0
}

MPSGraphConvolution3DOpDescriptor* conv3d_descriptor(const graph::ConvParams& p) {
  return [MPSGraphConvolution3DOpDescriptor descriptorWithStrideInX:p.stride[2] strideInY:p.stride[1] strideInZ:p.stride[0] dilationRateInX:p.dilation[2] dilationRateInY:p.dilation[1] dilationRateInZ:p.dilation[0] groups:p.groups paddingLeft:p.padding[2] paddingRight:p.padding[2] paddingTop:p.padding[1] paddingBottom:p.padding[1] paddingFront:p.padding[0] paddingBack:p.padding[0] paddingStyle:MPSGraphPaddingStyleExplicit dataLayout:MPSGraphTensorNamedDataLayoutNCDHW weightsLayout:MPSGraphTensorNamedDataLayoutOIDHW];  // macOS 13.2
}

// A rank-1 int32 constant holding `shape` (the 3-D weights gradient takes its
// output shape as a tensor).
MPSGraphTensor* shape_constant(MPSGraph* g, const Shape& shape) {
  NSMutableArray<MPSGraphTensor*>* dims = [NSMutableArray arrayWithCapacity:shape.size()];
  for (int64_t d : shape) [dims addObject:[g constantWithScalar:static_cast<double>(d) shape:@[ @1 ] dataType:MPSDataTypeInt32]];  // macOS 11.0
  return [g concatTensors:dims dimension:0 name:nil];  // macOS 11.0
}
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


// Pooling: MPSGraph's 4-D pooling over a rank-5 view of the data, explicit
// padding, average divisors corrected to torch's (pool_plan.h, tested on Linux).
MPSGraphPooling4DOpDescriptor* pool_descriptor(const PoolPlan& plan) {
  return [MPSGraphPooling4DOpDescriptor descriptorWithKernelSizes:ns_ints(plan.kernel) strides:ns_ints(plan.stride) dilationRates:ns_ints(plan.dilation) paddingValues:ns_ints(plan.padding) paddingStyle:MPSGraphPaddingStyleExplicit];  // macOS 12.0
}

PoolPlan avg_plan(const Node& n, const Shape& input_shape) {
  return pool_plan(graph::pool_params(n), input_shape, /*avg=*/true, n.int_attr("count_include_pad") != 0,
                   n.int_attr("divisor_override"));
}

// torch's flat index into an input plane is MPSGraph's GlobalFlatten3D index
// of the rank-5 view (flattened over its innermost D, H, W, in unpadded input
// coordinates as PyTorch's own MPS backend relies on for its 2-D pools); int32.
void return_flat_indices(MPSGraphPooling4DOpDescriptor* desc) {
  desc.returnIndicesMode = MPSGraphPoolingReturnIndicesGlobalFlatten3D;  // macOS 12.2
  desc.returnIndicesDataType = MPSDataTypeInt32;  // macOS 12.2; the only type MPSGraph supports
}

void check_int32_plane(const Shape& in5) {
  TORCH_CHECK(in5[2] * in5[3] * in5[4] <= INT32_MAX, "mps_ext: max-pool indices of a plane of more than 2^31 elements "
              "do not fit MPSGraph's int32 indices; run it with MPS_EXT_RUNTIME=reference");
}

// The [1, 1, D, H, W] correction map as a constant of the node's dtype; nil when all ones.
MPSGraphTensor* avg_correction(const LowerCtx& c, const Node& n, const PoolPlan& plan) {
  if (!plan.needs_correction) return nil;
  NSData* data = [NSData dataWithBytes:plan.correction.data() length:plan.correction.size() * sizeof(float)];
  Shape shape = {1, 1, plan.out5[2], plan.out5[3], plan.out5[4]};
  MPSGraphTensor* t = [c.g constantWithData:data shape:mps_shape(shape) dataType:MPSDataTypeFloat32];  // macOS 11.0
  return n.type.dtype == graph::DType::Float32 ? t : [c.g castTensor:t toType:to_mps_dtype(n.type.dtype) name:nil];  // macOS 12.0
}

// --- one function per IR node kind --------------------------------------------------

// Sources and state. Variables are caller tensors (bound like placeholders);
// the executable writes Assign's value back into them after the graph ran.
static MPSGraphTensor* lower_Placeholder(const LowerCtx& c, const Node& n) { return [c.g placeholderWithShape:mps_shape(n.type.shape) dataType:to_mps_dtype(n.type.dtype) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Constant(const LowerCtx& c, const Node& n) {
  if (n.type.dtype == graph::DType::Complex64) {  // complex zeros of FFT padding: a complex scalar, broadcast
    MPSGraphTensor* z = [c.g constantWithRealPart:n.float_attr("value") imaginaryPart:0 dataType:MPSDataTypeComplexFloat32];  // macOS 14.0
    return is_static(n.type.shape) ? [c.g broadcastTensor:z toShape:mps_shape(n.type.shape) name:nil] : z;  // macOS 12.0
  }
  if (is_static(n.type.shape)) return [c.g constantWithScalar:n.float_attr("value") shape:mps_shape(n.type.shape) dataType:to_mps_dtype(n.type.dtype)];  // macOS 11.0
  return [c.g constantWithScalar:n.float_attr("value") dataType:to_mps_dtype(n.type.dtype)];  // rank-0; consumers broadcast it
}
static MPSGraphTensor* lower_Variable(const LowerCtx& c, const Node& n) { return [c.g placeholderWithShape:mps_shape(n.type.shape) dataType:to_mps_dtype(n.type.dtype) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Assign(const LowerCtx& c, const Node& n) { return [c.g identityWithTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
// Data movement.
static MPSGraphTensor* lower_Cast(const LowerCtx& c, const Node& n) { return [c.g castTensor:c.in(n, 0) toType:to_mps_dtype(n.type.dtype) name:nil]; }  // macOS 12.0
static MPSGraphTensor* lower_Reshape(const LowerCtx& c, const Node& n) { return [c.g reshapeTensor:c.in(n, 0) withShape:mps_shape(n.ints_attr("shape")) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Transpose(const LowerCtx& c, const Node& n) { return [c.g transposeTensor:c.in(n, 0) permutation:ns_ints(n.ints_attr("perm")) name:nil]; }  // macOS 13.0
static MPSGraphTensor* lower_Slice(const LowerCtx& c, const Node& n) {
  const Shape& s = c.in_shape(n, 0);
  return [c.g sliceTensor:c.in(n, 0) starts:ns_ints(clamped(n.ints_attr("starts"), s)) ends:ns_ints(clamped(n.ints_attr("ends"), s)) strides:ns_ints(n.ints_attr("strides")) name:nil];  // macOS 11.0
}
static MPSGraphTensor* lower_SliceUpdate(const LowerCtx& c, const Node& n) {
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
static MPSGraphTensor* lower_Concat(const LowerCtx& c, const Node& n) {
  NSMutableArray<MPSGraphTensor*>* xs = [NSMutableArray arrayWithCapacity:n.inputs.size()];
  for (size_t i = 0; i < n.inputs.size(); ++i) [xs addObject:c.in(n, i)];
  return [c.g concatTensors:xs dimension:n.int_attr("axis") name:nil];  // macOS 11.0
}
static MPSGraphTensor* lower_Broadcast(const LowerCtx& c, const Node& n) {
  TORCH_CHECK(is_static(n.ints_attr("shape")), "mps_ext: broadcast to a dynamic shape is not lowered to MPSGraph");
  return [c.g broadcastTensor:c.in(n, 0) toShape:mps_shape(n.ints_attr("shape")) name:nil];  // macOS 12.0
}
// Elementwise, unary.
static MPSGraphTensor* lower_Identity(const LowerCtx& c, const Node& n) { return [c.g identityWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Abs(const LowerCtx& c, const Node& n) { return [c.g absoluteWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Negative(const LowerCtx& c, const Node& n) { return [c.g negativeWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Sign(const LowerCtx& c, const Node& n) { return [c.g signWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Exp(const LowerCtx& c, const Node& n) { return [c.g exponentWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Log(const LowerCtx& c, const Node& n) { return [c.g logarithmWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Sqrt(const LowerCtx& c, const Node& n) { return [c.g squareRootWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Rsqrt(const LowerCtx& c, const Node& n) {
  if (@available(macOS 15.0, *)) return [c.g reciprocalSquareRootWithTensor:c.in(n, 0) name:nil];  // macOS 15.0
  return [c.g reverseSquareRootWithTensor:c.in(n, 0) name:nil];  // macOS 11.0, deprecated in 15.0
}
static MPSGraphTensor* lower_Reciprocal(const LowerCtx& c, const Node& n) { return [c.g reciprocalWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Square(const LowerCtx& c, const Node& n) { return [c.g squareWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Sin(const LowerCtx& c, const Node& n) { return [c.g sinWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Cos(const LowerCtx& c, const Node& n) { return [c.g cosWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Tanh(const LowerCtx& c, const Node& n) { return [c.g tanhWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Sigmoid(const LowerCtx& c, const Node& n) { return [c.g sigmoidWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Floor(const LowerCtx& c, const Node& n) { return [c.g floorWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Ceil(const LowerCtx& c, const Node& n) { return [c.g ceilWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Round(const LowerCtx& c, const Node& n) { return [c.g rintWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0; half-to-even like torch.round (round: away from 0)
static MPSGraphTensor* lower_LogicalNot(const LowerCtx& c, const Node& n) { return [c.g notWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_IsNaN(const LowerCtx& c, const Node& n) { return [c.g isNaNWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Erf(const LowerCtx& c, const Node& n) { return [c.g erfWithTensor:c.in(n, 0) name:nil]; }  // macOS 11.0
// Bitwise (13.0). Shifts: torch gives 0 (left) or the sign fill (right) for
// shift amounts outside [0, bit width); MPSGraph documents no such rule, so
// out-of-range amounts are selected explicitly.
static MPSGraphTensor* lower_BitwiseNot(const LowerCtx& c, const Node& n) {
  if (n.type.dtype == graph::DType::Bool) return [c.g notWithTensor:c.in(n, 0) name:nil];  // macOS 11.0
  return [c.g bitwiseNOTWithTensor:c.in(n, 0) name:nil];  // macOS 13.0
}
// Elementwise, binary (MPSGraph broadcasts like numpy).
static MPSGraphTensor* lower_Add(const LowerCtx& c, const Node& n) { return [c.g additionWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Subtract(const LowerCtx& c, const Node& n) { return [c.g subtractionWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Multiply(const LowerCtx& c, const Node& n) { return [c.g multiplicationWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Divide(const LowerCtx& c, const Node& n) { return [c.g divisionWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Maximum(const LowerCtx& c, const Node& n) { return [c.g maximumWithNaNPropagationWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 12.0
static MPSGraphTensor* lower_Minimum(const LowerCtx& c, const Node& n) { return [c.g minimumWithNaNPropagationWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 12.0
static MPSGraphTensor* lower_Power(const LowerCtx& c, const Node& n) { return [c.g powerWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_LogicalAnd(const LowerCtx& c, const Node& n) { return [c.g logicalANDWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_LogicalOr(const LowerCtx& c, const Node& n) { return [c.g logicalORWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_BitwiseAnd(const LowerCtx& c, const Node& n) {
  if (n.type.dtype == graph::DType::Bool) return [c.g logicalANDWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 11.0
  return [c.g bitwiseANDWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 13.0
}
static MPSGraphTensor* lower_BitwiseOr(const LowerCtx& c, const Node& n) {
  if (n.type.dtype == graph::DType::Bool) return [c.g logicalORWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 11.0
  return [c.g bitwiseORWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 13.0
}
static MPSGraphTensor* lower_BitwiseXor(const LowerCtx& c, const Node& n) {
  if (n.type.dtype == graph::DType::Bool) return [c.g notEqualWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 11.0
  return [c.g bitwiseXORWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 13.0
}
// The amount as a bool "in [0, bit width)" mask, and the amount clamped into range.
MPSGraphTensor* shift_in_range(const LowerCtx& c, const Node& n) {
  MPSDataType t = to_mps_dtype(n.type.dtype);
  int bits = n.type.dtype == graph::DType::Int64 ? 64 : n.type.dtype == graph::DType::Int32 ? 32 : 8;
  MPSGraphTensor* ge0 = [c.g greaterThanOrEqualToWithPrimaryTensor:c.in(n, 1) secondaryTensor:[c.g constantWithScalar:0 dataType:t] name:nil];  // macOS 11.0
  MPSGraphTensor* lt_bits = [c.g lessThanWithPrimaryTensor:c.in(n, 1) secondaryTensor:[c.g constantWithScalar:bits dataType:t] name:nil];  // macOS 11.0
  return [c.g logicalANDWithPrimaryTensor:ge0 secondaryTensor:lt_bits name:nil];  // macOS 11.0
}
static MPSGraphTensor* lower_LeftShift(const LowerCtx& c, const Node& n) {
  MPSGraphTensor* shifted = [c.g bitwiseLeftShiftWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 13.0
  MPSGraphTensor* zero = [c.g constantWithScalar:0 dataType:to_mps_dtype(n.type.dtype)];  // macOS 11.0
  return [c.g selectWithPredicateTensor:shift_in_range(c, n) truePredicateTensor:shifted falsePredicateTensor:zero name:nil];  // macOS 11.0
}
static MPSGraphTensor* lower_RightShift(const LowerCtx& c, const Node& n) {
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
static MPSGraphTensor* lower_FloorDivide(const LowerCtx& c, const Node& n) {
  MPSGraphTensor* r = [c.g floorModuloWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil];  // macOS 11.0
  MPSGraphTensor* multiple = [c.g subtractionWithPrimaryTensor:c.in(n, 0) secondaryTensor:r name:nil];  // macOS 11.0
  return [c.g divisionWithPrimaryTensor:multiple secondaryTensor:c.in(n, 1) name:nil];  // macOS 11.0
}
static MPSGraphTensor* lower_Remainder(const LowerCtx& c, const Node& n) { return [c.g floorModuloWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Equal(const LowerCtx& c, const Node& n) { return [c.g equalWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_NotEqual(const LowerCtx& c, const Node& n) { return [c.g notEqualWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Less(const LowerCtx& c, const Node& n) { return [c.g lessThanWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_LessEqual(const LowerCtx& c, const Node& n) { return [c.g lessThanOrEqualToWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Greater(const LowerCtx& c, const Node& n) { return [c.g greaterThanWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_GreaterEqual(const LowerCtx& c, const Node& n) { return [c.g greaterThanOrEqualToWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Select(const LowerCtx& c, const Node& n) { return [c.g selectWithPredicateTensor:c.in(n, 0) truePredicateTensor:c.in(n, 1) falsePredicateTensor:c.in(n, 2) name:nil]; }  // macOS 11.0
// Reductions (keep dims, like the IR) and the rest.
static MPSGraphTensor* lower_ReduceSum(const LowerCtx& c, const Node& n) { return [c.g reductionSumWithTensor:c.in(n, 0) axes:reduce_axes(n) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_ReduceMax(const LowerCtx& c, const Node& n) { return [c.g reductionMaximumPropagateNaNWithTensor:c.in(n, 0) axes:reduce_axes(n) name:nil]; }  // macOS 11.0; torch.amax propagates NaN
static MPSGraphTensor* lower_ReduceMin(const LowerCtx& c, const Node& n) { return [c.g reductionMinimumPropagateNaNWithTensor:c.in(n, 0) axes:reduce_axes(n) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_ReduceProd(const LowerCtx& c, const Node& n) { return [c.g reductionProductWithTensor:c.in(n, 0) axes:reduce_axes(n) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_ReduceMean(const LowerCtx& c, const Node& n) { return [c.g meanOfTensor:c.in(n, 0) axes:reduce_axes(n) name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_Softmax(const LowerCtx& c, const Node& n) { return [c.g softMaxWithTensor:c.in(n, 0) axis:n.int_attr("axis") name:nil]; }  // macOS 11.0
static MPSGraphTensor* lower_MatMul(const LowerCtx& c, const Node& n) { return [c.g matrixMultiplicationWithPrimaryTensor:c.in(n, 0) secondaryTensor:c.in(n, 1) name:nil]; }  // macOS 11.0
// RandomUniform: element 0 of [values, new state]; the state is an input the
// op derives from the device generator per call.
static MPSGraphTensor* lower_RandomUniform(const LowerCtx& c, const Node& n) {
  return [c.g randomUniformTensorWithShape:mps_shape(n.type.shape) stateTensor:c.in(n, 0) name:nil][0];  // macOS 11.0
}
// Iota: int32 coordinates, cast when the node wants int64.
static MPSGraphTensor* lower_Iota(const LowerCtx& c, const Node& n) {
  MPSGraphTensor* t = [c.g coordinateAlongAxis:n.int_attr("axis") withShape:mps_shape(n.type.shape) name:nil];  // macOS 12.3
  return n.type.dtype == graph::DType::Int32 ? t : [c.g castTensor:t toType:to_mps_dtype(n.type.dtype) name:nil];  // macOS 12.0
}
// Quantization, attention, spectral.
static MPSGraphTensor* lower_Dequantize(const LowerCtx& c, const Node& n) {
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
static MPSGraphTensor* lower_DequantizeLUT(const LowerCtx& c, const Node& n) {
  if (@available(macOS 15.0, *)) {
    if (fits_native_lut(c, n)) return [c.g dequantizeTensor:c.in(n, 0) LUTTensor:c.in(n, 1) name:nil];  // macOS 15.0
  }
  return lut_gather(c, n);
}
static MPSGraphTensor* lower_ScaledDotProductAttention(const LowerCtx& c, const Node& n) {
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
static MPSGraphTensor* lower_FFT(const LowerCtx& c, const Node& n) { return [c.g fastFourierTransformWithTensor:c.in(n, 0) axes:ns_ints(n.ints_attr("axes")) descriptor:fft_descriptor(n) name:nil]; }  // macOS 14.0
static MPSGraphTensor* lower_RFFT(const LowerCtx& c, const Node& n) { return [c.g realToHermiteanFFTWithTensor:c.in(n, 0) axes:ns_ints(n.ints_attr("axes")) descriptor:fft_descriptor(n) name:nil]; }  // macOS 14.0
static MPSGraphTensor* lower_IRFFT(const LowerCtx& c, const Node& n) {
  MPSGraphFFTDescriptor* d = fft_descriptor(n);
  d.roundToOddHermitean = n.int_attr("round_to_odd") != 0;  // odd real size: (n-1)*2+1, else (n-1)*2
  return [c.g HermiteanToRealFFTWithTensor:c.in(n, 0) axes:ns_ints(n.ints_attr("axes")) descriptor:d name:nil];  // macOS 14.0
}
// Convolutions: rank 4 -> the 2-D ops (11.0), rank 5 -> the 3-D ops (13.2).
static MPSGraphTensor* lower_Convolution(const LowerCtx& c, const Node& n) {
  graph::ConvParams p = graph::conv_params(n);
  if (n.type.rank() == 4) return [c.g convolution2DWithSourceTensor:c.in(n, 0) weightsTensor:c.in(n, 1) descriptor:conv2d_descriptor(p) name:nil];  // macOS 11.0
  return [c.g convolution3DWithSourceTensor:c.in(n, 0) weightsTensor:c.in(n, 1) descriptor:conv3d_descriptor(p) name:nil];  // macOS 13.2
}
static MPSGraphTensor* lower_ConvolutionDataGradient(const LowerCtx& c, const Node& n) {
  graph::ConvParams p = graph::conv_params(n);
  // The 3-D data gradient's selector is not among those verified against
  // Apple's documentation yet (docs/mpsgraph-lowering.md): refuse, don't guess.
  TORCH_CHECK(n.type.rank() == 4, "mps_ext: the input gradient of a 3-D convolution (and ConvTranspose3d) is not "
              "lowered to MPSGraph yet; run it with MPS_EXT_RUNTIME=reference");
  return [c.g convolution2DDataGradientWithIncomingGradientTensor:c.in(n, 0) weightsTensor:c.in(n, 1) outputShape:mps_shape(n.ints_attr("input_shape")) forwardConvolutionDescriptor:conv2d_descriptor(p) name:nil];  // macOS 11.0
}
static MPSGraphTensor* lower_ConvolutionWeightGradient(const LowerCtx& c, const Node& n) {
  graph::ConvParams p = graph::conv_params(n);
  const Shape& w = n.ints_attr("weight_shape");
  if (n.type.rank() == 4) return [c.g convolution2DWeightsGradientWithIncomingGradientTensor:c.in(n, 0) sourceTensor:c.in(n, 1) outputShape:mps_shape(w) forwardConvolutionDescriptor:conv2d_descriptor(p) name:nil];  // macOS 11.0
  return [c.g convolution3DWeightsGradientWithIncomingGradientTensor:c.in(n, 0) sourceTensor:c.in(n, 1) outputShapeTensor:shape_constant(c.g, w) forwardConvolutionDescriptor:conv3d_descriptor(p) name:nil];  // macOS 13.2
}

// Pooling: 4-D pooling over the rank-5 view (pool_plan), reshaped back.
static MPSGraphTensor* lower_MaxPool(const LowerCtx& c, const Node& n) {
  PoolPlan plan = pool_plan(graph::pool_params(n), c.in_shape(n, 0));
  MPSGraphTensor* x = [c.g reshapeTensor:c.in(n, 0) withShape:mps_shape(plan.in5) name:nil];  // macOS 11.0
  MPSGraphTensor* y = [c.g maxPooling4DWithSourceTensor:x descriptor:pool_descriptor(plan) name:nil];  // macOS 12.0
  return [c.g reshapeTensor:y withShape:mps_shape(n.type.shape) name:nil];  // macOS 11.0
}
static MPSGraphTensor* lower_MaxPoolIndices(const LowerCtx& c, const Node& n) {
  PoolPlan plan = pool_plan(graph::pool_params(n), c.in_shape(n, 0));
  check_int32_plane(plan.in5);
  MPSGraphPooling4DOpDescriptor* desc = pool_descriptor(plan);
  return_flat_indices(desc);
  MPSGraphTensor* x = [c.g reshapeTensor:c.in(n, 0) withShape:mps_shape(plan.in5) name:nil];  // macOS 11.0
  MPSGraphTensor* idx = [c.g maxPooling4DReturnIndicesWithSourceTensor:x descriptor:desc name:nil][1];  // macOS 12.2
  idx = [c.g castTensor:idx toType:MPSDataTypeInt64 name:nil];  // macOS 12.0
  return [c.g reshapeTensor:idx withShape:mps_shape(n.type.shape) name:nil];  // macOS 11.0
}
static MPSGraphTensor* lower_MaxPoolGradient(const LowerCtx& c, const Node& n) {
  PoolPlan plan = pool_plan(graph::pool_params(n), n.ints_attr("input_shape"));
  check_int32_plane(plan.in5);
  MPSGraphPooling4DOpDescriptor* desc = pool_descriptor(plan);
  return_flat_indices(desc);
  MPSGraphTensor* dy = [c.g reshapeTensor:c.in(n, 0) withShape:mps_shape(plan.out5) name:nil];  // macOS 11.0
  MPSGraphTensor* idx = [c.g castTensor:c.in(n, 1) toType:MPSDataTypeInt32 name:nil];  // macOS 12.0
  idx = [c.g reshapeTensor:idx withShape:mps_shape(plan.out5) name:nil];  // macOS 11.0
  MPSGraphTensor* dx = [c.g maxPooling4DGradientWithGradientTensor:dy indicesTensor:idx outputShape:mps_shape(plan.in5) descriptor:desc name:nil];  // macOS 13.0
  return [c.g reshapeTensor:dx withShape:mps_shape(n.type.shape) name:nil];  // macOS 11.0
}
static MPSGraphTensor* lower_AvgPool(const LowerCtx& c, const Node& n) {
  PoolPlan plan = avg_plan(n, c.in_shape(n, 0));
  MPSGraphPooling4DOpDescriptor* desc = pool_descriptor(plan);
  desc.includeZeroPadToAverage = NO;  // macOS 12.0
  MPSGraphTensor* x = [c.g reshapeTensor:c.in(n, 0) withShape:mps_shape(plan.in5) name:nil];  // macOS 11.0
  MPSGraphTensor* y = [c.g avgPooling4DWithSourceTensor:x descriptor:desc name:nil];  // macOS 12.0
  if (MPSGraphTensor* fix = avg_correction(c, n, plan)) y = [c.g multiplicationWithPrimaryTensor:y secondaryTensor:fix name:nil];  // macOS 11.0
  return [c.g reshapeTensor:y withShape:mps_shape(n.type.shape) name:nil];  // macOS 11.0
}
static MPSGraphTensor* lower_AvgPoolGradient(const LowerCtx& c, const Node& n) {
  PoolPlan plan = avg_plan(n, c.in_shape(n, 1));
  MPSGraphPooling4DOpDescriptor* desc = pool_descriptor(plan);
  desc.includeZeroPadToAverage = NO;  // macOS 12.0
  MPSGraphTensor* dy = [c.g reshapeTensor:c.in(n, 0) withShape:mps_shape(plan.out5) name:nil];  // macOS 11.0
  if (MPSGraphTensor* fix = avg_correction(c, n, plan)) dy = [c.g multiplicationWithPrimaryTensor:dy secondaryTensor:fix name:nil];  // macOS 11.0
  MPSGraphTensor* x = [c.g reshapeTensor:c.in(n, 1) withShape:mps_shape(plan.in5) name:nil];  // macOS 11.0
  MPSGraphTensor* dx = [c.g avgPooling4DGradientWithGradientTensor:dy sourceTensor:x descriptor:desc name:nil];  // macOS 12.0
  return [c.g reshapeTensor:dx withShape:mps_shape(n.type.shape) name:nil];  // macOS 11.0
}

// Kernel nodes: hand-written kernels run only as whole graphs (executable.mm);
// inside a graph, the node is its decomposition, lowered in place.
static MPSGraphTensor* lower_Kernel(const LowerCtx& c, const Node& n) {
  std::vector<MPSGraphTensor*> inputs;
  for (size_t i = 0; i < n.inputs.size(); ++i) inputs.push_back(c.in(n, i));
  const graph::Graph& sub = c.ir.decomposition(n);
  return lower_values(c.g, sub, &inputs).at(sub.outputs().at(0));
}

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
std::vector<MPSGraphTensor*> lower_values(MPSGraph* g, const graph::Graph& ir,
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
}  // namespace

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
