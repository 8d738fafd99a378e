// The decode split rule (math/decode_splits.hpp) on random batches: the
// chunk the device computes from a call's lengths keeps every sequence
// within the grid's split bound and the batch within the partial slots the
// workspace holds, for lengths up to the plan's maximum context and past it;
// and the chunk is the grid's share, never below the minimum.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "elastic/math/decode_splits.hpp"

using namespace elastic;

TEST_CASE("decode splits stay inside the grid bound and the workspace slots") {
  std::mt19937 random(7);
  for (int trial = 0; trial < 2000; ++trial) {
    const int sequences = std::uniform_int_distribution<int>(1, trial % 4 == 0 ? 300 : 8)(random);
    const int max_context = std::uniform_int_distribution<int>(1, trial % 3 == 0 ? 40000 : 3000)(random);
    const long long readers = std::uniform_int_distribution<int>(1, 64)(random);
    const long long target = 132LL * std::uniform_int_distribution<int>(1, 3)(random);
    const bool overrun = trial % 5 == 0;  // lengths past the plan's maximum context
    std::vector<int> visible(static_cast<std::size_t>(sequences));
    for (int& v : visible)
      v = std::uniform_int_distribution<int>(1, overrun ? 2 * max_context + 1 : max_context)(random);
    long long total = 0;
    for (int v : visible) total += v;
    const int longest = *std::max_element(visible.begin(), visible.end());

    const int bound = math::decode_split_bound(max_context, readers, target);
    const int chunk = math::decode_chunk(total, longest, readers, target, bound);
    CAPTURE(trial);
    REQUIRE(bound >= 1);
    CHECK(chunk >= math::decode_min_chunk);
    long long splits = 0;
    for (int v : visible) {
      CHECK(math::decode_splits(v, chunk) <= bound);
      CHECK((math::decode_splits(v, chunk) - 1) * static_cast<long long>(chunk) < v);  // no empty split
      splits += math::decode_splits(v, chunk);
    }
    CHECK(splits <= math::decode_partial_slot_bound(sequences, max_context, readers, target));
    // The workspace is sized with one reader and the most blocks per SM; that covers every call.
    CHECK(math::decode_partial_slot_bound(sequences, max_context, readers, target) <=
          math::decode_partial_slot_bound(sequences, max_context, 1, 132LL * 3));
    if (!overrun) CHECK(chunk == std::max<long long>(math::decode_min_chunk, (total * readers + target - 1) / target));
  }
}

TEST_CASE("a 1k-token context fills the grid with minimum-size splits") {
  // Llama-3-8B on an H100: 8 KV heads, one head batch, 132 SMs x 3 blocks.
  const int bound = math::decode_split_bound(1024, 8, 396);
  CHECK(bound == 16);
  CHECK(math::decode_chunk(1024, 1024, 8, 396, bound) == math::decode_min_chunk);
  CHECK(math::decode_splits(1024, math::decode_min_chunk) * 8 == 128);
}
