// Expr: a graph value with arithmetic operators, so an op's elementwise math
// can be written once as a template (csrc/ops/<family>/*_math.h) and
// instantiated both here, emitting IR nodes, and on the CPU over vectors
// (runtime/reference/elementwise_kernel.h). Calls in those templates are
// unqualified: argument-dependent lookup picks this overload set.
#pragma once

#include "graph/graph.h"

namespace mps_ext::graph {

struct Expr {
  Graph* g;
  Tensor t;
  DType dtype() const { return g->type(t).dtype; }
};

inline Expr operator+(Expr a, Expr b) { return {a.g, a.g->add(a.t, b.t)}; }
inline Expr operator-(Expr a, Expr b) { return {a.g, a.g->sub(a.t, b.t)}; }
inline Expr operator*(Expr a, Expr b) { return {a.g, a.g->mul(a.t, b.t)}; }
inline Expr operator/(Expr a, Expr b) { return {a.g, a.g->div(a.t, b.t)}; }
inline Expr operator-(Expr a) { return {a.g, a.g->neg(a.t)}; }
inline Expr operator<=(Expr a, Expr b) { return {a.g, a.g->le(a.t, b.t)}; }
inline Expr operator<(Expr a, Expr b) { return {a.g, a.g->lt(a.t, b.t)}; }
inline Expr operator>=(Expr a, Expr b) { return {a.g, a.g->ge(a.t, b.t)}; }
inline Expr operator>(Expr a, Expr b) { return {a.g, a.g->gt(a.t, b.t)}; }
inline Expr minimum(Expr a, Expr b) { return {a.g, a.g->minimum(a.t, b.t)}; }  // NaN-propagating
inline Expr maximum(Expr a, Expr b) { return {a.g, a.g->maximum(a.t, b.t)}; }  // NaN-propagating
inline Expr abs(Expr a) { return {a.g, a.g->abs(a.t)}; }
inline Expr where(Expr cond, Expr a, Expr b) { return {a.g, a.g->select(cond.t, a.t, b.t)}; }
inline Expr zeros_like(Expr a) { return {a.g, a.g->constant(0.0, a.dtype())}; }

}  // namespace mps_ext::graph
