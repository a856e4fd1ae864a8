// How the mpsgraph lowering maps an IR pooling node onto MPSGraph's 4-D
// pooling (lowering.mm): plain C++, so Linux tests check it against torch by
// emulating MPSGraph's documented semantics (tests/test_native_pooling.py).
//
// The data is viewed as rank 5 [N, C, D, H, W] (1-d and 2-d pools get unit
// leading spatial dims); the descriptor covers the innermost four dims, C with
// a unit window. Padding is explicit and never uses MPSGraph's ceilMode: the
// after-padding of each dim is extended (or shrunk to 0) so that floor-mode
// output sizes equal torch's, ceil_mode included. Average pooling runs with
// includeZeroPadToAverage = NO (documented: the window sum over samples that
// come from the input, divided by their number); `correction` maps that to
// torch's divisor per output position (count_include_pad counts padding
// inside the padded input; divisor_override replaces both).
#pragma once

#include <algorithm>
#include <vector>

#include "graph/graph.h"

namespace mps_ext::runtime::mpsgraph {

struct PoolPlan {
  graph::Shape in5, out5;                          // rank-5 views of input and output
  std::vector<int64_t> kernel, stride, dilation;   // 4 entries: C, D, H, W
  std::vector<int64_t> padding;                    // 8 entries: before/after per dim
  std::vector<float> correction;                   // avg only: [D_out * H_out * W_out], row-major
  bool needs_correction = false;
};

inline graph::Shape pool_rank5(const graph::Shape& s) {
  graph::Shape v(s.begin(), s.begin() + 2);
  v.insert(v.end(), 5 - s.size(), 1);
  v.insert(v.end(), s.begin() + 2, s.end());
  return v;
}

inline PoolPlan pool_plan(const graph::PoolParams& p, const graph::Shape& input_shape, bool avg = false,
                          bool count_include_pad = true, int64_t divisor_override = 0) {
  PoolPlan plan;
  plan.in5 = pool_rank5(input_shape);
  size_t lead = 3 - p.kernel.size();  // unit spatial dims in front of the pooled ones
  plan.kernel = {1}, plan.stride = {1}, plan.dilation = {1}, plan.padding = {0, 0};
  graph::Shape out = {input_shape[0], input_shape[1]};
  for (size_t j = 0; j < p.kernel.size(); ++j) {
    int64_t in = input_shape[j + 2];
    int64_t o = graph::pool_output_size(in, p.kernel[j], p.stride[j], p.padding[j], p.dilation[j], p.ceil_mode);
    int64_t reach = (o - 1) * p.stride[j] + p.dilation[j] * (p.kernel[j] - 1) + 1;  // padded extent the windows cover
    plan.kernel.push_back(p.kernel[j]), plan.stride.push_back(p.stride[j]), plan.dilation.push_back(p.dilation[j]);
    plan.padding.push_back(p.padding[j]);
    plan.padding.push_back(std::max<int64_t>(0, reach - in - p.padding[j]));
    out.push_back(o);
  }
  for (size_t i = 0; i < lead; ++i) {  // unit dims go first (after C)
    plan.kernel.insert(plan.kernel.begin() + 1, 1), plan.stride.insert(plan.stride.begin() + 1, 1);
    plan.dilation.insert(plan.dilation.begin() + 1, 1), plan.padding.insert(plan.padding.begin() + 2, {0, 0});
  }
  plan.out5 = pool_rank5(out);
  if (!avg) return plan;
  const int64_t* os = plan.out5.data() + 2;
  plan.correction.resize(static_cast<size_t>(os[0] * os[1] * os[2]));
  for (size_t flat = 0; flat < plan.correction.size(); ++flat) {
    int64_t rest = static_cast<int64_t>(flat), valid = 1, padded = 1;
    for (int i = 2; i >= 0; --i) {
      int64_t o = rest % os[i];
      rest /= os[i];
      int64_t in = plan.in5[i + 2], k = plan.kernel[i + 1], s = plan.stride[i + 1], pad = plan.padding[2 * (i + 1)];
      int64_t start = o * s - pad, end = std::min(start + k, in + pad);
      padded *= end - start;
      valid *= std::min(end, in) - std::max<int64_t>(start, 0);
    }
    double divisor = divisor_override ? divisor_override : count_include_pad ? padded : valid;
    plan.correction[flat] = static_cast<float>(valid / divisor);
    plan.needs_correction |= plan.correction[flat] != 1.0f;
  }
  return plan;
}

}  // namespace mps_ext::runtime::mpsgraph
