#include "runtime/reference/fusion.h"

#include <ATen/ATen.h>
#include <ATen/TensorIterator.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/ExpandUtils.h>

#include <dlfcn.h>

#include <algorithm>
#include <functional>
#include <unordered_map>
#include <set>

#include "runtime/reference/cpu_dispatch.h"
#include "runtime/reference/output_allocator.h"
#include "runtime/runtime.h"

namespace mps_ext::runtime::reference {
using graph::DType;
using graph::Node;
using graph::NodeKind;

namespace {
bool fusible_dtype(DType t) { return graph::is_floating(t) || t == DType::Bool; }

bool static_single_element(const graph::Shape& s) {
  return std::all_of(s.begin(), s.end(), [](int64_t d) { return d == 1; });
}

// Kinds the block interpreter implements, with the dtypes it supports.
bool fusible(const graph::Graph& g, const Node& n) {
  bool kind_ok = graph::is_elementwise(n.kind) || n.kind == NodeKind::Cast ||
                 (n.kind == NodeKind::Constant && static_single_element(n.type.shape));
  if (!kind_ok || !fusible_dtype(n.type.dtype)) return false;
  for (int in : n.inputs)
    if (!fusible_dtype(g.node(in).type.dtype)) return false;
  if (graph::is_compare(n.kind) || n.kind == NodeKind::IsNaN)  // float operands only
    return graph::is_floating(g.node(n.inputs[0]).type.dtype);
  bool logical = n.kind == NodeKind::LogicalAnd || n.kind == NodeKind::LogicalOr ||
                 n.kind == NodeKind::LogicalNot || n.kind == NodeKind::Select ||
                 n.kind == NodeKind::Cast || n.kind == NodeKind::Constant;
  return logical || graph::is_floating(n.type.dtype);  // no arithmetic on bools
}

FusedProgram compile_program(const graph::Graph& g, const FusedRegion& r,
                             const std::vector<bool>& uniform,
                             const std::vector<std::vector<int>>& users) {
  FusedProgram p;
  std::vector<int> reg(g.nodes().size(), -1);
  auto add_reg = [&](int value, bool forces_double = true) {
    reg[value] = p.num_regs++;
    p.reg_dtype.push_back(g.node(value).type.dtype);
    p.reg_uniform.push_back(uniform[value]);
    p.compute_double |= forces_double && g.node(value).type.dtype == DType::Float64;
    return reg[value];
  };
  int operand = static_cast<int>(r.outputs.size());
  for (int v : r.inputs) {
    // A uniform float64 input (a Python float as a 0-d tensor, cast inside
    // the region) is one value: it does not make the region compute in
    // double; float64 math on it is an instruction, which does.
    add_reg(v, /*forces_double=*/!uniform[v]);
    p.input_operand.push_back(uniform[v] ? -1 : operand++);
  }
  p.num_inputs = p.num_regs;
  // Peepholes fold a streamed value into its single user in the region, as
  // that user's first operand, when nothing else (no output) needs it.
  auto in_region = [&](int id) { return std::find(r.nodes.begin(), r.nodes.end(), id) != r.nodes.end(); };
  auto folds_into_user = [&](int id) {
    // Only a value computed inside the region can fold (a compare ATen ran,
    // e.g. on integers, is a region input like any other).
    if (uniform[id] || users[id].size() != 1 || !in_region(id)) return false;
    int user = users[id][0];
    return g.node(user).inputs[0] == id &&
           std::find(r.outputs.begin(), r.outputs.end(), id) == r.outputs.end() &&
           std::find(r.nodes.begin(), r.nodes.end(), user) != r.nodes.end();
  };
  // A compare used as a select's predicate becomes part of the select.
  auto folds_into_select = [&](int id) {
    return graph::is_compare(g.node(id).kind) && folds_into_user(id) &&
           g.node(users[id][0]).kind == NodeKind::Select;
  };
  // max(min(x, hi), lo) and min(max(x, lo), hi) with uniform bounds become one
  // clamp instruction.
  auto folds_into_clamp = [&](int id) {
    if (!folds_into_user(id)) return false;
    const Node& n = g.node(id);
    const Node& user = g.node(users[id][0]);
    bool min_max = (n.kind == NodeKind::Minimum && user.kind == NodeKind::Maximum) ||
                   (n.kind == NodeKind::Maximum && user.kind == NodeKind::Minimum);
    return min_max && !uniform[n.inputs[0]] && uniform[n.inputs[1]] && uniform[user.inputs[1]];
  };
  // x * y + z (the product either operand) becomes one multiply-add
  // instruction when the product is read nowhere else: one pass over the
  // block instead of two, with the same two roundings.
  auto foldable_product = [&](int id) {
    if (g.node(id).kind != NodeKind::Multiply || uniform[id] || users[id].size() != 1 || !in_region(id) ||
        std::find(r.outputs.begin(), r.outputs.end(), id) != r.outputs.end())
      return false;
    int user = users[id][0];
    return g.node(user).kind == NodeKind::Add && in_region(user);
  };
  auto folded_product = [&](const Node& add) {  // the one product an add takes in, or -1
    if (add.kind != NodeKind::Add) return -1;
    for (int in : add.inputs)
      if (foldable_product(in)) return in;
    return -1;
  };
  auto folds_into_add = [&](int id) { return foldable_product(id) && folded_product(g.node(users[id][0])) == id; };
  for (int id : r.nodes) {
    const Node& n = g.node(id);
    if (folds_into_select(id) || folds_into_clamp(id) || folds_into_add(id)) continue;
    FusedInstr in{n.kind, n.type.dtype};
    std::vector<int> srcs = n.inputs;
    if (n.kind == NodeKind::Select && folds_into_select(n.inputs[0])) {
      const Node& cmp = g.node(n.inputs[0]);
      in.compare = cmp.kind;
      srcs = {cmp.inputs[0], cmp.inputs[1], n.inputs[1], n.inputs[2]};
    } else if (n.kind != NodeKind::Select && !n.inputs.empty() && folds_into_clamp(n.inputs[0])) {
      const Node& first = g.node(n.inputs[0]);
      in.inner = first.kind;
      srcs = {first.inputs[0], n.inputs[1], first.inputs[1]};
    } else if (int product = folded_product(n); product >= 0) {
      const int other = n.inputs[0] == product ? n.inputs[1] : n.inputs[0];
      in.inner = NodeKind::Multiply;
      in.fma = n.attrs.count("fma") != 0;
      srcs = {g.node(product).inputs[0], g.node(product).inputs[1], other};
    }
    for (size_t i = 0; i < srcs.size(); ++i) in.src[i] = reg[srcs[i]];
    in.uniform = uniform[id];
    if (n.kind == NodeKind::Constant) in.value = n.float_attr("value");
    if (!in.uniform && std::any_of(std::begin(kVmlFunctions), std::end(kVmlFunctions),
                                   [&](const auto& f) { return f.first == n.kind; }))
      p.transcendental = true;
    if (!in.uniform && n.kind == NodeKind::Sigmoid) p.vector_math = true;
    in.dst = add_reg(id);
    p.instrs.push_back(in);
  }
  for (int v : r.outputs) p.output_regs.push_back(reg[v]);
  return p;
}

// Fills in inputs/outputs/deps of a region whose nodes are chosen.
void wire_region(const graph::Graph& g, FusedRegion& r, const std::vector<std::vector<int>>& users) {
  std::set<int> inside(r.nodes.begin(), r.nodes.end());
  const auto& outs = g.outputs();
  std::vector<std::set<int>> deps(g.nodes().size());  // input indices each value reads
  for (int id : r.nodes) {
    for (int in : g.node(id).inputs) {
      if (inside.count(in)) {
        deps[id].insert(deps[in].begin(), deps[in].end());
        continue;
      }
      auto it = std::find(r.inputs.begin(), r.inputs.end(), in);
      int idx = static_cast<int>(it - r.inputs.begin());
      if (it == r.inputs.end()) r.inputs.push_back(in);
      deps[id].insert(idx);
    }
    bool used_outside = std::find(outs.begin(), outs.end(), id) != outs.end() ||
                        std::any_of(users[id].begin(), users[id].end(),
                                    [&](int u) { return !inside.count(u); });
    if (used_outside) {
      r.outputs.push_back(id);
      r.output_deps.emplace_back(deps[id].begin(), deps[id].end());
    }
  }
}

// A run of fusible nodes split into independent chains: nodes joined by an
// edge inside the run or by a streamed value they both read stay together.
// Independent chains may have unrelated shapes (a _foreach_ list's elements),
// which one pass over one iteration space cannot serve.
std::vector<std::vector<int>> independent_chains(const graph::Graph& g, const std::vector<int>& run,
                                                 const std::vector<bool>& uniform) {
  std::unordered_map<int, int> parent;  // union-find over node ids (run nodes and streamed inputs)
  std::function<int(int)> find = [&](int x) {
    auto it = parent.find(x);
    if (it == parent.end()) return parent[x] = x;
    if (it->second == x) return x;
    int root = find(it->second);
    parent[x] = root;
    return root;
  };
  std::set<int> in_run(run.begin(), run.end());
  for (int id : run) {
    find(id);
    for (int in : g.node(id).inputs)  // an edge in the run, or a streamed value other nodes may read too
      if (in_run.count(in) || !uniform[in]) parent[find(id)] = find(in);
  }
  std::vector<std::vector<int>> chains;
  std::unordered_map<int, size_t> chain_of_root;
  for (int id : run) {  // in run order: each chain keeps its nodes' order
    auto [it, added] = chain_of_root.emplace(find(id), chains.size());
    if (added) chains.emplace_back();
    chains[it->second].push_back(id);
  }
  return chains;
}
}  // namespace

Plan plan_fusion(const graph::Graph& g) {
  const auto& nodes = g.nodes();
  const int N = static_cast<int>(nodes.size());
  std::vector<std::vector<int>> users(N);
  for (int i = 0; i < N; ++i)
    for (int in : nodes[i].inputs) users[in].push_back(i);

  // A value is uniform when it is statically a single element: it is
  // computed once per call and broadcast, not streamed.
  std::vector<bool> uniform(N), can_fuse(N);
  for (int i = 0; i < N; ++i) {
    const Node& n = nodes[i];
    can_fuse[i] = fusible(g, n);
    uniform[i] = static_single_element(n.type.shape);
    for (int in : n.inputs) uniform[i] = uniform[i] && uniform[in];
  }

  // Consecutive fusible nodes form a region. A region that streams values
  // leaves the uniform values it would have to hand out to ATen; a region of
  // uniform values only runs as one single-element pass.
  for (bool changed = true; changed;) {
    changed = false;
    Plan plan;
    std::vector<int> run;
    auto close_component = [&](const std::vector<int>& nodes) {
      bool streams = std::any_of(nodes.begin(), nodes.end(), [&](int id) { return !uniform[id]; });
      // A single streaming node is a region too: one pass straight into its
      // output's memory, without ATen's TensorIterator setup per call.
      FusedRegion r;
      r.nodes = nodes;
      wire_region(g, r, users);
      if (!streams && r.inputs.empty()) {  // constants only: precomputed once
        for (int id : nodes) plan.steps.push_back({id, -1});
        return;
      }
      // A region of single elements only (0-d math: clip_grad_norm_'s clip
      // coefficient, a loss's scale) is one pass of one element: its outputs
      // are the iteration space, where ATen would run one op per node.
      for (int out : r.outputs) {
        if (streams && uniform[out]) {
          can_fuse[out] = false;
          changed = true;
        }
      }
      plan.steps.push_back({-1, static_cast<int>(plan.regions.size())});
      plan.regions.push_back(std::move(r));
    };
    auto close = [&] {
      for (const auto& nodes : independent_chains(g, run, uniform)) close_component(nodes);
      run.clear();
    };
    for (int i = 0; i < N; ++i) {
      NodeKind k = nodes[i].kind;
      if (graph::is_input(k)) continue;
      if (can_fuse[i]) {
        run.push_back(i);
      } else {
        close();
        plan.steps.push_back({i, -1});
      }
    }
    close();
    if (changed) continue;
    for (FusedRegion& r : plan.regions) r.program = compile_program(g, r, uniform, users);
    return plan;
  }
  return {};
}

namespace {
double read_scalar(const at::Tensor& t) {
  const void* p = t.const_data_ptr();
  switch (t.scalar_type()) {
    case at::kFloat: return *static_cast<const float*>(p);
    case at::kDouble: return *static_cast<const double*>(p);
    case at::kHalf: return static_cast<float>(*static_cast<const at::Half*>(p));
    case at::kBFloat16: return static_cast<float>(*static_cast<const at::BFloat16*>(p));
    case at::kBool: return *static_cast<const bool*>(p) ? 1.0 : 0.0;
    default: TORCH_INTERNAL_ASSERT(false, "unexpected uniform dtype ", t.scalar_type());
  }
}

// space = broadcast(space, s) (numpy rules); false if they do not broadcast.
bool broadcast_into(at::DimVector& space, at::IntArrayRef s) {
  const size_t n = std::max(space.size(), s.size());
  at::DimVector out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t a = i + space.size() >= n ? space[i + space.size() - n] : 1;
    int64_t b = i + s.size() >= n ? s[i + s.size() - n] : 1;
    if (a != b && a != 1 && b != 1) return false;
    out[i] = a == 1 ? b : a;
  }
  space = std::move(out);
  return true;
}

using KernelFn = void (*)(const FusedProgram&, const FusedRun&);
// ATen runs the AVX2 builds of most of its elementwise kernels on AVX-512
// CPUs too (DispatchStub takes an AVX-512 build only where a kernel registers
// one), and so does the interpreter: its AVX-512 build was up to 25% slower
// than ATen's add over [256, 256] floats on a Sapphire Rapids Xeon, the AVX2
// build within 5%. Sigmoid is one that registers one (at::vec's exp, 16 wide):
// a program with a streamed sigmoid (sigmoid, silu and silu's backward) runs
// the AVX-512 build there, as ATen does (the AVX2 build was 1.6x slower than
// ATen's sigmoid of 65,536 floats).
KernelFn select_kernel(const FusedProgram& p) {
#if defined(MPS_EXT_HAVE_AVX2)
  if (p.vector_math && cpu_capability() == CpuCapability::AVX512) return &AVX512::run_fused;
  if (cpu_capability() != CpuCapability::Default) return &AVX2::run_fused;
#endif
  return &DEFAULT::run_fused;
}

// The iterator's operand order: outputs, then the streamed (non-uniform) inputs.
c10::SmallVector<const at::Tensor*, 8> streamed_operands(const FusedRegion& r, c10::ArrayRef<at::Tensor> outs,
                                                         c10::ArrayRef<const at::Tensor*> in) {
  c10::SmallVector<const at::Tensor*, 8> ops;
  for (const at::Tensor& o : outs) ops.push_back(&o);
  for (size_t i = 0; i < r.inputs.size(); ++i)
    if (!r.program.reg_uniform[i]) ops.push_back(in[i]);
  return ops;
}

// Operands (outputs, then streamed inputs) whose strides over `space`
// coalesce to at most two dims -- a strided row view (an LSTM gate's chunk),
// a broadcast row or column -- run as rows of a 2-D loop split across
// threads, without TensorIterator's set-up. False (nothing run) otherwise.
bool run_two_d(KernelFn kernel, const FusedProgram& p, at::IntArrayRef space,
               const c10::SmallVector<const at::Tensor*, 8>& ops, const double* uniform_values) {
  if (c10::multiply_integers(space) == 0) return false;
  const size_t n_ops = ops.size();
  const int64_t rank = static_cast<int64_t>(space.size());
  // dims, innermost first: size and per-operand byte strides
  c10::SmallVector<int64_t, 4> sizes;
  c10::SmallVector<c10::SmallVector<int64_t, 8>, 4> strides;
  for (int64_t d = rank - 1; d >= 0; --d) {
    if (space[d] == 1) continue;
    c10::SmallVector<int64_t, 8> st(n_ops);
    for (size_t k = 0; k < n_ops; ++k) {
      const at::Tensor& t = *ops[k];
      int64_t td = d - (rank - t.dim());
      st[k] = td < 0 || t.size(td) == 1 ? 0 : t.stride(td) * static_cast<int64_t>(t.element_size());
    }
    if (!sizes.empty()) {
      bool merges = true;
      for (size_t k = 0; k < n_ops && merges; ++k) merges = st[k] == strides.back()[k] * sizes.back();
      if (merges) {
        sizes.back() *= space[d];
        continue;
      }
    }
    if (sizes.size() == 2) return false;
    sizes.push_back(space[d]);
    strides.push_back(std::move(st));
  }
  if (sizes.empty()) return false;  // a single element: the flat path's job
  const int64_t n = sizes[0], rows = sizes.size() == 2 ? sizes[1] : 1;
  c10::SmallVector<char*, 8> base(n_ops);
  for (size_t k = 0; k < n_ops; ++k) base[k] = static_cast<char*>(const_cast<void*>(ops[k]->const_data_ptr()));
  if (rows == 1) {  // one strided run: split it
    at::parallel_for(0, n, at::internal::GRAIN_SIZE, [&](int64_t begin, int64_t end) {
      c10::SmallVector<char*, 8> ptrs(n_ops);
      for (size_t k = 0; k < n_ops; ++k) ptrs[k] = base[k] + begin * strides[0][k];
      kernel(p, FusedRun{ptrs.data(), strides[0].data(), end - begin, uniform_values});
    });
    return true;
  }
  const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / n);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    c10::SmallVector<char*, 8> ptrs(n_ops);
    for (size_t k = 0; k < n_ops; ++k) ptrs[k] = base[k] + begin * strides[1][k];
    kernel(p, FusedRun{ptrs.data(), strides[0].data(), n, uniform_values, end - begin, strides[1].data()});
  });
  return true;
}
}  // namespace

bool run_region(const FusedRegion& r, c10::ArrayRef<const at::Tensor*> in, const NodeOutput& new_output,
                c10::SmallVectorImpl<at::Tensor>& outs) {
  const FusedProgram& p = r.program;
  at::DimVector space;  // the iteration space: all inputs broadcast
  for (const at::Tensor* t : in) {
    // Independent chains of unrelated shapes can share a region (e.g. two
    // casts feeding different later nodes): no common space, run node by node.
    if (t->sizes() != at::IntArrayRef(space) && !broadcast_into(space, t->sizes())) return false;
  }
  for (const auto& deps : r.output_deps) {
    // An output spans the space if one of its inputs does (the common case),
    // else if its inputs broadcast to it.
    if (std::any_of(deps.begin(), deps.end(), [&](int i) { return in[i]->sizes() == at::IntArrayRef(space); }))
      continue;
    at::DimVector shape;
    for (int i : deps) shape = at::infer_size_dimvector(shape, in[i]->sizes());
    if (shape != space) return false;
  }

  const KernelFn kernel = select_kernel(p);
  outs.resize(r.outputs.size());
  for (size_t k = 0; k < r.outputs.size(); ++k) {
    at::ScalarType dtype = runtime::to_scalar_type(p.reg_dtype[p.output_regs[k]]);
    outs[k] = new_output(r.outputs[k], space, dtype);
  }
  c10::SmallVector<double, 8> uniform_values(p.num_inputs);
  bool flat = true;  // every streamed input contiguous and full-size
  for (int i = 0; i < p.num_inputs; ++i) {
    const at::Tensor& t = *in[i];
    if (p.reg_uniform[i]) uniform_values[i] = read_scalar(t);
    else flat = flat && t.is_contiguous() && t.sizes() == at::IntArrayRef(space);
  }

  const auto ops = streamed_operands(r, outs, in);
  if (flat) {
    // One flat range split across threads: no TensorIterator on the common path.
    c10::SmallVector<char*, 8> base;
    c10::SmallVector<int64_t, 8> strides;
    for (const at::Tensor* t : ops) {
      base.push_back(static_cast<char*>(const_cast<void*>(t->const_data_ptr())));
      strides.push_back(t->element_size());
    }
    const int64_t numel = c10::multiply_integers(space);
    const int64_t grain = p.transcendental ? kVmlGrain : at::internal::GRAIN_SIZE;
    if (numel > 0 && numel <= grain) {  // one chunk: this thread, without parallel_for's set-up
      kernel(p, FusedRun{base.data(), strides.data(), numel, uniform_values.data()});
    } else {
      at::parallel_for(0, numel, grain, [&](int64_t begin, int64_t end) {
        c10::SmallVector<char*, 8> ptrs(base.size());
        for (size_t k = 0; k < base.size(); ++k) ptrs[k] = base[k] + begin * strides[k];
        kernel(p, FusedRun{ptrs.data(), strides.data(), end - begin, uniform_values.data()});
      });
    }
  } else if (run_two_d(kernel, p, space, ops, uniform_values.data())) {
    // done: strided or broadcast operands that coalesce to two dims
  } else {
    // Broadcasting or strided inputs: TensorIterator supplies the strides.
    at::TensorIteratorConfig config;
    config.check_all_same_dtype(false).resize_outputs(false).enforce_safe_casting_to_output(false);
    c10::SmallVector<at::Tensor, 8> host;  // CPU views of device tensors (on_host): TensorIterator checks devices
    for (const at::Tensor* t : ops) host.push_back(on_host(*t));
    for (size_t k = 0; k < host.size(); ++k) {
      if (k < outs.size()) config.add_output(host[k]);
      else config.add_const_input(host[k]);
    }
    at::TensorIterator iter = config.build();
    const int ntensors = iter.ntensors();
    iter.for_each([&](char** data, const int64_t* strides, int64_t size0, int64_t size1) {
      kernel(p, FusedRun{data, strides, size0, uniform_values.data(), size1, strides + ntensors});
    });
  }
  return true;
}

void* torch_cpu_symbol(const char* name) {
  static void* const lib = dlopen("libtorch_cpu.so", RTLD_LAZY | RTLD_NOLOAD);
  return lib ? dlsym(lib, name) : nullptr;
}

namespace {
// MKL picks its vector math library's CPU code path on first use, and two
// threads making that first call together can leave one on a low-accuracy
// path for that call: torch's own CPU sqrt of 3072 floats on 2 threads came
// out 2e-4 off in one thread's half in 15% of fresh processes (the vml_function
// comment in fused_elementwise_kernel.cpp says where this runtime calls VML,
// and ATen's kernel nodes call it from parallel regions). One serial call while
// the library loads makes that first use single-threaded.
[[maybe_unused]] const bool vml_initialised = [] {
  if (auto sqrt = reinterpret_cast<VmlFunction<float>>(torch_cpu_symbol("vmsSqrt"))) {
    float in[16] = {}, out[16];
    sqrt(16, in, out, kAtenVmlMode);
  }
  return true;
}();
}  // namespace

}  // namespace mps_ext::runtime::reference
