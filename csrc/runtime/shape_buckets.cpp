#include "runtime/shape_buckets.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace mps_ext::runtime {

int shape_specializations() {
  static const int n = [] {
    const char* v = std::getenv("MPS_EXT_SHAPE_SPECIALIZATIONS");
    if (!v || !*v) return 8;
    char* end = nullptr;
    long parsed = std::strtol(v, &end, 10);
    if (*end || parsed < 0)
      throw std::invalid_argument(std::string("MPS_EXT_SHAPE_SPECIALIZATIONS must be an integer >= 0, got '") + v + "'");
    return static_cast<int>(parsed);
  }();
  return n;
}

ShapeBuckets::ShapeBuckets(std::vector<graph::Shape> declared, int specializations)
    : declared_(std::move(declared)), specializations_(static_cast<size_t>(std::max(specializations, 0))) {
  for (const graph::Shape& s : declared_) seen_.emplace_back(s.size());
}

std::vector<graph::Shape> ShapeBuckets::key(const std::vector<graph::Shape>& concrete) {
  if (concrete.size() != declared_.size())
    throw graph::GraphError("the graph has " + std::to_string(declared_.size()) + " inputs, got " +
                            std::to_string(concrete.size()) + " shapes");
  std::vector<graph::Shape> key = concrete;
  for (size_t i = 0; i < concrete.size(); ++i) {
    if (concrete[i].size() != declared_[i].size())
      throw graph::GraphError("input " + std::to_string(i) + " has shape " + graph::shape_str(concrete[i]) +
                              ", the graph expects " + graph::shape_str(declared_[i]));
    for (size_t d = 0; d < concrete[i].size(); ++d) {
      if (declared_[i][d] != graph::kDynamic) continue;
      std::set<int64_t>& seen = seen_[i][d];
      if (seen.count(concrete[i][d])) continue;
      if (seen.size() < specializations_) seen.insert(concrete[i][d]);
      else key[i][d] = graph::kDynamic;
    }
  }
  return key;
}

}  // namespace mps_ext::runtime
