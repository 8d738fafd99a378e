// The block choice of include/elastic/search/block_choice.hpp through CBC's C
// interface. The program CBC sees is rescaled so that its tolerances are
// relative ones: each slot's scores, latencies and memories are shifted by
// the slot's minimum (a constant for any selection, which also makes
// negative scores non-negative), variants that alone would overrun a budget
// are left out, the latency and memory rows are divided by the spare budget
// (what the budget leaves after every slot's cheapest variant) so their
// right-hand sides are 1, and the objective by its largest coefficient. The
// answer is read back by rounding x, its totals recomputed from the original
// variants and checked against the budget: a selection that misses it, or a
// slot with no variant or two, is a solver failure, not a result.
#include "elastic/search/block_choice.hpp"

#include <Cbc_C_Interface.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "elastic/core/error.hpp"

namespace elastic::search {
namespace {

// CBC's driver (CbcMain1, behind Cbc_solve) keeps process-wide state.
std::mutex cbc_mutex;

bool within(double total, double budget) { return total <= budget + budget_slack * std::abs(budget); }

void check_problem(const BlockChoiceProblem& problem) {
  require(!problem.slots.empty(), "solve_block_choice: expected at least one slot, found none");
  require(std::isfinite(problem.fixed_latency) && problem.fixed_latency >= 0,
          "solve_block_choice: expected a finite, non-negative fixed latency, found ", problem.fixed_latency);
  require(std::isfinite(problem.fixed_memory) && problem.fixed_memory >= 0,
          "solve_block_choice: expected a finite, non-negative fixed memory, found ", problem.fixed_memory);
  for (std::size_t i = 0; i < problem.slots.size(); ++i) {
    const ChoiceSlot& slot = problem.slots[i];
    require(!slot.variants.empty(), "solve_block_choice: slot ", i, " (\"", slot.name,
            "\") has no variants, expected at least one");
    require(slot.variants.size() <= static_cast<std::size_t>(std::numeric_limits<int>::max()),
            "solve_block_choice: slot ", i, " (\"", slot.name, "\") has ", slot.variants.size(),
            " variants, more than an int indexes");
    for (std::size_t v = 0; v < slot.variants.size(); ++v) {
      const BlockVariant& variant = slot.variants[v];
      require(std::isfinite(variant.score), "solve_block_choice: slot ", i, " (\"", slot.name, "\") variant ", v,
              " (\"", variant.name, "\"): expected a finite score, found ", variant.score);
      require(std::isfinite(variant.latency) && variant.latency >= 0, "solve_block_choice: slot ", i, " (\"",
              slot.name, "\") variant ", v, " (\"", variant.name,
              "\"): expected a finite, non-negative latency, found ", variant.latency);
      require(std::isfinite(variant.memory) && variant.memory >= 0, "solve_block_choice: slot ", i, " (\"",
              slot.name, "\") variant ", v, " (\"", variant.name,
              "\"): expected a finite, non-negative memory, found ", variant.memory);
    }
  }
}

void check_budget(const Budget& budget) {
  require(std::isfinite(budget.latency) && budget.latency > 0,
          "solve_block_choice: expected a finite, positive latency budget, found ", budget.latency);
  if (budget.memory)
    require(std::isfinite(*budget.memory) && *budget.memory > 0,
            "solve_block_choice: expected a finite, positive memory budget, found ", *budget.memory);
}

[[noreturn]] void throw_unreachable(const Budget& budget, const ReachableTotals& reachable) {
  if (!budget.memory)
    throw BudgetError(detail::concat("solve_block_choice: no block choice meets the latency budget ", budget.latency,
                                     " s: the smallest reachable latency is ", reachable.latency, " s"));
  const bool each_alone = within(reachable.latency, budget.latency) && within(reachable.memory, *budget.memory);
  throw BudgetError(detail::concat(
      "solve_block_choice: no block choice meets the latency budget ", budget.latency, " s and the memory budget ",
      *budget.memory, " bytes: the smallest reachable latency is ", reachable.latency,
      " s and the smallest reachable memory ", reachable.memory, " bytes",
      each_alone ? " (each alone, but no selection reaches both)" : ""));
}

BlockSelection selection_of(const BlockChoiceProblem& problem, std::vector<int> variant) {
  BlockSelection selection{std::move(variant), 0, problem.fixed_latency, problem.fixed_memory};
  for (std::size_t i = 0; i < problem.slots.size(); ++i) {
    const BlockVariant& chosen = problem.slots[i].variants[static_cast<std::size_t>(selection.variant[i])];
    selection.score += chosen.score;
    selection.latency += chosen.latency;
    selection.memory += chosen.memory;
  }
  return selection;
}

// The program's columns: the variants that fit the spare budgets, slot by
// slot, with their rescaled coefficients.
struct Column {
  int slot = 0;
  int variant = 0;
  double objective = 0;
  double latency = 0;  // fraction of the spare latency
  double memory = 0;   // fraction of the spare memory
};

// Divides by `spare` where it is positive; a spare of zero keeps the
// coefficients (only zero ones are admitted then) and the right-hand side 0.
double per_spare(double value, double spare) { return spare > 0 ? value / spare : value; }

struct CbcModelDeleter {
  void operator()(Cbc_Model* model) const { Cbc_deleteModel(model); }
};

// The chosen variant per slot, or std::nullopt when CBC proves that no
// selection of `columns` meets the rows.
std::optional<std::vector<int>> solve_program(const BlockChoiceProblem& problem, const std::vector<Column>& columns,
                                              bool with_memory) {
  const int slots = static_cast<int>(problem.slots.size());
  const int latency_row = slots, memory_row = slots + 1;
  const int rows = slots + (with_memory ? 2 : 1);
  std::vector<CoinBigIndex> starts{0};
  std::vector<int> indices;
  std::vector<double> values, lower(columns.size(), 0.0), upper(columns.size(), 1.0), objective;
  for (const Column& column : columns) {
    indices.push_back(column.slot);
    values.push_back(1.0);
    if (column.latency != 0) {
      indices.push_back(latency_row);
      values.push_back(column.latency);
    }
    if (with_memory && column.memory != 0) {
      indices.push_back(memory_row);
      values.push_back(column.memory);
    }
    starts.push_back(static_cast<CoinBigIndex>(indices.size()));
    objective.push_back(column.objective);
  }
  // One variant per slot; each knapsack row's right-hand side is 1 (the
  // whole spare budget) or 0 (none spare); its activity is never negative.
  std::vector<double> row_lower(static_cast<std::size_t>(rows), 1.0), row_upper(static_cast<std::size_t>(rows), 1.0);
  row_lower[static_cast<std::size_t>(latency_row)] = 0.0;
  if (with_memory) row_lower[static_cast<std::size_t>(memory_row)] = 0.0;

  const std::lock_guard lock(cbc_mutex);
  const std::unique_ptr<Cbc_Model, CbcModelDeleter> model(Cbc_newModel());
  require(model != nullptr, "solve_block_choice: CBC could not create a model");
  Cbc_Model* cbc = model.get();
  Cbc_loadProblem(cbc, static_cast<int>(columns.size()), rows, starts.data(), indices.data(), values.data(),
                  lower.data(), upper.data(), objective.data(), row_lower.data(), row_upper.data());
  for (int j = 0; j < static_cast<int>(columns.size()); ++j) Cbc_setInteger(cbc, j);
  Cbc_setLogLevel(cbc, 0);
  Cbc_setParameter(cbc, "log", "0");
  Cbc_setParameter(cbc, "slog", "0");
  // Exact: no optimality gap, and no minimum improvement between solutions.
  Cbc_setParameter(cbc, "allowableGap", "0");
  Cbc_setParameter(cbc, "ratioGap", "0");
  Cbc_setParameter(cbc, "increment", "0");
  Cbc_setParameter(cbc, "integerTolerance", "1e-9");
  Cbc_setParameter(cbc, "primalTolerance", "1e-10");
  // CBC 2.10's integer preprocessing (CglPreProcess) fixed every column of
  // some of these programs to a feasible but suboptimal choice and then
  // reported it optimal; the programs are small, and exactness is the point.
  Cbc_setParameter(cbc, "preprocess", "off");
  Cbc_solve(cbc);
  if (Cbc_isProvenInfeasible(cbc)) return std::nullopt;
  require(Cbc_isProvenOptimal(cbc), "solve_block_choice: CBC stopped without a proven optimum (status ",
          Cbc_status(cbc), ", secondary status ", Cbc_secondaryStatus(cbc), ")");
  const double* x = Cbc_getColSolution(cbc);
  require(x != nullptr, "solve_block_choice: CBC reported an optimum but returned no solution");
  std::vector<int> chosen(problem.slots.size(), -1);
  for (std::size_t j = 0; j < columns.size(); ++j) {
    if (x[j] < 0.5) continue;
    int& slot_choice = chosen[static_cast<std::size_t>(columns[j].slot)];
    require(slot_choice < 0, "solve_block_choice: CBC chose two variants for slot ", columns[j].slot, " (\"",
            problem.slots[static_cast<std::size_t>(columns[j].slot)].name, "\")");
    slot_choice = columns[j].variant;
  }
  for (std::size_t i = 0; i < chosen.size(); ++i)
    require(chosen[i] >= 0, "solve_block_choice: CBC chose no variant for slot ", i, " (\"", problem.slots[i].name,
            "\")");
  return chosen;
}

BlockSelection solve_checked(const BlockChoiceProblem& problem, const Budget& budget) {
  const ReachableTotals reachable = smallest_reachable(problem);
  if (!within(reachable.latency, budget.latency) || (budget.memory && !within(reachable.memory, *budget.memory)))
    throw_unreachable(budget, reachable);
  const double latency_limit = budget.latency + budget_slack * budget.latency;
  const double memory_limit = budget.memory ? *budget.memory + budget_slack * *budget.memory : 0.0;
  const double spare_latency = latency_limit - reachable.latency;
  const double spare_memory = memory_limit - reachable.memory;

  std::vector<Column> columns;
  double largest_objective = 0;
  for (std::size_t i = 0; i < problem.slots.size(); ++i) {
    const std::vector<BlockVariant>& variants = problem.slots[i].variants;
    double min_score = std::numeric_limits<double>::infinity();
    double min_latency = min_score, min_memory = min_score;
    for (const BlockVariant& variant : variants) {
      min_latency = std::min(min_latency, variant.latency);
      min_memory = std::min(min_memory, variant.memory);
    }
    const std::size_t first = columns.size();
    for (std::size_t v = 0; v < variants.size(); ++v) {
      const double extra_latency = variants[v].latency - min_latency;
      const double extra_memory = variants[v].memory - min_memory;
      if (extra_latency > spare_latency || (budget.memory && extra_memory > spare_memory)) continue;
      columns.push_back({static_cast<int>(i), static_cast<int>(v), variants[v].score,
                         per_spare(extra_latency, spare_latency), per_spare(extra_memory, spare_memory)});
      min_score = std::min(min_score, variants[v].score);
    }
    // Every variant of this slot alone overruns the spare memory.
    if (columns.size() == first) throw_unreachable(budget, reachable);
    for (std::size_t j = first; j < columns.size(); ++j) {
      columns[j].objective -= min_score;
      largest_objective = std::max(largest_objective, columns[j].objective);
    }
  }
  if (largest_objective > 0)
    for (Column& column : columns) column.objective /= largest_objective;

  std::optional<std::vector<int>> chosen = solve_program(problem, columns, budget.memory.has_value());
  if (!chosen) throw_unreachable(budget, reachable);
  BlockSelection selection = selection_of(problem, std::move(*chosen));
  require(within(selection.latency, budget.latency), "solve_block_choice: CBC's selection takes ", selection.latency,
          " s, over the latency budget ", budget.latency, " s");
  if (budget.memory)
    require(within(selection.memory, *budget.memory), "solve_block_choice: CBC's selection holds ", selection.memory,
            " bytes, over the memory budget ", *budget.memory, " bytes");
  return selection;
}

}  // namespace

ReachableTotals smallest_reachable(const BlockChoiceProblem& problem) {
  ReachableTotals reachable{problem.fixed_latency, problem.fixed_memory};
  for (const ChoiceSlot& slot : problem.slots) {
    double latency = slot.variants.front().latency, memory = slot.variants.front().memory;
    for (const BlockVariant& variant : slot.variants) {
      latency = std::min(latency, variant.latency);
      memory = std::min(memory, variant.memory);
    }
    reachable.latency += latency;
    reachable.memory += memory;
  }
  return reachable;
}


BlockSelection solve_block_choice(const BlockChoiceProblem& problem, const Budget& budget) {
  check_problem(problem);
  check_budget(budget);
  return solve_checked(problem, budget);
}

std::vector<BlockSelection> pareto_front(const BlockChoiceProblem& problem, std::span<const double> latency_budgets,
                                         std::optional<double> memory) {
  check_problem(problem);
  require(!latency_budgets.empty(), "pareto_front: expected at least one latency budget, found none");
  for (const double latency : latency_budgets) check_budget({latency, memory});

  std::vector<double> budgets(latency_budgets.begin(), latency_budgets.end());
  std::sort(budgets.begin(), budgets.end());
  std::vector<BlockSelection> solved;
  std::optional<BudgetError> last_unreachable;
  for (const double latency : budgets) {
    try {
      solved.push_back(solve_checked(problem, {latency, memory}));
    } catch (const BudgetError& error) {
      last_unreachable = error;
    }
  }
  if (solved.empty()) throw *last_unreachable;

  // By latency, then score; a selection survives only when it scores
  // strictly below every faster (or equally fast) one kept before it.
  std::sort(solved.begin(), solved.end(), [](const BlockSelection& a, const BlockSelection& b) {
    return a.latency != b.latency ? a.latency < b.latency : a.score < b.score;
  });
  std::vector<BlockSelection> front;
  for (BlockSelection& selection : solved)
    if (front.empty() || selection.score < front.back().score) front.push_back(std::move(selection));
  return front;
}

}  // namespace elastic::search
