// Runtime dispatch of the host's vector kernels: Highway compiles each one
// (kernels-inl.hpp) for every instruction set it targets on this
// architecture (on x86: SSSE3, SSE4, AVX2, AVX-512 and a portable fallback;
// on Arm: NEON and SVE), and the calls below run the best one the CPU
// supports, chosen on the first call. A test may restrict the choice with
// hwy::SetSupportedTargetsForTest, to run every compiled path on one machine.
// CUDA translation units build the baseline set and call the dispatched
// kernels through shared_kernel.hpp.
//
//   row_dots()        up to 12 weight rows against up to 16 tokens (row_dots_call.hpp)
//   quant_row_dots()  the same on GGUF blocks with 8-bit activations
//                     (quant_row_dots_call.hpp)
//   attention_tile()  one pass of a tile of query rows over its KV rows
//                     (attention_tile_call.hpp)
#pragma once

#if !defined(__CUDACC__)
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "elastic/host/simd/kernels-inl.hpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#endif

#include <hwy/highway.h>

#include "elastic/host/simd/attention_tile_call.hpp"
#include "elastic/host/simd/kernels-inl.hpp"
#include "elastic/host/simd/quant_row_dots_call.hpp"
#include "elastic/host/simd/row_dots_call.hpp"
#include "elastic/host/simd/shared_kernel.hpp"

#if HWY_ONCE
namespace elastic::host::simd {

struct Kernels {
  void (*row_dots)(const RowDotsCall&);
  void (*quant_row_dots)(const QuantRowDotsCall&);
  void (*attention_tile)(const AttentionTileCall&);
  const char* (*target)();
};

ELASTIC_HWY_EXPORT(RowDots);
ELASTIC_HWY_EXPORT(QuantRowDots);
ELASTIC_HWY_EXPORT(AttentionTile);
ELASTIC_HWY_EXPORT(KernelsTarget);

inline constexpr Kernels ELASTIC_OWN_TABLE(kernels){
    [](const RowDotsCall& call) { ELASTIC_HWY_DISPATCH(RowDots)(call); },
    [](const QuantRowDotsCall& call) { ELASTIC_HWY_DISPATCH(QuantRowDots)(call); },
    [](const AttentionTileCall& call) { ELASTIC_HWY_DISPATCH(AttentionTile)(call); },
    [] { return ELASTIC_HWY_DISPATCH(KernelsTarget)(); }};
ELASTIC_SHARE_TABLE(kernels);

// partials[r][t] += w_r . x_t for the call's rows and tokens (row_dots_call.hpp).
inline void row_dots(const RowDotsCall& call) { kernel_table(ELASTIC_OWN_TABLE(kernels)).row_dots(call); }

// The same on quantised blocks (quant_row_dots_call.hpp).
inline void quant_row_dots(const QuantRowDotsCall& call) {
  kernel_table(ELASTIC_OWN_TABLE(kernels)).quant_row_dots(call);
}

// One pass of the call's query rows over its key and value rows
// (attention_tile_call.hpp).
inline void attention_tile(const AttentionTileCall& call) {
  kernel_table(ELASTIC_OWN_TABLE(kernels)).attention_tile(call);
}

// The instruction set the kernels run on, as Highway names it.
inline const char* kernels_target() { return kernel_table(ELASTIC_OWN_TABLE(kernels)).target(); }

}  // namespace elastic::host::simd
#endif
