// Counts and sizes, checked.
//
// index_t (signed 64-bit, core/tensor.hpp) is the one type of every count in
// the public API: view extents, token and row counts, widths. Route plans,
// attention batches and the kernels index tokens and rows with int, so where
// a count reaches them it goes through narrow_to_int, which throws naming the
// call and the count instead of truncating it. Byte sizes are std::size_t,
// computed with checked_product, so a size query throws instead of wrapping
// around to a small number.
#pragma once

#include <cstddef>
#include <limits>
#include <string_view>

#include "elastic/core/error.hpp"
#include "elastic/core/tensor.hpp"

namespace elastic::detail {

inline constexpr index_t int_max = std::numeric_limits<int>::max();

// value as an int; throws when it is negative or does not fit.
inline int narrow_to_int(index_t value, std::string_view op, std::string_view what) {
  require(value >= 0 && value <= int_max, op, ": ", what, " must be between 0 and ", int_max, ", found ", value);
  return static_cast<int>(value);
}

// a * b, or a WorkspaceError naming `what` when the product does not fit in
// std::size_t.
inline std::size_t checked_product(std::size_t a, std::size_t b, std::string_view what) {
  std::size_t product = 0;
  require<WorkspaceError>(!__builtin_mul_overflow(a, b, &product), what, " overflows: ", a, " x ", b,
                          " does not fit in ", sizeof(std::size_t) * 8, " bits");
  return product;
}

}  // namespace elastic::detail
