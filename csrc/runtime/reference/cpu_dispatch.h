// Hot CPU kernels built once per CPU capability and chosen at run time, like
// ATen's DispatchStub (ATEN_CPU_CAPABILITY is honoured). Files named
// *_kernel.cpp are compiled for DEFAULT, AVX2 and AVX512 (x86) with
// CPU_CAPABILITY set to that name; they define their kernels inside
// `namespace CPU_CAPABILITY` in the namespace that declares them with
// MPS_EXT_DECLARE_CPU_KERNEL, and callers use MPS_EXT_CPU_KERNEL(name)(args...).
#pragma once

namespace mps_ext::runtime::reference {
enum class CpuCapability { Default, AVX2, AVX512 };
CpuCapability cpu_capability();  // at::get_cpu_capability(), read once
}  // namespace mps_ext::runtime::reference

#define MPS_EXT_DECLARE_CPU_KERNEL(ret, name, params) \
  namespace DEFAULT {                                  \
  ret name params;                                     \
  }                                                    \
  namespace AVX2 {                                     \
  ret name params;                                     \
  }                                                    \
  namespace AVX512 {                                   \
  ret name params;                                     \
  }

#if defined(MPS_EXT_HAVE_AVX512)
#define MPS_EXT_CPU_KERNEL(name)                                                                             \
  (::mps_ext::runtime::reference::cpu_capability() == ::mps_ext::runtime::reference::CpuCapability::AVX512 \
       ? &AVX512::name                                                                                       \
   : ::mps_ext::runtime::reference::cpu_capability() == ::mps_ext::runtime::reference::CpuCapability::AVX2 \
       ? &AVX2::name                                                                                         \
       : &DEFAULT::name)
#else
#define MPS_EXT_CPU_KERNEL(name) (&DEFAULT::name)
#endif
