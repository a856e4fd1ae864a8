// The split-K decode attention kernel (one build per CPU capability): a few
// query rows against a long key sequence. The keys are cut into chunks; each
// task reads one chunk of K and V once for all query rows of one kv head (the
// whole grouped-query group, so K/V are never expanded) and keeps a partial
// softmax (max, sum, weighted V); a final pass merges the chunks. This is the
// scheme of PyTorch MPS's and MLX's sdpa_vector, on CPU threads and at::vec.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

namespace mps_ext::ops::attention::CPU_CAPABILITY {
namespace {

template <typename T>
T dot(const T* a, const T* b, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  Vec acc(T(0));
  int64_t d = 0;
  for (; d + Vec::size() <= n; d += Vec::size()) acc = at::vec::fmadd(Vec::loadu(a + d), Vec::loadu(b + d), acc);
  T s = at::vec::vec_reduce_all<T>([](Vec& x, Vec& y) { return x + y; }, acc);
  for (; d < n; ++d) s += a[d] * b[d];
  return s;
}

template <typename T>
void axpy(T* y, T a, const T* x, int64_t n) {  // y += a * x
  using Vec = at::vec::Vectorized<T>;
  const Vec va(a);
  int64_t d = 0;
  for (; d + Vec::size() <= n; d += Vec::size()) at::vec::fmadd(va, Vec::loadu(x + d), Vec::loadu(y + d)).store(y + d);
  for (; d < n; ++d) y[d] += a * x[d];
}

// A row in the accumulation type: the row itself or a converted copy.
template <typename scalar_t, typename acc_t>
const acc_t* as_acc(const scalar_t* row, acc_t* buf, int64_t n) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    return row;
  } else {
    at::vec::convert(row, buf, n);
    return buf;
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename scalar_t>
void decode(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask, bool is_causal,
            double scale, const at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  using Vec = at::vec::Vectorized<acc_t>;
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  const int64_t B = q.size(0), Hq = q.size(1), L = q.size(2), E = q.size(3);
  const int64_t Hkv = k.size(1), S = k.size(2), Ev = v.size(3);
  const int64_t G = Hq / Hkv, R = G * L, units = B * Hkv;
  const scalar_t* qp = q.const_data_ptr<scalar_t>();
  const scalar_t* kp = k.const_data_ptr<scalar_t>();
  const scalar_t* vp = v.const_data_ptr<scalar_t>();
  const bool has_mask = mask.defined();
  const scalar_t* mp = has_mask ? mask.const_data_ptr<scalar_t>() : nullptr;

  // Query rows of each kv head, pre-scaled: [B, Hkv, G*L, E] in acc_t.
  std::vector<acc_t> qs(static_cast<size_t>(units * R * E));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < L; ++i) {
        const scalar_t* row = qp + b * q.stride(0) + h * q.stride(1) + i * q.stride(2);
        acc_t* dst = qs.data() + ((b * Hkv + h / G) * R + (h % G) * L + i) * E;
        for (int64_t e = 0; e < E; ++e) dst[e] = static_cast<acc_t>(row[e]) * static_cast<acc_t>(scale);
      }

  // Enough chunks to keep every thread busy, none shorter than 256 keys.
  const int64_t threads = at::get_num_threads();
  int64_t splits = std::max<int64_t>(1, std::min(ceil_div(S, 256), ceil_div(2 * threads, units)));
  const int64_t chunk = ceil_div(S, splits);
  splits = ceil_div(S, chunk);
  std::vector<acc_t> part_m(units * splits * R), part_l(units * splits * R), part_acc(units * splits * R * Ev);

  at::parallel_for(0, units * splits, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> scores(R * chunk), kbuf(E), vbuf(Ev);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t unit = task / splits, split = task % splits, b = unit / Hkv, hk = unit % Hkv;
      const int64_t s0 = split * chunk, n = std::min(S, s0 + chunk) - s0;
      const acc_t* qrows = qs.data() + unit * R * E;
      const scalar_t* kbase = kp + b * k.stride(0) + hk * k.stride(1);
      const scalar_t* vbase = vp + b * v.stride(0) + hk * v.stride(1);
      for (int64_t j = 0; j < n; ++j) {  // each key row once, for all query rows
        const acc_t* kr = as_acc(kbase + (s0 + j) * k.stride(2), kbuf.data(), E);
        for (int64_t r = 0; r < R; ++r) scores[r * chunk + j] = dot(qrows + r * E, kr, E);
      }
      if (has_mask || is_causal) {
        for (int64_t r = 0; r < R; ++r) {
          const int64_t h = hk * G + r / L, i = r % L;
          acc_t* row = scores.data() + r * chunk;
          const scalar_t* mrow = has_mask ? mp + b * mask.stride(0) + h * mask.stride(1) + i * mask.stride(2) : nullptr;
          for (int64_t j = 0; j < n; ++j) {
            if (is_causal && s0 + j > i) row[j] = kNegInf;
            else if (has_mask) row[j] += static_cast<acc_t>(mrow[(s0 + j) * mask.stride(3)]);
          }
        }
      }
      acc_t* acc = part_acc.data() + task * R * Ev;
      std::fill(acc, acc + R * Ev, acc_t(0));
      for (int64_t r = 0; r < R; ++r) {
        acc_t* row = scores.data() + r * chunk;
        acc_t m = at::vec::reduce_all<acc_t>([](Vec& x, Vec& y) { return at::vec::maximum(x, y); }, row, n);
        acc_t l = 0;
        if (m == kNegInf) {  // every key masked in this chunk
          std::fill(row, row + n, acc_t(0));
        } else {
          at::vec::map([m](Vec x) { return (x - Vec(m)).exp(); }, row, row, n);
          l = at::vec::reduce_all<acc_t>([](Vec& x, Vec& y) { return x + y; }, row, n);
        }
        part_m[task * R + r] = m;
        part_l[task * R + r] = l;
      }
      for (int64_t j = 0; j < n; ++j) {  // each value row once
        const acc_t* vr = as_acc(vbase + (s0 + j) * v.stride(2), vbuf.data(), Ev);
        for (int64_t r = 0; r < R; ++r) {
          acc_t p = scores[r * chunk + j];
          if (p != acc_t(0)) axpy(acc + r * Ev, p, vr, Ev);
        }
      }
    }
  });

  // Merge the chunks of each query row: rescale to the common max.
  scalar_t* op = out.data_ptr<scalar_t>();
  at::parallel_for(0, units * R, 16, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> o(Ev);
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t unit = idx / R, r = idx % R, b = unit / Hkv, hk = unit % Hkv;
      const int64_t h = hk * G + r / L, i = r % L;
      scalar_t* dst = op + ((b * Hq + h) * L + i) * Ev;
      acc_t M = kNegInf;
      for (int64_t s = 0; s < splits; ++s) M = std::max(M, part_m[(unit * splits + s) * R + r]);
      std::fill(o.begin(), o.end(), acc_t(0));
      acc_t total = 0;
      if (M != kNegInf) {
        for (int64_t s = 0; s < splits; ++s) {
          const int64_t t = (unit * splits + s) * R + r;
          if (part_l[t] == acc_t(0)) continue;
          acc_t w = std::exp(part_m[t] - M);
          total += part_l[t] * w;
          axpy(o.data(), w, part_acc.data() + t * Ev, Ev);
        }
      }
      // A fully masked row is 0, as torch's safe softmax.
      const acc_t inv = total > acc_t(0) ? acc_t(1) / total : acc_t(0);
      for (int64_t e = 0; e < Ev; ++e) dst[e] = static_cast<scalar_t>(o[e] * inv);
    }
  });
}
}  // namespace

// q [B, Hq, L, E], k [B, Hkv, S, E], v [B, Hkv, S, Ev] (rows contiguous, any
// other strides: a KV cache's valid prefix is read in place); mask undefined
// or broadcast to [B, Hq, L, S]; out contiguous [B, Hq, L, Ev].
void sdpa_decode_kernel(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                        bool is_causal, double scale, const at::Tensor& out) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "sdpa_decode",
                                  [&] { decode<scalar_t>(q, k, v, mask, is_causal, scale, out); });
}

}  // namespace mps_ext::ops::attention::CPU_CAPABILITY
