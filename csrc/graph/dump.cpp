// Text forms of a Graph: JSON (machine-readable, the "viewer" export) and
// Graphviz DOT.
#include <cmath>
#include <sstream>

#include "graph/graph.h"

namespace mps_ext::graph {
namespace {
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string attr_json(const Attr& a) {
  std::ostringstream os;
  std::visit(
      [&os](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) os << quoted(v);
        else if constexpr (std::is_same_v<T, std::vector<int64_t>>) os << shape_str(v);
        else if constexpr (std::is_same_v<T, double>) {
          // JSON has no inf/nan literals: Python's json module reads these.
          if (std::isnan(v)) os << "NaN";
          else if (std::isinf(v)) os << (v > 0 ? "Infinity" : "-Infinity");
          else os << v;
        } else os << v;
      },
      a);
  return os.str();
}
}  // namespace

std::string Graph::to_json() const {
  std::ostringstream os;
  os << "{\"nodes\": [";
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    os << (i ? ", " : "") << "{\"id\": " << i << ", \"op\": " << quoted(kind_name(n.kind));
    if (!n.name.empty()) os << ", \"name\": " << quoted(n.name);
    os << ", \"inputs\": [";
    for (size_t j = 0; j < n.inputs.size(); ++j) os << (j ? ", " : "") << n.inputs[j];
    os << "], \"dtype\": " << quoted(dtype_name(n.type.dtype)) << ", \"shape\": " << shape_str(n.type.shape)
       << ", \"attrs\": {";
    bool first = true;
    for (const auto& [k, v] : n.attrs) {
      os << (first ? "" : ", ") << quoted(k) << ": " << attr_json(v);
      first = false;
    }
    os << "}";
    if (n.kind == NodeKind::Kernel) os << ", \"decomposition\": " << decomposition(n).to_json();
    os << "}";
  }
  os << "], \"outputs\": [";
  for (size_t i = 0; i < outputs_.size(); ++i) os << (i ? ", " : "") << outputs_[i];
  os << "]}";
  return os.str();
}

namespace {
// A kernel node's decomposition, drawn as a dashed cluster of its own nodes
// (ids prefixed with the kernel's) beside the kernel node.
void dot_nodes(const Graph& g, const std::string& prefix, std::ostringstream& os);
}  // namespace

std::string Graph::to_dot() const {
  std::ostringstream os;
  os << "digraph mps_ext {\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\"];\n";
  dot_nodes(*this, "n", os);
  for (size_t i = 0; i < outputs_.size(); ++i)
    os << "  out" << i << " [label=\"output " << i << "\", shape=plaintext];\n  n" << outputs_[i]
       << " -> out" << i << ";\n";
  os << "}\n";
  return os.str();
}

namespace {
void dot_nodes(const Graph& g, const std::string& prefix, std::ostringstream& os) {
  const auto& nodes_ = g.nodes();
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    std::string label = std::string(kind_name(n.kind));
    if (!n.name.empty()) label += " '" + n.name + "'";
    for (const auto& [k, v] : n.attrs) label += "\\n" + k + "=" + attr_json(v);
    label += std::string("\\n") + dtype_name(n.type.dtype) + shape_str(n.type.shape);
    std::string escaped;
    for (char c : label) escaped += c == '"' ? std::string("\\\"") : std::string(1, c);
    os << "  " << prefix << i << " [label=\"" << escaped << "\"";
    if (is_input(n.kind)) os << ", shape=ellipse";
    os << "];\n";
    for (int in : n.inputs) os << "  " << prefix << in << " -> " << prefix << i << ";\n";
    if (n.kind == NodeKind::Kernel) {
      std::string sub = prefix + std::to_string(i) + "_";
      os << "  subgraph cluster_" << sub << " {\n  label=\"decomposition of " << n.str_attr("kernel")
         << "\"; style=dashed;\n";
      dot_nodes(g.decomposition(n), sub, os);
      os << "  }\n  " << sub << g.decomposition(n).outputs().at(0) << " -> " << prefix << i
         << " [style=dashed];\n";
    }
  }
}
}  // namespace

}  // namespace mps_ext::graph
