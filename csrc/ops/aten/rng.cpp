// RNG on the mpsgraph device: uniform_, normal_, bernoulli_/bernoulli,
// random_ (randint), randperm, native_dropout. Each is a kernel node whose reference CPU
// kernel draws from the device generator's CPU twin (so a seeded device
// produces the CPU's numbers, like the CPU fallback did) and whose
// decomposition transforms RandomUniform (MPSGraph's stateful Philox) values.
// The generator reaches the CPU kernel through a thread-local set for the
// duration of the run (the graph cannot carry it: it is not a tensor).
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/DistributionsHelper.h>
#include <ATen/native/Resize.h>

#include "device/device.h"
#include "ops/aten/native.h"
#include "ops/op_utils.h"
#include "runtime/reference/kernels.h"

namespace mps_ext::ops::aten {
namespace {
using graph::DType;
using graph::Graph;
using graph::NodeKind;
using runtime::GraphSpec;
using G = graph::Tensor;

thread_local const at::Generator* g_current = nullptr;

struct GeneratorScope {
  explicit GeneratorScope(const at::Generator& g) : prev(g_current) { g_current = &g; }
  ~GeneratorScope() { g_current = prev; }
  const at::Generator* prev;
};

at::Generator cpu_generator(const std::optional<at::Generator>& gen) {
  return device::cpu_generator_of(gen && gen->defined() ? *gen : device::default_generator());
}

const at::Generator& current() {
  TORCH_INTERNAL_ASSERT(g_current, "RNG kernel ran outside an RNG op");
  return *g_current;
}

// The Philox state fed to RandomUniform: drawn from the generator only when
// the mpsgraph runtime will consume it (the reference runtime runs the CPU
// kernels, whose stream must not be disturbed).
at::Tensor philox_state(const at::Generator& cpu_gen) {
  at::Tensor state = at::zeros({7}, at::TensorOptions().dtype(at::kInt));
  if (runtime::device_runtime() == runtime::Kind::MPSGraph) {
    auto* impl = at::check_generator<at::CPUGeneratorImpl>(cpu_gen);
    std::lock_guard<std::mutex> lock(const_cast<at::Generator&>(cpu_gen).mutex());
    int32_t* p = state.mutable_data_ptr<int32_t>();
    for (int i = 0; i < 7; ++i) p[i] = static_cast<int32_t>(impl->random());
  }
  return state;
}

double scalar_of(const at::Tensor& t) { return t.item<double>(); }

// --- CPU kernels (inputs: state, then the op's scalars/tensors) ----------------
at::Tensor uniform_cpu(const graph::Node& n, const std::vector<at::Tensor>& in, const runtime::reference::NewOutput& out) {
  at::Tensor r = out(n.ints_attr("shape"), runtime::to_scalar_type(n.type.dtype));
  return r.uniform_(scalar_of(in[1]), scalar_of(in[2]), current());
}
at::Tensor normal_cpu(const graph::Node& n, const std::vector<at::Tensor>& in, const runtime::reference::NewOutput& out) {
  at::Tensor r = out(n.ints_attr("shape"), runtime::to_scalar_type(n.type.dtype));
  return r.normal_(scalar_of(in[1]), scalar_of(in[2]), current());
}
at::Tensor bernoulli_scalar_cpu(const graph::Node& n, const std::vector<at::Tensor>& in, const runtime::reference::NewOutput& out) {
  at::Tensor r = out(n.ints_attr("shape"), runtime::to_scalar_type(n.type.dtype));
  return r.bernoulli_(scalar_of(in[1]), current());
}
at::Tensor bernoulli_tensor_cpu(const graph::Node& n, const std::vector<at::Tensor>& in, const runtime::reference::NewOutput& out) {
  at::Tensor r = out(in[1].sizes(), runtime::to_scalar_type(n.type.dtype));
  r.copy_(at::bernoulli(in[1], current()));
  return r;
}
at::Tensor random_cpu(const graph::Node& n, const std::vector<at::Tensor>& in, const runtime::reference::NewOutput& out) {
  at::Tensor r = out(n.ints_attr("shape"), runtime::to_scalar_type(n.type.dtype));
  return r.random_(static_cast<int64_t>(scalar_of(in[1])), static_cast<int64_t>(scalar_of(in[2])), current());
}
MPS_EXT_REFERENCE_KERNEL("aten.uniform", uniform_cpu);
MPS_EXT_REFERENCE_KERNEL("aten.normal", normal_cpu);
MPS_EXT_REFERENCE_KERNEL("aten.bernoulli_scalar", bernoulli_scalar_cpu);
MPS_EXT_REFERENCE_KERNEL("aten.bernoulli_tensor", bernoulli_tensor_cpu);
at::Tensor randperm_cpu(const graph::Node& n, const std::vector<at::Tensor>&, const runtime::reference::NewOutput& out) {
  const auto& shape = n.ints_attr("shape");
  at::Tensor r = out(shape, runtime::to_scalar_type(n.type.dtype));
  return at::randperm_out(r, shape[0], current());
}
MPS_EXT_REFERENCE_KERNEL("aten.random", random_cpu);
MPS_EXT_REFERENCE_KERNEL("aten.randperm", randperm_cpu);

// --- decompositions -------------------------------------------------------------
G uniform01(Graph& d, G state, const graph::Shape& shape) { return d.random_uniform(state, shape); }

// attrs reach the decompositions through the node (shape, dtype, kind).
struct Params {
  graph::Shape shape;
  DType dtype;
};

G uniform_decomposition(Graph& d, const std::vector<G>& in, const Params& p) {
  G u = cast_to(d, uniform01(d, in[0], p.shape), p.dtype);
  G lo = cast_to(d, in[1], p.dtype), hi = cast_to(d, in[2], p.dtype);
  return d.add(lo, d.mul(u, d.sub(hi, lo)));
}
G normal_decomposition(Graph& d, const std::vector<G>& in, const Params& p) {  // Box-Muller
  graph::Shape two = p.shape;
  two.insert(two.begin(), 2);
  G u = uniform01(d, in[0], two);
  std::vector<int64_t> zeros(two.size(), 0), ends = two, ones(two.size(), 1);
  ends[0] = 1;
  G u1 = d.reshape(d.slice(u, zeros, ends, ones), p.shape);
  zeros[0] = 1;
  ends[0] = 2;
  G u2 = d.reshape(d.slice(u, zeros, ends, ones), p.shape);
  G one = d.constant(1, DType::Float32);
  G r = d.unary(NodeKind::Sqrt, d.mul(d.constant(-2, DType::Float32), d.unary(NodeKind::Log, d.sub(one, u1))));
  G z = d.mul(r, d.unary(NodeKind::Cos, d.mul(d.constant(2 * M_PI, DType::Float32), u2)));
  G mean = cast_to(d, in[1], DType::Float32), std = cast_to(d, in[2], DType::Float32);
  return cast_to(d, d.add(mean, d.mul(z, std)), p.dtype);
}
G bernoulli_scalar_decomposition(Graph& d, const std::vector<G>& in, const Params& p) {
  return d.cast(d.lt(uniform01(d, in[0], p.shape), cast_to(d, in[1], DType::Float32)), p.dtype);
}
G bernoulli_tensor_decomposition(Graph& d, const std::vector<G>& in, const Params& p) {
  return d.cast(d.lt(uniform01(d, in[0], p.shape), cast_to(d, in[1], DType::Float32)), p.dtype);
}
G random_decomposition(Graph& d, const std::vector<G>& in, const Params& p) {
  G lo = cast_to(d, in[1], DType::Float32), hi = cast_to(d, in[2], DType::Float32);
  G v = d.add(lo, d.unary(NodeKind::Floor, d.mul(uniform01(d, in[0], p.shape), d.sub(hi, lo))));
  return d.cast(v, p.dtype);
}

// A random permutation: the order that sorts uniform noise.
G randperm_decomposition(Graph& d, const std::vector<G>& in, const Params& p) {
  return cast_to(d, d.arg_sort(uniform01(d, in[0], p.shape), 0, false), p.dtype);
}

// One builder for all: attrs kind, shape, dtype. Inputs: state + the op's operands.
void build_rng(Graph& g, const GraphSpec& s) {
  const std::string& kind = s.str_attr("kind");
  std::vector<G> in{g.placeholder(s.input(0), "state")};
  for (size_t i = 1; i < s.num_inputs(); ++i) in.push_back(g.placeholder(s.input(i), "arg"));
  graph::Shape shape = s.ints_attr("shape");
  DType dtype = attr_dtype(s, "dtype");
  graph::Attrs attrs{{"shape", shape}};
  // The decomposition callback must be self-contained: re-derive params from the inputs' graph.
  auto node = [&](const char* name, G (*decomp)(Graph&, const std::vector<G>&, const Params&)) {
    Params p{shape, dtype};
    return g.kernel(name, in, attrs, [p, decomp](Graph& d, const std::vector<G>& x) { return decomp(d, x, p); });
  };
  G y;
  if (kind == "uniform") y = node("aten.uniform", uniform_decomposition);
  else if (kind == "normal") y = node("aten.normal", normal_decomposition);
  else if (kind == "bernoulli_scalar") y = node("aten.bernoulli_scalar", bernoulli_scalar_decomposition);
  else if (kind == "bernoulli_tensor") y = node("aten.bernoulli_tensor", bernoulli_tensor_decomposition);
  else if (kind == "randperm") y = node("aten.randperm", randperm_decomposition);
  else y = node("aten.random", random_decomposition);
  g.output(y);
}

at::Tensor& run_rng(at::Tensor& self, const char* kind, const std::vector<at::Tensor>& args,
                    const std::optional<at::Generator>& gen) {
  require(graph_dtype_ok(self.scalar_type()));
  if (self.numel() == 0) return self;
  at::Generator cpu = cpu_generator(gen);
  GeneratorScope scope(cpu);
  // On the device: run_graph picks the runtime from its inputs' devices.
  at::Tensor state = philox_state(cpu).to(self.device());
  GraphSpec spec("aten::rng");
  spec.input(state);
  std::vector<at::Tensor> inputs{state};
  for (const at::Tensor& a : args) {
    spec.input(a);
    inputs.push_back(a);
  }
  spec.attr("kind", std::string(kind)).attr("shape", self.sizes().vec()).attr("dtype", dname(self.scalar_type()));
  runtime::run_graph_into(spec, build_rng, inputs, {self});
  return self;
}

// A distribution's parameters as graph inputs: float32 (MPSGraph's), float64
// for a float64 tensor (the reference runtime only), so its CPU kernel gets
// them as the CPU op does.
at::ScalarType parameter_type(const at::Tensor& self) { return self.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

at::Tensor& uniform_(at::Tensor& self, double from, double to, std::optional<at::Generator> gen) {
  require(at::isFloatingType(self.scalar_type()));
  TORCH_CHECK(from <= to, "uniform_ expects to return a [from, to) range, but found from=", from, " > to=", to);
  const at::ScalarType t = parameter_type(self);
  return run_rng(self, "uniform", {scalar_input(from, at::kDouble).to(t), scalar_input(to, at::kDouble).to(t)}, gen);
}
at::Tensor& normal_(at::Tensor& self, double mean, double std, std::optional<at::Generator> gen) {
  require(at::isFloatingType(self.scalar_type()));
  TORCH_CHECK(std >= 0.0, "normal expects std >= 0.0, but found std ", std);
  const at::ScalarType t = parameter_type(self);
  return run_rng(self, "normal", {scalar_input(mean, t), scalar_input(std, t)}, gen);
}
at::Tensor& bernoulli_float(at::Tensor& self, double p, std::optional<at::Generator> gen) {
  TORCH_CHECK(0 <= p && p <= 1, "bernoulli_ expects p to be in [0, 1], but got p=", p);
  return run_rng(self, "bernoulli_scalar", {scalar_input(p, at::kDouble)}, gen);
}
at::Tensor bernoulli(const at::Tensor& self, std::optional<at::Generator> gen) {
  require(at::isFloatingType(self.scalar_type()) && self.is_privateuseone());
  at::Tensor out = at::empty_like(self, at::MemoryFormat::Contiguous);
  at::Tensor p = self.contiguous();
  return run_rng(out, "bernoulli_tensor", {p}, gen);
}
at::Tensor& random_from(at::Tensor& self, int64_t from, std::optional<int64_t> to, std::optional<at::Generator> gen) {
  require(to.has_value() && *to > from && (*to - from) <= (int64_t{1} << 24) && self.scalar_type() != at::kBool);
  return run_rng(self, "random", {scalar_input(from, at::kLong), scalar_input(*to, at::kLong)}, gen);
}

// randperm(n): the CPU generator's permutation (torch's CPU algorithm).
at::Tensor& randperm_out(c10::SymInt n_, std::optional<at::Generator> gen, at::Tensor& out) {
  int64_t n = n_.expect_int();
  TORCH_CHECK(n >= 0, "n must be non-negative, got", n);
  require(out.is_privateuseone() && graph_dtype_ok(out.scalar_type()) && out.scalar_type() != at::kBool);
  at::native::resize_output(out, {n});
  return run_rng(out, "randperm", {}, gen);
}

// native_dropout: the CPU's math (mask = bernoulli_(1-p) on a fresh tensor,
// output = input * (mask / (1-p))), so the streams and values match it.
std::tuple<at::Tensor, at::Tensor> native_dropout(const at::Tensor& input, double p, std::optional<bool> train) {
  require(at::isFloatingType(input.scalar_type()) && graph_dtype_ok(input.scalar_type()) && input.numel() > 0);
  if (train.has_value() && !*train) {
    return {input.clone(), at::ones_like(input, input.options().dtype(at::kBool))};
  }
  at::Tensor noise = at::empty_like(input, at::MemoryFormat::Contiguous);
  bernoulli_float(noise, 1 - p, std::nullopt);
  at::Tensor mask = noise.to(at::kBool);
  at::Tensor output = (1 - p) == 0 ? input.mul(0) : input.mul(noise.div_(1 - p));
  return {output, mask};
}

const std::vector<Row>& rows() {
  static const std::vector<Row> r = {
      MPS_EXT_ATEN_ROW("uniform_", uniform_),
      MPS_EXT_ATEN_ROW("normal_", normal_),
      MPS_EXT_ATEN_ROW("bernoulli_.float", bernoulli_float),
      MPS_EXT_ATEN_ROW("bernoulli", bernoulli),
      MPS_EXT_ATEN_ROW("random_.from", random_from),
      MPS_EXT_ATEN_ROW("randperm.generator_out", randperm_out),
      MPS_EXT_ATEN_ROW("native_dropout", native_dropout),
  };
  return r;
}
}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  for (const Row& row : rows()) register_op(m, row.op, row.kernel);
}

}  // namespace mps_ext::ops::aten
