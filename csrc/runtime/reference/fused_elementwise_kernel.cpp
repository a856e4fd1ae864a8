// The block interpreter behind FusedProgram. Compiled once per CPU capability
// (CMake defines CPU_CAPABILITY and the matching -m flags), so it includes
// only the vectorization headers, never ATen.h.
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <c10/util/SmallVector.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>

#include "runtime/reference/fused_elementwise.h"

namespace mps_ext::runtime::reference {
namespace CPU_CAPABILITY {
namespace {
using graph::DType;
using graph::NodeKind;
// A block is as many elements as keep all registers' blocks within
// kScratchBytes (L1 plus a little of L2 on current cores): long enough that a
// short program (one add over 256 floats is 16 vector ops) does not pay more
// for the per-block bookkeeping than for its math, short enough that a long
// one's registers stay near the core. (lerp, 14 registers: 256-element blocks
// 30 us, 1152 20 us, 2304 35 us on [256, 256].)
constexpr int64_t kScratchBytes = 64 << 10;
constexpr int64_t kMinBlock = 256, kMaxBlock = 4096;
// Registers are block + kPad apart so that no two share their low 12 address
// bits (4K aliasing stalls every load behind an unrelated store).
constexpr int64_t kPad = 32;

int64_t block_size(int num_regs, int64_t element_size) {
  int64_t fit = kScratchBytes / (std::max(num_regs, 1) * element_size) / 64 * 64;
  return std::clamp(fit, kMinBlock, kMaxBlock);
}

// Where torch was built with MKL, ATen computes these functions on the CPU
// with MKL's vector math library (at::vml): the same functions, found at run
// time in the loaded libtorch_cpu, give torch's results bit for bit, and
// faster than the Sleef forms (which builds without MKL keep). nullptr: none.
// The vm* forms take ATen's mode (kAtenVmlMode): without it, NaN results
// (sqrt or log of negatives) take MKL's error path, 10x slower than torch's.
template <typename T>
VmlFunction<T> vml_function(NodeKind kind) {
  static const auto table = [] {
    std::array<VmlFunction<T>, graph::kNumNodeKinds> t{};
    const std::string prefix = std::is_same_v<T, float> ? "vms" : "vmd";
    for (auto [k, name] : kVmlFunctions)
      t[static_cast<size_t>(k)] = reinterpret_cast<VmlFunction<T>>(torch_cpu_symbol((prefix + name).c_str()));
    return t;
  }();
  return table[static_cast<size_t>(kind)];
}

template <typename T>
T all_ones() {
  T v;
  std::memset(&v, 0xff, sizeof(T));
  return v;
}

// Whether two broadcast values are the same value, bit for bit.
template <typename V>
bool same_bits(const V& x, const V& y) {
  return std::memcmp(&x, &y, sizeof(typename V::value_type)) == 0;
}

template <typename T>
bool mask_set(T v) {
  T zero{};
  return std::memcmp(&v, &zero, sizeof(T)) != 0;
}

// Two vectors per loop iteration, as ATen's VectorizedLoop2d: a one-op pass
// is three vector instructions and three of loop control per vector otherwise.
#define MPS_EXT_TWO_VECTORS _Pragma("GCC unroll 2")

template <typename T>
struct Operand {
  using Vec = at::vec::Vectorized<T>;
  const T* p;
  Vec v;
  bool uniform;
  Vec at(int64_t i) const { return uniform ? v : Vec::loadu(p + i); }
};

template <typename T, typename F>
void map1(F f, int64_t m, T* dst, const Operand<T>& a) {
  using Vec = at::vec::Vectorized<T>;
  if (a.uniform) {  // hoisted: a load, the op and a store per vector otherwise (relu: 9 instructions, ATen's 4)
    const Vec r = f(a.v);
    MPS_EXT_TWO_VECTORS for (int64_t i = 0; i < m; i += Vec::size()) r.store(dst + i);
    return;
  }
  MPS_EXT_TWO_VECTORS for (int64_t i = 0; i < m; i += Vec::size()) f(Vec::loadu(a.p + i)).store(dst + i);
}

template <typename T, typename F>
void map2(F f, int64_t m, T* dst, const Operand<T>& a, const Operand<T>& b) {
  using Vec = at::vec::Vectorized<T>;
  // Hoist the uniform checks out of the hot loop.
  if (!a.uniform && !b.uniform) {
    MPS_EXT_TWO_VECTORS for (int64_t i = 0; i < m; i += Vec::size())
      f(Vec::loadu(a.p + i), Vec::loadu(b.p + i)).store(dst + i);
  } else if (a.uniform && !b.uniform) {
    MPS_EXT_TWO_VECTORS for (int64_t i = 0; i < m; i += Vec::size()) f(a.v, Vec::loadu(b.p + i)).store(dst + i);
  } else if (!a.uniform && b.uniform) {
    MPS_EXT_TWO_VECTORS for (int64_t i = 0; i < m; i += Vec::size()) f(Vec::loadu(a.p + i), b.v).store(dst + i);
  } else {
    Vec r = f(a.v, b.v);
    MPS_EXT_TWO_VECTORS for (int64_t i = 0; i < m; i += Vec::size()) r.store(dst + i);
  }
}

template <typename T>
constexpr DType dtype_of() {
  return sizeof(T) == 8 ? DType::Float64 : DType::Float32;
}

template <typename T>
void load_block(DType dtype, const char* base, int64_t stride, int64_t m, T* dst) {
  if (dtype == dtype_of<T>() && stride == static_cast<int64_t>(sizeof(T))) {
    std::memcpy(dst, base, m * sizeof(T));
    return;
  }
  switch (dtype) {
    case DType::Float32:
      for (int64_t i = 0; i < m; ++i) dst[i] = static_cast<T>(*reinterpret_cast<const float*>(base + i * stride));
      break;
    case DType::Float64:
      for (int64_t i = 0; i < m; ++i) dst[i] = static_cast<T>(*reinterpret_cast<const double*>(base + i * stride));
      break;
    case DType::Float16:
      for (int64_t i = 0; i < m; ++i) dst[i] = static_cast<T>(static_cast<float>(*reinterpret_cast<const c10::Half*>(base + i * stride)));
      break;
    case DType::BFloat16:
      for (int64_t i = 0; i < m; ++i) dst[i] = static_cast<T>(static_cast<float>(*reinterpret_cast<const c10::BFloat16*>(base + i * stride)));
      break;
    case DType::Bool: {
      const T ones = all_ones<T>();
      for (int64_t i = 0; i < m; ++i) dst[i] = *reinterpret_cast<const bool*>(base + i * stride) ? ones : T(0);
      break;
    }
    default: break;  // the planner admits only the dtypes above
  }
}

template <typename T>
void store_block(DType dtype, const T* src, int64_t m, char* base, int64_t stride) {
  if (dtype == dtype_of<T>() && stride == static_cast<int64_t>(sizeof(T))) {
    std::memcpy(base, src, m * sizeof(T));
    return;
  }
  switch (dtype) {
    case DType::Float32:
      for (int64_t i = 0; i < m; ++i) *reinterpret_cast<float*>(base + i * stride) = static_cast<float>(src[i]);
      break;
    case DType::Float64:
      for (int64_t i = 0; i < m; ++i) *reinterpret_cast<double*>(base + i * stride) = static_cast<double>(src[i]);
      break;
    case DType::Float16:
      for (int64_t i = 0; i < m; ++i) *reinterpret_cast<c10::Half*>(base + i * stride) = c10::Half(static_cast<float>(src[i]));
      break;
    case DType::BFloat16:
      for (int64_t i = 0; i < m; ++i) *reinterpret_cast<c10::BFloat16*>(base + i * stride) = c10::BFloat16(static_cast<float>(src[i]));
      break;
    case DType::Bool: {
      // Lanes are all ones or zero: compared as integers, a loop the compiler vectorizes.
      using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
      const Bits* bits = reinterpret_cast<const Bits*>(src);
      if (stride == 1) {
        bool* out = reinterpret_cast<bool*>(base);
        for (int64_t i = 0; i < m; ++i) out[i] = bits[i] != 0;
      } else {
        for (int64_t i = 0; i < m; ++i) *reinterpret_cast<bool*>(base + i * stride) = bits[i] != 0;
      }
      break;
    }
    default: break;
  }
}

// Rounds values to the precision of `to` (they stay in compute type T).
template <typename T>
void cast_block(DType from, DType to, const Operand<T>& a, int64_t m, T* dst) {
  using Vec = at::vec::Vectorized<T>;
  if (to == DType::Bool) {
    map1([](Vec x) { return x != Vec(T(0)); }, m, dst, a);
  } else if (from == DType::Bool) {
    map1([](Vec x) { return Vec::blendv(Vec(T(0)), Vec(T(1)), x); }, m, dst, a);
  } else if (to == from || to == DType::Float64 || (to == DType::Float32 && from != DType::Float64)) {
    map1([](Vec x) { return x; }, m, dst, a);  // widening is exact in compute type
  } else {
    T first[Vec::size()];
    a.v.store(first);
    for (int64_t i = 0; i < m; ++i) {
      T x = a.uniform ? first[0] : a.p[i];
      if (to == DType::Float16) x = static_cast<T>(static_cast<float>(c10::Half(static_cast<float>(x))));
      else if (to == DType::BFloat16) x = static_cast<T>(static_cast<float>(c10::BFloat16(static_cast<float>(x))));
      else if (to == DType::Float32) x = static_cast<T>(static_cast<float>(x));
      dst[i] = x;
    }
  }
}

template <typename T>
class Interpreter {
  using Vec = at::vec::Vectorized<T>;

 public:
  // Per-thread state is reused across calls: no allocation on the hot path.
  explicit Interpreter(const FusedProgram& p) : p_(p), block_(block_size(p.num_regs, sizeof(T))), st_(state()) {
    size_t need = static_cast<size_t>(p.num_regs) * (block_ + kPad);
    if (st_.scratch.size() < need) st_.scratch.resize(need);
    st_.ptr.resize(p.num_regs);
    st_.out.assign(p.num_regs, nullptr);
    st_.uval.resize(p.num_regs);
    st_.uniform.resize(p.num_regs);
    scratch_ = st_.scratch.data();
    ptr_ = st_.ptr.data();
    out_ = st_.out.data();
    uval_ = st_.uval.data();
    uniform_ = st_.uniform.data();
    for (int r = 0; r < p.num_regs; ++r) ptr_[r] = scratch_ + r * (block_ + kPad);
  }

  void run(const FusedRun& run) {
    const T ones = all_ones<T>();
    std::memcpy(uniform_, p_.reg_uniform.data(), p_.num_regs);
    streamed_.clear();
    for (int r = 0; r < p_.num_inputs; ++r) {
      if (!p_.reg_uniform[r]) {
        streamed_.push_back({r, p_.input_operand[r], p_.reg_dtype[r] == dtype_of<T>()});
        continue;
      }
      T v = p_.reg_dtype[r] == DType::Bool ? (run.uniform_inputs[r] != 0 ? ones : T(0))
                                           : static_cast<T>(run.uniform_inputs[r]);
      uval_[r] = Vec(v);
    }
    outputs_.clear();
    for (size_t k = 0; k < p_.output_regs.size(); ++k) {
      int r = p_.output_regs[k];
      outputs_.push_back({r, static_cast<int>(k), p_.reg_dtype[r] == dtype_of<T>()});
    }
    block_instrs_.clear();
    for (const FusedInstr& in : p_.instrs) {
      if (!in.uniform) {
        block_instrs_.push_back(&in);
        continue;
      }
      exec(in, Vec::size());
      uval_[in.dst] = Vec::loadu(ptr_[in.dst]);
    }
    drop_untaken_branches();
    if (run.rows > 1 && 2 * run.n <= block_) return run_short_rows(run);
    const size_t num_operands = p_.output_regs.size() + p_.input_operand.size();
    c10::SmallVector<char*, 8> data(run.data, run.data + num_operands);
    for (int64_t row = 0; row < run.rows; ++row) {
      if (row > 0)
        for (size_t k = 0; k < num_operands; ++k) data[k] += run.outer_strides[k];
      run_row(data.data(), run.strides, run.n);
    }
  }

 private:
  struct Operand_ {
    int reg, k;         // register, iterator operand
    bool compute_type;  // stored in T: full contiguous blocks need no copy
  };
  struct State {
    std::vector<T> scratch;
    std::vector<T*> ptr, out;
    std::vector<Vec> uval;
    std::vector<char> uniform;
    // This run's streamed inputs, outputs and per-block instructions.
    std::vector<Operand_> streamed, outputs;
    std::vector<const FusedInstr*> block_instrs;
    std::vector<FusedInstr> copies;  // drop_untaken_branches' rewritten instructions
    std::vector<char> live;
    std::vector<int> readers;
  };
  static State& state() {
    thread_local State s;
    return s;
  }

  void run_row(char* const* data, const int64_t* strides, int64_t n) {
    const int64_t V = Vec::size();
    constexpr int64_t kSize = sizeof(T);
    // Streamed inputs that do not move along this row are one value for it.
    for (const Operand_& o : streamed_) {
      uniform_[o.reg] = strides[o.k] == 0;
      if (!uniform_[o.reg]) continue;
      T v;
      load_block(p_.reg_dtype[o.reg], data[o.k], 0, 1, &v);
      uval_[o.reg] = Vec(v);
    }
    for (int64_t off = 0; off < n; off += block_) {
      int64_t m = std::min(block_, n - off);
      int64_t mpad = (m + V - 1) / V * V;
      if (off + block_ < n) prefetch_next_block(data, strides, n, off + block_);
      for (const Operand_& o : streamed_) {
        if (uniform_[o.reg]) continue;
        const char* base = data[o.k] + off * strides[o.k];
        if (m == mpad && o.compute_type && strides[o.k] == kSize) {
          ptr_[o.reg] = const_cast<T*>(reinterpret_cast<const T*>(base));
        } else {
          ptr_[o.reg] = scratch_ + o.reg * (block_ + kPad);
          load_block(p_.reg_dtype[o.reg], base, strides[o.k], m, ptr_[o.reg]);
        }
      }
      // Full blocks of contiguous outputs in compute type are written in place.
      for (const Operand_& o : outputs_) {
        bool direct = m == mpad && o.compute_type && strides[o.k] == kSize;
        out_[o.reg] = direct ? reinterpret_cast<T*>(data[o.k] + off * strides[o.k]) : nullptr;
      }
      for (const FusedInstr* in : block_instrs_) exec(*in, mpad);
      for (const Operand_& o : outputs_)
        if (!out_[o.reg]) store_block(p_.reg_dtype[o.reg], ptr_[o.reg], m, data[o.k] + off * strides[o.k], strides[o.k]);
    }
  }

  // Rows much shorter than a block (an LSTM gate's [16, 64] view of a wider
  // tensor): as many rows as fit are packed into each register's block, so
  // the program runs once per block instead of once per row.
  void run_short_rows(const FusedRun& run) {
    const int64_t V = Vec::size(), n = run.n, per_block = block_ / n;
    for (int64_t first = 0; first < run.rows; first += per_block) {
      const int64_t count = std::min(per_block, run.rows - first);
      const int64_t m = count * n, mpad = (m + V - 1) / V * V;
      for (const Operand_& o : streamed_) {
        uniform_[o.reg] = 0;  // a row-uniform input (a broadcast column) is expanded
        T* dst = ptr_[o.reg] = scratch_ + o.reg * (block_ + kPad);
        for (int64_t j = 0; j < count; ++j)
          load_block(p_.reg_dtype[o.reg], run.data[o.k] + (first + j) * run.outer_strides[o.k], run.strides[o.k], n,
                     dst + j * n);
      }
      for (const Operand_& o : outputs_) out_[o.reg] = nullptr;
      vml_row_ = n;
      for (const FusedInstr* in : block_instrs_) exec(*in, mpad);
      vml_row_ = 0;
      for (const Operand_& o : outputs_)
        for (int64_t j = 0; j < count; ++j)
          store_block(p_.reg_dtype[o.reg], ptr_[o.reg] + j * n, n,
                      run.data[o.k] + (first + j) * run.outer_strides[o.k], run.strides[o.k]);
    }
  }

  // A select whose condition is one value for the whole call (lerp's
  // |weight| < 0.5 for a scalar weight) is a copy of the side it takes; the
  // instructions only the other side needed are dropped for this call.
  void drop_untaken_branches() {
    auto uniform_select = [&](const FusedInstr* in) {
      return in->kind == NodeKind::Select && in->compare == NodeKind::Identity && p_.reg_uniform[in->src[0]];
    };
    if (std::none_of(block_instrs_.begin(), block_instrs_.end(), uniform_select)) return;
    std::vector<FusedInstr>& copies = st_.copies;
    copies.clear();
    copies.reserve(2 * block_instrs_.size());  // block_instrs_ points into it: no reallocation
    std::vector<char>& live = st_.live;
    live.assign(p_.num_regs, 0);
    for (int r : p_.output_regs) live[r] = 1;
    for (auto it = block_instrs_.rbegin(); it != block_instrs_.rend(); ++it) {
      if (!live[(*it)->dst]) {
        *it = nullptr;
        continue;
      }
      if (uniform_select(*it)) {
        T condition[Vec::size()];
        uval_[(*it)->src[0]].store(condition);
        FusedInstr copy = **it;
        copy.kind = NodeKind::Identity;
        copy.src[0] = mask_set(condition[0]) ? copy.src[1] : copy.src[2];
        copy.src[1] = copy.src[2] = -1;
        copies.push_back(copy);
        *it = &copies.back();
      }
      for (int src : (*it)->src)
        if (src >= 0) live[src] = 1;
    }
    block_instrs_.erase(std::remove(block_instrs_.begin(), block_instrs_.end(), nullptr), block_instrs_.end());
    write_taken_sides_in_place();
  }

  // A copy from a value that only the copy reads (lerp's taken side): the
  // instruction computing that value writes the select's register instead,
  // and the copy pass goes.
  void write_taken_sides_in_place() {
    std::vector<int>& readers = st_.readers;
    readers.assign(p_.num_regs, 0);
    for (const FusedInstr* in : block_instrs_)
      for (int src : in->src)
        if (src >= 0) ++readers[src];
    std::vector<FusedInstr>& copies = st_.copies;
    const FusedInstr* first_copy = copies.data();
    const FusedInstr* end_copy = copies.data() + copies.size();
    for (size_t i = 0; i < block_instrs_.size(); ++i) {
      const FusedInstr* copy = block_instrs_[i];
      if (copy < first_copy || copy >= end_copy || copy->kind != NodeKind::Identity) continue;
      const int from = copy->src[0];
      if (from < p_.num_inputs || readers[from] != 1 ||
          std::find(p_.output_regs.begin(), p_.output_regs.end(), from) != p_.output_regs.end())
        continue;
      auto producer = std::find_if(block_instrs_.begin(), block_instrs_.begin() + i,
                                   [&](const FusedInstr* in) { return in->dst == from; });
      if (producer == block_instrs_.begin() + i) continue;  // a uniform value: the copy broadcasts it
      FusedInstr moved = **producer;
      moved.dst = copy->dst;
      copies.push_back(moved);
      *producer = &copies.back();
      block_instrs_[i] = nullptr;
    }
    block_instrs_.erase(std::remove(block_instrs_.begin(), block_instrs_.end(), nullptr), block_instrs_.end());
  }

 private:
  // Each block makes several passes over L1, so the hardware prefetcher sees
  // no stream while the next block's inputs are still in L3 or DRAM: ask for
  // them one block ahead.
  void prefetch_next_block(char* const* data, const int64_t* strides, int64_t n, int64_t next) const {
    const int64_t count = std::min(block_, n - next);
    for (const Operand_& o : streamed_) {
      if (strides[o.k] <= 0) continue;
      const char* base = data[o.k] + next * strides[o.k];
      const int64_t bytes = count * strides[o.k];
      for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(base + b, 0, 3);
    }
  }

  Operand<T> operand(int r) const { return {ptr_[r], uval_[r], static_cast<bool>(uniform_[r])}; }

  void exec(const FusedInstr& in, int64_t m) {
    T* d = ptr_[in.dst] = out_[in.dst] ? out_[in.dst] : scratch_ + in.dst * (block_ + kPad);
    Operand<T> a = in.src[0] >= 0 ? operand(in.src[0]) : Operand<T>{nullptr, Vec(T(0)), true};
    Operand<T> b = in.src[1] >= 0 ? operand(in.src[1]) : a;
    const Vec zero(T(0)), one(T(1));
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      if (VmlFunction<T> f = a.uniform ? nullptr : vml_function<T>(in.kind)) return vml(f, m, a.p, d);
    }
    switch (in.kind) {
      case NodeKind::Constant: {
        Vec v(static_cast<T>(in.value));
        MPS_EXT_TWO_VECTORS for (int64_t i = 0; i < m; i += Vec::size()) v.store(d + i);
        return;
      }
      case NodeKind::Cast: return cast_block(p_.reg_dtype[in.src[0]], in.dtype, a, m, d);
      case NodeKind::Identity: return map1([](Vec x) { return x; }, m, d, a);
      case NodeKind::Abs: return map1([](Vec x) { return x.abs(); }, m, d, a);
      case NodeKind::Negative: return map1([](Vec x) { return x.neg(); }, m, d, a);
      case NodeKind::Sign:
        return map1([&](Vec x) { return Vec::blendv(zero, one, zero < x) - Vec::blendv(zero, one, x < zero); }, m, d, a);
      case NodeKind::Exp: return map1([](Vec x) { return x.exp(); }, m, d, a);
      case NodeKind::Log: return map1([](Vec x) { return x.log(); }, m, d, a);
      case NodeKind::Sqrt: return map1([](Vec x) { return x.sqrt(); }, m, d, a);
      case NodeKind::Rsqrt: return map1([](Vec x) { return x.rsqrt(); }, m, d, a);
      case NodeKind::Reciprocal: return map1([](Vec x) { return x.reciprocal(); }, m, d, a);
      case NodeKind::Square: return map1([](Vec x) { return x * x; }, m, d, a);
      case NodeKind::Sin: return map1([](Vec x) { return x.sin(); }, m, d, a);
      case NodeKind::Cos: return map1([](Vec x) { return x.cos(); }, m, d, a);
      case NodeKind::Tanh: return map1([](Vec x) { return x.tanh(); }, m, d, a);
      case NodeKind::Sigmoid: return map1([&](Vec x) { return one / (one + x.neg().exp()); }, m, d, a);
      case NodeKind::Floor: return map1([](Vec x) { return x.floor(); }, m, d, a);
      case NodeKind::Ceil: return map1([](Vec x) { return x.ceil(); }, m, d, a);
      case NodeKind::Round: return map1([](Vec x) { return x.round(); }, m, d, a);
      case NodeKind::LogicalNot: return map1([](Vec x) { return x ^ Vec(all_ones<T>()); }, m, d, a);
      case NodeKind::IsNaN: return map1([](Vec x) { return x.isnan(); }, m, d, a);
      case NodeKind::Erf: return map1([](Vec x) { return x.erf(); }, m, d, a);
      case NodeKind::Add:
        if (in.inner == NodeKind::Multiply) {
          if (in.fma) return multiply_add(m, d, a, b, operand(in.src[2]), [](Vec x, Vec y, Vec z) { return at::vec::fmadd(x, y, z); });
          return multiply_add(m, d, a, b, operand(in.src[2]), [](Vec x, Vec y, Vec z) { return x * y + z; });
        }
        return map2([](Vec x, Vec y) { return x + y; }, m, d, a, b);
      case NodeKind::Subtract: return map2([](Vec x, Vec y) { return x - y; }, m, d, a, b);
      case NodeKind::Multiply: return map2([](Vec x, Vec y) { return x * y; }, m, d, a, b);
      case NodeKind::Divide: return map2([](Vec x, Vec y) { return x / y; }, m, d, a, b);
      case NodeKind::Maximum:
        if (in.inner == NodeKind::Minimum) return clamp(m, d, a, operand(in.src[2]).v, b.v);
        return map2([](Vec x, Vec y) { return at::vec::maximum(x, y); }, m, d, a, b);
      case NodeKind::Minimum:
        if (in.inner == NodeKind::Maximum) return clamp(m, d, a, operand(in.src[2]).v, b.v, /*max_first=*/true);
        return map2([](Vec x, Vec y) { return at::vec::minimum(x, y); }, m, d, a, b);
      case NodeKind::Power:
        if (b.uniform) return power_by(m, d, a, b.v);
        return map2([](Vec x, Vec y) { return x.pow(y); }, m, d, a, b);
      case NodeKind::LogicalAnd: return map2([](Vec x, Vec y) { return x & y; }, m, d, a, b);
      case NodeKind::LogicalOr: return map2([](Vec x, Vec y) { return x | y; }, m, d, a, b);
      case NodeKind::Equal: return map2([](Vec x, Vec y) { return x == y; }, m, d, a, b);
      case NodeKind::NotEqual: return map2([](Vec x, Vec y) { return x != y; }, m, d, a, b);
      case NodeKind::Less: return map2([](Vec x, Vec y) { return x < y; }, m, d, a, b);
      case NodeKind::LessEqual: return map2([](Vec x, Vec y) { return x <= y; }, m, d, a, b);
      case NodeKind::Greater: return map2([](Vec x, Vec y) { return x > y; }, m, d, a, b);
      case NodeKind::GreaterEqual: return map2([](Vec x, Vec y) { return x >= y; }, m, d, a, b);
      case NodeKind::Select: {
        if (in.compare != NodeKind::Identity) return compare_select(in, m, d, a, b);
        Operand<T> p = a, t = b, f = operand(in.src[2]);
        if (p.uniform) {  // rare: pick per element with the general path
          MPS_EXT_TWO_VECTORS for (int64_t i = 0; i < m; i += Vec::size()) Vec::blendv(f.at(i), t.at(i), p.v).store(d + i);
        } else if (t.uniform) {  // the common "x if cond else constant" shapes
          map2([tv = t.v](Vec c, Vec y) { return Vec::blendv(y, tv, c); }, m, d, p, f);
        } else if (f.uniform) {
          map2([fv = f.v](Vec c, Vec y) { return Vec::blendv(fv, y, c); }, m, d, p, t);
        } else {
          MPS_EXT_TWO_VECTORS for (int64_t i = 0; i < m; i += Vec::size())
            Vec::blendv(Vec::loadu(f.p + i), Vec::loadu(t.p + i), Vec::loadu(p.p + i)).store(d + i);
        }
        return;
      }
      default: return;  // the planner admits only the kinds above
    }
  }

  // VML over a block, per row of packed short rows, and in calls MKL keeps
  // on this thread: it threads a call from about 112 elements (3.4 us for
  // tanh of an LSTM gate's [16, 64] view on 2 threads, 1.5 us as 16 row
  // calls); run_region threads regions with VML itself (kVmlGrain).
  void vml(VmlFunction<T> f, int64_t m, const T* x, T* d) const {
    // Outside a parallel region, calls short enough for MKL to run them on
    // this thread (inside one, or with one thread, MKL does not thread them anyway).
    const int64_t whole = vml_row_ > 0 ? vml_row_ : m;
    const bool unthreaded = at::in_parallel_region() || at::get_num_threads() == 1;
    const int64_t row = unthreaded ? whole : std::min(whole, kVmlChunk);
    for (int64_t off = 0; off < m; off += row) f(std::min(row, m - off), x + off, d + off, kAtenVmlMode);
  }

  // x ** e for one exponent: the exponents ATen's pow(Tensor, Scalar) turns
  // into cheaper exact math take the same shortcut (x.square() is pow(x, 2)).
  void power_by(int64_t m, T* d, const Operand<T>& x, Vec e) {
    T first[Vec::size()];
    e.store(first);
    const T k = first[0];
    const Vec one(T(1));
    if (k == T(1)) return map1([](Vec v) { return v; }, m, d, x);  // square's backward: 2 * x ** 1
    if (k == T(0)) return map1([one](Vec) { return one; }, m, d, x);  // NaN ** 0 is 1 too
    if (k == T(2)) return map1([](Vec v) { return v * v; }, m, d, x);
    if (k == T(3)) return map1([](Vec v) { return v * v * v; }, m, d, x);
    if (k == T(0.5)) {  // ATen's sqrt kernel, VML's where torch has it
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
        if (VmlFunction<T> f = x.uniform ? nullptr : vml_function<T>(NodeKind::Sqrt)) return vml(f, m, x.p, d);
      return map1([](Vec v) { return v.sqrt(); }, m, d, x);
    }
    if (k == T(-0.5)) return map1([](Vec v) { return v.rsqrt(); }, m, d, x);
    if (k == T(-1)) return map1([](Vec v) { return v.reciprocal(); }, m, d, x);
    if (k == T(-2)) return map1([one](Vec v) { return one / (v * v); }, m, d, x);
    return map1([e](Vec v) { return v.pow(e); }, m, d, x);
  }

  // x * y + z: the product rounded first (this file is built without FP
  // contraction), or one fused multiply-add (at::vec::fmadd, where ATen's
  // kernel computes one: lerp, add's alpha, addcmul). The uniform operands are
  // hoisted for the two shapes the optimizers make: value * (t1 op t2) + self,
  // and a product plus a scalar.
  template <typename F>
  void multiply_add(int64_t m, T* d, const Operand<T>& x, const Operand<T>& y, const Operand<T>& z, F f) {
    if (x.uniform && !y.uniform && !z.uniform) {
      MPS_EXT_TWO_VECTORS for (int64_t i = 0; i < m; i += Vec::size()) f(x.v, Vec::loadu(y.p + i), Vec::loadu(z.p + i)).store(d + i);
    } else if (!x.uniform && y.uniform && !z.uniform) {
      MPS_EXT_TWO_VECTORS for (int64_t i = 0; i < m; i += Vec::size()) f(Vec::loadu(x.p + i), y.v, Vec::loadu(z.p + i)).store(d + i);
    } else if (!x.uniform && !y.uniform && !z.uniform) {
      MPS_EXT_TWO_VECTORS for (int64_t i = 0; i < m; i += Vec::size())
        f(Vec::loadu(x.p + i), Vec::loadu(y.p + i), Vec::loadu(z.p + i)).store(d + i);
    } else {
      MPS_EXT_TWO_VECTORS for (int64_t i = 0; i < m; i += Vec::size()) f(x.at(i), y.at(i), z.at(i)).store(d + i);
    }
  }

  // max(min(x, first), second), or min(max(x, first), second); NaN propagates.
  void clamp(int64_t m, T* d, const Operand<T>& x, Vec first, Vec second, bool max_first = false) {
    T bounds[2][Vec::size()];
    first.store(bounds[0]);
    second.store(bounds[1]);
    if (!std::isnan(bounds[0][0]) && !std::isnan(bounds[1][0])) {
      // Bounds that are numbers: ATen's clamp kernels (clamp_min/clamp_max put
      // the bound first, so a NaN in x propagates without a NaN mask; AVX-512's
      // mask-to-vector moves made the general form 2x slower).
      if (max_first) return map1([=](Vec v) { return at::vec::clamp(v, first, second); }, m, d, x);
      return map1([=](Vec v) { return at::vec::clamp_min(at::vec::clamp_max(v, first), second); }, m, d, x);
    }
    if (max_first)
      map1([=](Vec v) { return at::vec::minimum(at::vec::maximum(v, first), second); }, m, d, x);
    else
      map1([=](Vec v) { return at::vec::maximum(at::vec::minimum(v, first), second); }, m, d, x);
  }

  void compare_select(const FusedInstr& in, int64_t m, T* d, const Operand<T>& a, const Operand<T>& b) {
    Operand<T> t = operand(in.src[2]), f = operand(in.src[3]);
    // x < c ? c : x (relu) is at::vec::clamp_min(x, c): one max per vector,
    // whose operand order keeps x where it is NaN or equal to c (-0.0 stays),
    // as the select does.
    if (in.compare == NodeKind::Less && !a.uniform && in.src[3] == in.src[0] && b.uniform && t.uniform &&
        same_bits(b.v, t.v))
      return map1([c = b.v](Vec x) { return at::vec::clamp_min(x, c); }, m, d, a);
    auto run = [&](auto cmp) {
      // x against a constant choosing a constant or a stream (relu,
      // threshold_backward): two streams, no per-vector test of which
      // operands are uniform.
      if (b.uniform && t.uniform != f.uniform) {
        const Vec bv = b.v, constant = t.uniform ? t.v : f.v;
        if (t.uniform) return map2([&](Vec x, Vec y) { return Vec::blendv(y, constant, cmp(x, bv)); }, m, d, a, f);
        return map2([&](Vec x, Vec y) { return Vec::blendv(constant, y, cmp(x, bv)); }, m, d, a, t);
      }
      MPS_EXT_TWO_VECTORS for (int64_t i = 0; i < m; i += Vec::size())
        Vec::blendv(f.at(i), t.at(i), cmp(a.at(i), b.at(i))).store(d + i);
    };
    switch (in.compare) {
      case NodeKind::Equal: return run([](Vec x, Vec y) { return x == y; });
      case NodeKind::NotEqual: return run([](Vec x, Vec y) { return x != y; });
      case NodeKind::Less: return run([](Vec x, Vec y) { return x < y; });
      case NodeKind::LessEqual: return run([](Vec x, Vec y) { return x <= y; });
      case NodeKind::Greater: return run([](Vec x, Vec y) { return x > y; });
      case NodeKind::GreaterEqual: return run([](Vec x, Vec y) { return x >= y; });
      default: return;
    }
  }

  const FusedProgram& p_;
  const int64_t block_;  // elements per block (block_size)
  int64_t vml_row_ = 0;  // run_short_rows' row length while it runs a packed block
  T* scratch_;
  T** ptr_;    // per register: where its current block lives
  T** out_;    // per register: output memory to write in place, or null
  Vec* uval_;  // per register: the broadcast value of uniform registers
  State& st_;
  std::vector<Operand_>& streamed_ = st_.streamed;
  std::vector<Operand_>& outputs_ = st_.outputs;
  std::vector<const FusedInstr*>& block_instrs_ = st_.block_instrs;
  char* uniform_;  // per register: one value (program-uniform, or an input broadcast along this row)
};
}  // namespace

void run_fused(const FusedProgram& p, const FusedRun& run) {
  if (p.compute_double) Interpreter<double>(p).run(run);
  else Interpreter<float>(p).run(run);
}

}  // namespace CPU_CAPABILITY
}  // namespace mps_ext::runtime::reference
