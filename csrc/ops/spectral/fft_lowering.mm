// The FFT kinds lowered to MPSGraph (macOS 14 FFT ops).
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
// The node carries the descriptor's fields (graph.cpp derives them from norm).
MPSGraphFFTDescriptor* fft_descriptor(const Node& n) {
  MPSGraphFFTDescriptor* d = [MPSGraphFFTDescriptor descriptor];  // macOS 14.0
  d.inverse = n.int_attr("inverse") != 0;
  const std::string& scaling = n.str_attr("scaling");
  d.scalingMode = scaling == "none" ? MPSGraphFFTScalingModeNone
                  : scaling == "size" ? MPSGraphFFTScalingModeSize : MPSGraphFFTScalingModeUnitary;
  return d;
}
}  // namespace

MPSGraphTensor* lower_FFT(const LowerCtx& c, const Node& n) { return [c.g fastFourierTransformWithTensor:c.in(n, 0) axes:ns_ints(n.ints_attr("axes")) descriptor:fft_descriptor(n) name:nil]; }  // macOS 14.0
MPSGraphTensor* lower_RFFT(const LowerCtx& c, const Node& n) { return [c.g realToHermiteanFFTWithTensor:c.in(n, 0) axes:ns_ints(n.ints_attr("axes")) descriptor:fft_descriptor(n) name:nil]; }  // macOS 14.0
MPSGraphTensor* lower_IRFFT(const LowerCtx& c, const Node& n) {
  MPSGraphFFTDescriptor* d = fft_descriptor(n);
  d.roundToOddHermitean = n.int_attr("round_to_odd") != 0;  // odd real size: (n-1)*2+1, else (n-1)*2
  return [c.g HermiteanToRealFFTWithTensor:c.in(n, 0) axes:ns_ints(n.ints_attr("axes")) descriptor:d name:nil];  // macOS 14.0
}

}  // namespace mps_ext::runtime::mpsgraph
