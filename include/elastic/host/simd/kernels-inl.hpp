// Every vector kernel of the host executor, for one instruction set:
// kernels.hpp includes this file once per target through
// hwy/foreach_target.h, so all kernels share one pass (Highway 1.0 compiles
// only a translation unit's first foreach_target.h pass for every
// instruction set), and adds the name of the instruction set each copy was
// compiled for.
//
// The per-target toggle below lets foreach_target.h include this file once
// for every instruction set.
#if defined(ELASTIC_HOST_SIMD_KERNELS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ELASTIC_HOST_SIMD_KERNELS_INL_H_
#undef ELASTIC_HOST_SIMD_KERNELS_INL_H_
#else
#define ELASTIC_HOST_SIMD_KERNELS_INL_H_
#endif

#include <hwy/highway.h>

#include "elastic/host/simd/attention_tile-inl.hpp"
#include "elastic/host/simd/quant_row_dots-inl.hpp"
#include "elastic/host/simd/row_dots-inl.hpp"

HWY_BEFORE_NAMESPACE();
namespace elastic::host::simd {
namespace HWY_NAMESPACE {

inline const char* KernelsTarget() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace elastic::host::simd
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
