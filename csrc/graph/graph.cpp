#include "graph/graph.h"

#include "graph/node_spec.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace mps_ext::graph {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::Bool: return "bool";
    case DType::UInt8: return "uint8";
    case DType::Int8: return "int8";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Complex64: return "complex64";
    case DType::Complex128: return "complex128";
  }
  return "?";
}

bool is_floating(DType t) {
  return t == DType::Float16 || t == DType::BFloat16 || t == DType::Float32 ||
         t == DType::Float64;
}

DType dtype_from_name(const std::string& name) {
  for (DType t : {DType::Bool, DType::UInt8, DType::Int8, DType::Int32, DType::Int64, DType::Float16,
                  DType::BFloat16, DType::Float32, DType::Float64, DType::Complex64, DType::Complex128})
    if (name == dtype_name(t)) return t;
  throw GraphError("unknown dtype '" + name + "'");
}

FFTScaling fft_scaling(const std::string& norm, bool inverse) {
  if (norm == "ortho") return FFTScaling::Unitary;
  if (norm == "backward") return inverse ? FFTScaling::Size : FFTScaling::None;
  if (norm == "forward") return inverse ? FFTScaling::None : FFTScaling::Size;
  throw GraphError("fft: norm must be \"backward\", \"forward\" or \"ortho\", got \"" + norm + "\"");
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? "," : "") << s[i];
  os << ']';
  return os.str();
}

const char* kind_name(NodeKind k) {
  switch (k) {
#define MPS_EXT_NODE(kind, name) \
  case NodeKind::kind:           \
    return name;
#include "graph/node_kinds.def"
  }
  return "?";
}

NodeKind kind_from_name(const std::string& name) {
#define MPS_EXT_NODE(kind, str) \
  if (name == str) return NodeKind::kind;
#include "graph/node_kinds.def"
  throw GraphError("unknown node kind '" + name + "'");
}

bool is_unary(NodeKind k) {
  switch (k) {
#define MPS_EXT_UNARY(kind, name) case NodeKind::kind:
#include "graph/node_kinds.def"
    return true;
    default: return false;
  }
}
bool is_binary(NodeKind k) {
  switch (k) {
#define MPS_EXT_BINARY(kind, name) case NodeKind::kind:
#include "graph/node_kinds.def"
    return true;
    default: return false;
  }
}
bool is_compare(NodeKind k) {
  switch (k) {
#define MPS_EXT_COMPARE(kind, name) case NodeKind::kind:
#include "graph/node_kinds.def"
    return true;
    default: return false;
  }
}
bool is_reduce(NodeKind k) {
  switch (k) {
#define MPS_EXT_REDUCE(kind, name) case NodeKind::kind:
#include "graph/node_kinds.def"
    return true;
    default: return false;
  }
}

int64_t Node::int_attr(std::string_view key) const { return graph::int_attr(attrs, key, kind_name(kind)); }
double Node::float_attr(std::string_view key) const { return graph::float_attr(attrs, key, kind_name(kind)); }
const std::vector<int64_t>& Node::ints_attr(std::string_view key) const {
  return graph::ints_attr(attrs, key, kind_name(kind));
}
const std::string& Node::str_attr(std::string_view key) const { return graph::str_attr(attrs, key, kind_name(kind)); }

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da == db || db == 1) out[i] = da;
    else if (da == 1) out[i] = db;
    else if (da == kDynamic) out[i] = db;
    else if (db == kDynamic) out[i] = da;
    else fail("shapes " + shape_str(a) + " and " + shape_str(b) + " cannot be broadcast");
  }
  return out;
}

ConvParams conv_params(const Node& n) {
  return {n.ints_attr("stride"), n.ints_attr("padding"), n.ints_attr("dilation"), n.int_attr("groups")};
}

int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation, bool ceil_mode) {
  int64_t span = in + 2 * padding - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int64_t out = (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;  // floor division
  if (ceil_mode && (out - 1) * stride >= in + padding) --out;  // the last window starts inside
  return out;
}

PoolParams pool_params(const Node& n) {
  return {n.ints_attr("kernel"), n.ints_attr("stride"), n.ints_attr("padding"), n.ints_attr("dilation"),
          n.int_attr("ceil_mode") != 0};
}

const Node& Graph::checked(Tensor t, const char* what) const {
  if (t.id < 0 || t.id >= static_cast<int>(nodes_.size()))
    fail(std::string(what) + ": tensor does not belong to this graph");
  return nodes_[t.id];
}

Tensor Graph::add_node(NodeKind kind, std::vector<int> inputs, TensorType type, Attrs attrs, std::string name) {
  nodes_.push_back(Node{kind, std::move(inputs), std::move(type), std::move(attrs), std::move(name)});
  return Tensor{static_cast<int>(nodes_.size()) - 1};
}

Tensor Graph::apply(NodeKind kind, const std::vector<Tensor>& inputs, Attrs attrs) {
  const NodeSpec* spec = find_node_spec(kind);
  if (!spec) fail(std::string("no spec is registered for node kind ") + kind_name(kind));
  int n = static_cast<int>(inputs.size());
  if (n < spec->min_inputs || (spec->max_inputs >= 0 && n > spec->max_inputs))
    fail(std::string(kind_name(kind)) + ": takes " + std::to_string(spec->min_inputs) +
         (spec->max_inputs == spec->min_inputs ? ""
          : spec->max_inputs < 0                ? " or more"
                                                : " to " + std::to_string(spec->max_inputs)) +
         " inputs, got " + std::to_string(n));
  std::vector<TensorType> types;
  std::vector<int> ids;
  types.reserve(inputs.size());
  ids.reserve(inputs.size());
  for (Tensor t : inputs) {
    types.push_back(checked(t, kind_name(kind)).type);
    ids.push_back(t.id);
  }
  if (kind == NodeKind::Assign && nodes_[ids[0]].kind != NodeKind::Variable) fail("assign: target must be a variable");
  TensorType type = spec->infer(kind, types, attrs);
  return add_node(kind, std::move(ids), std::move(type), std::move(attrs));
}

// --- builder spellings: each is apply() with the kind's attrs ---------------------
Tensor Graph::placeholder(Shape shape, DType dtype, std::string name) {
  Tensor t = add_node(NodeKind::Placeholder, {}, {dtype, std::move(shape)}, {{"index", int64_t{num_inputs()}}},
                      std::move(name));
  inputs_.push_back(t.id);
  return t;
}

Tensor Graph::variable(Shape shape, DType dtype, std::string name) {
  Tensor t = add_node(NodeKind::Variable, {}, {dtype, std::move(shape)}, {{"index", int64_t{num_inputs()}}},
                      std::move(name));
  inputs_.push_back(t.id);
  return t;
}

namespace {
Attr dtype_value(DType t) { return std::string(dtype_name(t)); }
}  // namespace

Tensor Graph::constant(double value, DType dtype, Shape shape) {
  return apply(NodeKind::Constant, {}, {{"value", value}, {"dtype", dtype_value(dtype)}, {"shape", std::move(shape)}});
}
Tensor Graph::assign(Tensor variable, Tensor value) { return apply(NodeKind::Assign, {variable, value}); }
Tensor Graph::cast(Tensor x, DType dtype) { return apply(NodeKind::Cast, {x}, {{"dtype", dtype_value(dtype)}}); }
Tensor Graph::reshape(Tensor x, Shape shape) { return apply(NodeKind::Reshape, {x}, {{"shape", std::move(shape)}}); }
Tensor Graph::transpose(Tensor x, std::vector<int64_t> perm) {
  return apply(NodeKind::Transpose, {x}, {{"perm", std::move(perm)}});
}
Tensor Graph::slice(Tensor x, std::vector<int64_t> starts, std::vector<int64_t> ends, std::vector<int64_t> strides) {
  return apply(NodeKind::Slice, {x}, {{"starts", std::move(starts)}, {"ends", std::move(ends)}, {"strides", std::move(strides)}});
}
Tensor Graph::slice_update(Tensor data, Tensor update, std::vector<int64_t> starts, std::vector<int64_t> ends,
                           std::vector<int64_t> strides) {
  return apply(NodeKind::SliceUpdate, {data, update},
               {{"starts", std::move(starts)}, {"ends", std::move(ends)}, {"strides", std::move(strides)}});
}
Tensor Graph::slice_update_at(Tensor data, Tensor update, Tensor starts) {
  return apply(NodeKind::SliceUpdate, {data, update, starts});
}
Tensor Graph::concat(const std::vector<Tensor>& xs, int64_t axis) {
  if (xs.empty()) fail("concat: needs at least one tensor");
  return apply(NodeKind::Concat, xs, {{"axis", axis}});
}
Tensor Graph::broadcast(Tensor x, Shape shape) { return apply(NodeKind::Broadcast, {x}, {{"shape", std::move(shape)}}); }
Tensor Graph::unary(NodeKind kind, Tensor x) {
  if (!is_unary(kind)) fail(std::string(kind_name(kind)) + " is not a unary op");
  return apply(kind, {x});
}
Tensor Graph::binary(NodeKind kind, Tensor a, Tensor b) {
  if (!is_binary(kind)) fail(std::string(kind_name(kind)) + " is not a binary op");
  return apply(kind, {a, b});
}
Tensor Graph::select(Tensor predicate, Tensor on_true, Tensor on_false) {
  return apply(NodeKind::Select, {predicate, on_true, on_false});
}
Tensor Graph::reduce(NodeKind kind, Tensor x, std::vector<int64_t> axes) {
  if (!is_reduce(kind)) fail(std::string(kind_name(kind)) + " is not a reduction");
  return apply(kind, {x}, {{"axes", std::move(axes)}});
}
Tensor Graph::softmax(Tensor x, int64_t axis) { return apply(NodeKind::Softmax, {x}, {{"axis", axis}}); }
Tensor Graph::matmul(Tensor a, Tensor b) { return apply(NodeKind::MatMul, {a, b}); }
Tensor Graph::iota(Shape shape, int64_t axis, DType dtype) {
  return apply(NodeKind::Iota, {}, {{"shape", std::move(shape)}, {"axis", axis}, {"dtype", dtype_value(dtype)}});
}
Tensor Graph::random_uniform(Tensor state, Shape shape) {
  return apply(NodeKind::RandomUniform, {state}, {{"shape", std::move(shape)}});
}
// Indexing and sorting: specs in csrc/ops/aten/indexing_nodes.cpp.
Tensor Graph::gather_along_axis(Tensor x, Tensor index, int64_t axis) {
  return apply(NodeKind::GatherAlongAxis, {x, index}, {{"axis", axis}});
}
Tensor Graph::scatter_along_axis(Tensor data, Tensor updates, Tensor index, int64_t axis, const std::string& mode) {
  return apply(NodeKind::ScatterAlongAxis, {data, updates, index}, {{"axis", axis}, {"mode", mode}});
}
Tensor Graph::gather(Tensor x, Tensor index, int64_t axis) {
  return apply(NodeKind::Gather, {x, index}, {{"axis", axis}});
}
Tensor Graph::scatter(Tensor data, Tensor updates, Tensor index, int64_t axis, const std::string& mode) {
  return apply(NodeKind::Scatter, {data, updates, index}, {{"axis", axis}, {"mode", mode}});
}
Tensor Graph::arg_sort(Tensor x, int64_t axis, bool descending) {
  return apply(NodeKind::ArgSort, {x}, {{"axis", axis}, {"descending", int64_t{descending ? 1 : 0}}});
}
Tensor Graph::dequantize(Tensor q, Tensor scale, Tensor zero_point, DType dtype) {
  return apply(NodeKind::Dequantize, {q, scale, zero_point}, {{"dtype", dtype_value(dtype)}});
}
Tensor Graph::dequantize_lut(Tensor indices, Tensor lut) { return apply(NodeKind::DequantizeLUT, {indices, lut}); }
Tensor Graph::scaled_dot_product_attention(Tensor q, Tensor k, Tensor v, std::optional<Tensor> mask,
                                           std::optional<double> scale, bool is_causal) {
  std::vector<Tensor> inputs = {q, k, v};
  if (mask) inputs.push_back(*mask);
  Attrs attrs = {{"is_causal", int64_t{is_causal ? 1 : 0}}};
  if (scale) attrs["scale"] = *scale;
  return apply(NodeKind::ScaledDotProductAttention, inputs, std::move(attrs));
}
Tensor Graph::fft(Tensor x, std::vector<int64_t> axes, bool inverse, const std::string& norm) {
  return apply(NodeKind::FFT, {x}, {{"axes", std::move(axes)}, {"inverse", int64_t{inverse ? 1 : 0}}, {"norm", norm}});
}
Tensor Graph::rfft(Tensor x, std::vector<int64_t> axes, const std::string& norm) {
  return apply(NodeKind::RFFT, {x}, {{"axes", std::move(axes)}, {"norm", norm}});
}
Tensor Graph::irfft(Tensor x, std::vector<int64_t> axes, const std::string& norm, int64_t last_dim_size) {
  return apply(NodeKind::IRFFT, {x}, {{"axes", std::move(axes)}, {"norm", norm}, {"last_dim_size", last_dim_size}});
}

namespace {
Attrs conv_attrs(const ConvParams& p) {
  return {{"stride", p.stride}, {"padding", p.padding}, {"dilation", p.dilation}, {"groups", p.groups}};
}
}  // namespace

Tensor Graph::convolution(Tensor input, Tensor weight, const ConvParams& p) {
  return apply(NodeKind::Convolution, {input, weight}, conv_attrs(p));
}
Tensor Graph::convolution(Tensor input, Tensor weight, Tensor bias, const ConvParams& p) {
  return apply(NodeKind::Convolution, {input, weight, bias}, conv_attrs(p));
}
Tensor Graph::convolution_data_gradient(Tensor grad_output, Tensor weight, Shape input_shape, const ConvParams& p) {
  Attrs attrs = conv_attrs(p);
  attrs["input_shape"] = std::move(input_shape);
  return apply(NodeKind::ConvolutionDataGradient, {grad_output, weight}, std::move(attrs));
}
Tensor Graph::convolution_weight_gradient(Tensor grad_output, Tensor input, Shape weight_shape, const ConvParams& p) {
  Attrs attrs = conv_attrs(p);
  attrs["weight_shape"] = std::move(weight_shape);
  return apply(NodeKind::ConvolutionWeightGradient, {grad_output, input}, std::move(attrs));
}

namespace {
Attrs pool_attrs(const PoolParams& p) {
  return {{"kernel", p.kernel}, {"stride", p.stride}, {"padding", p.padding}, {"dilation", p.dilation},
          {"ceil_mode", int64_t{p.ceil_mode ? 1 : 0}}};
}
Attrs avg_pool_attrs(const PoolParams& p, bool count_include_pad, int64_t divisor_override) {
  Attrs a = pool_attrs(p);
  a["count_include_pad"] = int64_t{count_include_pad ? 1 : 0};
  a["divisor_override"] = divisor_override;
  return a;
}
}  // namespace

Tensor Graph::max_pool(Tensor x, const PoolParams& p) { return apply(NodeKind::MaxPool, {x}, pool_attrs(p)); }
Tensor Graph::max_pool_indices(Tensor x, const PoolParams& p) {
  return apply(NodeKind::MaxPoolIndices, {x}, pool_attrs(p));
}
Tensor Graph::max_pool_gradient(Tensor grad_output, Tensor indices, Shape input_shape, const PoolParams& p) {
  Attrs attrs = pool_attrs(p);
  attrs["input_shape"] = std::move(input_shape);
  return apply(NodeKind::MaxPoolGradient, {grad_output, indices}, std::move(attrs));
}
Tensor Graph::avg_pool(Tensor x, const PoolParams& p, bool count_include_pad, int64_t divisor_override) {
  return apply(NodeKind::AvgPool, {x}, avg_pool_attrs(p, count_include_pad, divisor_override));
}
Tensor Graph::avg_pool_gradient(Tensor grad_output, Tensor x, const PoolParams& p, bool count_include_pad,
                                int64_t divisor_override) {
  return apply(NodeKind::AvgPoolGradient, {grad_output, x}, avg_pool_attrs(p, count_include_pad, divisor_override));
}

Tensor Graph::kernel(const std::string& name, const std::vector<Tensor>& inputs, Attrs attrs,
                     const Decomposition& decomposition) {
  if (name.empty()) fail("kernel: needs a name");
  auto sub = std::make_shared<Graph>();
  std::vector<Tensor> sub_inputs;
  std::vector<int> ids;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TensorType& t = checked(inputs[i], "kernel").type;
    sub_inputs.push_back(sub->placeholder(t, "in" + std::to_string(i)));
    ids.push_back(inputs[i].id);
  }
  Tensor result = decomposition(*sub, sub_inputs);
  sub->output(result);
  TensorType type = sub->type(result);
  attrs["kernel"] = name;
  attrs["decomposition"] = static_cast<int64_t>(subgraphs_.size());
  subgraphs_.push_back(std::move(sub));
  return add_node(NodeKind::Kernel, std::move(ids), std::move(type), std::move(attrs));
}

std::vector<Tensor> Graph::kernels(const std::string& name, const std::vector<Tensor>& inputs, Attrs attrs,
                                   const MultiDecomposition& decomposition) {
  Graph scratch;  // how many results: the decomposition over stand-in inputs
  std::vector<Tensor> stand_ins;
  for (size_t i = 0; i < inputs.size(); ++i)
    stand_ins.push_back(scratch.placeholder(checked(inputs[i], "kernels").type, "in" + std::to_string(i)));
  const size_t count = decomposition(scratch, stand_ins).size();
  if (count == 0) fail("kernels: '" + name + "' has no results");
  std::vector<Tensor> results;
  for (size_t k = 0; k < count; ++k) {
    attrs["result"] = static_cast<int64_t>(k);
    results.push_back(kernel(k == 0 ? name : name + "#" + std::to_string(k), inputs, attrs,
                             [&](Graph& d, const std::vector<Tensor>& in) { return decomposition(d, in).at(k); }));
  }
  return results;
}

const Graph& Graph::decomposition(const Node& n) const {
  if (n.kind != NodeKind::Kernel) fail("decomposition: not a kernel node");
  return *subgraphs_.at(static_cast<size_t>(n.int_attr("decomposition")));
}

Graph Graph::inline_kernels(const std::function<bool(const std::string&)>& keep) const {
  Graph g;
  // Copies `src`'s nodes into g; `bound` gives the ids its inputs map to
  // (empty: src's own inputs become g's inputs). Returns src's id map.
  std::function<std::vector<int>(const Graph&, const std::vector<int>*)> copy =
      [&](const Graph& src, const std::vector<int>* bound) {
        std::vector<int> id(src.nodes_.size(), -1);
        for (size_t i = 0; i < src.nodes_.size(); ++i) {
          Node n = src.nodes_[i];
          if (bound && is_input(n.kind)) {
            id[i] = (*bound)[n.int_attr("index")];
            continue;
          }
          for (int& in : n.inputs) in = id[in];
          if (n.kind == NodeKind::Kernel) {
            const Graph& sub = src.decomposition(n);
            if (!keep(n.str_attr("kernel"))) {
              std::vector<int> sub_id = copy(sub, &n.inputs);
              id[i] = sub_id[sub.outputs_.at(0)];
              continue;
            }
            n.attrs["decomposition"] = static_cast<int64_t>(g.subgraphs_.size());
            g.subgraphs_.push_back(src.subgraphs_.at(static_cast<size_t>(src.nodes_[i].int_attr("decomposition"))));
          }
          bool input = is_input(n.kind);
          g.nodes_.push_back(std::move(n));
          id[i] = static_cast<int>(g.nodes_.size()) - 1;
          if (input) g.inputs_.push_back(id[i]);
        }
        return id;
      };
  std::vector<int> id = copy(*this, nullptr);
  for (int o : outputs_) g.outputs_.push_back(id[o]);
  return g;
}

Graph Graph::with_input_shapes(const std::vector<Shape>& shapes) const {
  if (static_cast<int>(shapes.size()) != num_inputs())
    fail("with_input_shapes: the graph has " + std::to_string(num_inputs()) + " inputs, got " +
         std::to_string(shapes.size()) + " shapes");
  Graph g;
  for (const Node& n : nodes_) {
    std::vector<Tensor> in;
    for (int id : n.inputs) in.push_back(Tensor{id});
    if (is_input(n.kind)) {
      const Shape& s = shapes[n.int_attr("index")];
      const Shape& declared = n.type.shape;
      bool fits = s.size() == declared.size();
      for (size_t d = 0; fits && d < s.size(); ++d) fits = declared[d] == kDynamic || declared[d] == s[d];
      if (!fits) fail("input '" + n.name + "' has shape " + shape_str(s) + ", the graph expects " + shape_str(declared));
      if (n.kind == NodeKind::Placeholder) g.placeholder(s, n.type.dtype, n.name);
      else g.variable(s, n.type.dtype, n.name);
    } else if (n.kind == NodeKind::Kernel) {
      // The decomposition, re-inferred for the new shapes, gives the type.
      std::vector<Shape> sub_shapes;
      for (int id : n.inputs) sub_shapes.push_back(g.nodes_[id].type.shape);
      auto sub = std::make_shared<Graph>(decomposition(n).with_input_shapes(sub_shapes));
      Attrs attrs = n.attrs;
      attrs["decomposition"] = static_cast<int64_t>(g.subgraphs_.size());
      TensorType type = sub->type(Tensor{sub->outputs_.at(0)});
      g.subgraphs_.push_back(std::move(sub));
      g.add_node(NodeKind::Kernel, n.inputs, std::move(type), std::move(attrs));
    } else {
      g.apply(n.kind, in, n.attrs);  // the kind's spec re-infers the type
    }
  }
  g.outputs_ = outputs_;
  return g;
}

}  // namespace mps_ext::graph
