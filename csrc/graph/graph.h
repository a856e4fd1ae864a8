// An MPSGraph-shaped IR: a Graph of typed tensors produced by Nodes.
// Plain C++17, no ATen: runtimes (reference, mpsgraph) consume it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace mps_ext::graph {

enum class DType : int8_t {
  Bool, UInt8, Int8, Int32, Int64, Float16, BFloat16, Float32, Float64, Complex64,
  Complex128,  // reference runtime only (MPSGraph has no double precision)
};
const char* dtype_name(DType t);
bool is_floating(DType t);  // Float16, BFloat16, Float32, Float64
// Inverse of dtype_name ("float32" -> Float32); throws GraphError on others.
DType dtype_from_name(const std::string& name);

// -1 marks a dynamic dimension, known only when the graph runs.
using Shape = std::vector<int64_t>;
constexpr int64_t kDynamic = -1;
std::string shape_str(const Shape& s);

struct TensorType {
  DType dtype = DType::Float32;
  Shape shape;
  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  bool operator==(const TensorType& o) const { return dtype == o.dtype && shape == o.shape; }
};

enum class NodeKind : int16_t {
#define MPS_EXT_NODE(kind, name) kind,
#include "graph/node_kinds.def"
};
inline constexpr size_t kNumNodeKinds = 0
#define MPS_EXT_NODE(kind, name) +1
#include "graph/node_kinds.def"
    ;
const char* kind_name(NodeKind k);
bool is_unary(NodeKind k);
bool is_binary(NodeKind k);   // includes comparisons
bool is_compare(NodeKind k);
bool is_reduce(NodeKind k);
NodeKind kind_from_name(const std::string& name);  // throws GraphError
inline bool is_input(NodeKind k) { return k == NodeKind::Placeholder || k == NodeKind::Variable; }
inline bool is_elementwise(NodeKind k) {
  return is_unary(k) || is_binary(k) || k == NodeKind::Select;
}

using Attr = std::variant<int64_t, double, std::string, std::vector<int64_t>>;
using Attrs = std::map<std::string, Attr, std::less<>>;  // std::less<>: looked up by string_view, no string built

struct Node {
  NodeKind kind;
  std::vector<int> inputs;  // ids of producing nodes
  TensorType type;          // type of the single result
  Attrs attrs;
  std::string name;         // placeholders/variables: argument name

  int64_t int_attr(std::string_view key) const;
  double float_attr(std::string_view key) const;
  const std::vector<int64_t>& ints_attr(std::string_view key) const;
  const std::string& str_attr(std::string_view key) const;
};

// How an FFT node's torch-style "norm" maps onto MPSGraph's scaling modes for
// the direction the node computes (forward: FFT/RFFT, inverse: FFT with
// inverse=1, IRFFT): "backward" scales the inverse by 1/n, "forward" scales
// the forward transform by 1/n, "ortho" scales both by 1/sqrt(n).
enum class FFTScaling { None, Size, Unitary };  // 1, 1/n, 1/sqrt(n)
FFTScaling fft_scaling(const std::string& norm, bool inverse);

// A convolution over the 2 or 3 trailing (spatial) dims: stride, symmetric
// zero padding and dilation per spatial dim, as torch.nn.functional.conv2d/3d.
struct ConvParams {
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups = 1;
};

// Pooling windows over the k = kernel.size() (1-3) trailing spatial dims of
// [N, C, spatial...] data, as torch.nn.functional.max_pool{k}d/avg_pool{k}d:
// symmetric padding, ceil_mode output sizes (the last window starts inside
// the input or its left padding). avg pools have dilation 1.
struct PoolParams {
  std::vector<int64_t> kernel, stride, padding, dilation;
  bool ceil_mode = false;
};
// torch's pooling output size of one spatial dim.
int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation, bool ceil_mode);

// Thrown for malformed graphs (shape/dtype mismatches); ops surface it as a
// RuntimeError naming the op.
struct GraphError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A handle to a node's result, as returned by the builder.
struct Tensor {
  int id = -1;
};

class Graph {
 public:
  // --- builder: vocabulary follows MPSGraph ---------------------------------
  // The generic builder: a `kind` node over `inputs` with `attrs`. The kind's
  // spec (graph/node_spec.h) checks both, normalises the attrs and infers the
  // result type. The methods below are its spellings (attrs by name);
  // with_input_shapes re-applies every node through it.
  Tensor apply(NodeKind kind, const std::vector<Tensor>& inputs, Attrs attrs = {});
  Tensor placeholder(Shape shape, DType dtype, std::string name);
  Tensor placeholder(const TensorType& t, std::string name) { return placeholder(t.shape, t.dtype, std::move(name)); }
  // A variable is an input the graph mutates in place (a Tensor(a!) argument):
  // assign() writes its new value into the caller's tensor.
  Tensor variable(Shape shape, DType dtype, std::string name);
  Tensor variable(const TensorType& t, std::string name) { return variable(t.shape, t.dtype, std::move(name)); }
  Tensor constant(double value, DType dtype, Shape shape = {});
  Tensor assign(Tensor variable, Tensor value);
  Tensor cast(Tensor x, DType dtype);
  Tensor reshape(Tensor x, Shape shape);
  Tensor transpose(Tensor x, std::vector<int64_t> perm);
  Tensor slice(Tensor x, std::vector<int64_t> starts, std::vector<int64_t> ends,
               std::vector<int64_t> strides);
  Tensor slice_update(Tensor data, Tensor update, std::vector<int64_t> starts,
                      std::vector<int64_t> ends, std::vector<int64_t> strides);
  // slice_update with unit strides at a start known only when the graph runs:
  // `starts` is an int64 [rank] tensor, the region has update's shape. Lets
  // one graph serve every position (a KV-cache row per decode step). A start
  // that puts the region outside data is an error when the graph runs.
  Tensor slice_update_at(Tensor data, Tensor update, Tensor starts);
  Tensor concat(const std::vector<Tensor>& xs, int64_t axis);
  Tensor broadcast(Tensor x, Shape shape);
  Tensor unary(NodeKind kind, Tensor x);
  Tensor binary(NodeKind kind, Tensor a, Tensor b);
  Tensor select(Tensor predicate, Tensor on_true, Tensor on_false);
  Tensor reduce(NodeKind kind, Tensor x, std::vector<int64_t> axes);
  Tensor softmax(Tensor x, int64_t axis);
  Tensor matmul(Tensor a, Tensor b);
  // The index along `axis` at every position of a static `shape` (int32 or
  // int64): the building block of one-hot gathers, masks and arange.
  Tensor iota(Shape shape, int64_t axis, DType dtype);
  // Uniform float32 values in [0, 1) of a static shape from a Philox state
  // (int32 [7], MPSGraph's stateful random ops): one stream per state value.
  // Ops use it as the decomposition of RNG kernel nodes whose CPU kernels draw
  // from the device generator (the CPU stream).
  Tensor random_uniform(Tensor state, Shape shape);

  // Indexing. Indices are int32 or int64 and must lie in [0, size) of the
  // indexed axis: ops wrap negative indices and check bounds before a graph
  // runs (an out-of-range index is an error in the reference runtime and
  // undefined on MPSGraph). Static shapes.
  //
  // torch.gather: out[i...] = x[i... with i_axis = index[i...]]. index has x's
  // rank and x's sizes except along axis. Result: index's shape, x's dtype.
  Tensor gather_along_axis(Tensor x, Tensor index, int64_t axis);
  // torch.scatter (mode "set") / scatter_reduce with include_self ("add",
  // "mul", "max", "min"): data with updates[i...] combined into
  // data[i... with i_axis = index[i...]]. updates and index have one shape,
  // data's except along axis. "set" with repeated indices keeps one of the
  // writes (unspecified which, as torch). Result: data's type.
  Tensor scatter_along_axis(Tensor data, Tensor updates, Tensor index, int64_t axis, const std::string& mode);
  // index_select: x's slices along axis picked by a rank-1 index [K]: x's
  // shape with K along axis.
  Tensor gather(Tensor x, Tensor index, int64_t axis);
  // index_copy ("set") / index_add ("add"): data's slice index[k] along axis
  // combined with updates' slice k. updates: data's shape with K along axis.
  Tensor scatter(Tensor data, Tensor updates, Tensor index, int64_t axis, const std::string& mode);
  // The int64 indices that sort x along axis, ascending or descending; equal
  // elements keep their order (torch.sort(stable=True)). NaN sorts as the
  // largest value, as torch.
  Tensor arg_sort(Tensor x, int64_t axis, bool descending);

  // Affine dequantization: cast(q) - cast(zero_point), times scale, computed
  // in `dtype` (a floating dtype). q is uint8/int8/int32; scale has dtype
  // `dtype`; zero_point has q's dtype or `dtype`. scale and zero_point
  // broadcast into q's shape (numpy rules, q is never expanded): per-tensor
  // [], per-channel [C,1,...], group-wise q [..., G, S] with [..., G, 1]. The
  // result has q's shape. attrs: dtype (its name).
  Tensor dequantize(Tensor q, Tensor scale, Tensor zero_point, DType dtype);
  // Palettization: out[i...] = lut[g(i)..., indices[i...]]. indices: uint8
  // [d...]; lut: floating [g..., N], N entries per group, where the group
  // shape [g...] broadcasts into [d...] aligned to its trailing dims (as
  // MPSGraph's dequantizeTensor:LUTTensor:). Per tensor: lut [N]; per output
  // channel of a [C, K] weight: lut [C, 1, N]; group-wise along K (groups of
  // S): indices [C, K/S, S] with lut [C, K/S, 1, N]. Result: lut's dtype,
  // indices' shape. Indices >= N are an error when the graph runs.
  Tensor dequantize_lut(Tensor indices, Tensor lut);
  // softmax(q @ k^T * scale + mask) @ v. q [B, H, L, E], k [B, Hkv, S, E],
  // v [B, Hkv, S, Ev] -> [B, H, L, Ev]; one floating dtype; mask (optional)
  // additive, broadcastable to [B, H, L, S]. scale defaults to 1/sqrt(E).
  // Grouped-query attention when Hkv divides H (Hkv < H): query head h reads
  // kv head h / (H / Hkv), K/V are never expanded. is_causal masks key j for
  // query i when j > i (upper-left aligned, as torch), on top of the mask.
  // attrs: scale, has_mask, is_causal.
  Tensor scaled_dot_product_attention(Tensor q, Tensor k, Tensor v, std::optional<Tensor> mask,
                                      std::optional<double> scale, bool is_causal = false);
  // FFTs as torch.fft.fftn/ifftn/rfftn/irfftn over `axes` (unique, within
  // the last four dimensions: MPSGraph's limit) with norm "backward",
  // "forward" or "ortho". FFT: complex64 -> complex64. RFFT: float32 ->
  // complex64, the last entry of `axes` shrinks to n/2+1. IRFFT: complex64
  // -> float32, the last entry of `axes` grows to last_dim_size, whose
  // Hermitean half (last_dim_size/2+1) must be the input's size there (odd
  // sizes work); other axes keep their size. (complex128/float64 likewise,
  // reference runtime only.) Nodes also carry the MPSGraphFFTDescriptor
  // fields they lower to: inverse, scaling ("none", "size", "unitary") and,
  // for IRFFT, round_to_odd.
  Tensor fft(Tensor x, std::vector<int64_t> axes, bool inverse, const std::string& norm);
  Tensor rfft(Tensor x, std::vector<int64_t> axes, const std::string& norm);
  Tensor irfft(Tensor x, std::vector<int64_t> axes, const std::string& norm, int64_t last_dim_size);

  // Convolutions, PyTorch's layouts: data [N, C, (D,) H, W], weight
  // [C_out, C_in / groups, (kD,) kH, kW]; static shapes; one floating dtype.
  // convolution_data_gradient is d(conv)/d(input) for an input of
  // `input_shape` (a transposed convolution); convolution_weight_gradient is
  // d(conv)/d(weight) for a weight of `weight_shape`. Convolution's optional
  // third input is a bias [C_out] of the input's dtype, added along dim 1.
  Tensor convolution(Tensor input, Tensor weight, const ConvParams& p);
  Tensor convolution(Tensor input, Tensor weight, Tensor bias, const ConvParams& p);
  Tensor convolution_data_gradient(Tensor grad_output, Tensor weight, Shape input_shape, const ConvParams& p);
  Tensor convolution_weight_gradient(Tensor grad_output, Tensor input, Shape weight_shape, const ConvParams& p);
  // Pooling (PoolParams). max_pool: the window maxima (NaN propagates);
  // max_pool_indices: int64, the flat index (over the spatial dims of one
  // input plane, torch's convention) of each window's first maximum or NaN;
  // max_pool_gradient: grad_output scattered (summed) to input_shape at
  // those indices. avg_pool: the window sums divided by the window size
  // (count_include_pad: counting padding inside the padded input, as torch),
  // or by divisor_override when non-zero; avg_pool_gradient: its gradient
  // for the input `x` (only x's shape is read). Static shapes, floating dtypes.
  Tensor max_pool(Tensor x, const PoolParams& p);
  Tensor max_pool_indices(Tensor x, const PoolParams& p);
  Tensor max_pool_gradient(Tensor grad_output, Tensor indices, Shape input_shape, const PoolParams& p);
  Tensor avg_pool(Tensor x, const PoolParams& p, bool count_include_pad, int64_t divisor_override);
  Tensor avg_pool_gradient(Tensor grad_output, Tensor x, const PoolParams& p, bool count_include_pad,
                           int64_t divisor_override);
  // A named hand-written kernel (MLX's `fast` ops). `decomposition` builds the
  // same computation from IR nodes over the given inputs (fresh placeholders
  // of the same types, in order) and returns its result: a runtime without a
  // kernel of this name runs it, and it is the kernel's test oracle. The
  // node's type is the decomposition's result type; attrs reach the kernel.
  using Decomposition = std::function<Tensor(Graph&, const std::vector<Tensor>&)>;
  Tensor kernel(const std::string& name, const std::vector<Tensor>& inputs, Attrs attrs,
                const Decomposition& decomposition);
  // A kernel with several results (ATen's fused norms return y, mean and rstd
  // from one pass): `decomposition` returns them all. One kernel node per
  // result is added, named `name`, `name#1`, `name#2`, ..., with the same
  // inputs and attrs (plus "result": its index); each node's decomposition is
  // its own result's share. A runtime with the kernel computes every result
  // at the first of them it reaches (reference: kernels.h).
  using MultiDecomposition = std::function<std::vector<Tensor>(Graph&, const std::vector<Tensor>&)>;
  std::vector<Tensor> kernels(const std::string& name, const std::vector<Tensor>& inputs, Attrs attrs,
                              const MultiDecomposition& decomposition);
  const Graph& decomposition(const Node& kernel_node) const;
  // This graph with every kernel node whose name `keep` rejects replaced by its
  // decomposition (recursively): what a runtime without those kernels runs.
  Graph inline_kernels(const std::function<bool(const std::string&)>& keep) const;

  // Elementwise spellings used by op builders.
  Tensor abs(Tensor x) { return unary(NodeKind::Abs, x); }
  Tensor neg(Tensor x) { return unary(NodeKind::Negative, x); }
  Tensor add(Tensor a, Tensor b) { return binary(NodeKind::Add, a, b); }
  Tensor sub(Tensor a, Tensor b) { return binary(NodeKind::Subtract, a, b); }
  Tensor mul(Tensor a, Tensor b) { return binary(NodeKind::Multiply, a, b); }
  Tensor div(Tensor a, Tensor b) { return binary(NodeKind::Divide, a, b); }
  Tensor maximum(Tensor a, Tensor b) { return binary(NodeKind::Maximum, a, b); }
  Tensor minimum(Tensor a, Tensor b) { return binary(NodeKind::Minimum, a, b); }
  Tensor gt(Tensor a, Tensor b) { return binary(NodeKind::Greater, a, b); }
  Tensor ge(Tensor a, Tensor b) { return binary(NodeKind::GreaterEqual, a, b); }
  Tensor lt(Tensor a, Tensor b) { return binary(NodeKind::Less, a, b); }
  Tensor le(Tensor a, Tensor b) { return binary(NodeKind::LessEqual, a, b); }
  Tensor logical_and(Tensor a, Tensor b) { return binary(NodeKind::LogicalAnd, a, b); }

  // Marks a result the runtime must return, in call order.
  void output(Tensor t) { outputs_.push_back(t.id); }

  // --- inspection -------------------------------------------------------------
  const std::vector<Node>& nodes() const { return nodes_; }
  const Node& node(int id) const { return nodes_.at(id); }
  const std::vector<int>& outputs() const { return outputs_; }
  const TensorType& type(Tensor t) const { return nodes_.at(t.id).type; }
  // Placeholder and Variable node ids, by their "index" (the order runtimes
  // bind inputs in).
  const std::vector<int>& inputs() const { return inputs_; }
  int num_inputs() const { return static_cast<int>(inputs_.size()); }

  // The same graph rebuilt for concrete input shapes (by input index): every
  // node's type is then inferred concretely. Throws GraphError on mismatch.
  Graph with_input_shapes(const std::vector<Shape>& shapes) const;

  std::string to_json() const;
  std::string to_dot() const;

 private:
  Tensor add_node(NodeKind kind, std::vector<int> inputs, TensorType type, Attrs attrs = {},
                  std::string name = {});
  const Node& checked(Tensor t, const char* what) const;

  std::vector<Node> nodes_;
  std::vector<int> outputs_;
  std::vector<int> inputs_;
  std::vector<std::shared_ptr<const Graph>> subgraphs_;  // kernel decompositions
};

// Broadcasts two shapes with numpy rules; dynamic dims broadcast against
// anything but a static size > 1. Throws GraphError on mismatch.
Shape broadcast_shapes(const Shape& a, const Shape& b);

// A pooling node's parameters (attrs kernel, stride, padding, dilation, ceil_mode).
PoolParams pool_params(const Node& n);

// A convolution node's parameters (attrs stride, padding, dilation, groups).
ConvParams conv_params(const Node& n);

}  // namespace mps_ext::graph
