// The host executor's primitives against float64 references, and its argument
// checks: every rejected call leaves the output untouched.
#include <doctest/doctest.h>

#include "support/test_support.hpp"

using namespace elastic;

TEST_CASE_TEMPLATE("host linear and swiglu match float64", T, float, half_t, bfloat16_t) {
  host::Executor executor(2);
  const index_t in = 96;
  const index_t out = 40;
  const auto w = test::random_matrix<T>(out, in, 1, 0.2f);
  const auto gate = test::random_matrix<T>(out, in, 2, 0.2f);
  const auto up = test::random_matrix<T>(out, in, 3, 0.2f);
  for (int tokens : test::token_counts) {
    CAPTURE(tokens);
    const auto x = test::random_matrix<T>(tokens, in, 10 + tokens);

    test::HostMatrix<T> y(tokens, out);
    test::fill_poison(y);
    executor.linear(y.view(), x.view(), w.view());
    CHECK(test::relative_error(y, test::reference_linear(x, w, out, in)) < test::tolerance<T>());

    executor.linear(y.view(), x.view(), w.view(), {}, Extent<96>{});
    CHECK(test::relative_error(y, test::reference_linear(x, w, out, in)) < test::tolerance<T>());

    test::HostMatrix<T> h(tokens, out);
    test::fill_poison(h);
    executor.swiglu(h.view(), x.view(), gate.view(), up.view());
    const auto g = test::reference_linear(x, gate, out, in);
    const auto u = test::reference_linear(x, up, out, in);
    std::vector<double> expected(g.size());
    for (std::size_t i = 0; i < g.size(); ++i) expected[i] = test::reference_silu(g[i]) * u[i];
    CHECK(test::relative_error(h, expected) < test::tolerance<T>());
  }
}

TEST_CASE("host executor rejects bad arguments before writing") {
  host::Executor executor(2);
  const auto x = test::random_matrix<float>(3, 32, 1);
  const auto w = test::random_matrix<float>(16, 32, 2);
  test::HostMatrix<float> y(3, 16);
  test::fill_poison(y);

  // shape mismatches
  CHECK_THROWS_WITH_AS(executor.linear(y.view(), x.view().first_cols(28), w.view()),
                       "linear: the input has 28 columns but the weight has 32 (expected equal)", Error);
  CHECK_THROWS_WITH_AS(executor.linear(y.view().first_cols(8), x.view(), w.view()),
                       "linear: output must be [3 x 16], found [3 x 8, stride 16]", Error);
  CHECK_THROWS_WITH_AS(executor.linear(y.view(), x.view(), w.view(), {}, Extent<64>{}),
                       "linear: Extent<64> does not match the reduction length 32", Error);
  // reduction length not a whole number of 16-byte vectors
  CHECK_THROWS_WITH_AS(executor.linear(y.view(), x.view().first_cols(30), w.view().first_cols(30)),
                       "linear: the reduction length must be a multiple of 4 float32 elements (16 bytes), found 30",
                       Error);
  // null and misaligned pointers
  CHECK_THROWS_AS(executor.linear(y.view(), ConstMatrixView<float>(nullptr, 3, 32), w.view()), Error);
  const ConstMatrixView<float> shifted(x.values.data() + 1, 2, 32, 32);
  CHECK_THROWS_AS(executor.linear(y.view().first_rows(2), shifted, w.view()), Error);
  const ConstMatrixView<float> odd_stride(x.values.data(), 2, 32, 33);
  CHECK_THROWS_AS(executor.linear(y.view().first_rows(2), odd_stride, w.view()), Error);
  // output overlapping an input
  test::HostMatrix<float> shared(16, 32);
  CHECK_THROWS_WITH_AS(executor.linear(MatrixView<float>(shared.values.data(), 3, 16), x.view(), shared.view()),
                       "linear: the output overlaps the weight", Error);
  // swiglu with mismatched gate and up
  CHECK_THROWS_AS(executor.swiglu(y.view(), x.view(), w.view(), w.view().first_rows(8)), Error);

  CHECK(test::all_poison(y));
}

TEST_CASE("empty token batches are a no-op") {
  host::Executor executor(2);
  const auto w = test::random_matrix<float>(16, 32, 2);
  test::HostMatrix<float> y(0, 16);
  const test::HostMatrix<float> x(0, 32);
  executor.linear(y.view(), x.view(), w.view());
  CHECK(y.values.empty());
}
