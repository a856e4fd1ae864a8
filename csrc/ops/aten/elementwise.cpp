// Elementwise aten ops on the mpsgraph device: one table row per op (its
// operands' roles and its math as IR nodes), one boxed kernel for all of them
// and for their `_foreach_*` forms. The kernel reads the operands from the
// stack by the op's schema, promotes types like TensorIterator
// (at::native::result_type over the promoting operands), broadcasts once,
// feeds Scalars as 0-d placeholders (one graph per rank and dtype serves all
// values) and writes in-place/out= results through run_graph_into. The math
// is Unary/Binary/Select/Cast nodes, so the reference runtime fuses each op
// into one vectorized pass and MPSGraph stitches it.
#include <ATen/ExpandUtils.h>
#include <ATen/native/Resize.h>
#include <ATen/native/TypeProperties.h>

#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <unordered_map>
#include <unordered_set>

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

// How the result dtype follows from the promoted operand dtype.
enum class Result {
  Promoted,  // add, mul, where, ...
  Float,     // div, exp, sigmoid: integers promote to the default float dtype
  Bool,      // comparisons, logical ops, isnan: computed in the promoted dtype
  First,     // masked_fill: the first operand's dtype
};

using Emit = G (*)(Graph&, const std::vector<G>&, const GraphSpec&);

struct Entry {
  const char* name;
  int arity;                  // Tensor/Scalar operands (optional ones included)
  std::vector<int> promote;   // operands taking part in type promotion
  Result result;
  std::vector<int> masks;     // bool operands (not cast to the compute dtype)
  std::vector<const char*> attrs;  // non-operand arguments the math reads
  Emit emit;
  // Scalar factors (alpha, value) the math skips when absent: a factor of 1
  // is left out of the graph, as ATen's kernels skip it (no multiply pass).
  std::vector<int> unit_factors = {};
};

bool has(G t) { return t.id >= 0; }
G mul(Graph& g, G a, G b) { return !has(a) ? b : !has(b) ? a : g.mul(a, b); }  // an absent factor is 1
G sel(Graph& g, G c, G a, G b) { return g.select(c, a, b); }
G un(Graph& g, NodeKind kind, G x) { return g.unary(kind, x); }
G ne(Graph& g, G a, G b) { return g.binary(NodeKind::NotEqual, a, b); }
G gt0(Graph& g, G x) { return g.gt(x, k(g, 0, x)); }
G trunc(Graph& g, G x) { return sel(g, g.lt(x, k(g, 0, x)), un(g, NodeKind::Ceil, x), un(g, NodeKind::Floor, x)); }
G softplus_of(Graph& g, G z) { return log1p(g, un(g, NodeKind::Exp, z)); }
bool floating(Graph& g, G x) { return graph::is_floating(g.type(x).dtype); }
// x * y + z; in floating dtypes one fused multiply-add where the runtime has
// one (the reference interpreter: at::vec::fmadd, the Add's attr "fma"), as
// ATen's kernels for lerp, add/sub's alpha, addcmul, tanh_backward and
// silu_backward compute it. MPSGraph lowers the two ops.
G fma(Graph& g, G x, G y, G z) {
  if (!floating(g, z)) return g.add(z, g.mul(x, y));
  return g.apply(NodeKind::Add, {g.mul(x, y), z}, {{"fma", int64_t{1}}});
}
// a + alpha * b, or a - alpha * b: ATen's add kernel, fmadd(b, alpha, a) (sub
// adds -alpha); without alpha, a + b / a - b.
G add_scaled(Graph& g, G a, G b, G alpha, bool subtract) {
  if (!has(alpha)) return subtract ? g.sub(a, b) : g.add(a, b);
  if (!floating(g, a)) return subtract ? g.sub(a, g.mul(b, alpha)) : g.add(a, g.mul(b, alpha));
  return fma(g, b, subtract ? g.unary(NodeKind::Negative, alpha) : alpha, a);
}
// x rounded to the common dtype (attr "common", see rounds_to_common) where
// ATen's kernel keeps an intermediate in it, back in the compute dtype.
G in_common_dtype(Graph& g, G x, const GraphSpec& s) {
  if (!s.attrs().count("common")) return x;
  return g.cast(g.cast(x, graph::dtype_from_name(s.str_attr("common"))), g.type(x).dtype);
}
// Floating-point fmod, remainder and floor division as ATen computes them
// (c10/util/generic_math.h): the quotient from the remainder, so an infinite
// divisor gives fmod(x, inf) == x, 1 // -inf == -1 and -1 % inf == inf, like
// Python. fmod(x, y) itself is x - trunc(x / y) * y, a zero with x's sign, and
// x where y is infinite and x finite: exact unless x / y rounds onto an
// integer (1 // 0.1 is 10 in this form, 9 with ATen's exact fmod). These are
// the decompositions; the reference runtime runs ATen's kernels (below).
G fmod(Graph& g, G a, G b) {
  G zero = k(g, 0, a);
  G m = g.sub(a, mul(g, trunc(g, g.div(a, b)), b));
  m = sel(g, g.binary(NodeKind::Equal, m, zero), g.mul(a, zero), m);
  G inf_b = g.binary(NodeKind::Equal, g.abs(b), k(g, INFINITY, b));
  G finite_a = g.lt(g.abs(a), k(g, INFINITY, a));
  return sel(g, g.logical_and(inf_b, finite_a), a, m);
}
G signs_differ(Graph& g, G m, G b) {  // m != 0 and (b < 0) != (m < 0)
  G zero = k(g, 0, m);
  return g.logical_and(ne(g, m, zero), ne(g, g.lt(b, zero), g.lt(m, zero)));
}
G remainder(Graph& g, G a, G b) {
  G m = fmod(g, a, b);
  return sel(g, signs_differ(g, m, b), g.add(m, b), m);
}
G floor_divide(Graph& g, G a, G b) {
  G one = k(g, 1, a), zero = k(g, 0, a);
  G m = fmod(g, a, b);
  G div = g.div(g.sub(a, m), b);
  div = sel(g, signs_differ(g, m, b), g.sub(div, one), div);
  G fl = un(g, NodeKind::Floor, div);
  fl = sel(g, g.gt(g.sub(div, fl), k(g, 0.5, a)), g.add(fl, one), fl);
  G q = g.div(a, b);
  G r = sel(g, ne(g, div, zero), fl, g.mul(q, zero));  // a zero quotient keeps a / b's sign
  return sel(g, g.binary(NodeKind::Equal, b, zero), q, r);
}
// float fmod / remainder / floor division as a kernel node: ATen's own kernels
// on the reference runtime (exact fmod: 1 // 0.1 is 9), the forms above elsewhere.
at::Tensor float_division_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                              const runtime::reference::NewOutput& new_output) {
  at::Tensor out = new_output(at::infer_size(in[0].sizes(), in[1].sizes()), in[0].scalar_type());
  const std::string& op = n.str_attr("op");
  if (op == "fmod") return at::fmod_out(out, in[0], in[1]);
  if (op == "remainder") return at::remainder_out(out, in[0], in[1]);
  return at::floor_divide_out(out, in[0], in[1]);
}
MPS_EXT_REFERENCE_KERNEL("aten.float_division", float_division_cpu);
G float_division(Graph& g, const char* op, G a, G b, G (*decomposition)(Graph&, G, G)) {
  if (!kernel_dtype(g.type(a).dtype) || g.type(b).dtype != g.type(a).dtype) return decomposition(g, a, b);
  return g.kernel("aten.float_division", {a, b}, {{"op", std::string(op)}},
                  [decomposition](Graph& d, const std::vector<G>& in) { return decomposition(d, in[0], in[1]); });
}
// sqrt(x^2 + y^2) without overflow or underflow: the larger magnitude times
// sqrt(1 + ratio^2); an infinity wins over NaN (IEEE hypot). Floating only.
G hypot(Graph& g, G x, G y) {
  if (!floating(g, x)) throw std::domain_error("fallback");
  G ax = g.abs(x), ay = g.abs(y);
  G big = g.maximum(ax, ay), r = g.div(g.minimum(ax, ay), big);
  G h = sel(g, g.binary(NodeKind::Equal, big, k(g, 0, x)), k(g, 0, x),
            g.mul(big, un(g, NodeKind::Sqrt, g.add(k(g, 1, x), g.mul(r, r)))));
  G inf = k(g, INFINITY, x);
  return sel(g, g.binary(NodeKind::LogicalOr, g.binary(NodeKind::Equal, ax, inf), g.binary(NodeKind::Equal, ay, inf)), inf, h);
}

// clamp with one bound, as ATen: x unless it is past the bound (so -0.0 stays
// -0.0 under min=0, where maximum would give +0.0); a NaN bound gives NaN.
G clamp_one_side(Graph& g, G x, G bound, bool lower) {
  if (!floating(g, x)) return lower ? g.maximum(x, bound) : g.minimum(x, bound);
  G past = lower ? g.lt(x, bound) : g.gt(x, bound);
  return sel(g, g.binary(NodeKind::LogicalOr, past, un(g, NodeKind::IsNaN, bound)), bound, x);
}

// log(b**x + b**y) / log(b) for b = e (logaddexp) or 2 (logaddexp2): the larger
// plus log1p of the smaller's share; equal infinities are themselves.
// Floating dtypes only, as torch (integers: the CPU fallback raises its error).
G logaddexp(Graph& g, G x, G y, bool base2) {
  if (!floating(g, x)) throw std::domain_error("fallback");
  G d = g.neg(g.abs(g.sub(x, y)));
  G share = base2 ? g.binary(NodeKind::Power, k(g, 2, x), d) : un(g, NodeKind::Exp, d);
  G tail = base2 ? mul(g, log1p(g, share), k(g, 1 / std::log(2.0), x)) : log1p(g, share);
  G same_inf = g.logical_and(g.binary(NodeKind::Equal, g.abs(x), k(g, INFINITY, x)), g.binary(NodeKind::Equal, x, y));
  return sel(g, same_inf, x, g.add(g.maximum(x, y), tail));
}
// x when it is an integer (or, if allowed, bool) tensor; otherwise the CPU fallback.
G integral(Graph& g, G x, bool bool_ok = true) {
  DType t = g.type(x).dtype;
  if (graph::is_floating(t) || (!bool_ok && t == DType::Bool)) throw std::domain_error("fallback");
  return x;
}

std::string str_attr_or(const GraphSpec& s, const char* name, const char* dflt) {
  auto it = s.attrs().find(name);
  return it == s.attrs().end() ? dflt : std::get<std::string>(it->second);
}
int64_t int_attr_or(const GraphSpec& s, const char* name, int64_t dflt) {
  auto it = s.attrs().find(name);
  return it == s.attrs().end() ? dflt : std::get<int64_t>(it->second);
}

double float_attr_or(const GraphSpec& s, const char* name, double dflt) {
  auto it = s.attrs().find(name);
  return it == s.attrs().end() ? dflt : std::get<double>(it->second);
}

// nan_to_num: NaN, +inf and -inf replaced; by default with 0 and the result
// dtype's largest and lowest finite values (computed in float32 for reduced
// precision, so the bound is the result dtype's, not the compute dtype's).
G nan_to_num(Graph& g, G x, const GraphSpec& s) {
  if (!floating(g, x)) return x;
  const DType result = graph::dtype_from_name(s.str_attr("result"));
  const double big = result == DType::Float16    ? 65504.0
                     : result == DType::BFloat16 ? 3.38953138925153547590e38
                     : result == DType::Float32  ? static_cast<double>(std::numeric_limits<float>::max())
                                                 : std::numeric_limits<double>::max();
  G y = sel(g, g.binary(NodeKind::Equal, x, k(g, -INFINITY, x)), k(g, float_attr_or(s, "neginf", -big), x), x);
  y = sel(g, g.binary(NodeKind::Equal, x, k(g, INFINITY, x)), k(g, float_attr_or(s, "posinf", big), x), y);
  return sel(g, un(g, NodeKind::IsNaN, x), k(g, float_attr_or(s, "nan", 0.0), x), y);
}

constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

G gelu(Graph& g, G x, const std::string& approximate) {
  if (approximate == "tanh") {
    G inner = mul(g, k(g, kSqrt2OverPi, x), g.add(x, mul(g, k(g, 0.044715, x), mul(g, x, mul(g, x, x)))));
    return mul(g, mul(g, k(g, 0.5, x), x), g.add(k(g, 1, x), un(g, NodeKind::Tanh, inner)));
  }
  G cdf = mul(g, k(g, 0.5, x), g.add(k(g, 1, x), un(g, NodeKind::Erf, mul(g, x, k(g, kSqrt1_2, x)))));
  return mul(g, x, cdf);
}

G gelu_grad(Graph& g, G dy, G x, const std::string& approximate) {
  if (approximate == "tanh") {
    G x2 = mul(g, x, x);
    G inner = mul(g, k(g, kSqrt2OverPi, x), g.add(x, mul(g, k(g, 0.044715, x), mul(g, x2, x))));
    G t = un(g, NodeKind::Tanh, inner);
    G left = mul(g, k(g, 0.5, x), g.add(k(g, 1, x), t));
    G dinner = mul(g, k(g, kSqrt2OverPi, x), g.add(k(g, 1, x), mul(g, k(g, 3 * 0.044715, x), x2)));
    G right = mul(g, mul(g, k(g, 0.5, x), x), mul(g, g.sub(k(g, 1, x), mul(g, t, t)), dinner));
    return mul(g, dy, g.add(left, right));
  }
  G cdf = mul(g, k(g, 0.5, x), g.add(k(g, 1, x), un(g, NodeKind::Erf, mul(g, x, k(g, kSqrt1_2, x)))));
  G pdf = mul(g, k(g, kInvSqrt2Pi, x), un(g, NodeKind::Exp, mul(g, k(g, -0.5, x), mul(g, x, x))));
  return mul(g, dy, g.add(cdf, mul(g, x, pdf)));
}

// GELU and its gradient in float32/float64 (compute dtypes: reduced precision
// arrives cast) are kernel nodes: ATen's GELU kernels on the reference
// runtime (one pass, MKL's normal CDF where torch has it, instead of six
// interpreted ones), the decompositions above elsewhere.
at::Tensor gelu_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                    const runtime::reference::NewOutput& new_output) {
  at::Tensor out = new_output(in[0].sizes(), in[0].scalar_type());
  return at::gelu_out(out, in[0], n.str_attr("approximate"));
}
at::Tensor gelu_backward_cpu(const graph::Node& n, const std::vector<at::Tensor>& in,
                             const runtime::reference::NewOutput& new_output) {
  at::Tensor out = new_output(at::infer_size(in[0].sizes(), in[1].sizes()), in[0].scalar_type());
  return at::gelu_backward_out(out, in[0], in[1], n.str_attr("approximate"));
}
MPS_EXT_REFERENCE_KERNEL("aten.gelu", gelu_cpu);
MPS_EXT_REFERENCE_KERNEL("aten.gelu_backward", gelu_backward_cpu);

G gelu_node(Graph& g, G x, const std::string& approximate) {
  if (!kernel_dtype(g.type(x).dtype)) return gelu(g, x, approximate);
  return g.kernel("aten.gelu", {x}, {{"approximate", approximate}},
                  [approximate](Graph& d, const std::vector<G>& in) { return gelu(d, in[0], approximate); });
}
G gelu_grad_node(Graph& g, G dy, G x, const std::string& approximate) {
  if (!kernel_dtype(g.type(x).dtype) || g.type(dy).dtype != g.type(x).dtype) return gelu_grad(g, dy, x, approximate);
  return g.kernel("aten.gelu_backward", {dy, x}, {{"approximate", approximate}},
                  [approximate](Graph& d, const std::vector<G>& in) { return gelu_grad(d, in[0], in[1], approximate); });
}

#define E(...) +[](Graph& g, const std::vector<G>& x, const GraphSpec& s) -> G { (void)s; __VA_ARGS__ }
#define U(kind) E(return un(g, NodeKind::kind, x[0]);)

const std::vector<Entry>& table() {
  static const std::vector<Entry> t = {
      // --- unary math ---------------------------------------------------------
      {"abs", 1, {0}, Result::Promoted, {}, {}, U(Abs)},
      {"neg", 1, {0}, Result::Promoted, {}, {}, U(Negative)},
      {"sign", 1, {0}, Result::Promoted, {}, {}, U(Sign)},
      {"sgn", 1, {0}, Result::Promoted, {}, {}, U(Sign)},  // real tensors (complex ones fall back)
      {"floor", 1, {0}, Result::Promoted, {}, {}, U(Floor)},
      {"ceil", 1, {0}, Result::Promoted, {}, {}, U(Ceil)},
      {"round", 1, {0}, Result::Promoted, {}, {}, U(Round)},
      {"trunc", 1, {0}, Result::Promoted, {}, {}, E(return floating(g, x[0]) ? trunc(g, x[0]) : x[0];)},
      {"frac", 1, {0}, Result::Promoted, {}, {}, E(return g.sub(x[0], trunc(g, x[0]));)},
      {"exp", 1, {0}, Result::Float, {}, {}, U(Exp)},
      {"exp2", 1, {0}, Result::Float, {}, {}, E(return g.binary(NodeKind::Power, k(g, 2, x[0]), x[0]);)},
      {"expm1", 1, {0}, Result::Float, {}, {}, E(return expm1(g, x[0]);)},
      {"log", 1, {0}, Result::Float, {}, {}, U(Log)},
      {"log2", 1, {0}, Result::Float, {}, {}, E(return mul(g, un(g, NodeKind::Log, x[0]), k(g, 1.0 / std::log(2.0), x[0]));)},
      {"log10", 1, {0}, Result::Float, {}, {}, E(return mul(g, un(g, NodeKind::Log, x[0]), k(g, 1.0 / std::log(10.0), x[0]));)},
      {"log1p", 1, {0}, Result::Float, {}, {}, E(return log1p(g, x[0]);)},
      {"sqrt", 1, {0}, Result::Float, {}, {}, U(Sqrt)},
      {"rsqrt", 1, {0}, Result::Float, {}, {}, U(Rsqrt)},
      {"reciprocal", 1, {0}, Result::Float, {}, {}, U(Reciprocal)},
      {"sin", 1, {0}, Result::Float, {}, {}, U(Sin)},
      {"cos", 1, {0}, Result::Float, {}, {}, U(Cos)},
      {"tan", 1, {0}, Result::Float, {}, {}, E(return g.div(un(g, NodeKind::Sin, x[0]), un(g, NodeKind::Cos, x[0]));)},
      {"sinh", 1, {0}, Result::Float, {}, {},  // (e^x - 1) - (e^-x - 1): no cancellation near 0
       E(return mul(g, k(g, 0.5, x[0]), g.sub(expm1(g, x[0]), expm1(g, g.neg(x[0]))));)},
      {"cosh", 1, {0}, Result::Float, {}, {},
       E(return mul(g, k(g, 0.5, x[0]), g.add(un(g, NodeKind::Exp, x[0]), un(g, NodeKind::Exp, g.neg(x[0]))));)},
      {"tanh", 1, {0}, Result::Float, {}, {}, U(Tanh)},
      {"sigmoid", 1, {0}, Result::Float, {}, {}, U(Sigmoid)},
      {"erf", 1, {0}, Result::Float, {}, {}, U(Erf)},
      {"logical_not", 1, {0}, Result::Bool, {}, {}, E(return un(g, NodeKind::LogicalNot, g.cast(x[0], DType::Bool));)},
      {"isnan", 1, {0}, Result::Bool, {}, {}, E(return floating(g, x[0]) ? un(g, NodeKind::IsNaN, x[0]) : ne(g, x[0], x[0]);)},
      {"isinf", 1, {0}, Result::Bool, {}, {},
       E(return floating(g, x[0]) ? g.binary(NodeKind::Equal, g.abs(x[0]), k(g, INFINITY, x[0])) : ne(g, x[0], x[0]);)},
      {"isposinf", 1, {0}, Result::Bool, {}, {},
       E(return floating(g, x[0]) ? g.binary(NodeKind::Equal, x[0], k(g, INFINITY, x[0])) : ne(g, x[0], x[0]);)},
      {"isneginf", 1, {0}, Result::Bool, {}, {},  // softmax's guard for all -inf rows (_safe_softmax, SDPA)
       E(return floating(g, x[0]) ? g.binary(NodeKind::Equal, x[0], k(g, -INFINITY, x[0])) : ne(g, x[0], x[0]);)},
      {"logaddexp", 2, {0, 1}, Result::Promoted, {}, {}, E(return logaddexp(g, x[0], x[1], false);)},
      {"logaddexp2", 2, {0, 1}, Result::Promoted, {}, {}, E(return logaddexp(g, x[0], x[1], true);)},
      {"nan_to_num", 1, {0}, Result::Promoted, {}, {"nan", "posinf", "neginf"}, E(return nan_to_num(g, x[0], s);)},
      {"isfinite", 1, {0}, Result::Bool, {}, {},
       E(if (!floating(g, x[0])) return g.binary(NodeKind::Equal, x[0], x[0]);
         return g.logical_and(g.binary(NodeKind::Equal, x[0], x[0]), ne(g, g.abs(x[0]), k(g, INFINITY, x[0])));)},
      // --- activations ------------------------------------------------------------
      {"_prelu_kernel", 2, {0, 1}, Result::Promoted, {}, {}, E(return sel(g, gt0(g, x[0]), x[0], mul(g, x[1], x[0]));)},
      {"relu", 1, {0}, Result::Promoted, {}, {}, E(return sel(g, g.lt(x[0], k(g, 0, x[0])), k(g, 0, x[0]), x[0]);)},  // -0.0 stays, as torch
      {"silu", 1, {0}, Result::Float, {}, {}, E(return mul(g, x[0], un(g, NodeKind::Sigmoid, x[0]));)},
      {"mish", 1, {0}, Result::Float, {}, {}, E(return mul(g, x[0], un(g, NodeKind::Tanh, softplus_of(g, x[0])));)},
      {"gelu", 1, {0}, Result::Float, {}, {"approximate"}, E(return gelu_node(g, x[0], str_attr_or(s, "approximate", "none"));)},
      {"hardsigmoid", 1, {0}, Result::Float, {}, {},
       E(G y = g.div(g.add(x[0], k(g, 3, x[0])), k(g, 6, x[0]));
         return g.minimum(g.maximum(y, k(g, 0, y)), k(g, 1, y));)},
      {"hardswish", 1, {0}, Result::Float, {}, {},  // ATen: x * min(max(x + 3, 0), 6) / 6
       E(G y = g.add(x[0], k(g, 3, x[0]));
         return g.div(mul(g, x[0], g.minimum(g.maximum(y, k(g, 0, y)), k(g, 6, y))), k(g, 6, x[0]));)},
      {"softplus", 3, {0}, Result::Float, {}, {},  // (self, beta, threshold)
       E(G z = mul(g, x[0], x[1]);
         return sel(g, g.gt(z, x[2]), x[0], g.div(softplus_of(g, z), x[1]));)},
      {"elu", 4, {0}, Result::Float, {}, {},  // (self, alpha, scale, input_scale)
       E(G neg = mul(g, mul(g, x[1], x[2]), expm1(g, mul(g, x[0], x[3])));
         return sel(g, g.gt(x[0], k(g, 0, x[0])), mul(g, x[0], x[2]), neg);)},
      {"leaky_relu", 2, {0}, Result::Promoted, {}, {}, E(return sel(g, gt0(g, x[0]), x[0], mul(g, x[0], x[1]));)},
      {"hardtanh", 3, {0}, Result::Promoted, {}, {}, E(return g.minimum(g.maximum(x[0], x[1]), x[2]);)},
      {"threshold", 3, {0}, Result::Promoted, {}, {}, E(return sel(g, g.le(x[0], x[1]), x[2], x[0]);)},
      {"hardshrink", 2, {0}, Result::Promoted, {}, {},
       E(return sel(g, g.le(g.abs(x[0]), x[1]), k(g, 0, x[0]), x[0]);)},
      {"clamp", 3, {0, 1, 2}, Result::Promoted, {}, {},
       E(if (!has(x[1]) || !has(x[2])) return has(x[1]) ? clamp_one_side(g, x[0], x[1], true) : clamp_one_side(g, x[0], x[2], false);
         return g.minimum(g.maximum(x[0], x[1]), x[2]);)},
      {"clamp_min", 2, {0, 1}, Result::Promoted, {}, {}, E(return clamp_one_side(g, x[0], x[1], true);)},
      {"clamp_max", 2, {0, 1}, Result::Promoted, {}, {}, E(return clamp_one_side(g, x[0], x[1], false);)},
      // --- activation backwards ---------------------------------------------------
      {"threshold_backward", 3, {0, 1}, Result::Promoted, {}, {},
       E(return sel(g, g.le(x[1], x[2]), k(g, 0, x[0]), x[0]);)},
      {"hardtanh_backward", 4, {0, 1}, Result::Promoted, {}, {},
       E(G out = g.binary(NodeKind::LogicalOr, g.le(x[1], x[2]), g.ge(x[1], x[3]));
         return sel(g, out, k(g, 0, x[0]), x[0]);)},
      {"sigmoid_backward", 2, {0, 1}, Result::Promoted, {}, {},
       // ATen: (grad * (1 - y)) * y, each step rounded to float16 (its
       // Vectorized<Half> kernel) but computed in float32 for bfloat16
       E(const bool half = s.attrs().count("common") && s.str_attr("common") == "float16";
         auto step = [&](G v) { return half ? in_common_dtype(g, v, s) : v; };
         return mul(g, step(mul(g, x[0], step(g.sub(k(g, 1, x[1]), x[1])))), x[1]);)},
      {"tanh_backward", 2, {0, 1}, Result::Promoted, {}, {},
       // ATen: grad * (1 - y * y), the parenthesis one fused multiply-add
       E(if (!floating(g, x[1])) return mul(g, x[0], g.sub(k(g, 1, x[1]), mul(g, x[1], x[1])));
         return mul(g, x[0], fma(g, un(g, NodeKind::Negative, x[1]), x[1], k(g, 1, x[1])));)},
      {"silu_backward", 2, {0, 1}, Result::Promoted, {}, {},
       // ATen: grad * s * (1 + x * (1 - s)), the last factor one fused multiply-add
       E(G sg = un(g, NodeKind::Sigmoid, x[1]);
         return mul(g, mul(g, x[0], sg), fma(g, x[1], g.sub(k(g, 1, sg), sg), k(g, 1, sg)));)},
      {"gelu_backward", 2, {0, 1}, Result::Promoted, {}, {"approximate"},
       E(return gelu_grad_node(g, x[0], x[1], str_attr_or(s, "approximate", "none"));)},
      {"leaky_relu_backward", 3, {0, 1}, Result::Promoted, {}, {"self_is_result"},
       E(return sel(g, gt0(g, x[1]), x[0], mul(g, x[0], x[2]));)},
      {"elu_backward", 5, {0, 4}, Result::Promoted, {}, {"is_result"},  // (grad, alpha, scale, input_scale, self_or_result)
       E(G y = x[4];
         if (int_attr_or(s, "is_result", 0)) {
           G neg = mul(g, mul(g, x[0], x[3]), g.add(y, mul(g, x[1], x[2])));
           return sel(g, g.le(y, k(g, 0, y)), neg, mul(g, x[0], x[2]));
         }
         G neg = mul(g, mul(g, mul(g, x[0], x[3]), mul(g, x[1], x[2])), un(g, NodeKind::Exp, mul(g, y, x[3])));
         return sel(g, g.le(y, k(g, 0, y)), neg, mul(g, x[0], x[2]));)},
      {"softplus_backward", 4, {0, 1}, Result::Promoted, {}, {},  // (grad, self, beta, threshold)
       E(G z = un(g, NodeKind::Exp, mul(g, x[1], x[2]));
         return sel(g, g.gt(mul(g, x[1], x[2]), x[3]), x[0], mul(g, x[0], g.div(z, g.add(z, k(g, 1, z)))));)},
      {"hardsigmoid_backward", 2, {0, 1}, Result::Promoted, {}, {},
       E(G inside = g.logical_and(g.gt(x[1], k(g, -3, x[1])), g.lt(x[1], k(g, 3, x[1])));
         // ATen multiplies by the float32 constant 1.0f / 6.0f, in float64 too
         return sel(g, inside, g.mul(x[0], k(g, static_cast<double>(1.0f / 6.0f), x[0])), k(g, 0, x[0]));)},
      {"hardswish_backward", 2, {0, 1}, Result::Promoted, {}, {},
       E(G mid = mul(g, x[0], g.add(g.div(x[1], k(g, 3, x[1])), k(g, 0.5, x[1])));
         G lo = g.lt(x[1], k(g, -3, x[1])), hi = g.le(x[1], k(g, 3, x[1]));
         return sel(g, lo, k(g, 0, x[0]), sel(g, hi, mid, x[0]));)},
      {"hardshrink_backward", 3, {0, 1}, Result::Promoted, {}, {},
       E(return sel(g, g.le(g.abs(x[1]), x[2]), k(g, 0, x[0]), x[0]);)},
      // --- binary arithmetic ------------------------------------------------------
      {"add", 3, {0, 1}, Result::Promoted, {}, {}, E(return add_scaled(g, x[0], x[1], x[2], false);), {2}},
      {"sub", 3, {0, 1}, Result::Promoted, {}, {}, E(return add_scaled(g, x[0], x[1], x[2], true);), {2}},
      {"rsub", 3, {0, 1}, Result::Promoted, {}, {}, E(return add_scaled(g, x[1], x[0], x[2], true);), {2}},
      {"mul", 2, {0, 1}, Result::Promoted, {}, {}, E(return g.type(x[0]).dtype == DType::Bool ? g.logical_and(x[0], x[1]) : mul(g, x[0], x[1]);)},
      {"div", 2, {0, 1}, Result::Float, {}, {"rounding_mode"},
       E(G q = g.div(x[0], x[1]);
         std::string mode = str_attr_or(s, "rounding_mode", "");
         if (mode == "floor") return float_division(g, "floor_divide", x[0], x[1], floor_divide);
         if (mode == "trunc") return trunc(g, q);
         return q;)},
      {"floor_divide", 2, {0, 1}, Result::Promoted, {}, {},
       E(if (!floating(g, x[0])) return g.binary(NodeKind::FloorDivide, integral(g, x[0], false), x[1]);
         return float_division(g, "floor_divide", x[0], x[1], floor_divide);)},
      {"remainder", 2, {0, 1}, Result::Promoted, {}, {},
       E(if (!floating(g, x[0])) return g.binary(NodeKind::Remainder, integral(g, x[0], false), x[1]);
         return float_division(g, "remainder", x[0], x[1], remainder);)},
      {"fmod", 2, {0, 1}, Result::Promoted, {}, {}, E(return float_division(g, "fmod", x[0], x[1], fmod);)},
      {"pow", 2, {0, 1}, Result::Promoted, {}, {}, E(return g.binary(NodeKind::Power, x[0], x[1]);)},
      {"maximum", 2, {0, 1}, Result::Promoted, {}, {}, E(return g.maximum(x[0], x[1]);)},
      {"minimum", 2, {0, 1}, Result::Promoted, {}, {}, E(return g.minimum(x[0], x[1]);)},
      {"fmax", 2, {0, 1}, Result::Promoted, {}, {},
       E(return sel(g, un(g, NodeKind::IsNaN, x[0]), x[1], sel(g, un(g, NodeKind::IsNaN, x[1]), x[0], g.maximum(x[0], x[1])));)},
      {"fmin", 2, {0, 1}, Result::Promoted, {}, {},
       E(return sel(g, un(g, NodeKind::IsNaN, x[0]), x[1], sel(g, un(g, NodeKind::IsNaN, x[1]), x[0], g.minimum(x[0], x[1])));)},
      {"hypot", 2, {0, 1}, Result::Promoted, {}, {}, E(return hypot(g, x[0], x[1]);)},
      {"xlogy", 2, {0, 1}, Result::Float, {}, {},
       // ATen's kernel takes log(y) in the tensor's dtype (a float16 log rounds)
       E(G r = mul(g, x[0], in_common_dtype(g, un(g, NodeKind::Log, x[1]), s));
         G zero = g.binary(NodeKind::Equal, x[0], k(g, 0, x[0]));
         return sel(g, un(g, NodeKind::IsNaN, x[1]), x[1], sel(g, zero, k(g, 0, x[0]), r));)},
      {"lerp", 3, {0, 1}, Result::Promoted, {}, {},  // torch's two-sided form: exact at both ends
       E(if (!floating(g, x[0])) throw std::domain_error("fallback");  // torch: floating only
         G d = g.sub(x[1], x[0]);  // ATen's lerp_vec: fmadd(w or w - 1, end - start, start or end)
         G lo = fma(g, x[2], d, x[0]);
         G hi = fma(g, g.sub(x[2], k(g, 1, x[2])), d, x[1]);
         return sel(g, g.lt(g.abs(x[2]), k(g, 0.5, x[2])), lo, hi);)},
      // ATen: self + value * t1 * t2 (contracted: fmadd(value * t1, t2, self)), self + value * t1 / t2
      {"addcmul", 4, {0, 1, 2}, Result::Promoted, {}, {},
       E(return fma(g, mul(g, x[3], x[1]), x[2], x[0]);), {3}},
      {"addcdiv", 4, {0, 1, 2}, Result::Promoted, {}, {}, E(return g.add(x[0], g.div(mul(g, x[3], x[1]), x[2]));), {3}},
      // --- comparisons and logic --------------------------------------------------
      {"eq", 2, {0, 1}, Result::Bool, {}, {}, E(return g.binary(NodeKind::Equal, x[0], x[1]);)},
      {"ne", 2, {0, 1}, Result::Bool, {}, {}, E(return ne(g, x[0], x[1]);)},
      {"lt", 2, {0, 1}, Result::Bool, {}, {}, E(return g.lt(x[0], x[1]);)},
      {"le", 2, {0, 1}, Result::Bool, {}, {}, E(return g.le(x[0], x[1]);)},
      {"gt", 2, {0, 1}, Result::Bool, {}, {}, E(return g.gt(x[0], x[1]);)},
      {"ge", 2, {0, 1}, Result::Bool, {}, {}, E(return g.ge(x[0], x[1]);)},
      {"logical_and", 2, {0, 1}, Result::Bool, {}, {}, E(return g.logical_and(g.cast(x[0], DType::Bool), g.cast(x[1], DType::Bool));)},
      {"logical_or", 2, {0, 1}, Result::Bool, {}, {},
       E(return g.binary(NodeKind::LogicalOr, g.cast(x[0], DType::Bool), g.cast(x[1], DType::Bool));)},
      {"logical_xor", 2, {0, 1}, Result::Bool, {}, {}, E(return ne(g, g.cast(x[0], DType::Bool), g.cast(x[1], DType::Bool));)},
      // bitwise ops: integers and bools (floats go to the CPU, which raises torch's error)
      {"bitwise_and", 2, {0, 1}, Result::Promoted, {}, {}, E(return g.binary(NodeKind::BitwiseAnd, integral(g, x[0]), x[1]);)},
      {"bitwise_or", 2, {0, 1}, Result::Promoted, {}, {}, E(return g.binary(NodeKind::BitwiseOr, integral(g, x[0]), x[1]);)},
      {"bitwise_xor", 2, {0, 1}, Result::Promoted, {}, {}, E(return g.binary(NodeKind::BitwiseXor, integral(g, x[0]), x[1]);)},
      {"bitwise_not", 1, {0}, Result::Promoted, {}, {}, E(return un(g, NodeKind::BitwiseNot, integral(g, x[0]));)},
      {"bitwise_left_shift", 2, {0, 1}, Result::Promoted, {}, {}, E(return g.binary(NodeKind::LeftShift, integral(g, x[0], false), x[1]);)},
      {"bitwise_right_shift", 2, {0, 1}, Result::Promoted, {}, {}, E(return g.binary(NodeKind::RightShift, integral(g, x[0], false), x[1]);)},
      {"__lshift__", 2, {0, 1}, Result::Promoted, {}, {}, E(return g.binary(NodeKind::LeftShift, integral(g, x[0], false), x[1]);)},
      {"__rshift__", 2, {0, 1}, Result::Promoted, {}, {}, E(return g.binary(NodeKind::RightShift, integral(g, x[0], false), x[1]);)},
      {"where", 3, {1, 2}, Result::Promoted, {0}, {}, E(return sel(g, x[0], x[1], x[2]);)},
      {"native_dropout_backward", 2, {0}, Result::Promoted, {1}, {"scale"},  // (grad_output, mask); grad * mask * scale
       E(G scale = g.constant(std::get<double>(s.attrs().at("scale")), g.type(x[0]).dtype);
         return sel(g, x[1], mul(g, x[0], scale), k(g, 0, x[0]));)},
      {"masked_fill", 3, {0}, Result::First, {1}, {}, E(return sel(g, x[1], x[2], x[0]);)},
  };
  return t;
}
#undef U
#undef E

const Entry* find_entry(const std::string& name) {
  static const auto* index = [] {
    auto* m = new std::unordered_map<std::string, const Entry*>();
    for (const Entry& e : table()) (*m)[e.name] = &e;
    return m;
  }();
  auto it = index->find(name);
  return it == index->end() ? nullptr : it->second;
}

bool is_tensor_type(const c10::TypePtr& t) {
  if (t->kind() == c10::TypeKind::TensorType) return true;
  auto opt = t->cast<c10::OptionalType>();
  return opt && opt->getElementType()->kind() == c10::TypeKind::TensorType;
}
bool is_scalar_type(const c10::TypePtr& t) {
  if (t->kind() == c10::TypeKind::NumberType) return true;
  auto opt = t->cast<c10::OptionalType>();
  return opt && opt->getElementType()->kind() == c10::TypeKind::NumberType;
}
bool is_list_of(const c10::TypePtr& t, c10::TypeKind kind) {
  auto list = t->cast<c10::ListType>();
  return list && list->getElementType()->kind() == kind;
}

// --- the graph ------------------------------------------------------------------
// One op over inputs [first, first + present operands) of the spec.
// ATen's TensorIterator casts every operand to the common dtype before a
// kernel computes in opmath: a Python scalar or 0-d tensor meeting a float16
// or bfloat16 tensor is rounded to it first (x + 0.1 adds float16(0.1)), as is
// add/sub's alpha (their kernels convert it to scalar_t). mul and div read a
// scalar second operand unrounded (original_scalar_value; attr "exact"), as
// addcmul/addcdiv/lerp read their scalar factors. attr "common": the common
// dtype, present only where it is not the compute dtype.
bool rounds_to_common(const Entry& e, int i, const GraphSpec& s) {
  if (!s.attrs().count("common") || (s.attrs().count("exact") && s.int_attr("exact") == i)) return false;
  bool promoted = std::find(e.promote.begin(), e.promote.end(), i) != e.promote.end();
  bool alpha = e.arity == 3 && std::find(e.unit_factors.begin(), e.unit_factors.end(), i) != e.unit_factors.end();
  return promoted || alpha;
}

G build_one(Graph& g, const GraphSpec& s, size_t first) {
  const Entry& e = *find_entry(s.str_attr("op"));
  DType compute = graph::dtype_from_name(s.str_attr("compute"));
  DType common = s.attrs().count("common") ? graph::dtype_from_name(s.str_attr("common")) : compute;
  DType result = graph::dtype_from_name(s.str_attr("result"));
  int64_t present = s.int_attr("present");
  std::vector<G> x;
  size_t next = first;
  for (int i = 0; i < e.arity; ++i) {
    if (!(present >> i & 1)) {
      x.push_back(G{});
      continue;
    }
    G p = g.placeholder(s.input(next++), "x" + std::to_string(i));
    bool mask = std::find(e.masks.begin(), e.masks.end(), i) != e.masks.end();
    if (!mask && rounds_to_common(e, i, s)) p = cast_to(g, p, common);
    DType want = mask ? DType::Bool : compute;
    x.push_back(g.type(p).dtype == want ? p : g.cast(p, want));
  }
  G y = e.emit(g, x, s);
  return g.type(y).dtype == result ? y : g.cast(y, result);
}

void build(Graph& g, const GraphSpec& s) { g.output(build_one(g, s, 0)); }

// A _foreach_ list as one graph: attr "count" ops, each over its own inputs
// (the same number each, in list order), one output each.
void build_foreach(Graph& g, const GraphSpec& s) {
  const size_t count = static_cast<size_t>(s.int_attr("count")), per = s.num_inputs() / count;
  for (size_t j = 0; j < count; ++j) g.output(build_one(g, s, j * per));
}

// One operand: a tensor, a Scalar, or absent (None).
struct Operand {
  // The caller's tensor (or a list element on the stack), borrowed: no
  // reference count traffic per operand.
  c10::MaybeOwned<at::Tensor> held;
  std::optional<at::Scalar> scalar;
  const at::Tensor& tensor() const { return *held; }
  bool present() const { return tensor().defined() || scalar.has_value(); }
};

[[noreturn]] void unsupported() { throw std::domain_error("fallback"); }

// An IValue's tensor (None: undefined), borrowed from the stack.
c10::MaybeOwned<at::Tensor> borrow(const c10::IValue& v) {
  return v.isNone() ? c10::MaybeOwned<at::Tensor>() : c10::MaybeOwned<at::Tensor>::borrowed(v.toTensor());
}

// One elementwise call, checked, typed and broadcast: its graph's inputs and
// attrs, and where its result goes.
struct Plan {
  const Entry* entry;
  runtime::BorrowedTensors<4> inputs;  // tensors (borrowed) and 0-d Scalars, present operands only
  int64_t present = 0;
  at::ScalarType compute, result;
  // The dtype operands are rounded to before compute (ATen's common dtype),
  // when it is a reduced float computed in float32; and an operand read
  // unrounded (rounds_to_common), or -1.
  std::optional<at::ScalarType> common;
  int exact = -1;
  at::DimVector shape;
  c10::Device device{c10::kCPU};
  at::Tensor dest;
  bool inplace;

  bool empty() const { return c10::multiply_integers(shape) == 0; }
  // Writing straight into dest is safe unless another operand overlaps it
  // with a different layout (x.add_(x.t())), or a cast is needed.
  bool direct() const {
    return dest.defined() && dest.scalar_type() == result &&
           std::none_of(inputs.begin(), inputs.end(),
                        [&](const at::Tensor& t) { return !t.is_same(dest) && t.is_alias_of(dest); });
  }
  // This call's attrs; its inputs too unless the caller adds them.
  void describe(GraphSpec& spec, const graph::Attrs& attrs, bool with_inputs = true) const {
    if (with_inputs)
      for (const at::Tensor& t : inputs) spec.input_dynamic(t);
    spec.attr("op", entry->name)
        .attr("compute", graph::dtype_name(graph_dtype(compute)))
        .attr("result", graph::dtype_name(graph_dtype(result)))
        .attr("present", present);
    if (common) spec.attr("common", graph::dtype_name(graph_dtype(*common)));
    if (exact >= 0) spec.attr("exact", int64_t{exact});
    for (const auto& [name, value] : attrs) spec.attr(name, value);
  }
};

// torch's result type of the operands entry `e` promotes. Tensors of one
// dtype (the common call) promote to it whatever their dims, without
// building ATen's promotion state.
at::ScalarType promote_types(const Entry& e, c10::ArrayRef<Operand> ops) {
  std::optional<at::ScalarType> same;
  for (int i : e.promote) {
    const at::Tensor& t = ops[i].tensor();
    if (!t.defined() || (same && *same != t.scalar_type())) {
      same.reset();
      break;
    }
    same = t.scalar_type();
  }
  if (same) return *same;
  at::native::ResultTypeState state{};
  for (int i : e.promote) {
    const Operand& o = ops[i];
    if (o.tensor().defined()) state = at::native::update_result_type_state(o.tensor(), state);
    else if (o.scalar) state = at::native::update_result_type_state(*o.scalar, state);
  }
  return at::native::result_type(state);
}

// Plans entry `e` on its operands, writing into `dest` (in-place self or
// out=) when given. Throws std::domain_error when the device has no graph for
// it; raises torch's errors before anything is written.
Plan plan_elementwise(const Entry& e, c10::ArrayRef<Operand> ops, const graph::Attrs& attrs, const at::Tensor& dest,
                      bool inplace) {
  at::ScalarType promoted = promote_types(e, ops);
  at::ScalarType result = promoted;
  bool rounding = !attrs.empty() && attrs.count("rounding_mode") != 0;
  if (e.result == Result::Float && !rounding && at::isIntegralType(promoted, /*includeBool=*/true))
    result = c10::typeMetaToScalarType(c10::get_default_dtype());
  if (e.result == Result::Bool) result = at::kBool;
  if (e.result == Result::First) result = promoted = ops[0].tensor().scalar_type();
  at::ScalarType compute = opmath_type(e.result == Result::Float ? (rounding ? promoted : result) : promoted);
  // Integer division/remainder semantics (floor/trunc on integers) are not float math.
  if (at::isIntegralType(compute, true) &&
      (rounding || !std::strcmp(e.name, "fmod") || !std::strcmp(e.name, "pow")))
    unsupported();
  if (!graph_dtype_ok(compute) || !graph_dtype_ok(result)) unsupported();

  Plan plan{&e, {}, 0, compute, result, std::nullopt, -1, {}, c10::Device(c10::kCPU), dest, inplace};
  if (e.result != Result::First && at::isReducedFloatingType(promoted) && compute != promoted) {
    plan.common = promoted;
    const bool unrounded_scalar = !std::strcmp(e.name, "mul") || !std::strcmp(e.name, "div") || !std::strcmp(e.name, "floor_divide");
    if (unrounded_scalar && (ops[1].scalar || (ops[1].tensor().defined() && ops[1].tensor().dim() == 0))) plan.exact = 1;
  }
  bool first = true;
  std::optional<c10::Device> device;
  for (const Operand& o : ops) {
    if (!o.tensor().defined()) continue;
    if (!graph_dtype_ok(o.tensor().scalar_type())) unsupported();
    if (o.tensor().device().type() == c10::DeviceType::PrivateUse1) device = o.tensor().device();
    else TORCH_CHECK(o.tensor().is_cpu() && o.tensor().dim() == 0, "Expected all tensors to be on the same device, but found "
                     "at least two devices, mpsgraph:0 and ", o.tensor().device(), "!");
    if (first) plan.shape.assign(o.tensor().sizes().begin(), o.tensor().sizes().end());
    else if (o.tensor().sizes() != at::IntArrayRef(plan.shape)) plan.shape = at::infer_size_dimvector(plan.shape, o.tensor().sizes());
    first = false;
  }
  if (!device) unsupported();  // only CPU scalars: not ours
  plan.device = *device;
  if (dest.defined()) {
    if (inplace)
      TORCH_CHECK(at::IntArrayRef(plan.shape) == dest.sizes(), "output with shape ", dest.sizes(),
                  " doesn't match the broadcast shape ", at::IntArrayRef(plan.shape));
    TORCH_CHECK(at::canCast(result, dest.scalar_type()), "result type ", result,
                " can't be cast to the desired output type ", dest.scalar_type());
  }
  // torch's alpha rules (add, sub, rsub).
  if (!e.unit_factors.empty() && e.arity == 3 && ops[2].scalar) {
    const at::Scalar& alpha = *ops[2].scalar;
    TORCH_CHECK(!alpha.isBoolean() || result == at::kBool, "Boolean alpha only supported for Boolean results.");
    TORCH_CHECK(at::isFloatingType(result) || at::isComplexType(result) || alpha.isIntegral(true),
                "For integral input tensors, argument alpha must not be a floating point number.");
  }
  for (size_t i = 0; i < ops.size(); ++i) {
    const Operand& o = ops[i];
    if (!o.present()) continue;
    bool unit = o.scalar && !o.scalar->isComplex() && !o.scalar->isBoolean() && o.scalar->toDouble() == 1.0;
    if (unit && std::find(e.unit_factors.begin(), e.unit_factors.end(), static_cast<int>(i)) != e.unit_factors.end())
      continue;
    plan.present |= int64_t{1} << i;
    if (o.tensor().defined()) plan.inputs.borrow(o.tensor());
    else plan.inputs.own(scalar_input(*o.scalar, compute));
  }
  return plan;
}

// A call's memo key: the fields describe() writes its spec from when the
// call has no attrs (entry, dtypes, operands present, each input's dtype and
// rank), in four words. nullopt: not memoized.
using Memo = runtime::GraphMemo<4>;
std::optional<Memo::Key> memo_key(const Plan& p, const graph::Attrs& attrs) {
  constexpr size_t kMaxInputs = 8;  // one byte each of the last two words
  if (!attrs.empty() || p.inputs.size() > kMaxInputs || p.present >> 16) return std::nullopt;
  auto byte = [](auto v) { return static_cast<uint64_t>(static_cast<uint8_t>(v)); };
  Memo::Key key{reinterpret_cast<uintptr_t>(p.entry),
                static_cast<uint64_t>(p.present) | byte(p.compute) << 16 | byte(p.result) << 24 |
                    byte(p.common ? static_cast<int>(*p.common) + 1 : 0) << 32 | byte(p.exact + 1) << 40 |
                    byte(p.inputs.size()) << 48 | byte(p.device.type()) << 56,
                0, 0};
  for (size_t i = 0; i < p.inputs.size(); ++i) {
    key[2] |= byte(p.inputs[i].scalar_type()) << (8 * i);
    key[3] |= byte(p.inputs[i].dim()) << (8 * i);
  }
  return key;
}

// The call's graph, through this thread's memo: a repeat call (same dtypes
// and ranks) builds no spec and looks nothing up.
std::vector<at::Tensor> run_graph_of(const Plan& p, const graph::Attrs& attrs, const std::vector<at::Tensor>* outputs) {
  thread_local Memo memo;
  auto spec = [&] {
    GraphSpec s("aten::elementwise");
    p.describe(s, attrs);
    return s;
  };
  return runtime::run_graph_memoized(memo, memo_key(p, attrs), spec, build, p.inputs, outputs);
}

at::Tensor run_plan(const Plan& p, const graph::Attrs& attrs) {
  if (p.dest.defined() && !p.inplace) at::native::resize_output(p.dest, p.shape);
  if (p.empty()) return p.dest.defined() ? p.dest : at::empty(p.shape, at::TensorOptions().device(p.device).dtype(p.result));
  if (!p.dest.defined()) return std::move(run_graph_of(p, attrs, nullptr)[0]);
  if (!p.direct()) return write_result(run_graph_of(p, attrs, nullptr)[0], p.dest);
  const std::vector<at::Tensor> dest{p.dest};
  run_graph_of(p, attrs, &dest);
  return p.dest;
}

at::Tensor run_elementwise(const Entry& e, c10::ArrayRef<Operand> ops, const graph::Attrs& attrs,
                           const at::Tensor& dest, bool inplace) {
  return run_plan(plan_elementwise(e, ops, attrs, dest, inplace), attrs);
}

// A _foreach_ list whose elements all plan to the same graph attrs (one op,
// dtypes, operands present) and need no special handling runs as one graph
// (build_foreach): one graph run per optimizer step and op, not one per
// parameter. Returns false (nothing run) otherwise.
bool run_foreach_fused(const std::vector<Plan>& plans, const graph::Attrs& attrs, std::vector<at::Tensor>& results) {
  if (plans.size() < 2) return false;
  const Plan& p0 = plans[0];
  for (const Plan& p : plans) {
    if (p.empty() || p.present != p0.present || p.compute != p0.compute || p.result != p0.result ||
        p.common != p0.common || p.exact != p0.exact ||
        p.inputs.size() != p0.inputs.size() || p.device != p0.device || (p.dest.defined() && !p.direct()))
      return false;
  }
  // One graph reads every input before the last write: no element may read
  // or write memory another element writes (the per-element loop orders them).
  std::unordered_set<const void*> written;
  for (const Plan& p : plans)
    if (p.dest.defined() && !written.insert(p.dest.storage().unsafeGetStorageImpl()).second) return false;
  if (!written.empty())
    for (const Plan& p : plans)
      for (const at::Tensor& t : p.inputs)
        if (!t.is_cpu() && !t.is_same(p.dest) && written.count(t.storage().unsafeGetStorageImpl())) return false;
  GraphSpec spec("aten::foreach");
  std::vector<at::Tensor> inputs;
  inputs.reserve(plans.size() * p0.inputs.size());
  for (const Plan& p : plans)
    for (const at::Tensor& t : p.inputs) {
      spec.input_dynamic(t);
      inputs.push_back(t);
    }
  p0.describe(spec, attrs, /*with_inputs=*/false);
  spec.attr("count", static_cast<int64_t>(plans.size()));
  if (p0.inplace) {
    std::vector<at::Tensor> dests;
    dests.reserve(plans.size());
    for (const Plan& p : plans) dests.push_back(p.dest);
    runtime::run_graph_into(spec, build_foreach, inputs, dests);
  } else {
    results = runtime::run_graph(spec, build_foreach, inputs);
  }
  return true;
}

// --- boxed kernels ------------------------------------------------------------------
void read_attr(graph::Attrs& attrs, const c10::Argument& a, const c10::IValue& v) {
  if (v.isNone()) return;
  if (v.isString()) attrs[a.name()] = std::string(v.toStringRef());
  else if (v.isBool()) attrs[a.name()] = int64_t{v.toBool()};
  else if (v.isInt()) attrs[a.name()] = v.toInt();
  else if (v.isDouble()) attrs[a.name()] = v.toDouble();
}

// What each argument of one overload is, worked out once at registration
// (accept_elementwise) instead of from the schema on every call.
struct Overload {
  enum Role : uint8_t { Tensor, Scalar, Out, Attr };
  const Entry* entry = nullptr;
  bool inplace = false;
  std::vector<Role> roles;
};

// Keyed by the schema's address (the dispatcher's, stable for the process);
// filled while the library registers, read-only afterwards.
std::unordered_map<const c10::FunctionSchema*, Overload>& overloads() {
  static auto* m = new std::unordered_map<const c10::FunctionSchema*, Overload>();
  return *m;
}

void elementwise_kernel(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);  // see guarded()
  const c10::FunctionSchema& schema = op.schema();
  const Overload& o = overloads().at(&schema);
  const auto& args = schema.arguments();
  const size_t first = stack->size() - args.size();
  c10::SmallVector<Operand, 4> ops;
  graph::Attrs attrs;
  at::Tensor dest;
  for (size_t i = 0; i < args.size(); ++i) {
    c10::IValue& v = (*stack)[first + i];
    switch (o.roles[i]) {
      case Overload::Out: dest = v.toTensor(); break;
      case Overload::Tensor: ops.push_back({borrow(v), std::nullopt}); break;
      case Overload::Scalar:
        ops.push_back({c10::MaybeOwned<at::Tensor>(), v.isNone() ? std::nullopt : std::optional<at::Scalar>(v.toScalar())});
        break;
      case Overload::Attr: read_attr(attrs, args[i], v); break;
    }
  }
  if (o.inplace) dest = ops[0].tensor();
  at::Tensor result;
  try {
    result = run_elementwise(*o.entry, ops, attrs, dest, o.inplace);
  } catch (const std::domain_error&) {
    return fallback(op, stack);
  }
  torch::jit::drop(*stack, args.size());
  torch::jit::push(*stack, std::move(result));
}

// The hot overloads, unboxed: calls whose arguments are all Tensor and
// Scalar operands (mul.Tensor, add.Tensor with its alpha, sigmoid,
// tanh_backward, add_.Tensor, ...) skip the IValue stack the boxed kernel
// reads. Other inputs than the graphs take go to the CPU fallback, boxed then.
Operand operand(const at::Tensor& t) { return {c10::MaybeOwned<at::Tensor>::borrowed(t), std::nullopt}; }
Operand operand(const at::Scalar& s) { return {c10::MaybeOwned<at::Tensor>(), s}; }

template <class... Args>  // each const at::Tensor& or const at::Scalar&
torch::CppFunction functional_kernel(c10::OperatorHandle op, const Entry* e) {
  return torch::CppFunction([op, e](Args... args) -> at::Tensor {
    auto run = [&] {
      const std::array<Operand, sizeof...(Args)> ops{operand(args)...};
      return run_elementwise(*e, ops, {}, at::Tensor(), /*inplace=*/false);
    };
    return run_or_fall_back<at::Tensor, Args...>(op, run, args...);
  });
}

template <class... Args>  // the operands after self
torch::CppFunction inplace_kernel(c10::OperatorHandle op, const Entry* e) {
  return torch::CppFunction([op, e](at::Tensor& self, Args... args) -> at::Tensor& {
    auto run = [&]() -> at::Tensor& {
      const std::array<Operand, 1 + sizeof...(Args)> ops{operand(self), operand(args)...};
      run_elementwise(*e, ops, {}, self, /*inplace=*/true);
      return self;
    };
    return run_or_fall_back<at::Tensor&, at::Tensor&, Args...>(op, run, self, args...);
  });
}

std::optional<torch::CppFunction> typed_elementwise(const c10::OperatorHandle& op) {
  const c10::FunctionSchema& schema = op.schema();
  const Overload& o = overloads().at(&schema);
  std::string operands;  // 'T' a Tensor, 'S' a Scalar, neither optional
  for (size_t i = 0; i < o.roles.size(); ++i) {
    const c10::TypeKind kind = schema.arguments()[i].type()->kind();
    if (o.roles[i] == Overload::Tensor && kind == c10::TypeKind::TensorType) operands += 'T';
    else if (o.roles[i] == Overload::Scalar && kind == c10::TypeKind::NumberType) operands += 'S';
    else return std::nullopt;
  }
  using T = const at::Tensor&;
  using S = const at::Scalar&;
  if (o.inplace) {
    if (operands == "T") return inplace_kernel<>(op, o.entry);
    if (operands == "TT") return inplace_kernel<T>(op, o.entry);
    if (operands == "TS") return inplace_kernel<S>(op, o.entry);
    if (operands == "TTS") return inplace_kernel<T, S>(op, o.entry);
    if (operands == "TSS") return inplace_kernel<S, S>(op, o.entry);
    return std::nullopt;
  }
  if (operands == "T") return functional_kernel<T>(op, o.entry);
  if (operands == "TT") return functional_kernel<T, T>(op, o.entry);
  if (operands == "TS") return functional_kernel<T, S>(op, o.entry);
  if (operands == "TTS") return functional_kernel<T, T, S>(op, o.entry);
  if (operands == "TSS") return functional_kernel<T, S, S>(op, o.entry);
  return std::nullopt;
}

bool accept_elementwise(const c10::FunctionSchema& schema) {
  const Entry* e = find_entry(base_name(schema));
  if (!e || schema.returns().size() != 1 || schema.returns()[0].type()->kind() != c10::TypeKind::TensorType)
    return false;
  std::vector<size_t> outs = out_arguments(schema);
  if (outs.size() > 1) return false;
  Overload plan{e, is_inplace(schema), {}};
  int operands = 0;
  for (size_t i = 0; i < schema.arguments().size(); ++i) {
    const auto& a = schema.arguments()[i];
    if (std::find(outs.begin(), outs.end(), i) != outs.end()) {
      plan.roles.push_back(Overload::Out);
      continue;
    }
    if (is_tensor_type(a.type()) || is_scalar_type(a.type())) {
      plan.roles.push_back(is_tensor_type(a.type()) ? Overload::Tensor : Overload::Scalar);
      ++operands;
    } else if (std::none_of(e->attrs.begin(), e->attrs.end(), [&](const char* n) { return a.name() == n; })) {
      return false;  // an argument the math does not read (round.decimals, ...)
    } else {
      plan.roles.push_back(Overload::Attr);
    }
  }
  if (operands != e->arity) return false;
  overloads()[&schema] = std::move(plan);
  return true;
}

// _foreach_<op>[_]: the elementwise op per list element (lists, ScalarLists,
// and single Tensors/Scalars shared by all elements).
struct ForeachOverload {
  enum Role : uint8_t { TensorList, ScalarList, Tensor, Scalar, Attr };
  const Entry* entry = nullptr;
  bool inplace = false;
  std::vector<Role> roles;
};
std::unordered_map<const c10::FunctionSchema*, ForeachOverload>& foreach_overloads() {
  static auto* m = new std::unordered_map<const c10::FunctionSchema*, ForeachOverload>();
  return *m;
}

void foreach_kernel(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);  // see guarded()
  const c10::FunctionSchema& schema = op.schema();
  const ForeachOverload& o = foreach_overloads().at(&schema);
  const auto& args = schema.arguments();
  const size_t first = stack->size() - args.size();
  size_t n = (*stack)[first].toTensorList().size();
  graph::Attrs attrs;
  for (size_t i = 0; i < args.size(); ++i)
    if (o.roles[i] == ForeachOverload::Attr) read_attr(attrs, args[i], (*stack)[first + i]);
  // The scalar lists, read once (not per element and pass).
  c10::SmallVector<std::optional<c10::impl::GenericList>, 4> scalar_lists(args.size());
  for (size_t i = 0; i < args.size(); ++i)
    if (o.roles[i] == ForeachOverload::ScalarList) scalar_lists[i] = (*stack)[first + i].toList();
  std::vector<at::Tensor> results;
  try {
    // Every element is planned (and checked) before any is written, so a
    // fallback never sees a half-updated list.
    std::vector<Plan> plans;
    plans.reserve(n);
    for (size_t j = 0; j < n; ++j) {
      c10::SmallVector<Operand, 4> ops;
      for (size_t i = 0; i < args.size(); ++i) {
        const c10::IValue& v = (*stack)[first + i];
        switch (o.roles[i]) {
          case ForeachOverload::TensorList: ops.push_back({borrow(v.toListRef()[j]), std::nullopt}); break;
          case ForeachOverload::ScalarList: ops.push_back({c10::MaybeOwned<at::Tensor>(), scalar_lists[i]->get(j).toScalar()}); break;
          case ForeachOverload::Tensor: ops.push_back({borrow(v), std::nullopt}); break;
          case ForeachOverload::Scalar:
            ops.push_back({c10::MaybeOwned<at::Tensor>(), v.isNone() ? std::nullopt : std::optional<at::Scalar>(v.toScalar())});
            break;
          case ForeachOverload::Attr: break;
        }
      }
      at::Tensor dest = o.inplace ? ops[0].tensor() : at::Tensor();
      plans.push_back(plan_elementwise(*o.entry, ops, attrs, dest, o.inplace));
    }
    if (!run_foreach_fused(plans, attrs, results)) {
      results.reserve(n);
      for (const Plan& p : plans) results.push_back(run_plan(p, attrs));
    }
  } catch (const std::domain_error&) {
    return fallback(op, stack);
  }
  torch::jit::drop(*stack, args.size());
  if (!o.inplace) torch::jit::push(*stack, c10::List<at::Tensor>(results));
}

bool accept_foreach(const c10::FunctionSchema& schema) {
  std::string base = base_name(schema);
  if (base.rfind("_foreach_", 0) != 0) return false;
  const Entry* e = find_entry(base.substr(9));
  if (!e || !out_arguments(schema).empty()) return false;
  bool inplace = is_inplace(schema);
  if (inplace ? !schema.returns().empty()
              : (schema.returns().size() != 1 || !is_list_of(schema.returns()[0].type(), c10::TypeKind::TensorType)))
    return false;
  int operands = 0;
  ForeachOverload plan{e, inplace, {}};
  for (size_t i = 0; i < schema.arguments().size(); ++i) {
    const auto& a = schema.arguments()[i];
    const auto& t = a.type();
    if (i == 0 && !is_list_of(t, c10::TypeKind::TensorType)) return false;
    if (is_list_of(t, c10::TypeKind::TensorType)) {
      plan.roles.push_back(ForeachOverload::TensorList);
      ++operands;
    } else if (is_list_of(t, c10::TypeKind::NumberType)) {
      plan.roles.push_back(ForeachOverload::ScalarList);
      ++operands;
    } else if (is_scalar_type(t)) {
      plan.roles.push_back(ForeachOverload::Scalar);
      ++operands;
    } else if (is_tensor_type(t)) {
      if (a.name() == "scalars") return false;  // a CPU tensor of per-element scalars
      plan.roles.push_back(ForeachOverload::Tensor);
      ++operands;
    } else if (std::none_of(e->attrs.begin(), e->attrs.end(), [&](const char* n) { return a.name() == n; })) {
      return false;
    } else {
      plan.roles.push_back(ForeachOverload::Attr);
    }
  }
  if (operands != e->arity) return false;
  foreach_overloads()[&schema] = std::move(plan);
  return true;
}

std::vector<std::string> names(const char* prefix) {
  std::vector<std::string> r;
  for (const Entry& e : table()) r.push_back(std::string(prefix) + e.name);
  return r;
}
}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  register_family(m, "elementwise", names(""), accept_elementwise, elementwise_kernel, typed_elementwise);
  register_family(m, "foreach", names("_foreach_"), accept_foreach, foreach_kernel);
}

}  // namespace mps_ext::ops::aten
