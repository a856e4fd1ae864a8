// The convolution kinds lowered to MPSGraph: rank 4 -> the 2-D ops (11.0),
// rank 5 -> the 3-D ops (13.2).
// Registered in runtime/mpsgraph/lowerings.def; comments give each call's
// minimum macOS (Apple docs). Compiled on macOS only (tools/check_objc.py
// checks it on Linux).
#import "runtime/mpsgraph/lower_node.h"

#include <c10/util/Exception.h>

namespace mps_ext::runtime::mpsgraph {
using graph::kDynamic;
using graph::Node;
using graph::NodeKind;
using graph::Shape;

namespace {
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
}  // namespace

// Convolutions: rank 4 -> the 2-D ops (11.0), rank 5 -> the 3-D ops (13.2).
// The optional bias [C_out] is reshaped to [1, C_out, 1, 1(, 1)] and added.
MPSGraphTensor* lower_Convolution(const LowerCtx& c, const Node& n) {
  graph::ConvParams p = graph::conv_params(n);
  MPSGraphTensor* y = n.type.rank() == 4
      ? [c.g convolution2DWithSourceTensor:c.in(n, 0) weightsTensor:c.in(n, 1) descriptor:conv2d_descriptor(p) name:nil]  // macOS 11.0
      : [c.g convolution3DWithSourceTensor:c.in(n, 0) weightsTensor:c.in(n, 1) descriptor:conv3d_descriptor(p) name:nil];  // macOS 13.2
  if (n.inputs.size() < 3) return y;
  Shape along_channels(static_cast<size_t>(n.type.rank()), 1);
  along_channels[1] = n.type.shape[1];
  MPSGraphTensor* bias = [c.g reshapeTensor:c.in(n, 2) withShape:mps_shape(along_channels) name:nil];  // macOS 11.0
  return [c.g additionWithPrimaryTensor:y secondaryTensor:bias name:nil];  // macOS 11.0
}
MPSGraphTensor* lower_ConvolutionDataGradient(const LowerCtx& c, const Node& n) {
  graph::ConvParams p = graph::conv_params(n);
  // The 3-D data gradient's selector is not among those verified against
  // Apple's documentation yet (docs/mpsgraph-lowering.md): refuse, don't guess.
  TORCH_CHECK(n.type.rank() == 4, "mps_ext: the input gradient of a 3-D convolution (and ConvTranspose3d) is not "
              "lowered to MPSGraph yet; run it with MPS_EXT_RUNTIME=reference");
  return [c.g convolution2DDataGradientWithIncomingGradientTensor:c.in(n, 0) weightsTensor:c.in(n, 1) outputShape:mps_shape(n.ints_attr("input_shape")) forwardConvolutionDescriptor:conv2d_descriptor(p) name:nil];  // macOS 11.0
}
MPSGraphTensor* lower_ConvolutionWeightGradient(const LowerCtx& c, const Node& n) {
  graph::ConvParams p = graph::conv_params(n);
  const Shape& w = n.ints_attr("weight_shape");
  if (n.type.rank() == 4) return [c.g convolution2DWeightsGradientWithIncomingGradientTensor:c.in(n, 0) sourceTensor:c.in(n, 1) outputShape:mps_shape(w) forwardConvolutionDescriptor:conv2d_descriptor(p) name:nil];  // macOS 11.0
  return [c.g convolution3DWeightsGradientWithIncomingGradientTensor:c.in(n, 0) sourceTensor:c.in(n, 1) outputShapeTensor:shape_constant(c.g, w) forwardConvolutionDescriptor:conv3d_descriptor(p) name:nil];  // macOS 13.2
}

}  // namespace mps_ext::runtime::mpsgraph
