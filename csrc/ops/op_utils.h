// Small helpers every op file uses to check arguments and build its graph.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ScalarOps.h>
#include <c10/core/Scalar.h>

#include "runtime/runtime.h"

namespace mps_ext::ops {

// Rank-preserving placeholder shape with every dim dynamic: one compiled
// graph serves all sizes of that rank.
inline graph::Shape dynamic_shape(const at::Tensor& t) {
  return graph::Shape(static_cast<size_t>(t.dim()), graph::kDynamic);
}

inline graph::DType graph_dtype(at::ScalarType t) { return runtime::to_graph_dtype(t); }

// The type elementwise math runs in, as in ATen's opmath: reduced-precision
// floats compute in float32.
inline at::ScalarType opmath_type(at::ScalarType t) {
  return t == at::kHalf || t == at::kBFloat16 ? at::kFloat : t;
}

// A 0-d CPU tensor fed to a scalar placeholder, so one graph serves every
// value. Every runtime takes scalars from the CPU (the reference runtime reads
// the value; the mpsgraph runtime uploads it), and building it skips the
// dispatcher: this runs on every op call.
//
// Each thread keeps one such tensor per dtype and refills it when nothing
// else holds it any more (use_count 1: the graph run that read it is over),
// so the common call allocates nothing.
inline at::Tensor scalar_input(const at::Scalar& s, at::ScalarType dtype) {
  thread_local at::Tensor pool[static_cast<size_t>(at::ScalarType::NumOptions)];
  at::Tensor& slot = pool[static_cast<size_t>(dtype)];
  if (slot.defined() && slot.use_count() == 1) {
    void* p = slot.mutable_data_ptr();
    switch (dtype) {
      case at::kFloat: *static_cast<float*>(p) = s.to<float>(); return slot;
      case at::kDouble: *static_cast<double*>(p) = s.to<double>(); return slot;
      case at::kHalf: *static_cast<at::Half*>(p) = s.to<at::Half>(); return slot;
      case at::kBFloat16: *static_cast<at::BFloat16*>(p) = s.to<at::BFloat16>(); return slot;
      case at::kLong: *static_cast<int64_t*>(p) = s.to<int64_t>(); return slot;
      case at::kInt: *static_cast<int32_t*>(p) = s.to<int32_t>(); return slot;
      case at::kBool: *static_cast<bool*>(p) = s.to<bool>(); return slot;
      default: break;
    }
  }
  at::Tensor t = at::detail::scalar_tensor_static(s, dtype, at::kCPU);
  if (!slot.defined() || slot.use_count() > 1) {
    switch (dtype) {
      case at::kFloat: case at::kDouble: case at::kHalf: case at::kBFloat16:
      case at::kLong: case at::kInt: case at::kBool:
        if (!slot.defined()) slot = t;
        break;
      default: break;
    }
  }
  return t;
}

// Whether autograd must record an op on `t` (grad mode on and t needs grad).
inline bool requires_grad(const at::Tensor& t) {
  return t.requires_grad() && at::GradMode::is_enabled();
}

inline void check_floating(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), op, ": expected a floating-point tensor for '",
                   arg, "', but got ", t.scalar_type());
}

}  // namespace mps_ext::ops
