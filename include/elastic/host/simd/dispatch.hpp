// Runtime dispatch of the host's vector kernels (kernels-inl.hpp): the row
// dots of the linear layers (row_dots-inl.hpp) and the attention tile
// (attention_tile-inl.hpp). Highway compiles the kernels for every
// instruction set it targets on this architecture (on x86: SSSE3, SSE4,
// AVX2, AVX-512 and a portable fallback; on Arm: NEON and SVE) and the calls
// below run the best one the CPU supports, chosen on the first call. A test
// may restrict the choice with hwy::SetSupportedTargetsForTest, to run every
// compiled path on one machine.
//
// nvcc's front end cannot build Highway's dispatch tables, so a CUDA
// translation unit compiles the kernels for its baseline instruction set only.
// Both kinds of translation unit may end up in one program (a CUDA test
// with a host reference, a CLI with both executors), and the linker keeps one
// copy of each inline function, so the kernels are not called directly:
// every translation unit the host compiler builds stores its runtime
// dispatchers in one shared pointer during static initialisation, and the
// calls go through that pointer, falling back to the translation unit's own
// build only in a program without a host-compiled unit (or before static
// initialisation has run).
#pragma once

#if !defined(__CUDACC__)
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "elastic/host/simd/kernels-inl.hpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#endif

#include <hwy/highway.h>

#include "elastic/host/simd/attention_tile_call.hpp"
#include "elastic/host/simd/kernels-inl.hpp"
#include "elastic/host/simd/row_dots_call.hpp"

#if HWY_ONCE
#include <atomic>

namespace elastic::host::simd {

struct Kernels {
  void (*row_dots)(const RowDotsCall&);
  void (*attention_tile)(const AttentionTileCall&);
  const char* (*target)();
};

// The kernels every translation unit calls; null until a host-compiled unit
// has stored its runtime dispatchers.
inline std::atomic<const Kernels*>& shared_kernels() {
  static std::atomic<const Kernels*> kernels{nullptr};
  return kernels;
}

#if !defined(__CUDACC__)
HWY_EXPORT(RowDots);
HWY_EXPORT(AttentionTile);
HWY_EXPORT(KernelsTarget);

inline constexpr Kernels runtime_kernels{
    [](const RowDotsCall& call) { HWY_DYNAMIC_DISPATCH(RowDots)(call); },
    [](const AttentionTileCall& call) { HWY_DYNAMIC_DISPATCH(AttentionTile)(call); },
    [] { return HWY_DYNAMIC_DISPATCH(KernelsTarget)(); }};

inline const bool runtime_kernels_shared = [] {
  shared_kernels().store(&runtime_kernels, std::memory_order_release);
  return true;
}();
#else
inline constexpr Kernels baseline_kernels{
    [](const RowDotsCall& call) { HWY_STATIC_DISPATCH(RowDots)(call); },
    [](const AttentionTileCall& call) { HWY_STATIC_DISPATCH(AttentionTile)(call); },
    [] { return HWY_STATIC_DISPATCH(KernelsTarget)(); }};
#endif

// The shared kernels, or this translation unit's own build before any are stored.
inline const Kernels& kernels() {
  const Kernels* shared = shared_kernels().load(std::memory_order_acquire);
#if !defined(__CUDACC__)
  return shared != nullptr ? *shared : runtime_kernels;
#else
  return shared != nullptr ? *shared : baseline_kernels;
#endif
}

// partials[r][t] += w_r . x_t for the call's rows and tokens (row_dots_call.hpp).
inline void row_dots(const RowDotsCall& call) { kernels().row_dots(call); }

// One pass of the call's query rows over its key and value rows
// (attention_tile_call.hpp).
inline void attention_tile(const AttentionTileCall& call) { kernels().attention_tile(call); }

// The instruction set the kernels run on, as Highway names it.
inline const char* kernels_target() { return kernels().target(); }

}  // namespace elastic::host::simd
#endif
