// What the host's vector kernels share, compiled once per instruction set
// like the kernels that include it: the float32 vector type they compute in
// and the load that widens a vector's worth of stored elements (float32,
// float16 or bfloat16) to it.
//
// The per-target toggle below lets foreach_target.h include this file once
// for every instruction set.
#if defined(ELASTIC_HOST_SIMD_VECTOR_LOAD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ELASTIC_HOST_SIMD_VECTOR_LOAD_INL_H_
#undef ELASTIC_HOST_SIMD_VECTOR_LOAD_INL_H_
#else
#define ELASTIC_HOST_SIMD_VECTOR_LOAD_INL_H_
#endif

#include <hwy/highway.h>

#include <type_traits>

#include "elastic/core/dtype.hpp"

HWY_BEFORE_NAMESPACE();
namespace elastic::host::simd {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

using FloatTag = hn::ScalableTag<float>;
using FloatVector = hn::Vec<FloatTag>;

// The storage type's Highway twin (same 16-bit layout as ours).
template <class T>
using HwyElement = std::conditional_t<std::is_same_v<T, float>, float,
                                      std::conditional_t<std::is_same_v<T, half_t>, hwy::float16_t, hwy::bfloat16_t>>;

// One vector of float32 lanes from Lanes(FloatTag) consecutive elements of T.
template <class T>
HWY_INLINE FloatVector load_widened(FloatTag tag, const T* source) {
  if constexpr (std::is_same_v<T, float>) {
    return hn::LoadU(tag, source);
  } else {
    const hn::Rebind<HwyElement<T>, FloatTag> narrow;
    return hn::PromoteTo(tag, hn::LoadU(narrow, reinterpret_cast<const HwyElement<T>*>(source)));
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace elastic::host::simd
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
