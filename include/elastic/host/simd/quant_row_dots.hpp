// Runtime dispatch of the host's quantised row-dot kernel
// (quant_row_dots-inl.hpp): Highway compiles it for every instruction set it
// targets on this architecture and quant_row_dots() runs the best one the
// CPU supports, through the one shared copy shared_kernel.hpp keeps for
// programs that mix host and CUDA translation units. A test may restrict the
// choice with hwy::SetSupportedTargetsForTest.
#pragma once

#include "elastic/host/simd/host_kernels.hpp"
#include "elastic/host/simd/quant_row_dots_call.hpp"
#include "elastic/host/simd/shared_kernel.hpp"

#if HWY_ONCE
namespace elastic::host::simd {

// Each kind of translation unit names its own build differently: one name
// with two definitions would break the one-definition rule, and the linker
// could hand the host units the baseline build.
#if !defined(__CUDACC__)
HWY_EXPORT(QuantRowDots);
HWY_EXPORT(QuantRowDotsTarget);

inline constexpr HostKernel<QuantRowDotsCall> runtime_quant_row_dots_kernel{
    [](const QuantRowDotsCall& call) { HWY_DYNAMIC_DISPATCH(QuantRowDots)(call); },
    [] { return HWY_DYNAMIC_DISPATCH(QuantRowDotsTarget)(); }};

inline const bool runtime_quant_row_dots_kernel_shared = share_host_kernel(runtime_quant_row_dots_kernel);

inline const HostKernel<QuantRowDotsCall>& quant_row_dots_kernel() {
  return host_kernel(runtime_quant_row_dots_kernel);
}
#else
inline constexpr HostKernel<QuantRowDotsCall> baseline_quant_row_dots_kernel{
    [](const QuantRowDotsCall& call) { HWY_STATIC_DISPATCH(QuantRowDots)(call); },
    [] { return HWY_STATIC_DISPATCH(QuantRowDotsTarget)(); }};

inline const HostKernel<QuantRowDotsCall>& quant_row_dots_kernel() {
  return host_kernel(baseline_quant_row_dots_kernel);
}
#endif

// partials[r][t] += w_r . x_t for the call's rows and tokens (quant_row_dots_call.hpp).
inline void quant_row_dots(const QuantRowDotsCall& call) { quant_row_dots_kernel().run(call); }

// The instruction set quant_row_dots() runs on, as Highway names it.
inline const char* quant_row_dots_target() { return quant_row_dots_kernel().target(); }

}  // namespace elastic::host::simd
#endif
