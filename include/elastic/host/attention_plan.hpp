// How the host executor cuts one attention call into tasks for its thread
// pool.
//
// A tile is up to simd::max_attention_rows query rows that read the same KV
// head of the same sequence: the query heads of a GQA group (all of them
// when the group has at most 16, else 16 at a time) times a block of
// consecutive tokens of the sequence (as many as fit: 16 with one head per
// group, 4 with Llama-3's 4, 5 with SmolLM2's 3). One pass of the vector
// kernel over the tile's key and value rows serves all of its rows, so a
// KV row is read once per tile instead of once per query head and token.
//
// When the tiles are too few to keep every thread busy (a single long
// sequence in decode), each tile's positions are cut into splits of whole
// kernel chunks, computed as separate tasks and merged afterwards in split
// order, so the result does not depend on which thread ran what. Tiles are
// ordered longest first (the causal tiles at the end of a long prefill) so
// that the short ones fill in at the end.
#pragma once

#include <algorithm>
#include <cstddef>
#include <tuple>
#include <vector>

#include "elastic/core/attention_batch.hpp"
#include "elastic/host/simd/attention_tile_call.hpp"
#include "elastic/math/decode_splits.hpp"

namespace elastic::host::kernels {

struct AttentionTile {
  int sequence;     // in the batch
  int kv_head;
  int first_head;   // first query head of the tile
  int heads;        // query heads of the tile
  int first_token;  // packed index of the tile's first token
  int tokens;       // consecutive tokens of the sequence, first_token onwards
  int positions;    // cache positions the tile's last token sees
  int splits;       // position ranges computed apart (1: the tile writes its output directly)
  int split_length;  // positions per split, whole kernel chunks
  std::size_t first_partial;  // the first split's partial state in AttentionPlan::partials

  int rows() const { return heads * tokens; }
};

struct AttentionTask {
  int tile;
  int split;
};

// Positions a split covers at least: below this, the merge and the repeated
// query set-up cost more than the parallelism gains.
inline constexpr int min_split_positions = 256;

// The most splits a tile is cut into.
inline constexpr int max_splits = 64;

// The plan of one call, rebuilt by each call in storage that keeps its
// capacity from call to call.
struct AttentionPlan {
  std::vector<int> first_token;  // per sequence, and the total at the end
  std::vector<AttentionTile> tiles;
  std::vector<AttentionTask> tasks;
  std::size_t partial_floats = 0;  // split states: per split and row, max, sum and head_dim accumulators

  int sequence_of(int token) const {
    return static_cast<int>(std::upper_bound(first_token.begin(), first_token.end(), token) - first_token.begin()) -
           1;
  }

  // Cuts the call into tiles and tasks for a pool of `threads` threads.
  void build(const AttentionBatch& batch, int heads, int kv_heads, int group_size, int head_dim, unsigned threads) {
    first_token.assign(1, 0);
    for (int length : batch.new_lengths) first_token.push_back(first_token.back() + length);
    make_tiles(batch, heads, kv_heads, group_size);
    split_tiles(head_dim, threads);
  }

 private:
  void make_tiles(const AttentionBatch& batch, int heads, int kv_heads, int group_size) {
    constexpr int max_rows = simd::max_attention_rows;
    const int heads_per_tile = std::min(group_size, max_rows);
    const int tokens_per_tile = max_rows / heads_per_tile;
    tiles.clear();
    for (std::size_t s = 0; s < batch.sequences(); ++s) {
      const int length = batch.new_lengths[s];
      for (int kv_head = 0; kv_head < kv_heads; ++kv_head) {
        const int group_end = std::min(heads, (kv_head + 1) * group_size);
        for (int head = kv_head * group_size; head < group_end; head += heads_per_tile)
          for (int j = 0; j < length; j += tokens_per_tile) {
            const int tokens = std::min(tokens_per_tile, length - j);
            tiles.push_back({static_cast<int>(s), kv_head, head, std::min(heads_per_tile, group_end - head),
                             first_token[s] + j, tokens, batch.cached_lengths[s] + j + tokens, 1, 0, 0});
          }
      }
    }
    // Longest first, ties in the order made (std::sort, unlike
    // std::stable_sort, takes no buffer from the heap).
    std::sort(tiles.begin(), tiles.end(), [](const AttentionTile& a, const AttentionTile& b) {
      return std::tuple(-a.positions, a.sequence, a.kv_head, a.first_head, a.first_token) <
             std::tuple(-b.positions, b.sequence, b.kv_head, b.first_head, b.first_token);
    });
  }

  // Splits the tiles when there are fewer than four per thread, aiming at
  // eight tasks per thread in all.
  void split_tiles(int head_dim, unsigned threads) {
    const long long wanted = 8LL * threads;
    const bool split = static_cast<long long>(tiles.size()) < 4LL * threads;
    tasks.clear();
    partial_floats = 0;
    for (std::size_t i = 0; i < tiles.size(); ++i) {
      AttentionTile& tile = tiles[i];
      tile.split_length = tile.positions;
      if (split) {
        const long long by_grid = math::ceil_div(wanted, static_cast<long long>(tiles.size()));
        const long long by_length = tile.positions / min_split_positions;
        const long long splits = std::clamp<long long>(std::min(by_grid, by_length), 1, max_splits);
        tile.split_length =
            static_cast<int>(math::ceil_div(math::ceil_div(tile.positions, splits), simd::attention_chunk) * simd::attention_chunk);
      }
      tile.splits = static_cast<int>(math::ceil_div(tile.positions, tile.split_length));
      if (tile.splits > 1) {
        tile.first_partial = partial_floats;
        partial_floats += static_cast<std::size_t>(tile.splits) * tile.rows() * (head_dim + 2);
      }
      for (int k = 0; k < tile.splits; ++k) tasks.push_back({static_cast<int>(i), k});
    }
  }
};

}  // namespace elastic::host::kernels
