// Runtime dispatch of the host's vector kernels: Highway compiles each one
// (kernels-inl.hpp) for every instruction set it targets on this
// architecture (on x86: SSSE3, SSE4, AVX2, AVX-512 and a portable fallback;
// on Arm: NEON and SVE), and the tables below run the best one the CPU
// supports, chosen on the first call. A test may restrict the choice with
// hwy::SetSupportedTargetsForTest, to run every compiled path on one machine.
// CUDA translation units build the baseline set and call the dispatched
// kernels through shared_kernel.hpp.
//
//   row_dots()        up to 12 weight rows against up to 16 tokens (row_dots_call.hpp)
//   quant_row_dots()  the same on GGUF blocks with 8-bit activations
//                     (quant_row_dots_call.hpp)
#pragma once

#if !defined(__CUDACC__)
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "elastic/host/simd/kernels-inl.hpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#endif

#include <hwy/highway.h>

#include "elastic/host/simd/kernels-inl.hpp"
#include "elastic/host/simd/quant_row_dots_call.hpp"
#include "elastic/host/simd/row_dots_call.hpp"
#include "elastic/host/simd/shared_kernel.hpp"

#if HWY_ONCE
namespace elastic::host::simd {

struct RowDotsKernel {
  void (*run)(const RowDotsCall&);
  const char* (*target)();
};

ELASTIC_HWY_EXPORT(RowDots);
ELASTIC_HWY_EXPORT(RowDotsTarget);

inline constexpr RowDotsKernel ELASTIC_OWN_TABLE(row_dots_kernel){
    [](const RowDotsCall& call) { ELASTIC_HWY_DISPATCH(RowDots)(call); },
    [] { return ELASTIC_HWY_DISPATCH(RowDotsTarget)(); }};
ELASTIC_SHARE_TABLE(row_dots_kernel);

// partials[r][t] += w_r . x_t for the call's rows and tokens (row_dots_call.hpp).
inline void row_dots(const RowDotsCall& call) { kernel_table(ELASTIC_OWN_TABLE(row_dots_kernel)).run(call); }

// The instruction set row_dots() runs on, as Highway names it.
inline const char* row_dots_target() { return kernel_table(ELASTIC_OWN_TABLE(row_dots_kernel)).target(); }

struct QuantRowDotsKernel {
  void (*run)(const QuantRowDotsCall&);
  const char* (*target)();
};

ELASTIC_HWY_EXPORT(QuantRowDots);
ELASTIC_HWY_EXPORT(QuantRowDotsTarget);

inline constexpr QuantRowDotsKernel ELASTIC_OWN_TABLE(quant_row_dots_kernel){
    [](const QuantRowDotsCall& call) { ELASTIC_HWY_DISPATCH(QuantRowDots)(call); },
    [] { return ELASTIC_HWY_DISPATCH(QuantRowDotsTarget)(); }};
ELASTIC_SHARE_TABLE(quant_row_dots_kernel);

// The quantised row dots of the call (quant_row_dots_call.hpp).
inline void quant_row_dots(const QuantRowDotsCall& call) {
  kernel_table(ELASTIC_OWN_TABLE(quant_row_dots_kernel)).run(call);
}

// The instruction set quant_row_dots() runs on, as Highway names it.
inline const char* quant_row_dots_target() {
  return kernel_table(ELASTIC_OWN_TABLE(quant_row_dots_kernel)).target();
}

}  // namespace elastic::host::simd
#endif
