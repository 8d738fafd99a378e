// The elastic linear map: elastic output rows, elastic input columns, both,
// against float64 references; and its width checks.
#include <doctest/doctest.h>

#include "support/test_support.hpp"

using namespace elastic;

TEST_CASE_TEMPLATE("elastic linear over output and input widths", T, float, half_t, bfloat16_t) {
  host::Executor executor;
  using OutSet = Widths<32, 64, 96>;
  using InSet = test::TestWidths;
  const auto weight = test::random_matrix<T>(96, InSet::max, 5, 0.1f);
  const ElasticLinear<T, OutSet, InSet> linear(weight.view());
  CHECK(linear.out_features() == 96);
  CHECK(linear.in_features() == InSet::max);
  for (int tokens : test::token_counts) {
    const auto x_full = test::random_matrix<T>(tokens, InSet::max, 77 + tokens);
    for (int out : OutSet::values)
      InSet::for_each([&]<int In>() {
        CAPTURE(tokens);
        CAPTURE(out);
        CAPTURE(In);
        const ConstMatrixView<T> x = x_full.view().first_cols(In);  // strided: the leading columns
        test::HostMatrix<T> y(tokens, out);
        test::fill_poison(y);
        linear.forward(executor, out, In, y.view(), x, {});
        CHECK(test::relative_error(y, test::reference_linear(x_full, weight, out, In)) < test::tolerance<T>());
      });
  }
}

TEST_CASE("elastic linear with a fixed output dimension and bad widths") {
  host::Executor executor;
  const auto weight = test::random_matrix<float>(48, 128, 5);
  const ElasticLinear<float, AnyWidth, Widths<64, 128>> linear(weight.view());
  const auto x = test::random_matrix<float>(2, 64, 9);
  test::HostMatrix<float> y(2, 48);
  test::fill_poison(y);
  CHECK_THROWS_WITH_AS(linear.forward(executor, 48, 96, y.view(), x.view(), {}),
                       "ElasticLinear input width 96 is not in the width set {64, 128}", WidthError);
  CHECK_THROWS_WITH_AS(linear.forward(executor, 50, 64, y.view(), x.view(), {}),
                       "ElasticLinear output width 50 exceeds the stored full width 48", WidthError);
  CHECK_THROWS_AS(linear.forward(executor, 48, 128, y.view(), x.view(), {}), Error);  // x has 64 columns
  CHECK(test::all_poison(y));
  linear.forward(executor, 48, 64, y.view(), x.view(), {});
  CHECK(test::relative_error(y, test::reference_linear(x, weight, 48, 64)) < test::tolerance<float>());
}
