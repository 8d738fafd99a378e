// The properties every route plan has, whichever executor built it: counts
// match the choices, offsets are their exclusive prefix sums ending at the
// token count, and the permutation is a bijection that lists each choice's
// tokens in token order (stable). Host memory; device plans are copied back
// first. Returns the first violation found, or an empty string, so a test
// over thousands of tokens reports one line instead of one per token.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "elastic/core/error.hpp"
#include "elastic/core/route_plan.hpp"

namespace elastic::test {

inline std::string route_plan_violation(const RoutePlan& plan, std::span<const int> choices) {
  using detail::concat;
  if (choices.size() != static_cast<std::size_t>(plan.tokens))
    return concat(choices.size(), " choices for a plan of ", plan.tokens, " tokens");
  std::vector<int> expected_counts(static_cast<std::size_t>(plan.choices), 0);
  for (const int choice : choices) {
    if (choice < 0 || choice >= plan.choices) return concat("choice ", choice, " is out of range");
    ++expected_counts[static_cast<std::size_t>(choice)];
  }
  int sum = 0;
  for (int c = 0; c < plan.choices; ++c) {
    if (plan.offsets[c] != sum) return concat("offsets[", c, "] is ", plan.offsets[c], ", expected ", sum);
    if (plan.counts[c] != expected_counts[static_cast<std::size_t>(c)])
      return concat("counts[", c, "] is ", plan.counts[c], ", expected ", expected_counts[static_cast<std::size_t>(c)]);
    sum += plan.counts[c];
  }
  if (plan.offsets[plan.choices] != plan.tokens)
    return concat("offsets[choices] is ", plan.offsets[plan.choices], ", expected ", plan.tokens);
  std::vector<bool> seen(static_cast<std::size_t>(plan.tokens), false);
  for (int c = 0; c < plan.choices; ++c)
    for (int i = plan.offsets[c]; i < plan.offsets[c] + plan.counts[c]; ++i) {
      const int token = plan.permutation[i];
      if (token < 0 || token >= plan.tokens) return concat("permutation[", i, "] is ", token, ", not a token");
      if (seen[static_cast<std::size_t>(token)]) return concat("token ", token, " appears twice");
      seen[static_cast<std::size_t>(token)] = true;
      if (choices[static_cast<std::size_t>(token)] != c)
        return concat("token ", token, " chose ", choices[static_cast<std::size_t>(token)], " but sits in group ", c);
      if (i > plan.offsets[c] && plan.permutation[i - 1] >= token)
        return concat("group ", c, " lists token ", plan.permutation[i - 1], " before token ", token, " (not stable)");
    }
  return {};
}

}  // namespace elastic::test
