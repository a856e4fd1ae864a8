// The mpsgraph lowering's registrations (lowerings.def) as data, for the
// Linux build (mps_ext._C._lowerings(), the tests) and the .mm alike. Plain
// C++: compiled everywhere.
#pragma once

#include <cstddef>

#include "graph/graph.h"

namespace mps_ext::graph {

struct LoweringInfo {
  NodeKind kind;
  const char* kind_id;   // the C++ identifier ("SliceUpdate"), as in docs/mpsgraph-lowering.md
  const char* selector;  // primary MPSGraph selector
  const char* macos;     // its minimum macOS
};

inline constexpr LoweringInfo kLoweringTable[] = {
#define MPS_EXT_LOWERING(kind, selector, macos) {NodeKind::kind, #kind, selector, macos},
#include "runtime/mpsgraph/lowerings.def"
};


// Every kind exactly once, in NodeKind order (the lowering indexes by kind).
constexpr bool lowerings_cover_every_kind() {
  if (sizeof(kLoweringTable) / sizeof(kLoweringTable[0]) != kNumNodeKinds) return false;
  for (size_t i = 0; i < kNumNodeKinds; ++i)
    if (static_cast<size_t>(kLoweringTable[i].kind) != i) return false;
  return true;
}
static_assert(lowerings_cover_every_kind(), "lowerings.def must list every node kind of node_kinds.def once, in order");

}  // namespace mps_ext::graph
