// The host executor's routing primitives: route decisions under each rule,
// route plans (counts, exclusive offsets, a stable bijection), gather and
// scatter-add, RMSNorm and the residual-contribution probe, each against a
// direct computation; bad input rejected before anything is written.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "support/route_plan_checks.hpp"
#include "support/test_support.hpp"

using namespace elastic;

namespace {

std::vector<int> random_choices(int tokens, int choices, std::uint64_t seed) {
  std::mt19937 engine(static_cast<unsigned>(seed));
  std::uniform_int_distribution<int> pick(0, choices - 1);
  std::vector<int> result(static_cast<std::size_t>(tokens));
  for (int& c : result) c = pick(engine);
  return result;
}

struct HostPlan {
  HostPlan(int tokens, int choices)
      : memory(RoutePlan::bytes_required(tokens, choices)), plan(RoutePlan::carve(memory.get(), tokens, choices)) {}
  host::WorkspaceBuffer memory;
  RoutePlan plan;
};

}  // namespace

TEST_CASE("route plans are stable counting sorts") {
  host::Executor executor(2);
  for (int tokens : {1, 3, 67, 4096})
    for (int choices : {2, 3, 8}) {
      CAPTURE(tokens);
      CAPTURE(choices);
      const std::vector<int> picks = random_choices(tokens, choices, tokens * 31 + choices);
      HostPlan plan(tokens, choices);
      executor.plan_routes(plan.plan, picks.data());
      CHECK(test::route_plan_violation(plan.plan, picks) == "");
    }
  // All tokens in one group, and empty groups around it.
  const std::vector<int> same(50, 2);
  HostPlan plan(50, 4);
  executor.plan_routes(plan.plan, same.data());
  CHECK(test::route_plan_violation(plan.plan, same) == "");
  std::vector<int> counts(4);
  executor.read_route_counts(plan.plan, counts);
  CHECK(counts == std::vector<int>{0, 0, 50, 0});
}

TEST_CASE("an invalid choice is rejected and the plan left untouched") {
  host::Executor executor(2);
  std::vector<int> picks = random_choices(10, 3, 1);
  picks[7] = 3;
  HostPlan plan(10, 3);
  std::fill_n(static_cast<int*>(plan.memory.get().data), plan.memory.bytes() / sizeof(int), -7);
  CHECK_THROWS_WITH_AS(executor.plan_routes(plan.plan, picks.data()),
                       "plan_routes: token 7 chose 3, expected 0 <= choice < 3", Error);
  CHECK(std::all_of(plan.plan.counts, plan.plan.counts + 3, [](int v) { return v == -7; }));
  CHECK(std::all_of(plan.plan.permutation, plan.plan.permutation + 10, [](int v) { return v == -7; }));
  std::vector<int> wrong_size(2);
  CHECK_THROWS_AS(executor.read_route_counts(plan.plan, wrong_size), Error);
}

TEST_CASE_TEMPLATE("route decisions: argmax, threshold, capacity", T, float, bfloat16_t) {
  host::Executor executor(2);
  const auto logits = test::random_matrix<T>(67, 4, 3);
  std::vector<int> choices(67, -1);
  executor.decide_routes(choices.data(), logits.view(), RouteRule::argmax());
  for (int t = 0; t < 67; ++t) {
    int best = 0;
    for (int c = 1; c < 4; ++c)
      if (logits.at(t, c) > logits.at(t, best)) best = c;
    CHECK(choices[t] == best);
  }
  executor.decide_routes(choices.data(), logits.view(), RouteRule::skip_above(0, 0.25f));
  for (int t = 0; t < 67; ++t) {
    if (logits.at(t, 0) >= 0.25) {
      CHECK(choices[t] == 0);
    } else {
      int best = 1;
      for (int c = 2; c < 4; ++c)
        if (logits.at(t, c) > logits.at(t, best)) best = c;
      CHECK(choices[t] == best);
    }
  }
  executor.decide_routes(choices.data(), logits.view(), RouteRule::top_k(2, 0, 20));
  CHECK(std::count(choices.begin(), choices.end(), 2) == 20);
  CHECK(std::count(choices.begin(), choices.end(), 0) == 47);
  double lowest_taken = 1e9, highest_left = -1e9;
  for (int t = 0; t < 67; ++t) {
    if (choices[t] == 2) lowest_taken = std::min(lowest_taken, logits.at(t, 2));
    else highest_left = std::max(highest_left, logits.at(t, 2));
  }
  CHECK(lowest_taken >= highest_left);
}

TEST_CASE("capacity ties go to the lower token index; bad rules are rejected") {
  host::Executor executor(2);
  test::HostMatrix<float> scores(9, 2);
  std::fill(scores.values.begin(), scores.values.end(), 0.5f);
  scores.values[2 * 6 + 1] = 0.75f;  // token 6 scores highest for choice 1
  const ConstMatrixView<float> logits = scores.view();
  std::vector<int> choices(9, -1);
  executor.decide_routes(choices.data(), logits, RouteRule::top_k(1, 0, 3));
  CHECK(choices == std::vector<int>{1, 1, 0, 0, 0, 0, 1, 0, 0});
  std::vector<int> untouched(9, -1);
  CHECK_THROWS_WITH_AS(executor.decide_routes(untouched.data(), logits, RouteRule::top_k(1, 0, 10)),
                       "route rule: capacity 10 must be between 0 and the batch's 9 tokens", Error);
  CHECK_THROWS_AS(executor.decide_routes(untouched.data(), logits, RouteRule::top_k(1, 1, 2)), Error);
  CHECK_THROWS_AS(executor.decide_routes(untouched.data(), logits, RouteRule::skip_above(2, 0.0f)), Error);
  CHECK(untouched == std::vector<int>(9, -1));
}

TEST_CASE_TEMPLATE("gather and scatter-add rows", T, float, half_t, bfloat16_t) {
  host::Executor executor(2);
  const auto source = test::random_matrix<T>(20, 24, 5);
  const std::vector<int> indices = {19, 0, 7, 3, 12};
  test::HostMatrix<T> gathered(5, 24);
  test::fill_poison(gathered);
  executor.gather_rows(gathered.view(), source.view(), indices.data());
  for (int i = 0; i < 5; ++i)
    for (int c = 0; c < 24; ++c) CHECK(gathered.at(i, c) == source.at(indices[i], c));

  auto target = test::random_matrix<T>(20, 24, 6);
  const auto before = target;
  executor.scatter_add_rows(target.view(), gathered.view(), indices.data());
  for (int r = 0; r < 20; ++r) {
    const auto hit = std::find(indices.begin(), indices.end(), r);
    for (int c = 0; c < 24; ++c) {
      const double expected = hit == indices.end()
                                  ? before.at(r, c)
                                  : round_to<T>(float(before.at(r, c)) + float(gathered.at(hit - indices.begin(), c)));
      CHECK(target.at(r, c) == expected);
    }
  }
  const std::vector<int> bad = {0, 20};
  test::HostMatrix<T> two(2, 24);
  test::fill_poison(two);
  CHECK_THROWS_WITH_AS(executor.gather_rows(two.view(), source.view(), bad.data()),
                       "gather_rows: index 1 is 20, expected 0 <= index < 20", Error);
  CHECK(test::all_poison(two));
  CHECK_THROWS_AS(executor.gather_rows(two.view(), source.view().first_cols(16), indices.data()), Error);
}

TEST_CASE_TEMPLATE("gather_swiglu and linear_scatter_add read and write rows by index", T, float, half_t, bfloat16_t) {
  host::Executor executor(2);
  constexpr index_t kIn = 48;
  constexpr index_t kOut = 40;
  const auto x = test::random_matrix<T>(20, kIn, 5);
  const auto gate = test::random_matrix<T>(kOut, kIn, 6);
  const auto up = test::random_matrix<T>(kOut, kIn, 7);
  const std::vector<int> indices = {19, 0, 7, 3, 12};

  // gather_swiglu equals swiglu over a gathered copy, bit for bit.
  test::HostMatrix<T> gathered(5, kIn);
  executor.gather_rows(gathered.view(), x.view(), indices.data());
  test::HostMatrix<T> expected_h(5, kOut);
  executor.swiglu(expected_h.view(), gathered.view(), gate.view(), up.view());
  test::HostMatrix<T> h(5, kOut);
  test::fill_poison(h);
  executor.gather_swiglu(h.view(), x.view(), indices.data(), gate.view(), up.view());
  CHECK(test::bitwise_equal(h.values, expected_h.values));

  // linear_scatter_add rounds once: y[indices[i]] = round(y + float32 dot),
  // with the float32 dots taken from a float32 linear map over the same values.
  const auto w = test::random_matrix<T>(kIn, kOut, 8);
  test::HostMatrix<float> h32(5, kOut), w32(kIn, kOut), dots(5, kIn);
  for (std::size_t i = 0; i < h.values.size(); ++i) h32.values[i] = to_float(h.values[i]);
  for (std::size_t i = 0; i < w.values.size(); ++i) w32.values[i] = to_float(w.values[i]);
  executor.linear(dots.view(), h32.view(), w32.view());
  auto y = test::random_matrix<T>(20, kIn, 9);
  const auto before = y;
  executor.linear_scatter_add(y.view(), h.view(), w.view(), indices.data());
  for (int r = 0; r < 20; ++r) {
    const auto hit = std::find(indices.begin(), indices.end(), r);
    for (int c = 0; c < kIn; ++c) {
      const double expected =
          hit == indices.end() ? before.at(r, c) : round_to<T>(float(before.at(r, c)) + dots.at(hit - indices.begin(), c));
      CHECK(y.at(r, c) == expected);
    }
  }

  // Bad indices and shapes are rejected before anything is written.
  const std::vector<int> bad = {0, 20};
  test::HostMatrix<T> two(2, kOut);
  test::fill_poison(two);
  CHECK_THROWS_WITH_AS(executor.gather_swiglu(two.view(), x.view(), bad.data(), gate.view(), up.view()),
                       "gather_swiglu: index 1 is 20, expected 0 <= index < 20", Error);
  CHECK_THROWS_WITH_AS(executor.gather_swiglu(two.view(), x.view(), nullptr, gate.view(), up.view()),
                       "gather_swiglu: the row indices are a null pointer", Error);
  CHECK_THROWS_WITH_AS(executor.gather_swiglu(two.view().first_cols(32), x.view(), indices.data(), gate.view(), up.view()),
                       "gather_swiglu: output must be [2 x 40], found [2 x 32, stride 40]", Error);
  CHECK(test::all_poison(two));
  auto target = before;
  CHECK_THROWS_WITH_AS(executor.linear_scatter_add(target.view(), h.view().first_rows(2), w.view(), bad.data()),
                       "linear_scatter_add: index 1 is 20, expected 0 <= index < 20", Error);
  CHECK_THROWS_WITH_AS(executor.linear_scatter_add(target.view(), h.view(), w.view(), indices.data(), {}, Extent<64>{}),
                       "linear_scatter_add: Extent<64> does not match the reduction length 40", Error);
  CHECK_THROWS_AS(executor.linear_scatter_add(target.view().first_cols(40), h.view(), w.view(), indices.data()), Error);
  CHECK(test::bitwise_equal(target.values, before.values));
}

TEST_CASE("route groups sized in executor memory run the group's tokens only") {
  using T = bfloat16_t;
  host::Executor executor(2);
  constexpr index_t kIn = 32;
  constexpr index_t kOut = 24;
  const auto x = test::random_matrix<T>(10, kIn, 1);
  const auto gate = test::random_matrix<T>(kOut, kIn, 2);
  const auto up = test::random_matrix<T>(kOut, kIn, 3);
  const auto w = test::random_matrix<T>(kIn, kOut, 4);
  const std::vector<int> choices = {1, 0, 1, 2, 1, 0, 2, 1, 1, 0};
  host::WorkspaceBuffer memory(RoutePlan::bytes_required(10, 3));
  const RoutePlan plan = RoutePlan::carve(memory.get(), 10, 3);
  executor.plan_routes(plan, choices.data());
  const RouteGroup group = RouteGroup::of(plan, 1);  // tokens 0, 2, 4, 7, 8
  const int* indices = plan.permutation + plan.offsets[1];

  test::HostMatrix<T> expected_h(5, kOut), h(8, kOut);
  test::fill_poison(h);
  executor.gather_swiglu(expected_h.view(), x.view(), indices, gate.view(), up.view());
  executor.gather_swiglu(h.view(), x.view(), group, gate.view(), up.view());
  CHECK(std::memcmp(h.values.data(), expected_h.values.data(), expected_h.values.size() * sizeof(T)) == 0);
  CHECK(std::all_of(h.values.begin() + 5 * kOut, h.values.end(), [](T v) { return std::isnan(to_float(v)); }));

  auto expected_y = test::random_matrix<T>(10, kIn, 5);
  auto y = expected_y;
  executor.linear_scatter_add(expected_y.view(), expected_h.view(), w.view(), indices);
  test::HostMatrix<T> h_padded = expected_h;  // 5 group rows, then rows the group does not reach
  h_padded.rows = 8;
  h_padded.values.resize(8 * kOut, from_float<T>(1.0f));
  executor.linear_scatter_add(y.view(), h_padded.view(), w.view(), group);
  CHECK(test::bitwise_equal(y.values, expected_y.values));

  test::HostMatrix<T> too_few(4, kOut);
  CHECK_THROWS_WITH_AS(executor.gather_swiglu(too_few.view(), x.view(), group, gate.view(), up.view()),
                       "gather_swiglu: the route group has 5 tokens but only 4 rows were given", Error);
  CHECK_THROWS_WITH_AS(RouteGroup::of(plan, 3), "route group: choice 3 is not in [0, 3)", Error);
  RouteGroup outside = group;
  outside.plan_tokens = 6;
  CHECK_THROWS_WITH_AS(executor.linear_scatter_add(y.view(), h_padded.view(), w.view(), outside),
                       "linear_scatter_add: the route group starts at 3 with 5 tokens, outside its plan of 6 tokens",
                       Error);
  CHECK(test::bitwise_equal(y.values, expected_y.values));
}

TEST_CASE_TEMPLATE("RMSNorm and the residual-contribution probe match float64", T, float, bfloat16_t) {
  host::Executor executor(2);
  const auto x = test::random_matrix<T>(7, 64, 1);
  const auto weight = test::random_matrix<T>(1, 64, 2);
  test::HostMatrix<T> y(7, 64);
  test::fill_poison(y);
  executor.rms_norm(y.view(), x.view(), weight.view(), 1e-5f);
  std::vector<double> expected;
  for (int t = 0; t < 7; ++t) {
    double sum = 0.0;
    for (int c = 0; c < 64; ++c) sum += x.at(t, c) * x.at(t, c);
    const double scale = 1.0 / std::sqrt(sum / 64 + 1e-5);
    for (int c = 0; c < 64; ++c) expected.push_back(x.at(t, c) * scale * weight.at(0, c));
  }
  CHECK(test::relative_error(y, expected) < test::tolerance<T>());

  const auto residual = test::random_matrix<T>(7, 64, 3);
  std::vector<float> ratios(7, -1.0f);
  executor.contribution_ratios(ratios.data(), ConstMatrixView<T>(y.view()), residual.view());
  for (int t = 0; t < 7; ++t) {
    double block = 0.0, output = 0.0;
    for (int c = 0; c < 64; ++c) {
      block += y.at(t, c) * y.at(t, c);
      output += (y.at(t, c) + residual.at(t, c)) * (y.at(t, c) + residual.at(t, c));
    }
    CHECK(ratios[t] == doctest::Approx(std::sqrt(block / output)).epsilon(1e-5));
  }
}
