// What the owners of one sequence (HostSequence, DeviceSequence) share,
// whatever memory they hold it in: the checks on the tokens an append brings,
// the cut of a long append into chunks, and the batch of one forward of a
// lone sequence in cache slot 0. Both owners throw the same messages, each
// naming its own call.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string_view>

#include "elastic/core/attention_batch.hpp"
#include "elastic/core/error.hpp"

namespace elastic::model {

// Throws unless `tokens` is not empty and fits after the `length` of
// `capacity` positions a sequence holds.
inline void check_tokens_fit(std::span<const int> tokens, int length, int capacity, std::string_view op) {
  require(!tokens.empty(), op, ": expected at least one token");
  require(tokens.size() <= static_cast<std::size_t>(capacity - length), op, ": ", tokens.size(),
          " tokens do not fit: the sequence holds ", length, " of its ", capacity, " positions");
}

inline void check_chunk_size(int chunk, std::string_view op) {
  require(chunk > 0, op, ": chunk must be positive, found ", chunk);
}

// Calls step(part) on consecutive parts of `tokens` of at most `chunk`
// tokens each, in order.
template <class Step>
void for_each_chunk(std::span<const int> tokens, int chunk, Step&& step) {
  const auto size = static_cast<std::size_t>(chunk);
  for (std::size_t first = 0; first < tokens.size(); first += size)
    step(tokens.subspan(first, std::min(size, tokens.size() - first)));
}

// One forward of a lone sequence: cache slot 0 holds `cached` positions and
// `fresh` new tokens follow. batch() views this object's fields, so it is
// valid while the object lives where it is.
struct LoneSequenceStep {
  int slot = 0;
  int cached = 0;
  int fresh = 0;

  AttentionBatch batch() const { return {std::span(&slot, 1), std::span(&cached, 1), std::span(&fresh, 1), {}}; }
};

}  // namespace elastic::model
