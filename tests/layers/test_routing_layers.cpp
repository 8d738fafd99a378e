// Routed execution on the host executor: a routed MLP equals computing each
// token alone at its chosen width (or skipping it), for random routes, every
// width, each dtype and 1 to 4096 tokens, with host-read and
// executor-read group sizes (add_to_rows itself is checked
// against float64 in test_elastic_mlp.cpp); capacity routing processes exactly
// k tokens; the router's logits match float64; the budget router's table
// lookups and its errors.
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "support/test_support.hpp"

using namespace elastic;

namespace {

constexpr index_t kHidden = 72;

// The width of each choice: skip, then every width of the set.
std::vector<int> choice_widths() {
  std::vector<int> widths = {0};
  for (int w : test::TestWidths::values) widths.push_back(w);
  return widths;
}

// residual[t] + MLP_{width}(input[t]) computed token by token (one
// single-row add_to_rows call per token).
template <class T>
test::HostMatrix<T> alone(const ElasticMLP<T, test::TestWidths>& mlp, const test::HostMatrix<T>& residual,
                          const test::HostMatrix<T>& input, const std::vector<int>& widths,
                          const std::vector<int>& choices, host::Executor& executor) {
  test::HostMatrix<T> expected = residual;
  host::WorkspaceBuffer workspace(mlp.add_to_rows_workspace_bytes(executor, 1));
  for (index_t t = 0; t < input.rows; ++t) {
    const int width = widths[static_cast<std::size_t>(choices[static_cast<std::size_t>(t)])];
    if (width == 0) continue;
    const int row = static_cast<int>(t);
    mlp.add_to_rows(executor, width, expected.view(), input.view(), &row, 1, workspace.get());
  }
  return expected;
}

}  // namespace

TEST_CASE_TEMPLATE("a routed MLP equals each token alone at its width or skipped", T, float, half_t, bfloat16_t) {
  host::Executor executor;
  const test::RandomMLP<T> weights(kHidden, test::TestWidths::max, 21);
  const ElasticMLP<T, test::TestWidths> mlp(weights.weights());
  const std::vector<int> widths = choice_widths();
  const RoutedMLP<T, test::TestWidths> routed(mlp, widths);
  for (int tokens : {1, 3, 16, 67, 4096}) {
    CAPTURE(tokens);
    const auto input = test::random_matrix<T>(tokens, kHidden, 100 + tokens);
    const auto residual_before = test::random_matrix<T>(tokens, kHidden, 200 + tokens);
    std::mt19937 engine(static_cast<unsigned>(tokens));
    std::uniform_int_distribution<int> pick(0, static_cast<int>(widths.size()) - 1);
    std::vector<int> choices(static_cast<std::size_t>(tokens));
    for (int& c : choices) c = pick(engine);
    if (tokens == 16) std::fill(choices.begin(), choices.end(), 2);  // one group, the rest empty

    auto residual = residual_before;
    host::WorkspaceBuffer workspace(routed.workspace_bytes(executor, tokens));
    routed.forward(executor, residual.view(), input.view(), choices.data(), workspace.get());
    const auto expected = alone(mlp, residual_before, input, widths, choices, executor);
    CHECK(test::bitwise_equal(residual.values, expected.values));

    // Groups sized from the plan's memory give the same bits, and the plan
    // stays readable in the workspace.
    auto decoded = residual_before;
    routed.forward_decode(executor, decoded.view(), input.view(), choices.data(), workspace.get());
    CHECK(test::bitwise_equal(decoded.values, expected.values));
    std::vector<int> counts(widths.size()), expected_counts(widths.size());
    for (int c : choices) ++expected_counts[static_cast<std::size_t>(c)];
    routed.read_counts(executor, tokens, workspace.get(), counts);
    CHECK(counts == expected_counts);
  }
}

TEST_CASE("capacity routing processes exactly k tokens with static group sizes") {
  host::Executor executor;
  const test::RandomMLP<float> weights(kHidden, test::TestWidths::max, 5);
  const ElasticMLP<float, test::TestWidths> mlp(weights.weights());
  const std::vector<int> widths = {0, test::TestWidths::max};  // skip or run at full width
  const RoutedMLP<float, test::TestWidths> routed(mlp, widths);
  const int tokens = 40, k = 10;
  const auto input = test::random_matrix<float>(tokens, kHidden, 1);
  const auto logits = test::random_matrix<float>(tokens, 2, 2);
  std::vector<int> choices(tokens);
  executor.decide_routes(choices.data(), logits.view(), RouteRule::top_k(1, 0, k));
  const auto residual_before = test::random_matrix<float>(tokens, kHidden, 3);
  auto residual = residual_before;
  host::WorkspaceBuffer workspace(routed.workspace_bytes(executor, tokens));
  const std::vector<int> counts = {tokens - k, k};
  routed.forward_with_counts(executor, residual.view(), input.view(), choices.data(), counts, workspace.get());
  int changed = 0;
  for (int t = 0; t < tokens; ++t)
    changed += !std::equal(residual.values.begin() + t * kHidden, residual.values.begin() + (t + 1) * kHidden,
                           residual_before.values.begin() + t * kHidden);
  CHECK(changed == k);
  CHECK(test::bitwise_equal(residual.values, alone(mlp, residual_before, input, widths, choices, executor).values));

  const std::vector<int> wrong = {tokens - k + 1, k};
  CHECK_THROWS_WITH_AS(routed.forward_with_counts(executor, residual.view(), input.view(), choices.data(), wrong,
                                                  workspace.get()),
                       "RoutedMLP::forward_with_counts: group sizes add up to 41 but the batch has 40 tokens", Error);
  const std::vector<int> bad_widths = {0, 100};
  CHECK_THROWS_AS((RoutedMLP<float, test::TestWidths>(mlp, bad_widths)), WidthError);
}

TEST_CASE("bad routed input is rejected before the residual is written") {
  host::Executor executor;
  const test::RandomMLP<bfloat16_t> weights(kHidden, test::TestWidths::max, 8);
  const ElasticMLP<bfloat16_t, test::TestWidths> mlp(weights.weights());
  const std::vector<int> widths = choice_widths();
  const RoutedMLP<bfloat16_t, test::TestWidths> routed(mlp, widths);
  const int tokens = 9;
  const auto input = test::random_matrix<bfloat16_t>(tokens, kHidden, 1);
  const auto residual_before = test::random_matrix<bfloat16_t>(tokens, kHidden, 2);
  auto residual = residual_before;
  host::WorkspaceBuffer workspace(routed.workspace_bytes(executor, tokens));
  std::vector<int> choices(tokens, 1);

  choices[4] = static_cast<int>(widths.size());
  CHECK_THROWS_WITH_AS(routed.forward(executor, residual.view(), input.view(), choices.data(), workspace.get()),
                       "plan_routes: token 4 chose 5, expected 0 <= choice < 5", Error);
  choices[4] = 1;
  host::WorkspaceBuffer small(routed.workspace_bytes(executor, tokens) - 1);
  CHECK_THROWS_AS(routed.forward(executor, residual.view(), input.view(), choices.data(), small.get()),
                  WorkspaceError);
  CHECK_THROWS_WITH_AS(routed.forward(executor, residual.view(), ConstMatrixView<bfloat16_t>(residual.view()),
                                      choices.data(), workspace.get()),
                       "RoutedMLP::forward: the residual overlaps the input", Error);
  CHECK_THROWS_AS(routed.forward(executor, residual.view().first_rows(8), input.view(), choices.data(),
                                 workspace.get()),
                  Error);
  CHECK(test::bitwise_equal(residual.values, residual_before.values));
}

TEST_CASE_TEMPLATE("router logits match float64: linear and 2-layer, with and without RMSNorm", T, float, bfloat16_t) {
  host::Executor executor;
  constexpr index_t hidden = 64, inner = 32;
  const auto x = test::random_matrix<T>(11, hidden, 1);
  const auto norm = test::random_matrix<T>(1, hidden, 2);
  const auto first = test::random_matrix<T>(inner, hidden, 3, 0.2f);
  const auto out_deep = test::random_matrix<T>(3, inner, 4, 0.3f);
  const auto out_flat = test::random_matrix<T>(3, hidden, 5, 0.2f);
  for (bool with_norm : {false, true})
    for (bool deep : {false, true}) {
      CAPTURE(with_norm);
      CAPTURE(deep);
      const RouterWeights<T> weights{with_norm ? norm.view() : ConstMatrixView<T>(),
                                     deep ? first.view() : ConstMatrixView<T>(),
                                     deep ? out_deep.view() : out_flat.view()};
      const Router<T, 3> router(weights);
      // float64 reference
      std::vector<double> h(static_cast<std::size_t>(11 * hidden));
      for (int t = 0; t < 11; ++t) {
        double sum = 0.0;
        for (int c = 0; c < hidden; ++c) sum += x.at(t, c) * x.at(t, c);
        const double scale = with_norm ? 1.0 / std::sqrt(sum / hidden + 1e-5) : 1.0;
        for (int c = 0; c < hidden; ++c) h[t * hidden + c] = x.at(t, c) * scale * (with_norm ? norm.at(0, c) : 1.0);
      }
      std::vector<double> expected;
      for (int t = 0; t < 11; ++t) {
        std::vector<double> features(h.begin() + t * hidden, h.begin() + (t + 1) * hidden);
        if (deep) {
          std::vector<double> hidden_layer(inner);
          for (int r = 0; r < inner; ++r) {
            double dot = 0.0;
            for (int c = 0; c < hidden; ++c) dot += features[c] * first.at(r, c);
            hidden_layer[r] = std::max(0.0, dot);
          }
          features = hidden_layer;
        }
        const auto& out = deep ? out_deep : out_flat;
        for (int c = 0; c < 3; ++c) {
          double dot = 0.0;
          for (std::size_t i = 0; i < features.size(); ++i) dot += features[i] * out.at(c, static_cast<index_t>(i));
          expected.push_back(dot);
        }
      }
      test::HostMatrix<T> logits(11, Router<T, 3>::logits_stride);
      test::fill_poison(logits);
      host::WorkspaceBuffer workspace(router.workspace_bytes(executor, 11));
      const MatrixView<T> view(logits.values.data(), 11, 3, Router<T, 3>::logits_stride);
      router.logits(executor, view, x.view(), workspace.get());
      test::HostMatrix<T> packed(11, 3);
      for (int t = 0; t < 11; ++t)
        for (int c = 0; c < 3; ++c) packed.values[t * 3 + c] = view(t, c);
      CHECK(test::relative_error(packed, expected) < 2 * test::tolerance<T>());

      std::vector<int> choices(11, -1);
      host::WorkspaceBuffer route_workspace(router.route_workspace_bytes(executor, 11));
      router.route(executor, choices.data(), x.view(), RouteRule::argmax(), route_workspace.get());
      for (int t = 0; t < 11; ++t) CHECK(choices[t] == math::argmax_logit(view.row(t), 3));
    }
}

TEST_CASE("the budget router looks up per-request layer choices") {
  const BudgetRouter router(3, 4, {{0.25, {0, 0, 1}}, {0.5, {1, 2, 1}}, {1.0, {3, 3, 3}}});
  CHECK(router.lookup(0.25) == std::vector<int>{0, 0, 1});
  CHECK(router.lookup(0.75) == std::vector<int>{1, 2, 1});
  CHECK(router.lookup(5.0) == std::vector<int>{3, 3, 3});
  CHECK_THROWS_WITH_AS(router.lookup(0.1), "BudgetRouter: budget 0.1 is below the smallest entry 0.25", Error);

  const std::vector<double> budgets = {1.0, 0.3};
  const std::vector<int> tokens = {2, 3};
  std::vector<int> choices(5, -1);
  router.layer_choices(1, budgets, tokens, choices);
  CHECK(choices == std::vector<int>{3, 3, 0, 0, 0});
  std::vector<int> too_few(4);
  CHECK_THROWS_AS(router.layer_choices(1, budgets, tokens, too_few), Error);
  CHECK_THROWS_AS(router.layer_choices(3, budgets, tokens, choices), Error);
  CHECK_THROWS_AS(BudgetRouter(3, 4, {{0.5, {0, 0, 1}}, {0.5, {1, 2, 1}}}), Error);
  CHECK_THROWS_AS(BudgetRouter(3, 4, {{0.5, {0, 0, 4}}}), Error);
  CHECK_THROWS_AS(BudgetRouter(3, 4, {{0.5, {0, 0}}}), Error);
}
