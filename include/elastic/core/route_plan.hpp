// Route plans: tokens grouped by the choice they made (a width, or a skip).
//
// From per-token choices c[t] in [0, choices), a plan holds, in caller memory
// of the executor's space:
//   counts[c]        how many tokens chose c
//   offsets[c]       exclusive prefix sums of counts; offsets[choices] = tokens
//   permutation[i]   the tokens grouped by choice: permutation[offsets[c] + j]
//                    is the j-th token, in token order, that chose c (stable)
// so the tokens of a choice can be gathered, computed as one dense batch and
// scattered back. bytes_required() is the size query; carve() lays the three
// arrays out in a caller block.
#pragma once

#include <cmath>
#include <cstddef>

#include "elastic/core/error.hpp"
#include "elastic/core/workspace.hpp"

namespace elastic {

struct RoutePlan {
  int choices = 0;
  int tokens = 0;
  int* counts = nullptr;       // [choices]
  int* offsets = nullptr;      // [choices + 1]
  int* permutation = nullptr;  // [tokens]

  static std::size_t bytes_required(int tokens, int choices) {
    WorkspaceCursor cursor;
    carve_into(cursor, tokens, choices);
    return cursor.bytes_used();
  }

  // A plan for `tokens` tokens over `choices` choices in `memory`.
  static RoutePlan carve(Workspace memory, int tokens, int choices) {
    WorkspaceCursor cursor(memory);
    return carve_into(cursor, tokens, choices);
  }

 private:
  static RoutePlan carve_into(WorkspaceCursor& cursor, int tokens, int choices) {
    require(tokens >= 0 && choices > 0, "route plan: need tokens >= 0 and choices > 0, found ", tokens, " and ",
            choices);
    RoutePlan plan;
    plan.choices = choices;
    plan.tokens = tokens;
    plan.counts = cursor.take<int>(static_cast<std::size_t>(choices));
    plan.offsets = cursor.take<int>(static_cast<std::size_t>(choices) + 1);
    plan.permutation = cursor.take<int>(static_cast<std::size_t>(tokens));
    return plan;
  }
};

// One group of a plan as an executor reads it: the group's tokens are
// permutation[*first + i] for i < *count, all in executor memory, so kernels
// can size the group themselves, without the host reading the counts back
// (a decode step then needs no synchronisation and can be captured in a CUDA
// graph with any route rule). plan_tokens bounds *first + *count.
struct RouteGroup {
  const int* permutation = nullptr;
  const int* first = nullptr;
  const int* count = nullptr;
  int plan_tokens = 0;

  static RouteGroup of(const RoutePlan& plan, int choice) {
    require(choice >= 0 && choice < plan.choices, "route group: choice ", choice, " is not in [0, ", plan.choices,
            ")");
    return {plan.permutation, plan.offsets + choice, plan.counts + choice, plan.tokens};
  }
};

// How a router's logits become per-token choices.
//   argmax      c[t] = argmax_c logits[t][c] (lowest index on ties)
//   threshold   c[t] = skip_choice when logits[t][skip_choice] >= threshold,
//               else the argmax over the other choices
//   capacity    exactly `capacity` tokens take `target`: those with the
//               highest logits[t][target] (lower token index first on ties);
//               every other token takes `fallback` (Mixture-of-Depths top-k:
//               static group sizes, so the shapes suit CUDA graphs)
struct RouteRule {
  enum class Mode { argmax, threshold, capacity };
  Mode mode = Mode::argmax;
  int skip_choice = 0;
  float threshold = 0.0f;
  int target = 1;
  int fallback = 0;
  int capacity = 0;

  static RouteRule argmax() { return {}; }
  static RouteRule skip_above(int skip_choice, float threshold) {
    RouteRule rule;
    rule.mode = Mode::threshold;
    rule.skip_choice = skip_choice;
    rule.threshold = threshold;
    return rule;
  }
  static RouteRule top_k(int target, int fallback, int capacity) {
    RouteRule rule;
    rule.mode = Mode::capacity;
    rule.target = target;
    rule.fallback = fallback;
    rule.capacity = capacity;
    return rule;
  }

  // Checks the rule against a router with `choices` outputs and a batch of
  // `tokens` tokens.
  void validate(int choices, int tokens) const {
    auto in_range = [&](int c) { return c >= 0 && c < choices; };
    require(mode == Mode::argmax || mode == Mode::threshold || mode == Mode::capacity,
            "route rule: unknown mode ", static_cast<int>(mode));
    switch (mode) {
      case Mode::argmax: break;
      case Mode::threshold:
        require(in_range(skip_choice), "route rule: skip choice ", skip_choice, " is not in [0, ", choices, ")");
        require(choices >= 2, "route rule: a threshold needs at least 2 choices, found ", choices);
        require(!std::isnan(threshold), "route rule: the skip threshold is NaN (every comparison with it is false)");
        break;
      case Mode::capacity:
        require(in_range(target) && in_range(fallback) && target != fallback, "route rule: target ", target,
                " and fallback ", fallback, " must be two different choices in [0, ", choices, ")");
        require(capacity >= 0 && capacity <= tokens, "route rule: capacity ", capacity,
                " must be between 0 and the batch's ", tokens, " tokens");
        break;
    }
  }
};

}  // namespace elastic
