// Element types: float32, float16 and bfloat16. The 16-bit types are our own
// layout-compatible storage structs so the host part needs no CUDA headers;
// CUDA code reinterprets them as __half / __nv_bfloat16. Arithmetic always
// happens in float32: to_float() widens, from_float<T>() narrows with
// round-to-nearest-even, on the host in portable bit arithmetic and on the
// device through the hardware intrinsics (the two agree bit for bit).
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "elastic/core/macros.hpp"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace elastic {

enum class DType : std::uint8_t { float32, float16, bfloat16 };

struct half_t {
  std::uint16_t bits;
};

struct bfloat16_t {
  std::uint16_t bits;
};

static_assert(sizeof(half_t) == 2 && alignof(half_t) == 2);
static_assert(sizeof(bfloat16_t) == 2 && alignof(bfloat16_t) == 2);

template <class T>
inline constexpr bool is_element_type_v =
    std::is_same_v<T, float> || std::is_same_v<T, half_t> || std::is_same_v<T, bfloat16_t>;

// Constrains templates to the three supported storage types.
template <class T>
concept ElementType = is_element_type_v<std::remove_const_t<T>>;

template <ElementType T>
inline constexpr DType dtype_of = std::is_same_v<std::remove_const_t<T>, float>    ? DType::float32
                                  : std::is_same_v<std::remove_const_t<T>, half_t> ? DType::float16
                                                                                   : DType::bfloat16;

constexpr std::string_view dtype_name(DType type) {
  switch (type) {
    case DType::float32: return "float32";
    case DType::float16: return "float16";
    case DType::bfloat16: return "bfloat16";
  }
  return "unknown";
}

constexpr std::size_t dtype_size(DType type) { return type == DType::float32 ? 4 : 2; }

namespace detail {

ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE std::uint32_t float_bits(float value) {
#if ELASTIC_DEVICE_PASS
  return __float_as_uint(value);
#else
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
#endif
}

ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE float bits_float(std::uint32_t bits) {
#if ELASTIC_DEVICE_PASS
  return __uint_as_float(bits);
#else
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
#endif
}

// IEEE binary16 -> binary32, exact for every input (NaN payloads kept).
ELASTIC_HOST_DEVICE inline float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  const std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24 is exact in float32.
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return bits_float(sign | float_bits(magnitude));
  }
  if (exponent == 0x1f) return bits_float(sign | 0x7f800000u | (mantissa << 13));
  return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

// binary32 -> binary16 with round-to-nearest-even; overflow gives infinity,
// NaN stays a (quiet) NaN.
ELASTIC_HOST_DEVICE inline std::uint16_t float_to_half_bits(float value) {
  std::uint32_t bits = float_bits(value);
  const std::uint32_t sign = bits & 0x80000000u;
  bits ^= sign;
  std::uint32_t half;
  constexpr std::uint32_t kInfinity = 0xffu << 23;
  constexpr std::uint32_t kOverflow = (127u + 16u) << 23;  // 2^16: rounds to inf
  constexpr std::uint32_t kSmallestNormal = 113u << 23;    // 2^-14
  if (bits >= kOverflow) {
    half = bits > kInfinity ? 0x7e00u : 0x7c00u;
  } else if (bits < kSmallestNormal) {
    // Adding 0.5 aligns the subnormal mantissa to the float's last bits; the
    // float adder performs the round-to-nearest-even for us.
    constexpr std::uint32_t kAlign = ((127u - 15u) + (23u - 10u) + 1u) << 23;
    const float aligned = bits_float(bits) + bits_float(kAlign);
    half = float_bits(aligned) - kAlign;
  } else {
    const std::uint32_t odd = (bits >> 13) & 1u;
    bits += ((15u - 127u) << 23) + 0xfffu + odd;  // rebias and round
    half = bits >> 13;
  }
  return static_cast<std::uint16_t>(half | (sign >> 16));
}

ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE float bfloat16_bits_to_float(std::uint16_t b) {
  return bits_float(static_cast<std::uint32_t>(b) << 16);
}

// binary32 -> bfloat16 with round-to-nearest-even; NaN stays a quiet NaN.
ELASTIC_HOST_DEVICE inline std::uint16_t float_to_bfloat16_bits(float value) {
  const std::uint32_t bits = float_bits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

}  // namespace detail

ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE float to_float(float value) { return value; }

ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE float to_float(half_t value) {
#if ELASTIC_DEVICE_PASS
  return __half2float(__ushort_as_half(value.bits));
#else
  return detail::half_bits_to_float(value.bits);
#endif
}

ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE float to_float(bfloat16_t value) {
  return detail::bfloat16_bits_to_float(value.bits);
}

template <ElementType T>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE T from_float(float value) {
  if constexpr (std::is_same_v<T, float>) {
    return value;
  } else if constexpr (std::is_same_v<T, half_t>) {
#if ELASTIC_DEVICE_PASS
    return half_t{__half_as_ushort(__float2half_rn(value))};
#else
    return half_t{detail::float_to_half_bits(value)};
#endif
  } else {
#if ELASTIC_DEVICE_PASS
    return bfloat16_t{__bfloat16_as_ushort(__float2bfloat16_rn(value))};
#else
    return bfloat16_t{detail::float_to_bfloat16_bits(value)};
#endif
  }
}

// Rounds a float to the nearest value representable in T (identity for float).
template <ElementType T>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE float round_to(float value) {
  return to_float(from_float<T>(value));
}

}  // namespace elastic
