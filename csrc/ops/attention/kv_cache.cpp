// mps_ext::kv_cache_update_(cache, new, start_pos): writes `new` into rows
// [start_pos, start_pos + L) of a [B, Hkv, S, D] cache in place. One graph per
// (cache shape, update shape) serves every position: the cache is a Variable
// and the start a runtime tensor (slice_update_at), so the reference runtime
// copies only the new rows and the mpsgraph lowering updates the buffer in
// place. Every argument is checked before anything is written.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "ops/op_utils.h"

namespace mps_ext::ops::attention {
namespace {
using graph::Graph;
using runtime::GraphSpec;

void check_update(const at::Tensor& cache, const at::Tensor& update, int64_t start_pos) {
  const char* op = "kv_cache_update_";
  TORCH_CHECK(cache.dim() == 4, op, ": expected 'cache' of shape [B, Hkv, S, D], but got ", cache.sizes());
  TORCH_CHECK(update.dim() == 4, op, ": expected 'new' of shape [B, Hkv, L, D], but got ", update.sizes());
  TORCH_CHECK(cache.is_contiguous(), op, ": 'cache' must be contiguous (it is updated in place)");
  TORCH_CHECK_TYPE(update.scalar_type() == cache.scalar_type(), op, ": 'new' has dtype ", update.scalar_type(),
                   " but 'cache' has dtype ", cache.scalar_type());
  TORCH_CHECK(update.device() == cache.device(), op, ": 'new' is on ", update.device(), " but 'cache' is on ",
              cache.device());
  TORCH_CHECK_VALUE(update.size(3) == cache.size(3), op, ": 'new' has head dim ", update.size(3),
                    " but 'cache' has head dim ", cache.size(3));
  TORCH_CHECK_VALUE(update.size(1) == cache.size(1), op, ": 'new' has ", update.size(1), " kv heads but 'cache' has ",
                    cache.size(1));
  TORCH_CHECK_VALUE(update.size(0) <= cache.size(0), op, ": 'new' has batch size ", update.size(0),
                    " but 'cache' holds at most ", cache.size(0));
  TORCH_CHECK_VALUE(start_pos >= 0, op, ": start_pos must be non-negative, but got ", start_pos);
  TORCH_CHECK_VALUE(start_pos + update.size(2) <= cache.size(2), op, ": start_pos (", start_pos, ") + new length (",
                    update.size(2), ") exceeds the cache's max_seq_len (", cache.size(2), ")");
}

void build_update(Graph& g, const GraphSpec& s) {
  auto cache = g.variable(s.input(0), "cache");
  auto update = g.placeholder(s.input(1), "new");
  auto starts = g.placeholder(s.input(2), "starts");
  g.output(g.assign(cache, g.slice_update_at(cache, update, starts)));
}

at::Tensor& kv_cache_update_(at::Tensor& cache, const at::Tensor& update, int64_t start_pos) {
  check_update(cache, update, start_pos);
  if (update.numel() == 0) return cache;
  at::Tensor starts = at::tensor({int64_t{0}, int64_t{0}, start_pos, int64_t{0}}, at::kLong);
  GraphSpec spec("mps_ext::kv_cache_update_");
  spec.input(cache).input(update).input(graph::DType::Int64, {4});
  runtime::run_graph(spec, build_update, {cache, update, starts});
  return cache;
}

// Sizes may be symbolic here (torch.compile): the checks that need values run
// in the real kernels.
at::Tensor& kv_cache_update_meta(at::Tensor& cache, const at::Tensor& update, int64_t) {
  TORCH_CHECK(cache.dim() == 4 && update.dim() == 4, "kv_cache_update_: expected rank-4 'cache' and 'new'");
  TORCH_CHECK_TYPE(update.scalar_type() == cache.scalar_type(), "kv_cache_update_: 'new' has dtype ",
                   update.scalar_type(), " but 'cache' has dtype ", cache.scalar_type());
  return cache;
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(mps_ext, m) {
  m.def("kv_cache_update_(Tensor(a!) cache, Tensor new, int start_pos) -> Tensor(a!)");
}
TORCH_LIBRARY_IMPL(mps_ext, CPU, m) { m.impl("kv_cache_update_", &kv_cache_update_); }
TORCH_LIBRARY_IMPL(mps_ext, Meta, m) { m.impl("kv_cache_update_", &kv_cache_update_meta); }
TORCH_LIBRARY_IMPL(mps_ext, PrivateUse1, m) { m.impl("kv_cache_update_", &kv_cache_update_); }
#ifdef MPS_EXT_WITH_MPSGRAPH
TORCH_LIBRARY_IMPL(mps_ext, MPS, m) { m.impl("kv_cache_update_", &kv_cache_update_); }
#endif

}  // namespace mps_ext::ops::attention
