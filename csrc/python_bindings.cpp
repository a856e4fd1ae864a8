// The only file that includes <torch/extension.h>: the Python module
// mps_ext._C. Ops register themselves with the dispatcher (TORCH_LIBRARY) when
// the library loads; this module adds the non-op utilities.
#include <torch/extension.h>

#include "runtime/runtime.h"

namespace py = pybind11;
using namespace mps_ext;

PYBIND11_MODULE(_C, m) {
  m.doc() = "mps_ext native library: graph IR, runtimes and op registrations";

  m.def("_cache_info", [] {
    auto info = runtime::cache_info();
    return py::make_tuple(info.hits, info.misses, info.size);
  });
  m.def("_cache_clear", &runtime::cache_clear);
  m.def("_begin_capture", &runtime::begin_capture);
  m.def("_end_capture", [] {
    py::list out;
    for (const auto& c : runtime::end_capture())
      out.append(py::make_tuple(c.key, c.graph->to_json(), c.graph->to_dot()));
    return out;
  });
  m.def("_device_runtime", [] { return runtime::kind_name(runtime::device_runtime()); });
  m.def("_mpsgraph_built", &runtime::mpsgraph_built);
  m.def("_node_kinds", [] {
    std::vector<std::string> kinds;
#define MPS_EXT_NODE(kind, name) kinds.push_back(name);
#include "graph/node_kinds.def"
    return kinds;
  });
}
