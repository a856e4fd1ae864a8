// Elementwise stitching: a run of elementwise graph nodes becomes one
// FusedProgram, executed as a single pass over memory. The program is a
// register machine over blocks of 256 to 4096 elements (fewer for programs
// with more registers), so each op works on core-local data with at::vec, and
// memory is read and written once.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "graph/graph.h"

namespace mps_ext::runtime::reference {

struct FusedInstr {
  graph::NodeKind kind;
  graph::DType dtype;   // result dtype (Cast: target; compares: Bool)
  int dst = -1;
  int src[4] = {-1, -1, -1, -1};
  // Select only: when not Identity, the predicate is compare(src[0], src[1])
  // computed inline and src[2]/src[3] are the branches (saves a mask pass).
  graph::NodeKind compare = graph::NodeKind::Identity;
  // Maximum/Minimum: when not Identity, src[0] is first combined with the
  // uniform src[2] by this (the other of min/max): a clamp in one pass.
  // Add: Multiply means src[0] * src[1] + src[2] (two roundings, one pass;
  // one rounding, at::vec::fmadd, when `fma`: the add's attr "fma").
  graph::NodeKind inner = graph::NodeKind::Identity;
  bool fma = false;
  bool uniform = false; // all operands are one value: computed once per call
  double value = 0;     // Constant
};

struct FusedProgram {
  // Registers [0, num_inputs) hold region inputs; instructions fill the rest.
  int num_inputs = 0;
  int num_regs = 0;
  std::vector<graph::DType> reg_dtype;
  std::vector<char> reg_uniform;  // bytes, not bits: read per register on every call
  // Iterator operand of each non-uniform input register (-1 for uniform).
  std::vector<int> input_operand;
  std::vector<FusedInstr> instrs;
  std::vector<int> output_regs;  // operand k < output_regs.size() is output k
  bool compute_double = false;   // float64 anywhere: compute in double, else float
  // A streamed transcendental (a kind of kVmlFunctions): worth threads from
  // kVmlGrain elements.
  bool transcendental = false;
  // A streamed sigmoid (at::vec's exp): run by the AVX-512 build where ATen
  // runs its own (select_kernel in fusion.cpp).
  bool vector_math = false;
};

// The kinds the interpreter computes with MKL's vector math where libtorch
// has it: each kind and its function's name after vms/vmd.
inline constexpr std::pair<graph::NodeKind, const char*> kVmlFunctions[] = {
    {graph::NodeKind::Tanh, "Tanh"}, {graph::NodeKind::Exp, "Exp"}, {graph::NodeKind::Erf, "Erf"},
    {graph::NodeKind::Log, "Ln"},    {graph::NodeKind::Sin, "Sin"}, {graph::NodeKind::Cos, "Cos"},
    {graph::NodeKind::Sqrt, "Sqrt"}};

// The elements per thread a region with a transcendental splits at: ATen's
// own grain for its VML calls (at::vml), not GRAIN_SIZE.
constexpr int64_t kVmlGrain = 2048;
// The most elements per VML call: MKL threads a call from about 112 elements
// (waking the pool per 4096-element block); the runtime threads above itself.
constexpr int64_t kVmlChunk = 96;

// `rows` strided 1-D runs of n elements of the iteration space (TensorIterator's
// 2-D loop). data/strides/outer_strides follow the iterator's operand order:
// outputs, then non-uniform inputs; outer_strides (bytes between rows) may be
// null when rows == 1. An input with stride 0 is one value for its whole row
// (a broadcast bias): it is read once per row, not gathered per element.
struct FusedRun {
  char* const* data;
  const int64_t* strides;
  int64_t n;
  const double* uniform_inputs;  // value per input register (uniform ones only)
  int64_t rows = 1;
  const int64_t* outer_strides = nullptr;
};

// One build per CPU capability, like ATen's DispatchStub.
// A symbol of the loaded libtorch_cpu (MKL's vector math functions, where
// torch was built with MKL), or nullptr. fusion.cpp; the interpreter's VML
// table and the library's one serial VML call at load both use it.
void* torch_cpu_symbol(const char* name);
// MKL's vm*-form vector math functions and the mode ATen's at::vml passes
// them (VML_HA | VML_FTZDAZ_OFF | VML_ERRMODE_IGNORE). The count is MKL_INT,
// 32 or 64 bits by build: passed as 64 bits, it is right for both (n < 2^31).
template <typename T>
using VmlFunction = void (*)(int64_t n, const T* in, T* out, int64_t mode);
constexpr int64_t kAtenVmlMode = 0x2 | 0x140000 | 0x100;

// (The AVX-512 build runs programs with vector_math only: see select_kernel in fusion.cpp.)
namespace DEFAULT { void run_fused(const FusedProgram& p, const FusedRun& run); }
namespace AVX2 { void run_fused(const FusedProgram& p, const FusedRun& run); }
namespace AVX512 { void run_fused(const FusedProgram& p, const FusedRun& run); }

}  // namespace mps_ext::runtime::reference
