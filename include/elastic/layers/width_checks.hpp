// Checks that a width may be used on a layer: a member of the layer's width
// set, no larger than the stored full width, and a whole number of 16-byte
// vectors (so width-k slices keep every row aligned).
#pragma once

#include <string_view>

#include "elastic/core/error.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/widths.hpp"
#include "elastic/math/row_dot.hpp"

namespace elastic::detail {

template <WidthSet Set, class T>
void check_width(int width, index_t full, std::string_view what) {
  require<WidthError>(Set::contains(width), what, " ", width, " is not in the width set ",
                      Set::describe());
  require<WidthError>(width <= full, what, " ", width, " exceeds the stored full width ", full);
  require<WidthError>(width % math::vector_width<T> == 0, what, " ", width,
                      " must be a multiple of ", math::vector_width<T>, " elements (16 bytes)");
}

// Checks every member of a compile-time set against a layer's full width.
template <WidthSet Set, class T>
void check_width_set(index_t full, std::string_view what) {
  if constexpr (requires { Set::values; }) {
    for (int width : Set::values) check_width<Set, T>(width, full, what);
  }
}

}  // namespace elastic::detail
