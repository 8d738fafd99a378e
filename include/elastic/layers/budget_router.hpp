// Flextron's static router: a table from a budget (a target latency, a
// compute fraction — any number that grows with cost) to one choice per
// layer, looked up per request, so requests in one batch may run at
// different budgets. A request gets the entry with the largest budget not
// above its own; a budget below every entry is an error, not a silent
// fallback.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "elastic/core/error.hpp"

namespace elastic {

class BudgetRouter {
 public:
  struct Entry {
    double budget;
    std::vector<int> choices;  // one per layer
  };

  // entries: strictly increasing budgets, each with `layers` choices in [0, choices).
  BudgetRouter(int layers, int choices, std::vector<Entry> entries)
      : layers_(layers), entries_(std::move(entries)) {
    require(layers > 0 && choices > 0, "BudgetRouter: layers and choices must be positive, found ", layers, " and ",
            choices);
    require(!entries_.empty(), "BudgetRouter: the table needs at least one entry");
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const Entry& entry = entries_[i];
      require(std::isfinite(entry.budget), "BudgetRouter: entry ", i, " has budget ", entry.budget,
              ", expected a finite number");
      require(i == 0 || entries_[i - 1].budget < entry.budget, "BudgetRouter: budgets must increase strictly, entry ",
              i, " has ", entry.budget, " after ", i == 0 ? 0.0 : entries_[i - 1].budget);
      require(entry.choices.size() == static_cast<std::size_t>(layers), "BudgetRouter: entry ", i, " has ",
              entry.choices.size(), " choices, expected one per layer (", layers, ")");
      for (int choice : entry.choices)
        require(choice >= 0 && choice < choices, "BudgetRouter: entry ", i, " has choice ", choice,
                ", expected 0 <= choice < ", choices);
    }
  }

  int layers() const { return layers_; }

  // The index of the entry a request with this budget gets: the largest
  // budget not above it.
  std::size_t entry_index(double budget) const {
    require(!std::isnan(budget), "BudgetRouter: the budget is NaN");
    require(budget >= entries_.front().budget, "BudgetRouter: budget ", budget, " is below the smallest entry ",
            entries_.front().budget);
    std::size_t best = 0;
    for (std::size_t i = 0; i < entries_.size() && entries_[i].budget <= budget; ++i) best = i;
    return best;
  }

  // The per-layer choices for a request with this budget.
  const std::vector<int>& lookup(double budget) const { return entries_[entry_index(budget)].choices; }

  // Per-token choices of one layer for a batch of requests: request r has
  // tokens_per_request[r] consecutive tokens and budget budgets[r].
  void layer_choices(int layer, std::span<const double> budgets, std::span<const int> tokens_per_request,
                     std::span<int> choices) const {
    require(layer >= 0 && layer < layers_, "BudgetRouter: layer ", layer, " is not in [0, ", layers_, ")");
    require(budgets.size() == tokens_per_request.size(), "BudgetRouter: ", budgets.size(), " budgets for ",
            tokens_per_request.size(), " requests");
    std::size_t total = 0;
    for (int count : tokens_per_request) {
      require(count >= 0, "BudgetRouter: token counts must be non-negative, found ", count);
      total += static_cast<std::size_t>(count);
    }
    require(total == choices.size(), "BudgetRouter: the requests have ", total, " tokens but ", choices.size(),
            " choices are to be written");
    std::vector<int> per_request;
    per_request.reserve(budgets.size());
    for (double budget : budgets) per_request.push_back(lookup(budget)[static_cast<std::size_t>(layer)]);
    std::size_t t = 0;
    for (std::size_t r = 0; r < budgets.size(); ++r)
      for (int i = 0; i < tokens_per_request[r]; ++i) choices[t++] = per_request[r];
  }

 private:
  int layers_;
  std::vector<Entry> entries_;
};

}  // namespace elastic
