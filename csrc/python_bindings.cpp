// The only file that includes <torch/extension.h>: the Python module
// mps_ext._C. Ops register themselves with the dispatcher (TORCH_LIBRARY) when
// the library loads; this module adds the non-op utilities and a thin binding
// of the graph builder (for tests and for exploring the IR).
#include <torch/extension.h>

#include "device/device.h"
#include "graph/node_spec.h"
#include "profiler/profiler.h"
#include "runtime/mpsgraph/lowering_table.h"
#include "runtime/mpsgraph/pool_plan.h"
#include "runtime/reference/executor.h"
#include "runtime/reference/fusion.h"
#include "runtime/reference/kernels.h"
#include "runtime/reference/node_eval.h"
#include "runtime/reference/output_allocator.h"
#include "runtime/runtime.h"
#include "runtime/shape_buckets.h"

namespace py = pybind11;
using namespace mps_ext;
using graph::Graph;
using graph::NodeKind;

namespace {
graph::DType dtype_arg(const py::object& dtype) {
  return runtime::to_graph_dtype(torch::python::detail::py_object_to_dtype(dtype));
}

// Python attrs: bool/int -> int64, float -> double, str, a sequence of ints,
// a torch.dtype -> its name.
graph::Attrs attr_map(const py::dict& attrs) {
  graph::Attrs out;
  for (const auto& [key, value] : attrs) {
    std::string name = py::cast<std::string>(key);
    if (py::isinstance<py::bool_>(value) || py::isinstance<py::int_>(value)) out[name] = py::cast<int64_t>(value);
    else if (py::isinstance<py::float_>(value)) out[name] = py::cast<double>(value);
    else if (py::isinstance<py::str>(value)) out[name] = py::cast<std::string>(value);
    else if (THPDtype_Check(value.ptr())) out[name] = std::string(graph::dtype_name(dtype_arg(py::reinterpret_borrow<py::object>(value))));
    else if (py::isinstance<py::sequence>(value)) out[name] = py::cast<std::vector<int64_t>>(value);
    else throw py::type_error("attr '" + name + "': expected an int, float, str, torch.dtype or a sequence of ints");
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "mps_ext native library: graph IR, runtimes and op registrations";
  // Malformed graphs (shape/dtype errors) surface as ValueError.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const graph::GraphError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.def("_cache_info", [] {
    auto info = runtime::cache_info();
    return py::make_tuple(info.hits, info.misses, info.size, info.maxsize, info.evictions);
  });
  m.def("_memo_hits", [] { return runtime::cache_info().memo_hits; });  // tests: hits no spec was built for
  // Direct entry points for the Python wrappers' eager path: a typed
  // dispatcher call skips torch.ops' Python argument matching (about half a
  // microsecond per call). Same dispatch keys, autograd and errors.
  m.def("_softshrink", [](const at::Tensor& self, double lambd) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("mps_ext::softshrink", "")
                         .typed<at::Tensor(const at::Tensor&, const at::Scalar&)>();
    return op.call(self, lambd);
  });
  m.def("_set_use_kernels", &runtime::set_use_kernels);
  m.def("_use_kernels", &runtime::use_kernels);
  m.def("_reference_kernels", &runtime::reference::kernel_names);
  m.def("_output_cache_info", [] {  // the reference runtime's result-block cache (output_allocator.h)
    auto i = runtime::reference::output_cache_info();
    return py::make_tuple(i.hits, i.misses, i.cached_bytes, i.max_bytes);
  });
  m.def("_output_cache_clear", &runtime::reference::output_cache_clear);
  m.def("_cache_clear", &runtime::cache_clear);
  m.def("_begin_capture", &runtime::begin_capture);
  m.def("_end_capture", [] {
    py::list out;
    for (const auto& c : runtime::end_capture())
      out.append(py::make_tuple(c.key, c.graph->to_json(), c.graph->to_dot()));
    return out;
  });
  // The mpsgraph runtime's compile-shape policy (runtime/shape_buckets.h): the
  // key each concrete shape set in `runs` compiles under, in order.
  m.def("_shape_bucket_keys", [](std::vector<graph::Shape> declared, const std::vector<std::vector<graph::Shape>>& runs,
                                 int specializations) {
    runtime::ShapeBuckets buckets(std::move(declared), specializations);
    std::vector<std::vector<graph::Shape>> keys;
    for (const auto& shapes : runs) keys.push_back(buckets.key(shapes));
    return keys;
  }, py::arg("declared"), py::arg("runs"), py::arg("specializations"));
  // Registered with atexit by mps_ext.device (device/device.h says why); the
  // engine's device thread may need the GIL to release the previous task.
  m.def("_flush_autograd_device_thread", &device::flush_autograd_device_thread,
        py::call_guard<py::gil_scoped_release>());
  m.def("_device_runtime", [] { return runtime::kind_name(runtime::device_runtime()); });
  m.def("_mpsgraph_built", &runtime::mpsgraph_built);
  // The MPSGraph scaling mode an FFT node lowers to (graph::fft_scaling).
  m.def("_fft_scaling", [](const std::string& norm, bool inverse) {
    switch (graph::fft_scaling(norm, inverse)) {
      case graph::FFTScaling::None: return "none";
      case graph::FFTScaling::Size: return "size";
      case graph::FFTScaling::Unitary: return "unitary";
    }
    return "?";
  });
  // The mpsgraph lowering's registrations: (kind, selector, minimum macOS).
  m.def("_lowerings", [] {
    std::vector<std::tuple<std::string, std::string, std::string>> rows;
    for (const auto& l : graph::kLoweringTable) rows.emplace_back(l.kind_id, l.selector, l.macos);
    return rows;
  });
  // The mpsgraph lowering's plan for a pooling node (pool_plan.h), for Linux tests.
  m.def("_pool_plan", [](std::vector<int64_t> kernel, std::vector<int64_t> stride, std::vector<int64_t> padding,
                         std::vector<int64_t> dilation, bool ceil_mode, std::vector<int64_t> input_shape, bool avg,
                         bool count_include_pad, int64_t divisor_override) {
    auto plan = runtime::mpsgraph::pool_plan({kernel, stride, padding, dilation, ceil_mode}, input_shape, avg,
                                             count_include_pad, divisor_override);
    py::dict d;
    d["in5"] = plan.in5, d["out5"] = plan.out5, d["kernel"] = plan.kernel, d["stride"] = plan.stride;
    d["dilation"] = plan.dilation, d["padding"] = plan.padding, d["correction"] = plan.correction;
    return d;
  });
  m.def("_node_kinds", [] {
    std::vector<std::string> kinds;
#define MPS_EXT_NODE(kind, name) kinds.push_back(name);
#include "graph/node_kinds.def"
    return kinds;
  });
  // Kinds missing a spec (graph/node_spec.h) or a reference evaluation
  // (runtime/reference/node_eval.h): empty when every kind is complete.
  m.def("_incomplete_node_kinds", [] {
    std::vector<std::string> missing;
#define MPS_EXT_NODE(kind, name)                                                                            \
  if (!graph::find_node_spec(NodeKind::kind)) missing.push_back(std::string(name) + ": spec");             \
  if (!runtime::reference::has_node_eval(NodeKind::kind)) missing.push_back(std::string(name) + ": eval");
#include "graph/node_kinds.def"
    return missing;
  });

  // Profiler (csrc/profiler; mps_ext/profiler.py builds the Python API on these).
  m.def("_profiler_start", &profiler::start, py::arg("mode"), py::arg("trace_file"));
  m.def("_profiler_stop", &profiler::stop);
  m.def("_profiler_active", &profiler::active);
  m.def("_profiler_trace_json", &profiler::chrome_trace_json);
  m.def("_profiler_dropped", &profiler::dropped);
  m.def("_profiler_events", [] {
    py::list out;
    for (const auto& e : profiler::events()) {
      py::list inputs;
      for (const auto& t : e.inputs)
        inputs.append(py::make_tuple(py::tuple(py::cast(t.shape)), py::cast(t.dtype),
                                     c10::DeviceTypeName(t.device, /*lower_case=*/true)));
      out.append(py::make_tuple(e.name, profiler::kind_name(e.kind), e.instant ? "event" : "interval",
                                e.graph_key, e.runtime, e.cache_hit, e.run_count, inputs, e.bytes,
                                e.cpu_start_ns, e.cpu_end_ns, e.gpu_ms, e.thread_id));
    }
    return out;
  });

  // Tensors are node ids (ints) on the Python side.
  auto T = [](int id) { return graph::Tensor{id}; };
  py::class_<Graph, std::shared_ptr<Graph>>(m, "Graph")
      .def(py::init<>())
      .def("placeholder", ([](Graph& g, graph::Shape s, py::object dt, std::string name) {
             return g.placeholder(s, dtype_arg(dt), name).id;
           }), py::arg("shape"), py::arg("dtype"), py::arg("name") = "")
      .def("variable", ([](Graph& g, graph::Shape s, py::object dt, std::string name) {
             return g.variable(s, dtype_arg(dt), name).id;
           }), py::arg("shape"), py::arg("dtype"), py::arg("name") = "")
      .def("constant", ([](Graph& g, double v, py::object dt, graph::Shape s) {
             return g.constant(v, dtype_arg(dt), s).id;
           }), py::arg("value"), py::arg("dtype"), py::arg("shape") = graph::Shape{})
      // Every other kind: mps_ext.graph.Graph spells it g.<kind>(*inputs, **attrs).
      .def("apply", ([T](Graph& g, const std::string& kind, const std::vector<int>& inputs, const py::dict& attrs) {
             std::vector<graph::Tensor> in;
             for (int id : inputs) in.push_back(T(id));
             return g.apply(graph::kind_from_name(kind), in, attr_map(attrs)).id;
           }), py::arg("kind"), py::arg("inputs"), py::arg("attrs") = py::dict())
      .def("attrs", [T](const Graph& g, int x) {
        py::dict out;
        for (const auto& [k, v] : g.node(x).attrs) std::visit([&](const auto& val) { out[py::str(k)] = val; }, v);
        return out;
      })
      .def("output", [T](Graph& g, int x) { g.output(T(x)); })
      .def("type", [T](const Graph& g, int x) {
        const auto& t = g.type(T(x));
        return py::make_tuple(graph::dtype_name(t.dtype), t.shape);
      })
      .def("with_input_shapes", &Graph::with_input_shapes)
      .def("to_json", &Graph::to_json)
      .def("to_dot", &Graph::to_dot);

  // The reference runtime's steps for a graph: a fused region is a list of
  // node ids, a single node is its id.
  m.def("_fusion_plan", [](std::shared_ptr<Graph> g) {
    auto plan = runtime::reference::plan_fusion(*g);
    py::list out;
    for (const auto& s : plan.steps) {
      if (s.region >= 0) out.append(py::cast(plan.regions[s.region].nodes));
      else out.append(s.node);
    }
    return out;
  });
  // Runs a graph on CPU tensors with the reference runtime (uncached).
  m.def("_run_reference", [](std::shared_ptr<Graph> g, std::vector<at::Tensor> inputs, bool fuse, bool use_kernels) {
    return runtime::reference::compile(g, fuse, use_kernels)->run(inputs);
  }, py::arg("graph"), py::arg("inputs"), py::arg("fuse") = true, py::arg("use_kernels") = true);
}
