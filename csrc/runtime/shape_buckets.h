// Which input-shape set the mpsgraph runtime compiles an executable for.
// Plain C++ (no ATen, no Apple frameworks) so the policy is tested on Linux.
//
// A dim the graph declares static is always its size. A dim the op declares
// dynamic (GraphSpec::input(t, {dims}) / input_dynamic) is compiled at its
// concrete size for the first `specializations` distinct sizes seen, so
// lowerings see real sizes where shapes are stable; after that it falls into
// the dynamic bucket: one executable compiled with that dim unknown (-1)
// serves every further size. A loop whose sequence length grows by one each
// step therefore compiles at most specializations + 1 executables per graph,
// not one per step (MPS_EXT_SHAPE_SPECIALIZATIONS, default 8; 0 compiles
// every dynamic dim as unknown at once).
#pragma once

#include <set>
#include <vector>

#include "graph/graph.h"

namespace mps_ext::runtime {

int shape_specializations();  // MPS_EXT_SHAPE_SPECIALIZATIONS, default 8

class ShapeBuckets {
 public:
  // `declared`: the graph's input shapes (kDynamic marks dynamic dims).
  explicit ShapeBuckets(std::vector<graph::Shape> declared, int specializations = shape_specializations());
  // The shapes to compile `concrete` inputs with: concrete sizes, except
  // dynamic dims that have moved to the dynamic bucket (kDynamic). Not
  // thread-safe (the executable calls it under its lock).
  std::vector<graph::Shape> key(const std::vector<graph::Shape>& concrete);

 private:
  std::vector<graph::Shape> declared_;
  std::vector<std::vector<std::set<int64_t>>> seen_;  // per input, per dim: sizes compiled concretely
  size_t specializations_;
};

}  // namespace mps_ext::runtime
