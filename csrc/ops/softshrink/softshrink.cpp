// softshrink and its backward: each a kernel node whose decomposition is the
// op's math (softshrink_math.h) as IR nodes. The reference runtime runs the
// compiled CPU kernel built from the same math (softshrink_kernel.cpp), the
// mpsgraph runtime a hand-written Metal kernel on a Mac (softshrink.mm), and
// any runtime without a kernel runs the decomposition.
#include <ATen/ATen.h>
#include <ATen/TensorIterator.h>
#include <ATen/native/Resize.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "graph/expr.h"
#include "ops/op_utils.h"
#include "ops/softshrink/softshrink_math.h"
#include "runtime/reference/cpu_dispatch.h"
#include "runtime/reference/kernels.h"

namespace mps_ext::ops {
MPS_EXT_DECLARE_CPU_KERNEL(void, softshrink_forward_kernel, (at::TensorIteratorBase & iter, double lambd))
MPS_EXT_DECLARE_CPU_KERNEL(void, softshrink_backward_kernel, (at::TensorIteratorBase & iter, double lambd))

namespace {
using graph::Expr;
using graph::Graph;
using runtime::GraphSpec;

void check_lambd(const at::Tensor& self, const at::Scalar& lambd) {
  double l = lambd.toDouble();
  double max = AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "softshrink",
                                               [] { return static_cast<double>(std::numeric_limits<scalar_t>::max()); });
  TORCH_CHECK(l >= 0 && l <= max, "softshrink: lambd must be in range [0, ", max, "] for input dtype ",
              self.scalar_type(), ", but found ", l);
}

void check_forward(const at::Tensor& self, const at::Scalar& lambd) {
  check_floating("softshrink", "self", self);
  check_lambd(self, lambd);
}

// Backward broadcasts and promotes like torch's binary ops.
struct BackwardArgs {
  at::ScalarType dtype;
  std::vector<int64_t> shape;
};

BackwardArgs check_backward(const at::Tensor& grad_output, const at::Tensor& self, const at::Scalar& lambd) {
  check_floating("softshrink_backward", "grad_output", grad_output);
  check_floating("softshrink_backward", "self", self);
  check_lambd(self, lambd);
  at::ScalarType dtype = grad_output.scalar_type() == self.scalar_type() ? self.scalar_type()  // (no dispatch)
                                                                        : at::result_type(grad_output, self);
  return {dtype, at::infer_size(grad_output.sizes(), self.sizes())};
}

// The IR form: inputs (x, lambd) -> x's dtype; math in lambd's dtype (opmath).
graph::Tensor forward_decomposition(Graph& d, const std::vector<graph::Tensor>& in) {
  graph::DType dtype = d.type(in[0]).dtype, math = d.type(in[1]).dtype;
  graph::Tensor x = math == dtype ? in[0] : d.cast(in[0], math);
  graph::Tensor y = softshrink_value(Expr{&d, x}, Expr{&d, in[1]}).t;
  return math == dtype ? y : d.cast(y, dtype);
}

// inputs (grad, x, lambd): grad and x of one dtype; the test runs in opmath.
graph::Tensor backward_decomposition(Graph& d, const std::vector<graph::Tensor>& in) {
  graph::DType dtype = d.type(in[1]).dtype, math = d.type(in[2]).dtype;
  graph::Tensor x = math == dtype ? in[1] : d.cast(in[1], math);
  // The comparison runs in opmath, the select in the gradient's dtype.
  return softshrink_gradient(Expr{&d, in[0]}, Expr{&d, x}, Expr{&d, in[2]}).t;
}

void build_forward(Graph& g, const GraphSpec& s) {
  auto x = g.placeholder(s.input(0), "self");
  auto l = g.placeholder(s.input(1), "lambd");
  g.output(g.kernel("softshrink", {x, l}, {}, forward_decomposition));
}

void build_backward(Graph& g, const GraphSpec& s) {
  auto grad = g.placeholder(s.input(0), "grad_output");
  auto x = g.placeholder(s.input(1), "self");
  auto l = g.placeholder(s.input(2), "lambd");
  g.output(g.kernel("softshrink_backward", {grad, x, l}, {}, backward_decomposition));
}

// Reference-runtime kernels: the compiled math under TensorIterator.
double uniform_value(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? *t.const_data_ptr<double>() : *t.const_data_ptr<float>();
}

at::Tensor forward_cpu(const graph::Node&, const std::vector<at::Tensor>& in,
                       const runtime::reference::NewOutput& new_output) {
  at::Tensor out = new_output(in[0].sizes(), in[0].scalar_type());
  auto iter = at::TensorIteratorConfig().add_output(out).add_const_input(in[0]).build();
  MPS_EXT_CPU_KERNEL(softshrink_forward_kernel)(iter, uniform_value(in[1]));
  return out;
}

at::Tensor backward_cpu(const graph::Node&, const std::vector<at::Tensor>& in,
                        const runtime::reference::NewOutput& new_output) {
  at::Tensor out = new_output(at::infer_size(in[0].sizes(), in[1].sizes()), in[0].scalar_type());
  auto iter = at::TensorIteratorConfig().add_output(out).add_const_input(in[0]).add_const_input(in[1]).build();
  MPS_EXT_CPU_KERNEL(softshrink_backward_kernel)(iter, uniform_value(in[2]));
  return out;
}
MPS_EXT_REFERENCE_KERNEL("softshrink", forward_cpu);
MPS_EXT_REFERENCE_KERNEL("softshrink_backward", backward_cpu);

at::Tensor softshrink(const at::Tensor& self, const at::Scalar& lambd) {
  check_forward(self, lambd);
  if (self.numel() == 0) return at::empty(self.sizes(), self.options());
  at::ScalarType math = opmath_type(self.scalar_type());
  at::Tensor l = scalar_input(lambd, math);
  GraphSpec spec("softshrink");
  spec.input_dynamic(self).input(l);
  return runtime::run_graph(spec, build_forward, {self, l})[0];
}

// out=: the graph writes its result straight into `out` (resized like torch).
at::Tensor& softshrink_out(const at::Tensor& self, const at::Scalar& lambd, at::Tensor& out) {
  check_forward(self, lambd);
  TORCH_CHECK(out.device() == self.device(), "softshrink: expected out on ", self.device(), ", but got ", out.device());
  TORCH_CHECK_TYPE(out.scalar_type() == self.scalar_type(), "softshrink: expected out of dtype ", self.scalar_type(),
                   ", but got ", out.scalar_type());
  at::native::resize_output(out, self.sizes());
  if (self.numel() == 0) return out;
  at::Tensor l = scalar_input(lambd, opmath_type(self.scalar_type()));
  GraphSpec spec("softshrink");
  spec.input_dynamic(self).input(l);
  runtime::run_graph_into(spec, build_forward, {self, l}, {out});
  return out;
}

at::Tensor& softshrink_out_meta(const at::Tensor& self, const at::Scalar& lambd, at::Tensor& out) {
  check_forward(self, lambd);
  at::native::resize_output(out, self.sizes());
  return out;
}

at::Tensor softshrink_backward(const at::Tensor& grad_output, const at::Tensor& self,
                               const at::Scalar& lambd) {
  auto [dtype, shape] = check_backward(grad_output, self, lambd);
  if (c10::multiply_integers(shape) == 0) return at::empty(shape, self.options().dtype(dtype));
  const at::Tensor& g_in = grad_output.scalar_type() == dtype ? grad_output : grad_output.to(dtype);
  const at::Tensor& x_in = self.scalar_type() == dtype ? self : self.to(dtype);
  at::Tensor l = scalar_input(lambd, opmath_type(dtype));
  GraphSpec spec("softshrink_backward");
  spec.input_dynamic(g_in).input_dynamic(x_in).input(l);
  return runtime::run_graph(spec, build_backward, {g_in, x_in, l})[0];
}

at::Tensor softshrink_meta(const at::Tensor& self, const at::Scalar& lambd) {
  check_forward(self, lambd);
  return at::empty(self.sizes(), self.options());
}

at::Tensor softshrink_backward_meta(const at::Tensor& grad_output, const at::Tensor& self,
                                    const at::Scalar& lambd) {
  auto [dtype, shape] = check_backward(grad_output, self, lambd);
  return at::empty(shape, self.options().dtype(dtype));
}

// --- autograd ------------------------------------------------------------------
at::Tensor call_softshrink(const at::Tensor& self, const at::Scalar& lambd) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mps_ext::softshrink", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Scalar&)>();
  return op.call(self, lambd);
}

at::Tensor call_softshrink_backward(const at::Tensor& grad, const at::Tensor& self,
                                    const at::Scalar& lambd) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mps_ext::softshrink_backward", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Scalar&)>();
  return op.call(grad, self, lambd);
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct SoftshrinkFn : torch::autograd::Function<SoftshrinkFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& self, const at::Scalar& lambd) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({self});
    ctx->saved_data["lambd"] = lambd;
    return call_softshrink(self, lambd);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    at::Tensor self = ctx->get_saved_variables()[0];
    return {call_softshrink_backward(grads[0], self, ctx->saved_data["lambd"].toScalar()), at::Tensor()};
  }
};

// d/d(grad_output) is softshrink_backward itself; d/d(self) is zero almost everywhere.
struct SoftshrinkBackwardFn : torch::autograd::Function<SoftshrinkBackwardFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad, const at::Tensor& self,
                            const at::Scalar& lambd) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({self});
    ctx->saved_data["lambd"] = lambd;
    return call_softshrink_backward(grad, self, lambd);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    at::Tensor self = ctx->get_saved_variables()[0];
    at::Tensor gg = call_softshrink_backward(grads[0], self, ctx->saved_data["lambd"].toScalar());
    return {gg, at::zeros_like(self), at::Tensor()};
  }
};

at::Tensor softshrink_autograd(const at::Tensor& self, const at::Scalar& lambd) {
  if (!requires_grad(self)) {  // skip building an autograd node nobody needs
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_softshrink(self, lambd);
  }
  return SoftshrinkFn::apply(self, lambd);
}

// As torch: out= variants do not take part in autograd.
at::Tensor& softshrink_out_autograd(const at::Tensor& self, const at::Scalar& lambd, at::Tensor& out) {
  TORCH_CHECK(!requires_grad(self) && !requires_grad(out),
              "softshrink(): functions with out=... arguments don't support automatic differentiation, but one of "
              "the arguments requires grad.");
  at::AutoDispatchBelowADInplaceOrView guard;
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mps_ext::softshrink", "out")
                       .typed<at::Tensor&(const at::Tensor&, const at::Scalar&, at::Tensor&)>();
  return op.call(self, lambd, out);
}

at::Tensor softshrink_backward_autograd(const at::Tensor& grad, const at::Tensor& self,
                                        const at::Scalar& lambd) {
  if (!requires_grad(grad) && !requires_grad(self)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_softshrink_backward(grad, self, lambd);
  }
  return SoftshrinkBackwardFn::apply(grad, self, lambd);
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(mps_ext, m) {
  m.def("softshrink(Tensor self, Scalar lambd=0.5) -> Tensor");
  m.def("softshrink.out(Tensor self, Scalar lambd=0.5, *, Tensor(a!) out) -> Tensor(a!)");
  m.def("softshrink_backward(Tensor grad_output, Tensor self, Scalar lambd) -> Tensor");
}

TORCH_LIBRARY_IMPL(mps_ext, CPU, m) {
  m.impl("softshrink", &softshrink);
  m.impl("softshrink.out", &softshrink_out);
  m.impl("softshrink_backward", &softshrink_backward);
}

TORCH_LIBRARY_IMPL(mps_ext, Meta, m) {
  m.impl("softshrink", &softshrink_meta);
  m.impl("softshrink.out", &softshrink_out_meta);
  m.impl("softshrink_backward", &softshrink_backward_meta);
}

TORCH_LIBRARY_IMPL(mps_ext, Autograd, m) {
  m.impl("softshrink", &softshrink_autograd);
  m.impl("softshrink.out", &softshrink_out_autograd);
  m.impl("softshrink_backward", &softshrink_backward_autograd);
}

// The mpsgraph device (PrivateUse1): run_graph picks its runtime.
TORCH_LIBRARY_IMPL(mps_ext, PrivateUse1, m) {
  m.impl("softshrink", &softshrink);
  m.impl("softshrink.out", &softshrink_out);
  m.impl("softshrink_backward", &softshrink_backward);
}

#ifdef MPS_EXT_WITH_MPSGRAPH
// Native mps tensors: the same graph on the mpsgraph runtime, which runs the
// lone kernel node as one Metal dispatch (softshrink.mm).
TORCH_LIBRARY_IMPL(mps_ext, MPS, m) {
  m.impl("softshrink", &softshrink);
  m.impl("softshrink.out", &softshrink_out);
  m.impl("softshrink_backward", &softshrink_backward);
}
#endif

}  // namespace mps_ext::ops
