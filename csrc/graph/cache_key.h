// The key a compiled graph is cached under: op name, input dtypes and
// (possibly dynamic) shapes, and the attributes that change the graph.
#pragma once

#include <string>
#include <string_view>

#include "graph/graph.h"

namespace mps_ext::graph {

class CacheKey {
 public:
  explicit CacheKey(std::string_view op) : key_(op) {}
  CacheKey& input(DType dtype, const Shape& shape) {  // on every op call: no streams
    key_ += '|';
    key_ += dtype_name(dtype);
    key_ += '[';
    for (size_t i = 0; i < shape.size(); ++i) {
      if (i) key_ += ',';
      key_ += std::to_string(shape[i]);
    }
    key_ += ']';
    return *this;
  }
  template <typename T>
  CacheKey& attr(std::string_view name, const T& value) {
    key_ += '|';
    key_ += name;
    key_ += '=';
    if constexpr (std::is_convertible_v<T, std::string_view>) key_ += value;
    else key_ += std::to_string(value);
    return *this;
  }
  const std::string& str() const { return key_; }

 private:
  std::string key_;
};

}  // namespace mps_ext::graph
