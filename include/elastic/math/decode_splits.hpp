// How decode attention (flash-decoding) cuts the sequences of a batch into
// splits, written once for the host and the device.
//
// Every sequence of a decode batch reads its `visible` KV positions once per
// reader (a thread block per KV head and head batch). The positions are cut
// into splits of `chunk` positions, one block each, so that the whole batch
// makes about `target_blocks` blocks (one resident wave), never splits of
// fewer than decode_min_chunk positions. The chunk is one number per call,
// computed on the device from the call's lengths (so a captured decode step
// follows its sequences as they grow), while the grid and the workspace are
// sized once, at plan time, from bounds that hold for every length up to the
// plan's maximum context:
//   - a sequence never has more than decode_split_bound() splits (the grid's
//     split dimension);
//   - the batch never has more than decode_partial_slot_bound() splits in all
//     (the partials the workspace holds).
// decode_chunk() enforces the first bound even for lengths past the plan's
// maximum, so the grid and the workspace stay in bounds whatever the lengths.
// tests/math/test_decode_splits.cpp checks both bounds on random batches.
#pragma once

#include "elastic/core/macros.hpp"

namespace elastic::math {

// The fewest KV positions a split covers.
inline constexpr int decode_min_chunk = 64;

ELASTIC_HOST_DEVICE constexpr long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

// The most splits one sequence of at most max_visible positions gets when
// every position is read by `readers` blocks and the grid aims at
// target_blocks blocks (all three at least 1).
ELASTIC_HOST_DEVICE constexpr int decode_split_bound(int max_visible, long long readers, long long target_blocks) {
  const long long by_length = ceil_div(max_visible > 1 ? max_visible : 1, decode_min_chunk);
  const long long by_grid = ceil_div(target_blocks, readers);
  return static_cast<int>(by_length < by_grid ? by_length : by_grid);
}

// The chunk of a call whose sequences see `total_visible` positions in all,
// `longest` at most: the grid's share, at least decode_min_chunk, and large
// enough that no sequence has more than split_bound splits.
ELASTIC_HOST_DEVICE constexpr int decode_chunk(long long total_visible, int longest, long long readers,
                                               long long target_blocks, int split_bound) {
  long long chunk = ceil_div(total_visible * readers, target_blocks);
  if (chunk < decode_min_chunk) chunk = decode_min_chunk;
  const long long by_bound = ceil_div(longest, split_bound);
  return static_cast<int>(chunk > by_bound ? chunk : by_bound);
}

// Splits of a sequence with `visible` positions (at least 1 in decode).
ELASTIC_HOST_DEVICE constexpr int decode_splits(int visible, int chunk) {
  return static_cast<int>(ceil_div(visible, chunk));
}

// The most splits a batch of `sequences` sequences of at most max_visible
// positions has in all: split_bound each, and the grid's share plus one
// rounding per sequence (each sequence's splits are at most visible / chunk
// + 1, and chunk >= total_visible * readers / target_blocks).
ELASTIC_HOST_DEVICE constexpr long long decode_partial_slot_bound(int sequences, int max_visible, long long readers,
                                                                  long long target_blocks) {
  const long long by_bound =
      static_cast<long long>(sequences) * decode_split_bound(max_visible, readers, target_blocks);
  const long long by_grid = target_blocks / readers + sequences;
  return by_bound < by_grid ? by_bound : by_grid;
}

}  // namespace elastic::math
