// The one translation unit that compiles the host's vector kernels
// (host/simd/kernels-inl.hpp: row dots, quantised row dots, the attention
// tile) for every instruction set Google Highway targets on this
// architecture, and dispatches each call to the best one the CPU supports,
// chosen on the first call. Compiling them here, once per build (the
// library elastic::host_kernels, which elastic::elastic links), rather than
// in every translation unit that includes the executor, keeps the
// kernels' five-fold instantiation out of every user's compile, and lets
// CUDA translation units, which nvcc cannot give Highway's dispatch tables,
// call the same dispatched kernels through plain declarations
// (host/simd/kernels.hpp).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "elastic/host/simd/kernels-inl.hpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep

#include <hwy/highway.h>

#include "elastic/host/simd/kernels-inl.hpp"
#include "elastic/host/simd/kernels.hpp"

#if HWY_ONCE
namespace elastic::host::simd {

HWY_EXPORT(RowDots);
HWY_EXPORT(QuantRowDots);
HWY_EXPORT(AttentionTile);
HWY_EXPORT(KernelsTarget);

void row_dots(const RowDotsCall& call) { HWY_DYNAMIC_DISPATCH(RowDots)(call); }
void quant_row_dots(const QuantRowDotsCall& call) { HWY_DYNAMIC_DISPATCH(QuantRowDots)(call); }
void attention_tile(const AttentionTileCall& call) { HWY_DYNAMIC_DISPATCH(AttentionTile)(call); }
const char* kernels_target() { return HWY_DYNAMIC_DISPATCH(KernelsTarget)(); }

}  // namespace elastic::host::simd
#endif
