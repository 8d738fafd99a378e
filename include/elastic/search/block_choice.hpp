// The per-layer block choice under latency and memory budgets, solved
// exactly: each slot (one layer half, "layer 3 attention") offers variants
// (the parent block, narrower ones, a skip), each with a quality cost
// measured on calibration text (e.g. replace-one-block KL divergence against
// the parent), a measured latency and a memory footprint. The search picks
// one variant per slot to minimise the summed cost while the model's fixed
// parts plus the chosen variants stay within the latency budget and, when
// given, the memory budget. This is Puzzle's mixed-integer program (binary
// x[slot][variant], one equality row per slot, one knapsack row per budget),
// solved by COIN-OR CBC in src/search/block_choice.cpp; the search stage
// reads the block library and the measured tables and writes the Pareto
// front these functions produce.
//
// Every check throws elastic::Error before the solver runs. The library never
// prints: CBC's log is silenced. CBC keeps process-wide state, so concurrent
// calls run one at a time.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "elastic/core/error.hpp"

namespace elastic::search {

// No selection meets the budget: the input was well formed, the budget is
// too small (a sweep skips such budgets; see pareto_front).
class BudgetError : public Error {
 public:
  using Error::Error;
};

struct BlockVariant {
  std::string name;  // "4 heads", "mlp 1024", "skip"
  double score = 0;  // quality cost, lower is better; may be negative (a variant that beats the parent)
  double latency = 0;  // seconds, finite and non-negative
  double memory = 0;   // bytes, finite and non-negative
};

// One decision: exactly one of `variants` is chosen.
struct ChoiceSlot {
  std::string name;  // "layer 3 attention"
  std::vector<BlockVariant> variants;
};

struct BlockChoiceProblem {
  std::vector<ChoiceSlot> slots;
  double fixed_latency = 0;  // seconds every selection spends outside the slots (embedding, LM head, norms)
  double fixed_memory = 0;   // bytes every selection holds outside the slots
};

// Totals include the problem's fixed parts; both must be finite and positive.
struct Budget {
  double latency = 0;                 // seconds
  std::optional<double> memory = {};  // bytes; no memory limit when empty
};

struct BlockSelection {
  std::vector<int> variant;  // variant[i] indexes slots[i].variants
  double score = 0;          // summed over the slots
  double latency = 0;        // fixed + summed over the slots
  double memory = 0;         // fixed + summed over the slots
};

// Fixed parts plus every slot's smallest latency, and plus every slot's
// smallest memory: what no selection goes below (usually not both at once).
struct ReachableTotals {
  double latency = 0;
  double memory = 0;
};

ReachableTotals smallest_reachable(const BlockChoiceProblem& problem);

// Relative slack with which a selection's totals may exceed a budget: the
// totals are sums of doubles, so a selection that meets the budget on paper
// may round a few ulps above it.
inline constexpr double budget_slack = 1e-9;

// The selection of least total score that meets `budget`, exactly (CBC,
// zero optimality gap; the totals are recomputed from the chosen variants
// and checked against the budget). Throws BudgetError when no selection
// meets the budget (the message names the smallest reachable latency and,
// with a memory budget, the smallest reachable memory), and elastic::Error
// on malformed input and when the solver fails.
BlockSelection solve_block_choice(const BlockChoiceProblem& problem, const Budget& budget);

// The selection of least score at each latency budget under one memory limit,
// with selections another one beats or equals on both score and latency left
// out and duplicates dropped: sorted by latency, strictly increasing, with
// strictly decreasing score. Budgets no selection meets are skipped; throws
// BudgetError (that of the largest budget) when none is met, and
// elastic::Error on malformed input or budgets and when the solver fails.
std::vector<BlockSelection> pareto_front(const BlockChoiceProblem& problem, std::span<const double> latency_budgets,
                                         std::optional<double> memory = std::nullopt);

}  // namespace elastic::search
