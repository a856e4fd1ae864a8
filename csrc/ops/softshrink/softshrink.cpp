// softshrink and its backward, as graphs.
//   softshrink(x, l)    = x - clamp(x, -l, l)    (x - l above l, x + l below -l)
//   softshrink_backward = 0 where |x| <= l, else grad
// The clamp form needs three elementwise nodes and no select. In the dead zone
// it gives x - x: +0 for every finite x, and NaN propagates through the
// NaN-propagating min/max, which is what torch's vectorized CPU and CUDA
// kernels return (torch's scalar tail loop gives -0 for negative x; we follow
// the bulk).
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops/op_utils.h"
#ifdef MPS_EXT_WITH_MPSGRAPH
#include "runtime/mpsgraph/metal_kernels.h"
#endif

namespace mps_ext::ops {
namespace {
using graph::Graph;

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
  return {at::result_type(grad_output, self), at::infer_size(grad_output.sizes(), self.sizes())};
}

at::Tensor softshrink(const at::Tensor& self, const at::Scalar& lambd) {
  check_forward(self, lambd);
  if (self.numel() == 0) return at::empty(self.sizes(), self.options());
  at::ScalarType dtype = self.scalar_type(), math = opmath_type(dtype);
  auto key = graph::CacheKey("softshrink").input(graph_dtype(dtype), dynamic_shape(self));
  auto build = [&](Graph& g) {
    auto x = g.placeholder(dynamic_shape(self), graph_dtype(dtype), "self");
    auto l = g.placeholder({}, graph_dtype(math), "lambd");
    auto xm = math == dtype ? x : g.cast(x, graph_dtype(math));
    // One statement per node: argument evaluation order would otherwise
    // decide the node order, and with it the dumped graph.
    auto neg_l = g.neg(l);
    auto upper = g.minimum(xm, l);
    auto clamped = g.maximum(upper, neg_l);
    auto y = g.sub(xm, clamped);
    g.output(math == dtype ? y : g.cast(y, graph_dtype(dtype)));
  };
  return runtime::run_graph(key, build, {self, scalar_input(lambd, math)})[0];
}

at::Tensor softshrink_backward(const at::Tensor& grad_output, const at::Tensor& self,
                               const at::Scalar& lambd) {
  auto [dtype, shape] = check_backward(grad_output, self, lambd);
  at::ScalarType math = opmath_type(dtype);
  if (c10::multiply_integers(shape) == 0) return at::empty(shape, self.options().dtype(dtype));
  at::Tensor g_in = grad_output.to(dtype), x_in = self.to(dtype);
  auto key = graph::CacheKey("softshrink_backward")
                 .input(graph_dtype(dtype), dynamic_shape(g_in))
                 .input(graph_dtype(dtype), dynamic_shape(x_in));
  auto build = [&](Graph& g) {
    auto grad = g.placeholder(dynamic_shape(g_in), graph_dtype(dtype), "grad_output");
    auto x = g.placeholder(dynamic_shape(x_in), graph_dtype(dtype), "self");
    auto l = g.placeholder({}, graph_dtype(math), "lambd");
    auto xm = math == dtype ? x : g.cast(x, graph_dtype(math));
    auto magnitude = g.abs(xm);
    auto inside = g.le(magnitude, l);  // false for NaN: the gradient passes
    auto zero = g.constant(0.0, graph_dtype(dtype));
    g.output(g.select(inside, zero, grad));
  };
  return runtime::run_graph(key, build, {g_in, x_in, scalar_input(lambd, math)})[0];
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

#ifdef MPS_EXT_WITH_MPSGRAPH
// Native mps tensors: one hand-written Metal dispatch (WWDC23's custom-kernel
// story) rather than a graph; same semantics as the graph above.
at::Tensor softshrink_mps(const at::Tensor& self, const at::Scalar& lambd) {
  check_forward(self, lambd);
  return runtime::mpsgraph::softshrink_metal(self, lambd.toDouble());
}

at::Tensor softshrink_backward_mps(const at::Tensor& grad_output, const at::Tensor& self,
                                   const at::Scalar& lambd) {
  auto [dtype, shape] = check_backward(grad_output, self, lambd);
  return runtime::mpsgraph::softshrink_backward_metal(grad_output.to(dtype).expand(shape),
                                                      self.to(dtype).expand(shape), lambd.toDouble());
}
#endif

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
  m.def("softshrink_backward(Tensor grad_output, Tensor self, Scalar lambd) -> Tensor");
}

TORCH_LIBRARY_IMPL(mps_ext, CPU, m) {
  m.impl("softshrink", &softshrink);
  m.impl("softshrink_backward", &softshrink_backward);
}

TORCH_LIBRARY_IMPL(mps_ext, Meta, m) {
  m.impl("softshrink", &softshrink_meta);
  m.impl("softshrink_backward", &softshrink_backward_meta);
}

TORCH_LIBRARY_IMPL(mps_ext, Autograd, m) {
  m.impl("softshrink", &softshrink_autograd);
  m.impl("softshrink_backward", &softshrink_backward_autograd);
}

// The mpsgraph device (PrivateUse1): run_graph picks its runtime.
TORCH_LIBRARY_IMPL(mps_ext, PrivateUse1, m) {
  m.impl("softshrink", &softshrink);
  m.impl("softshrink_backward", &softshrink_backward);
}

#ifdef MPS_EXT_WITH_MPSGRAPH
TORCH_LIBRARY_IMPL(mps_ext, MPS, m) {
  m.impl("softshrink", &softshrink_mps);
  m.impl("softshrink_backward", &softshrink_backward_mps);
}
#endif

}  // namespace mps_ext::ops
