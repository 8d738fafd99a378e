// The consumer's budget-search program (built when the route provides
// elastic::search): one block choice of two slots, which links the static
// search library and, through it, COIN-OR CBC.
#include <cstdio>
#include <vector>

#include "elastic/search/block_choice.hpp"

int main() {
  const elastic::search::BlockChoiceProblem problem{
      {{"layer 0 attention", {{"full", 0.0, 3e-4, 0}, {"skip", 0.4, 0.0, 0}}},
       {"layer 0 ffn", {{"full", 0.0, 5e-4, 0}, {"half", 0.1, 2.5e-4, 0}}}},
      1e-4, 0};
  const elastic::search::BlockSelection selection = elastic::search::solve_block_choice(problem, {7e-4});
  const bool right = selection.variant == std::vector<int>{0, 1};
  std::printf("elastic::search consumer: block choice %s\n", right ? "ok" : "FAILED");
  return right ? 0 : 1;
}
