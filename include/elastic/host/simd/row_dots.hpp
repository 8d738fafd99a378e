// Runtime dispatch of the host's vector row-dot kernel (row_dots-inl.hpp):
// Highway compiles the kernel for every instruction set it targets on this
// architecture (on x86: SSSE3, SSE4, AVX2, AVX-512 and a portable fallback;
// on Arm: NEON and SVE) and row_dots() runs the best one the CPU supports,
// chosen on the first call. A test may restrict the choice with
// hwy::SetSupportedTargetsForTest, to run every compiled path on one machine.
//
// nvcc's front end cannot build Highway's dispatch tables, so a CUDA
// translation unit compiles the kernel for its baseline instruction set only.
// Both kinds of translation unit may end up in one program (a CUDA test
// with a host reference, a CLI with both executors), and the linker keeps one
// copy of each inline function, so the kernel is not called directly: every
// translation unit the host compiler builds stores its runtime dispatcher in
// one shared pointer during static initialisation, and row_dots() calls
// through that pointer, falling back to the translation unit's own build only
// in a program without a host-compiled unit (or before static
// initialisation has run).
#pragma once

#include "elastic/host/simd/host_kernels.hpp"
#include "elastic/host/simd/row_dots_call.hpp"

#if HWY_ONCE
#include <atomic>

namespace elastic::host::simd {

struct RowDotsKernel {
  void (*run)(const RowDotsCall&);
  const char* (*target)();
};

// The kernel every translation unit calls; null until a host-compiled unit
// has stored its runtime dispatcher.
inline std::atomic<const RowDotsKernel*>& shared_row_dots_kernel() {
  static std::atomic<const RowDotsKernel*> kernel{nullptr};
  return kernel;
}

#if !defined(__CUDACC__)
HWY_EXPORT(RowDots);
HWY_EXPORT(RowDotsTarget);

inline constexpr RowDotsKernel runtime_row_dots_kernel{
    [](const RowDotsCall& call) { HWY_DYNAMIC_DISPATCH(RowDots)(call); },
    [] { return HWY_DYNAMIC_DISPATCH(RowDotsTarget)(); }};

inline const bool runtime_row_dots_kernel_shared = [] {
  shared_row_dots_kernel().store(&runtime_row_dots_kernel, std::memory_order_release);
  return true;
}();
#else
inline constexpr RowDotsKernel baseline_row_dots_kernel{
    [](const RowDotsCall& call) { HWY_STATIC_DISPATCH(RowDots)(call); },
    [] { return HWY_STATIC_DISPATCH(RowDotsTarget)(); }};
#endif

// The shared kernel, or this translation unit's own build before any is stored.
inline const RowDotsKernel& row_dots_kernel() {
  const RowDotsKernel* shared = shared_row_dots_kernel().load(std::memory_order_acquire);
#if !defined(__CUDACC__)
  return shared != nullptr ? *shared : runtime_row_dots_kernel;
#else
  return shared != nullptr ? *shared : baseline_row_dots_kernel;
#endif
}

// partials[r][t] += w_r . x_t for the call's rows and tokens (row_dots_call.hpp).
inline void row_dots(const RowDotsCall& call) { row_dots_kernel().run(call); }

// The instruction set row_dots() runs on, as Highway names it.
inline const char* row_dots_target() { return row_dots_kernel().target(); }

}  // namespace elastic::host::simd
#endif
