// The exact block choice: on many small random instances (negative scores,
// with and without a memory budget, budgets that a selection meets exactly)
// it finds the brute-force optimum and meets the budget; on a model-sized
// instance with latencies on a grid it finds the optimum of a dynamic
// program; budgets no selection meets throw BudgetError naming the smallest
// reachable totals; malformed input throws Error saying what was expected;
// the Pareto front is monotone and optimal at every budget; and a solve
// prints nothing.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "elastic/search/block_choice.hpp"
#include "support/error_message.hpp"

using namespace elastic;
using namespace elastic::search;

namespace {

bool meets(double total, double budget) { return total <= budget + budget_slack * std::abs(budget); }

bool same_score(double a, double b) { return std::abs(a - b) <= 1e-9 * std::max(1.0, std::abs(b)); }

std::string formatted(double value) {
  std::ostringstream stream;
  stream << value;
  return stream.str();
}

// Every selection of `problem`, in odometer order, as variant indices.
std::vector<std::vector<int>> all_selections(const BlockChoiceProblem& problem) {
  std::vector<std::vector<int>> selections;
  std::vector<int> variant(problem.slots.size(), 0);
  while (true) {
    selections.push_back(variant);
    std::size_t i = 0;
    while (i < variant.size() && ++variant[i] == static_cast<int>(problem.slots[i].variants.size())) variant[i++] = 0;
    if (i == variant.size()) return selections;
  }
}

// Totals summed the way a caller would, independently of the library.
BlockSelection totals(const BlockChoiceProblem& problem, const std::vector<int>& variant) {
  BlockSelection selection{variant, 0, problem.fixed_latency, problem.fixed_memory};
  for (std::size_t i = 0; i < variant.size(); ++i) {
    const BlockVariant& chosen = problem.slots[i].variants[static_cast<std::size_t>(variant[i])];
    selection.score += chosen.score;
    selection.latency += chosen.latency;
    selection.memory += chosen.memory;
  }
  return selection;
}

// The least score of a selection that meets the budget, by enumeration.
std::optional<double> brute_force_optimum(const BlockChoiceProblem& problem, const Budget& budget) {
  std::optional<double> best;
  for (const std::vector<int>& variant : all_selections(problem)) {
    const BlockSelection selection = totals(problem, variant);
    if (!meets(selection.latency, budget.latency) || (budget.memory && !meets(selection.memory, *budget.memory)))
      continue;
    if (!best || selection.score < *best) best = selection.score;
  }
  return best;
}

// The returned selection indexes real variants, reports its own totals, and
// meets the budget.
void check_selection(const BlockChoiceProblem& problem, const Budget& budget, const BlockSelection& selection) {
  REQUIRE(selection.variant.size() == problem.slots.size());
  for (std::size_t i = 0; i < selection.variant.size(); ++i) {
    REQUIRE(selection.variant[i] >= 0);
    REQUIRE(selection.variant[i] < static_cast<int>(problem.slots[i].variants.size()));
  }
  const BlockSelection recomputed = totals(problem, selection.variant);
  CHECK(same_score(selection.score, recomputed.score));
  CHECK(selection.latency == doctest::Approx(recomputed.latency).epsilon(1e-12));
  CHECK(selection.memory == doctest::Approx(recomputed.memory).epsilon(1e-12));
  CHECK(meets(recomputed.latency, budget.latency));
  if (budget.memory) CHECK(meets(recomputed.memory, *budget.memory));
}

// 2 to 6 slots of 1 to 5 variants at model scales: scores (KL-like costs)
// in [-0.05, 1], latencies 10 to 500 microseconds, memories 1 to 100 MB;
// with `on_grid`, latencies and memories are whole multiples of 50 us and
// 10 MB, so many selections tie and budgets land on totals exactly.
BlockChoiceProblem random_problem(std::mt19937& random, bool on_grid) {
  std::uniform_int_distribution<int> slot_count(2, 6), variant_count(1, 5), grid(1, 10);
  std::uniform_real_distribution<double> score(-0.05, 1.0), latency(1e-5, 5e-4), memory(1e6, 1e8);
  BlockChoiceProblem problem;
  problem.fixed_latency = 2e-4;
  problem.fixed_memory = 3e7;
  const int slots = slot_count(random);
  for (int i = 0; i < slots; ++i) {
    ChoiceSlot slot{"slot " + std::to_string(i), {}};
    const int variants = variant_count(random);
    for (int v = 0; v < variants; ++v)
      slot.variants.push_back({"variant " + std::to_string(v), score(random),
                               on_grid ? 5e-5 * grid(random) : latency(random),
                               on_grid ? 1e7 * grid(random) : memory(random)});
    problem.slots.push_back(slot);
  }
  return problem;
}

// Smallest and largest total latency (or memory) over all selections.
std::pair<double, double> latency_range(const BlockChoiceProblem& problem) {
  double low = problem.fixed_latency, high = problem.fixed_latency;
  for (const ChoiceSlot& slot : problem.slots) {
    low += std::min_element(slot.variants.begin(), slot.variants.end(),
                            [](auto& a, auto& b) { return a.latency < b.latency; })->latency;
    high += std::max_element(slot.variants.begin(), slot.variants.end(),
                             [](auto& a, auto& b) { return a.latency < b.latency; })->latency;
  }
  return {low, high};
}

std::pair<double, double> memory_range(const BlockChoiceProblem& problem) {
  double low = problem.fixed_memory, high = problem.fixed_memory;
  for (const ChoiceSlot& slot : problem.slots) {
    low += std::min_element(slot.variants.begin(), slot.variants.end(),
                            [](auto& a, auto& b) { return a.memory < b.memory; })->memory;
    high += std::max_element(slot.variants.begin(), slot.variants.end(),
                             [](auto& a, auto& b) { return a.memory < b.memory; })->memory;
  }
  return {low, high};
}

}  // namespace

TEST_CASE("block choice: the brute-force optimum on random instances, and the budget holds") {
  std::mt19937 random(20240611);
  int solved = 0, unreachable = 0, on_a_total = 0;
  for (int instance = 0; instance < 200; ++instance) {
    CAPTURE(instance);
    const bool on_grid = instance % 2 == 1;
    const BlockChoiceProblem problem = random_problem(random, on_grid);
    const auto [low_latency, high_latency] = latency_range(problem);
    const auto [low_memory, high_memory] = memory_range(problem);
    Budget budget;
    // Every fourth instance: a budget that one selection's latency meets exactly.
    if (instance % 4 == 3) {
      const std::vector<std::vector<int>> selections = all_selections(problem);
      budget.latency = totals(problem, selections[random() % selections.size()]).latency;
      ++on_a_total;
    } else {
      budget.latency = std::uniform_real_distribution<double>(low_latency, high_latency)(random);
    }
    if (instance % 3 != 0) budget.memory = std::uniform_real_distribution<double>(low_memory, high_memory)(random);
    CAPTURE(budget.latency);
    CAPTURE(budget.memory.value_or(0));

    const std::optional<double> expected = brute_force_optimum(problem, budget);
    if (!expected) {
      CHECK(test::error_of<BudgetError>([&] { solve_block_choice(problem, budget); }) != "(no error)");
      ++unreachable;
      continue;
    }
    const BlockSelection selection = solve_block_choice(problem, budget);
    check_selection(problem, budget, selection);
    CHECK(same_score(selection.score, *expected));
    ++solved;
  }
  // Both outcomes were exercised, and budgets sitting on a selection's total.
  CHECK(solved >= 150);
  CHECK(unreachable >= 1);
  CHECK(on_a_total == 50);
}

TEST_CASE("block choice: a model-sized instance matches a dynamic program over grid latencies") {
  // 30 layers, an attention and an FFN slot each, 6 variants per slot;
  // latencies whole multiples of 10 us, so the least score at each total is
  // a knapsack over integer units.
  constexpr double unit = 1e-5;
  std::mt19937 random(7);
  std::uniform_int_distribution<int> units(0, 40);
  std::uniform_real_distribution<double> score(-0.01, 2.0);
  BlockChoiceProblem problem;
  problem.fixed_latency = 100 * unit;
  for (int i = 0; i < 60; ++i) {
    ChoiceSlot slot{"slot " + std::to_string(i), {}};
    for (int v = 0; v < 6; ++v) slot.variants.push_back({"", score(random), units(random) * unit, 0.0});
    problem.slots.push_back(slot);
  }
  std::vector<double> least(1, 0.0);  // least[u]: least score with exactly u units over the slots so far
  for (const ChoiceSlot& slot : problem.slots) {
    std::vector<double> next(least.size() + 40, std::numeric_limits<double>::infinity());
    for (std::size_t u = 0; u < least.size(); ++u)
      for (const BlockVariant& variant : slot.variants) {
        const std::size_t total = u + static_cast<std::size_t>(std::lround(variant.latency / unit));
        next[total] = std::min(next[total], least[u] + variant.score);
      }
    least = std::move(next);
  }
  const auto reachable = [&](double score) { return std::isfinite(score); };
  const int min_units = static_cast<int>(std::find_if(least.begin(), least.end(), reachable) - least.begin());
  const int max_units = static_cast<int>(std::find_if(least.rbegin(), least.rend(), reachable).base() - least.begin()) - 1;
  REQUIRE(min_units < max_units);
  for (int k = 0; k <= 5; ++k) {
    const int budget_units = min_units + (max_units - min_units) * k / 5;
    CAPTURE(budget_units);
    // Half a unit of headroom: no total sits on the budget.
    const Budget budget{problem.fixed_latency + (budget_units + 0.5) * unit, std::nullopt};
    const double expected = *std::min_element(least.begin(), least.begin() + budget_units + 1);
    const BlockSelection selection = solve_block_choice(problem, budget);
    check_selection(problem, budget, selection);
    CHECK(same_score(selection.score, expected));
  }
}

TEST_CASE("block choice: a budget no selection meets names the smallest reachable totals") {
  BlockChoiceProblem problem;
  problem.fixed_latency = 0.001;
  problem.fixed_memory = 1e6;
  // Fast variants are large, small ones slow: each budget alone is reachable,
  // both at once are not.
  problem.slots = {{"layer 0 attention", {{"full", 0.0, 0.002, 5e6}, {"skip", 0.4, 0.0005, 4e6}}},
                   {"layer 0 ffn", {{"full", 0.0, 0.003, 8e6}, {"half", 0.2, 0.001, 9e6}, {"small", 0.5, 0.004, 2e6}}}};
  const double smallest_latency = 0.001 + 0.0005 + 0.001, smallest_memory = 1e6 + 4e6 + 2e6;

  const std::string latency_only = test::error_of<BudgetError>([&] { solve_block_choice(problem, {0.002}); });
  CHECK(latency_only.find("latency budget " + formatted(0.002) + " s") != std::string::npos);
  CHECK(latency_only.find("smallest reachable latency is " + formatted(smallest_latency) + " s") != std::string::npos);

  const std::string memory = test::error_of<BudgetError>([&] { solve_block_choice(problem, {1.0, 6e6}); });
  CHECK(memory.find("memory budget " + formatted(6e6) + " bytes") != std::string::npos);
  CHECK(memory.find("smallest reachable latency is " + formatted(smallest_latency) + " s") != std::string::npos);
  CHECK(memory.find("smallest reachable memory " + formatted(smallest_memory) + " bytes") != std::string::npos);

  // The smallest latency takes skip + half (memory 1e6 + 4e6 + 9e6); the
  // smallest memory skip + small (latency 0.0055).
  const Budget both{smallest_latency, smallest_memory};
  REQUIRE_FALSE(brute_force_optimum(problem, both).has_value());
  const std::string joint = test::error_of<BudgetError>([&] { solve_block_choice(problem, both); });
  CHECK(joint.find("smallest reachable latency is " + formatted(smallest_latency) + " s") != std::string::npos);
  CHECK(joint.find("each alone, but no selection reaches both") != std::string::npos);

  // Just enough of both: skip + small.
  const BlockSelection selection = solve_block_choice(problem, {0.0055, smallest_memory});
  CHECK(selection.variant == std::vector<int>{1, 2});
}

TEST_CASE("block choice: malformed problems and budgets are refused with what was expected") {
  const BlockChoiceProblem good{{{"layer 0 ffn", {{"full", 0.0, 0.001, 1e6}, {"skip", 0.3, 0.0, 0.0}}}}, 0.001, 1e6};
  const Budget budget{0.01, 1e7};
  const auto problem_error = [&](auto&& change) {
    BlockChoiceProblem problem = good;
    change(problem);
    return test::error_of([&] { solve_block_choice(problem, budget); });
  };
  const auto contains = [](const std::string& message, const std::string& part) {
    CAPTURE(message);
    CHECK(message.find(part) != std::string::npos);
  };
  contains(problem_error([](BlockChoiceProblem& p) { p.slots.clear(); }), "expected at least one slot, found none");
  contains(problem_error([](BlockChoiceProblem& p) { p.slots[0].variants.clear(); }),
           "slot 0 (\"layer 0 ffn\") has no variants");
  contains(problem_error([](BlockChoiceProblem& p) { p.slots[0].variants[1].score = std::nan(""); }),
           "variant 1 (\"skip\"): expected a finite score, found nan");
  contains(problem_error([](BlockChoiceProblem& p) { p.slots[0].variants[0].latency = -1e-4; }),
           "expected a finite, non-negative latency, found -0.0001");
  contains(problem_error([](BlockChoiceProblem& p) {
             p.slots[0].variants[0].memory = std::numeric_limits<double>::infinity();
           }),
           "expected a finite, non-negative memory, found inf");
  contains(problem_error([](BlockChoiceProblem& p) { p.fixed_latency = -1; }),
           "expected a finite, non-negative fixed latency, found -1");
  contains(problem_error([](BlockChoiceProblem& p) { p.fixed_memory = std::nan(""); }),
           "expected a finite, non-negative fixed memory, found nan");

  contains(test::error_of([&] { solve_block_choice(good, {0.0}); }),
           "expected a finite, positive latency budget, found 0");
  contains(test::error_of([&] { solve_block_choice(good, {std::nan("")}); }),
           "expected a finite, positive latency budget, found nan");
  contains(test::error_of([&] { solve_block_choice(good, {0.01, -5.0}); }),
           "expected a finite, positive memory budget, found -5");
  contains(test::error_of([&] { pareto_front(good, {}, std::nullopt); }), "expected at least one latency budget");
  const std::vector<double> with_bad = {0.01, -0.01};
  contains(test::error_of([&] { pareto_front(good, with_bad, std::nullopt); }),
           "expected a finite, positive latency budget, found -0.01");
  // The malformed input is an Error, not a budget no selection meets.
  CHECK(test::error_of<BudgetError>([&] {
          try {
            solve_block_choice(good, {0.0});
          } catch (const BudgetError&) {
            throw;
          } catch (const Error&) {
          }
        }) == "(no error)");
}

TEST_CASE("block choice: negative scores (variants that beat the parent) are chosen when they fit") {
  const BlockChoiceProblem problem{{{"a", {{"full", 0.0, 3.0, 0}, {"narrow", -0.2, 2.0, 0}, {"skip", 0.5, 0.0, 0}}},
                                    {"b", {{"full", -0.1, 3.0, 0}, {"skip", 0.4, 0.0, 0}}}},
                                   0.0, 0.0};
  CHECK(solve_block_choice(problem, {10.0}).variant == std::vector<int>{1, 0});
  CHECK(solve_block_choice(problem, {10.0}).score == doctest::Approx(-0.3));
  CHECK(solve_block_choice(problem, {3.0}).variant == std::vector<int>{1, 1});
  CHECK(solve_block_choice(problem, {0.5}).variant == std::vector<int>{2, 1});
}

TEST_CASE("block choice: the Pareto front is monotone and optimal at every budget") {
  std::mt19937 random(99);
  int points = 0;
  for (int instance = 0; instance < 40; ++instance) {
    CAPTURE(instance);
    const BlockChoiceProblem problem = random_problem(random, instance % 2 == 1);
    const auto [low_latency, high_latency] = latency_range(problem);
    const auto [low_memory, high_memory] = memory_range(problem);
    const std::optional<double> memory =
        instance % 3 == 0 ? std::nullopt : std::optional<double>(0.5 * (low_memory + high_memory));
    // From below the smallest reachable latency (skipped) to above the largest.
    std::vector<double> budgets;
    for (int k = 0; k < 16; ++k)
      budgets.push_back(low_latency * 0.9 + (high_latency * 1.1 - low_latency * 0.9) * k / 15.0);
    std::shuffle(budgets.begin(), budgets.end(), random);

    bool any_reachable = false;
    for (const double latency : budgets) any_reachable |= brute_force_optimum(problem, {latency, memory}).has_value();
    if (!any_reachable) {
      CHECK(test::error_of<BudgetError>([&] { pareto_front(problem, budgets, memory); }) != "(no error)");
      continue;
    }
    const std::vector<BlockSelection> front = pareto_front(problem, budgets, memory);
    REQUIRE_FALSE(front.empty());
    points += static_cast<int>(front.size());
    for (std::size_t p = 0; p < front.size(); ++p) {
      if (memory) CHECK(meets(totals(problem, front[p].variant).memory, *memory));
      if (p == 0) continue;
      CHECK(front[p].latency > front[p - 1].latency);
      CHECK(front[p].score < front[p - 1].score);
    }
    // At each budget the best point within it is the brute-force optimum, and
    // each point is the optimum at some budget.
    for (const double latency : budgets) {
      CAPTURE(latency);
      const std::optional<double> expected = brute_force_optimum(problem, {latency, memory});
      std::optional<double> best;
      for (const BlockSelection& point : front)
        if (meets(point.latency, latency) && (!best || point.score < *best)) best = point.score;
      REQUIRE(best.has_value() == expected.has_value());
      if (expected) {
        CAPTURE(*best);
        CAPTURE(*expected);
        CHECK(same_score(*best, *expected));
      }
    }
    for (const BlockSelection& point : front) {
      CHECK(std::any_of(budgets.begin(), budgets.end(), [&](double latency) {
        const std::optional<double> expected = brute_force_optimum(problem, {latency, memory});
        return meets(point.latency, latency) && expected && same_score(point.score, *expected);
      }));
    }
  }
  CHECK(points >= 80);  // fronts of more than one point on average
}

TEST_CASE("block choice: solving prints nothing") {
  std::mt19937 random(5);
  const BlockChoiceProblem problem = random_problem(random, false);
  const auto [low, high] = latency_range(problem);
  char path[] = "/tmp/elastic_search_stdout_XXXXXX";
  const int captured = mkstemp(path);
  REQUIRE(captured >= 0);
  std::fflush(stdout);
  std::fflush(stderr);
  const int saved_out = dup(STDOUT_FILENO), saved_err = dup(STDERR_FILENO);
  dup2(captured, STDOUT_FILENO);
  dup2(captured, STDERR_FILENO);
  const BlockSelection selection = solve_block_choice(problem, {0.5 * (low + high)});
  std::fflush(stdout);
  std::fflush(stderr);
  dup2(saved_out, STDOUT_FILENO);
  dup2(saved_err, STDERR_FILENO);
  close(saved_out);
  close(saved_err);
  close(captured);
  std::ifstream file(path);
  const std::string printed{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
  std::remove(path);
  CHECK(printed == "");
  CHECK(selection.variant.size() == problem.slots.size());
}
