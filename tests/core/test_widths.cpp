// Width sets: membership, description, the loud dispatcher and iteration.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "elastic/core/widths.hpp"

using namespace elastic;

using Quarters = Widths<1024, 2048, 3072, 4096>;

TEST_CASE("a width set knows its members") {
  static_assert(Quarters::count == 4 && Quarters::min == 1024 && Quarters::max == 4096);
  static_assert(Quarters::contains(3072) && !Quarters::contains(3000));
  static_assert(WidthSet<Quarters> && WidthSet<AnyWidth>);
  CHECK(Quarters::describe() == "{1024, 2048, 3072, 4096}");
}

TEST_CASE("dispatch passes the width as a template argument and returns its result") {
  for (int width : Quarters::values) {
    const int got = Quarters::dispatch(width, [&]<int W>() {
      static_assert(Quarters::contains(W));
      return W * 2;
    });
    CHECK(got == width * 2);
  }
  int seen = 0;
  Quarters::dispatch(2048, [&]<int W>() { seen = W; });
  CHECK(seen == 2048);
}

TEST_CASE("dispatch of a width outside the set throws, naming the set") {
  bool called = false;
  auto call = [&]<int>() { called = true; };
  CHECK_THROWS_WITH_AS(Quarters::dispatch(3000, call),
                       "width 3000 is not in the width set {1024, 2048, 3072, 4096}", WidthError);
  CHECK_THROWS_AS(Quarters::dispatch(0, call), WidthError);
  CHECK_THROWS_AS(Quarters::dispatch(8192, call), Error);
  CHECK_FALSE(called);
}

TEST_CASE("for_each walks the members smallest first") {
  std::vector<int> seen;
  Quarters::for_each([&]<int W>() { seen.push_back(W); });
  CHECK(seen == std::vector<int>{1024, 2048, 3072, 4096});
}

TEST_CASE("AnyWidth accepts positive widths with the dynamic extent") {
  CHECK(AnyWidth::dispatch(777, []<int W>() { return W; }) == dynamic_extent);
  CHECK_THROWS_AS(AnyWidth::dispatch(-1, []<int>() {}), WidthError);
  static_assert(Extent<64>::is_static && !Extent<dynamic_extent>::is_static);
}
