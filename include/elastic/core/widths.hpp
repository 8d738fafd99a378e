// Compile-time width sets and the runtime -> compile-time dispatcher.
//
// A set such as Widths<1024, 2048, 3072, 4096> is the single source of truth
// for an elastic dimension: kernels are specialised on its members, tests and
// benchmarks walk it, and dispatch() turns a runtime width into a template
// argument of a C++20 templated lambda. A width outside the set throws a
// WidthError naming the set; there is no silent fallback. AnyWidth is the
// explicit opt-out for dimensions that are not specialised: every positive
// width is accepted and the callee receives the dynamic extent 0.
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <string>
#include <utility>

#include "elastic/core/error.hpp"

namespace elastic {

// The extent a kernel is specialised on; 0 (dynamic_extent) means "known only
// at run time".
inline constexpr int dynamic_extent = 0;

template <int K>
struct Extent {
  static_assert(K >= 0, "an extent is a width (> 0) or dynamic_extent (0)");
  static constexpr int value = K;
  static constexpr bool is_static = K != dynamic_extent;
};

namespace detail {

template <int... Ws>
constexpr bool strictly_increasing() {
  constexpr std::array<int, sizeof...(Ws)> values{Ws...};
  for (std::size_t i = 1; i < values.size(); ++i)
    if (values[i - 1] >= values[i]) return false;
  return true;
}

}  // namespace detail

template <int... Ws>
struct Widths {
  static_assert(sizeof...(Ws) > 0, "a width set needs at least one width");
  static_assert(((Ws > 0) && ...), "widths must be positive");
  static_assert(detail::strictly_increasing<Ws...>(),
                "list widths in strictly increasing order, without repeats");

  static constexpr std::size_t count = sizeof...(Ws);
  static constexpr std::array<int, count> values{Ws...};
  static constexpr int min = values.front();
  static constexpr int max = values.back();

  static constexpr bool contains(int width) { return ((width == Ws) || ...); }

  // "{1024, 2048, 3072, 4096}"
  static std::string describe() {
    std::string text = "{";
    for (std::size_t i = 0; i < count; ++i) {
      if (i) text += ", ";
      text += std::to_string(values[i]);
    }
    return text + "}";
  }

  // Calls f.template operator()<W>() for the member W equal to width and
  // returns its result; throws WidthError when width is not a member.
  template <class F>
  static decltype(auto) dispatch(int width, F&& f) {
    require<WidthError>(contains(width), "width ", width, " is not in the width set ", describe());
    return dispatch_from<Ws...>(width, f);
  }

  // Calls f.template operator()<W>() for every member, smallest first.
  template <class F>
  static void for_each(F&& f) {
    (f.template operator()<Ws>(), ...);
  }

 private:
  template <int W, int... Rest, class F>
  static decltype(auto) dispatch_from(int width, F& f) {
    if constexpr (sizeof...(Rest) == 0) {
      return f.template operator()<W>();
    } else {
      if (width == W) return f.template operator()<W>();
      return dispatch_from<Rest...>(width, f);
    }
  }
};

// Accepts every positive width without specialising on it: the callee gets
// dynamic_extent and reads the width at run time.
struct AnyWidth {
  static constexpr bool contains(int width) { return width > 0; }
  static std::string describe() { return "{any positive width}"; }

  template <class F>
  static decltype(auto) dispatch(int width, F&& f) {
    require<WidthError>(contains(width), "width ", width, " must be positive");
    return f.template operator()<dynamic_extent>();
  }
};

// What a layer needs from a width set.
template <class S>
concept WidthSet = requires(int width) {
  { S::contains(width) } -> std::same_as<bool>;
  { S::describe() } -> std::convertible_to<std::string>;
};

}  // namespace elastic
