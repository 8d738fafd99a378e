// dtype conversions: exact widening, round-to-nearest-even narrowing, and the
// special values, checked exhaustively where the input space allows.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "elastic/core/dtype.hpp"

using namespace elastic;

namespace {

// Nearest-even rounding of a float to `mantissa_bits` explicit bits, done in
// double arithmetic: the independent reference for the bit tricks.
double round_to_precision(double value, int mantissa_bits, int min_exponent) {
  if (value == 0.0 || !std::isfinite(value)) return value;
  int exponent = std::ilogb(value);
  exponent = std::max(exponent, min_exponent);
  const double quantum = std::ldexp(1.0, exponent - mantissa_bits);
  return std::nearbyint(value / quantum) * quantum;  // default rounding: nearest-even
}

}  // namespace

TEST_CASE("float16 widens exactly and round-trips every bit pattern") {
  for (std::uint32_t bits = 0; bits < 0x10000u; ++bits) {
    const half_t h{static_cast<std::uint16_t>(bits)};
    const float f = to_float(h);
    const std::uint32_t exponent = (bits >> 10) & 0x1f;
    if (exponent == 0x1f && (bits & 0x3ff) != 0) {
      CHECK(std::isnan(f));
      continue;
    }
    CHECK(from_float<half_t>(f).bits == bits);
  }
  CHECK(to_float(half_t{0x3c00}) == 1.0f);
  CHECK(to_float(half_t{0x0001}) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(to_float(half_t{0x7bff}) == 65504.0f);
}

TEST_CASE("float16 narrowing rounds to nearest even, saturating to infinity") {
  std::mt19937 engine(7);
  std::uniform_real_distribution<float> exponent(-26.0f, 16.5f);
  for (int i = 0; i < 200000; ++i) {
    const float sign = (i & 1) ? -1.0f : 1.0f;
    const float value = sign * std::exp2(exponent(engine));
    const double expected = round_to_precision(value, 10, -14);
    const float got = to_float(from_float<half_t>(value));
    if (std::fabs(expected) > 65504.0) {
      CHECK(std::isinf(got));
    } else {
      REQUIRE(got == static_cast<float>(expected));
    }
  }
  CHECK(from_float<half_t>(65519.0f).bits == 0x7bff);  // just below the rounding boundary
  CHECK(from_float<half_t>(65520.0f).bits == 0x7c00);  // ties away from max go to infinity
  CHECK(from_float<half_t>(1.0f + std::ldexp(1.0f, -11)).bits == 0x3c00);  // tie -> even
  CHECK(from_float<half_t>(1.0f + 3 * std::ldexp(1.0f, -11)).bits == 0x3c02);
  CHECK(from_float<half_t>(-0.0f).bits == 0x8000);
  CHECK(from_float<half_t>(std::numeric_limits<float>::infinity()).bits == 0x7c00);
  CHECK(std::isnan(to_float(from_float<half_t>(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("bfloat16 round-trips every bit pattern and rounds to nearest even") {
  for (std::uint32_t bits = 0; bits < 0x10000u; ++bits) {
    const bfloat16_t b{static_cast<std::uint16_t>(bits)};
    const float f = to_float(b);
    if (std::isnan(f)) continue;
    CHECK(from_float<bfloat16_t>(f).bits == bits);
  }
  std::mt19937 engine(11);
  std::uniform_real_distribution<float> exponent(-130.0f, 127.0f);
  for (int i = 0; i < 200000; ++i) {
    const float value = ((i & 1) ? -1.0f : 1.0f) * std::exp2(exponent(engine));
    const double expected = round_to_precision(value, 7, -126);
    REQUIRE(to_float(from_float<bfloat16_t>(value)) == static_cast<float>(expected));
  }
  CHECK(from_float<bfloat16_t>(1.0f + std::ldexp(1.0f, -8)).bits == 0x3f80);  // tie -> even
  CHECK(from_float<bfloat16_t>(std::bit_cast<float>(0x7f7fffffu)).bits == 0x7f80);  // rounds to inf
  CHECK(std::isnan(to_float(from_float<bfloat16_t>(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("dtype metadata") {
  CHECK(dtype_of<float> == DType::float32);
  CHECK(dtype_of<const half_t> == DType::float16);
  CHECK(dtype_of<bfloat16_t> == DType::bfloat16);
  CHECK(dtype_name(DType::bfloat16) == "bfloat16");
  CHECK(dtype_size(DType::float16) == 2);
  CHECK(dtype_size(DType::float32) == 4);
  CHECK(round_to<bfloat16_t>(1.0f / 3.0f) != 1.0f / 3.0f);
  CHECK(round_to<float>(1.0f / 3.0f) == 1.0f / 3.0f);
}
