// The dequantization node kinds (Dequantize, DequantizeLUT): their spec and
// their ATen evaluation. Semantics: graph.h (Graph::dequantize, dequantize_lut).
#include "graph/node_spec.h"
#include "runtime/reference/node_eval.h"

namespace mps_ext::ops::quantization {
namespace {
using namespace graph;
using Types = std::vector<TensorType>;

// (q, scale, zero_point); attrs: dtype (the output's, by name).
TensorType infer_dequantize(NodeKind, const Types& in, Attrs& a) {
  const TensorType &tq = in[0], &ts = in[1], &tz = in[2];
  DType dtype = dtype_attr(a, "dequantize");
  if (tq.dtype != DType::UInt8 && tq.dtype != DType::Int8 && tq.dtype != DType::Int32)
    fail(std::string("dequantize: q must be uint8, int8 or int32, got ") + dtype_name(tq.dtype));
  if (!is_floating(dtype)) fail(std::string("dequantize: output dtype must be floating, got ") + dtype_name(dtype));
  if (ts.dtype != dtype)
    fail(std::string("dequantize: scale dtype ") + dtype_name(ts.dtype) + " must be the output dtype " +
         dtype_name(dtype));
  if (tz.dtype != tq.dtype && tz.dtype != dtype)
    fail(std::string("dequantize: zero_point dtype ") + dtype_name(tz.dtype) + " must be q's (" +
         dtype_name(tq.dtype) + ") or the output dtype (" + dtype_name(dtype) + ")");
  if (!broadcasts_into(ts.shape, tq.shape))
    fail("dequantize: scale shape " + shape_str(ts.shape) + " does not broadcast into q's shape " + shape_str(tq.shape));
  if (!broadcasts_into(tz.shape, tq.shape))
    fail("dequantize: zero_point shape " + shape_str(tz.shape) + " does not broadcast into q's shape " +
         shape_str(tq.shape));
  return {dtype, tq.shape};
}

// (indices, lut).
TensorType infer_dequantize_lut(NodeKind, const Types& in, Attrs&) {
  const TensorType &ti = in[0], &tl = in[1];
  if (ti.dtype != DType::UInt8) fail(std::string("dequantize_lut: indices must be uint8, got ") + dtype_name(ti.dtype));
  if (!is_floating(tl.dtype)) fail(std::string("dequantize_lut: lut must be floating, got ") + dtype_name(tl.dtype));
  if (tl.rank() < 1) fail("dequantize_lut: lut must have rank >= 1 (its last dimension holds the entries)");
  if (tl.shape.back() == 0) fail("dequantize_lut: lut has no entries");
  Shape groups(tl.shape.begin(), tl.shape.end() - 1);
  if (!broadcasts_into(groups, ti.shape))
    fail("dequantize_lut: lut groups " + shape_str(groups) + " (lut shape " + shape_str(tl.shape) +
         " without its entries) do not broadcast into the indices' shape " + shape_str(ti.shape));
  return {tl.dtype, ti.shape};
}

at::Tensor eval_dequantize(const Node& n, const std::vector<at::Tensor>& a) {
  auto dtype = runtime::to_scalar_type(n.type.dtype);
  return at::mul(at::sub(a[0].to(dtype), a[2].to(dtype)), a[1]);
}

// lut [g..., N] gathered by indices [d...]: the groups broadcast into [d...].
at::Tensor eval_dequantize_lut(const Node&, const std::vector<at::Tensor>& a) {
  const at::Tensor &indices = a[0], &lut = a[1];
  std::vector<int64_t> padded(indices.dim() + 1 - lut.dim(), 1);
  padded.insert(padded.end(), lut.sizes().begin(), lut.sizes().end());
  std::vector<int64_t> full = indices.sizes().vec();
  full.push_back(lut.size(-1));
  at::Tensor table = lut.reshape(padded).expand(full);
  return table.gather(-1, indices.to(at::kLong).unsqueeze(-1)).squeeze(-1);
}
}  // namespace

MPS_EXT_NODE_SPEC(Dequantize, {infer_dequantize, 3, 3});
MPS_EXT_NODE_SPEC(DequantizeLUT, {infer_dequantize_lut, 2, 2});
MPS_EXT_NODE_EVAL(Dequantize, eval_dequantize);
MPS_EXT_NODE_EVAL(DequantizeLUT, eval_dequantize_lut);

}  // namespace mps_ext::ops::quantization
