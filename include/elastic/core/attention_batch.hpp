// The description of one attention call over a ragged batch of sequences.
//
// The new tokens of all sequences are packed in order: sequence s owns rows
// [first_token(s), first_token(s) + new_lengths[s]) of the q/k/v activations.
// Sequence s lives in cache slot cache_slots[s], which already holds
// cached_lengths[s] positions; its new tokens are appended after them, and
// new token j attends to cache positions [0, cached_lengths[s] + j] (causal).
// Prefill is cached_lengths = 0, decode is new_lengths = 1, chunked prefill
// anything between, all in one call. positions[t] is the RoPE position of
// packed token t; empty means cached_lengths[s] + j. The arrays are host
// memory: executors validate them here and upload what their kernels need.
// Lengths are int (the kernels' index type); validate() does its sums in
// 64 bits, so no length, however large, wraps around past its checks.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "elastic/core/counts.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/kv_cache.hpp"
#include "elastic/core/tensor.hpp"

namespace elastic {

struct AttentionBatch {
  std::span<const int> cache_slots;
  std::span<const int> cached_lengths;
  std::span<const int> new_lengths;
  std::span<const int> positions;  // optional: one per packed token

  std::size_t sequences() const { return new_lengths.size(); }

  // The packed token count (summed in 64 bits; validate() bounds it).
  index_t tokens() const {
    index_t total = 0;
    for (int length : new_lengths) total += length;
    return total;
  }

  // True when every sequence brings exactly one new token.
  bool is_decode() const {
    for (int length : new_lengths)
      if (length != 1) return false;
    return true;
  }

  int position(std::size_t sequence, int first_token, int j) const {
    return positions.empty() ? cached_lengths[sequence] + j : positions[first_token + j];
  }

  // Checks the description against a cache and a token count; throws
  // elastic::Error saying what is inconsistent. Called before any write.
  void validate(const KVCacheShape& cache, index_t packed_tokens, int max_positions) const {
    const std::size_t n = sequences();
    require(cache_slots.size() == n && cached_lengths.size() == n,
            "attention batch: cache_slots, cached_lengths and new_lengths must have one entry per sequence, found ",
            cache_slots.size(), ", ", cached_lengths.size(), " and ", n);
    require(cache.slots >= 0 && cache.capacity >= 0, "attention batch: the cache shape must be non-negative, found ",
            cache.slots, " slots of capacity ", cache.capacity);
    check_distinct_slots();
    index_t total = 0;
    for (std::size_t s = 0; s < n; ++s) {
      const int slot = cache_slots[s];
      require(slot >= 0 && slot < cache.slots, "attention batch: sequence ", s, " uses cache slot ", slot,
              ", expected 0 <= slot < ", cache.slots);
      require(cached_lengths[s] >= 0 && new_lengths[s] >= 0, "attention batch: sequence ", s,
              " has negative lengths (cached ", cached_lengths[s], ", new ", new_lengths[s], ")");
      const index_t needed = index_t{cached_lengths[s]} + new_lengths[s];
      require(needed <= cache.capacity, "attention batch: sequence ", s, " needs ", needed, " cache positions (",
              cached_lengths[s], " cached + ", new_lengths[s], " new), but the cache holds ", cache.capacity);
      total += new_lengths[s];
    }
    require(total <= detail::int_max, "attention batch: new_lengths add up to ", total,
            " tokens, more than the ", detail::int_max, " one call can take");
    require(total == packed_tokens, "attention batch: new_lengths add up to ", total,
            " tokens but the activations have ", packed_tokens, " rows");
    require(positions.empty() || static_cast<index_t>(positions.size()) == total, "attention batch: ",
            positions.size(), " positions given for ", total, " tokens (expected one per token, or none)");
    int first = 0;
    for (std::size_t s = 0; s < n; ++s) {
      for (int j = 0; j < new_lengths[s]; ++j) {
        const int p = position(s, first, j);
        require(p >= 0 && p < max_positions, "attention batch: token ", first + j, " has position ", p,
                ", expected 0 <= position < ", max_positions);
      }
      first += new_lengths[s];
    }
  }

 private:
  // Two sequences may not share a slot. Small batches (every decode loop's)
  // compare pairwise and allocate nothing; larger ones sort a copy.
  void check_distinct_slots() const {
    const auto duplicate = [](int slot) {
      throw Error(detail::concat("attention batch: cache slot ", slot, " is used by two sequences"));
    };
    if (cache_slots.size() <= 64) {
      for (std::size_t s = 0; s < cache_slots.size(); ++s)
        for (std::size_t other = s + 1; other < cache_slots.size(); ++other)
          if (cache_slots[s] == cache_slots[other]) duplicate(cache_slots[s]);
      return;
    }
    std::vector<int> sorted(cache_slots.begin(), cache_slots.end());
    std::sort(sorted.begin(), sorted.end());
    const auto repeated = std::adjacent_find(sorted.begin(), sorted.end());
    if (repeated != sorted.end()) duplicate(*repeated);
  }
};

}  // namespace elastic
