// The per-lane row-dot loop the decode kernel runs, driven lane by lane from a
// host loop: the 32 lanes' partials must add up to the float64 dot products,
// for every dtype.
#include <doctest/doctest.h>

#include "support/test_support.hpp"

using namespace elastic;

namespace {

template <class T, int MaxTokens, int NumRows>
void check_lanes_sum_to_dots(int length, int tokens) {
  constexpr int kLanes = 32;
  std::vector<test::HostMatrix<T>> weights;
  for (int r = 0; r < NumRows; ++r) weights.push_back(test::random_matrix<T>(1, length, 100 + r));
  const test::HostMatrix<T> x = test::random_matrix<T>(tokens, length, 7);

  math::RowDotArgs<T, NumRows> args{};
  for (int r = 0; r < NumRows; ++r) args.weight_rows[r] = weights[r].values.data();
  args.activations = x.values.data();
  args.activation_stride = length;
  args.length = length;
  args.tokens = tokens;

  float sums[NumRows][MaxTokens] = {};
  for (int lane = 0; lane < kLanes; ++lane) {
    float partials[NumRows][MaxTokens] = {};
    math::accumulate_row_dots<T, MaxTokens, NumRows, kLanes>(partials, args, lane);
    for (int r = 0; r < NumRows; ++r)
      for (int t = 0; t < MaxTokens; ++t) sums[r][t] += partials[r][t];
  }
  for (int r = 0; r < NumRows; ++r) {
    const std::vector<double> expected = test::reference_linear(x, weights[r], 1, length);
    for (int t = 0; t < MaxTokens; ++t) {
      if (t < tokens) {
        CHECK(sums[r][t] == doctest::Approx(expected[t]).epsilon(1e-5).scale(1.0));
      } else {
        CHECK(sums[r][t] == 0.0f);  // tokens past the count are never touched
      }
    }
  }
}

}  // namespace

TEST_CASE_TEMPLATE("32 simulated lanes sum to the dot products", T, float, half_t, bfloat16_t) {
  constexpr int w = math::vector_width<T>;
  for (int length : {w, 5 * w, 32 * w, 37 * w, 512 * w}) {
    CAPTURE(length);
    check_lanes_sum_to_dots<T, 1, 1>(length, 1);
    check_lanes_sum_to_dots<T, 4, 1>(length, 3);
    check_lanes_sum_to_dots<T, 16, 2>(length, 16);
    check_lanes_sum_to_dots<T, 16, 2>(length, 9);
  }
}

TEST_CASE_TEMPLATE("gathered lanes read each token's row by index", T, float, bfloat16_t) {
  constexpr int kLanes = 32;
  const int length = 37 * math::vector_width<T>;
  const test::HostMatrix<T> weight = test::random_matrix<T>(1, length, 3);
  const test::HostMatrix<T> x = test::random_matrix<T>(9, length, 4);
  const int rows[4] = {8, 0, 5, 5};
  math::RowDotArgs<T, 1> args{};
  args.weight_rows[0] = weight.values.data();
  args.activations = x.values.data();
  args.activation_stride = length;
  args.token_rows = rows;
  args.length = length;
  args.tokens = 4;
  float sums[1][4] = {};
  for (int lane = 0; lane < kLanes; ++lane) {
    float partials[1][4] = {};
    math::accumulate_row_dots<T, 4, 1, kLanes, true>(partials, args, lane);
    for (int t = 0; t < 4; ++t) sums[0][t] += partials[0][t];
  }
  const std::vector<double> expected = test::reference_linear(x, weight, 1, length);
  for (int t = 0; t < 4; ++t) CHECK(sums[0][t] == doctest::Approx(expected[rows[t]]).epsilon(1e-5).scale(1.0));
}

TEST_CASE("epilogues finish the dots") {
  const float dots1[1][2] = {{2.0f, -3.0f}};
  CHECK(math::finish_row_dots(math::Identity{}, dots1, 1) == -3.0f);
  const float dots2[2][1] = {{1.5f}, {-2.0f}};
  const float expected = static_cast<float>(test::reference_silu(1.5) * -2.0);
  CHECK(math::finish_row_dots(math::SwiGLU{}, dots2, 0) == doctest::Approx(expected).epsilon(1e-6));
  CHECK(math::silu(0.0f) == 0.0f);
  CHECK(math::silu(-100.0f) == doctest::Approx(0.0).scale(1.0));
}
