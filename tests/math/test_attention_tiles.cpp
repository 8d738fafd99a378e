// The index, mask and softmax maths of the tiled prefill attention kernel
// (math/attention_tiles.hpp), driven lane by lane and row by row on the host:
// the ldmatrix addresses deliver exactly the m16n8k16 operand fragments the
// PTX ISA defines (modelled here from its fragment tables), the score
// accumulators are the A operand of O += P V element for element, the K/V
// tile classification (whole / partial / none) agrees with the causal mask
// position by position, the base-2 online softmax over masked tiles gives
// math::softmax_push's weights, with fully masked tiles staying finite, and
// the split of a query tile's K/V range across blocks: splits start on K/V
// tile edges, cover every visible position once, are never empty, mask only
// where they reach the diagonal, stay within the workspace bounds for every
// head count, and their states merged with math::softmax_merge give the
// unsplit softmax.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "elastic/math/attention_tiles.hpp"

using namespace elastic;
using math::TileCoord;

namespace {

constexpr int kLanes = 32;

bool same(TileCoord a, TileCoord b) { return a.row == b.row && a.column == b.column; }

// PTX ISA, mma.m16n8k16 with 16-bit A and B: register reg (0..3) of a lane
// holds elements a_{2 reg} (half 0) and a_{2 reg + 1} (half 1).
TileCoord a_fragment(int lane, int reg, int half) {
  return {lane / 4 + 8 * (reg % 2), 2 * (lane % 4) + half + 8 * (reg / 2)};
}
// Register reg (0..1) of B holds b_{2 reg}, b_{2 reg + 1}: (k, n) as (row, column).
TileCoord b_fragment(int lane, int reg, int half) { return {2 * (lane % 4) + half + 8 * reg, lane / 4}; }

// ldmatrix.x4 as the PTX ISA describes it: lane l gives the address of row
// l % 8 of matrix l / 8, and register m of lane t receives row t / 4,
// columns 2 (t % 4) and 2 (t % 4) + 1 of matrix m (with .trans: column t / 4,
// rows 2 (t % 4) and 2 (t % 4) + 1). Returns the element of the 16x16 block
// that (lane, register m, half) receives, after checking that the eight
// addresses of each matrix are its eight consecutive rows at one 8-column
// boundary.
template <class Addressing>
TileCoord ldmatrix_element(Addressing address, int lane, int m, int half, bool transposed) {
  const TileCoord origin = address(8 * m);
  CHECK(origin.column % 8 == 0);
  for (int i = 0; i < 8; ++i) CHECK(same(address(8 * m + i), {origin.row + i, origin.column}));
  if (transposed) return {origin.row + 2 * (lane % 4) + half, origin.column + lane / 4};
  return {origin.row + lane / 4, origin.column + 2 * (lane % 4) + half};
}

// softmax_push over every score (scaled) in order, with the running
// weighted sum of the values: the reference the tiled forms must give.
struct PushedSoftmax {
  math::SoftmaxState state;
  float output = 0.0f;
};

PushedSoftmax push_all(const std::vector<float>& scores, const std::vector<float>& values, float scale) {
  PushedSoftmax pushed;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    float rescale = 0.0f, weight = 0.0f;
    math::softmax_push(pushed.state, scores[i] * scale, rescale, weight);
    pushed.output = pushed.output * rescale + weight * values[i];
  }
  return pushed;
}

}  // namespace

TEST_CASE("ldmatrix addresses deliver the m16n8k16 operand fragments of Q, K and V") {
  for (int lane = 0; lane < kLanes; ++lane)
    for (int m = 0; m < 4; ++m)
      for (int half = 0; half < 2; ++half) {
        CAPTURE(lane);
        CAPTURE(m);
        // Q, row-major [rows x head dims], no .trans: the A operand.
        CHECK(same(ldmatrix_element(math::ldmatrix_down_then_across, lane, m, half, false),
                   a_fragment(lane, m, half)));
        // K, row-major [positions x head dims] = [n x k], no .trans: register
        // m is b[m % 2] of n-tile m / 2.
        const TileCoord key = ldmatrix_element(math::ldmatrix_across_then_down, lane, m, half, false);
        const TileCoord key_b = b_fragment(lane, m % 2, half);
        CHECK(same(key, {key_b.column + 8 * (m / 2), key_b.row}));
        // V, row-major [positions x head dims] = [k x n], .trans: register m
        // is b[m % 2] of n-tile m / 2.
        const TileCoord value = ldmatrix_element(math::ldmatrix_down_then_across, lane, m, half, true);
        const TileCoord value_b = b_fragment(lane, m % 2, half);
        CHECK(same(value, {value_b.row, value_b.column + 8 * (m / 2)}));
      }
}

TEST_CASE("the accumulators cover an m16n8 tile once and are the A operand of P V") {
  std::vector<int> hits(16 * 8, 0);
  for (int lane = 0; lane < kLanes; ++lane)
    for (int i = 0; i < 4; ++i) {
      // PTX ISA: c0, c1 at row lane / 4, c2, c3 eight rows below, columns 2 (lane % 4) + {0, 1}.
      CHECK(math::accumulator_row(lane, i) == lane / 4 + 8 * (i / 2));
      CHECK(math::accumulator_column(lane, i) == 2 * (lane % 4) + i % 2);
      ++hits[static_cast<std::size_t>(math::accumulator_row(lane, i) * 8 + math::accumulator_column(lane, i))];
    }
  CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));

  // P over 64 positions: k-step k of O += P V reads columns [16k, 16k + 16).
  for (int lane = 0; lane < kLanes; ++lane)
    for (int k = 0; k < 4; ++k)
      for (int reg = 0; reg < 4; ++reg)
        for (int half = 0; half < 2; ++half) {
          const int tile = math::probability_tile(k, reg);
          const int element = math::probability_element(reg, half);
          const TileCoord held = {math::accumulator_row(lane, element),
                                  8 * tile + math::accumulator_column(lane, element)};
          const TileCoord wanted = a_fragment(lane, reg, half);
          CHECK(same(held, {wanted.row, 16 * k + wanted.column}));
        }
}

TEST_CASE("K/V tiles are skipped, masked or left unmasked exactly as the causal mask requires") {
  constexpr int kTileRows = 128;
  constexpr int kBand = 16;
  constexpr int kColumns = 64;
  for (int cached : {0, 5, 37, 64, 130})
    for (int fresh : {1, 17, 64, 127, 128, 129, 300})
      for (int first_row = 0; first_row < fresh; first_row += kTileRows) {
        CAPTURE(cached);
        CAPTURE(fresh);
        CAPTURE(first_row);
        const math::QueryRows rows{0, std::min(kTileRows, fresh - first_row), cached + first_row + 1};
        // Row r sees its own position cached + first_row + r; padding rows the last valid row's.
        for (int r = 0; r < kTileRows; ++r)
          CHECK(rows.limit(r) == cached + first_row + std::min(r, rows.rows - 1) + 1);
        const int block_limit = rows.limit(kTileRows - 1);
        const int tiles = math::key_tile_count(block_limit, kColumns);
        CHECK(tiles * kColumns >= block_limit);
        CHECK((tiles - 1) * kColumns < block_limit);
        for (int band = 0; band < kTileRows; band += kBand) {
          int partial = 0;
          for (int j = 0; j < tiles; ++j) {
            int seen = 0;
            for (int r = band; r < band + kBand; ++r)
              for (int p = j * kColumns; p < (j + 1) * kColumns; ++p) seen += p < rows.limit(r);
            const math::KeyTileVisibility expected = seen == 0                  ? math::KeyTileVisibility::none
                                                     : seen == kBand * kColumns ? math::KeyTileVisibility::whole
                                                                                : math::KeyTileVisibility::partial;
            CHECK(math::key_tile_visibility(rows, band, kBand, j * kColumns, kColumns) == expected);
            partial += expected == math::KeyTileVisibility::partial;
          }
          // A band's 16 limits span at most 15 positions: at most two tiles
          // pay for the mask, one when the diagonal does not cross a tile
          // edge, and at least one unless all its rows share one limit.
          CHECK(partial <= 2);
          if (band + 1 < rows.rows) CHECK(partial >= 1);
          if (cached % kColumns == 0 && first_row + band + kBand <= fresh) CHECK(partial == 1);
        }
      }
}

TEST_CASE("the base-2 online softmax over masked tiles gives softmax_push's weights") {
  constexpr float kScale = 0.088388f;  // 1 / sqrt(128)
  const float log2_scale = math::log2_softmax_scale(kScale);
  CHECK(std::exp2(3.0f * log2_scale) == doctest::Approx(std::exp(3.0f * kScale)).epsilon(1e-6));
  CHECK(math::softmax_exp2(-INFINITY) == 0.0f);

  std::mt19937 engine(11);
  std::uniform_real_distribution<float> uniform(-30.0f, 30.0f);
  std::bernoulli_distribution masked(0.3);
  constexpr int kTileColumns = 8;
  for (int trial = 0; trial < 200; ++trial) {
    const int tiles = 1 + trial % 6;
    std::vector<float> scores(static_cast<std::size_t>(tiles * kTileColumns));
    std::vector<float> values(scores.size());
    for (std::size_t i = 0; i < scores.size(); ++i) {
      // The first tile of every other trial is fully masked.
      const bool hidden = (trial % 2 == 0 && i < kTileColumns) || masked(engine);
      scores[i] = hidden ? -INFINITY : uniform(engine);
      values[i] = uniform(engine);
    }
    scores.back() = uniform(engine);  // at least one visible position

    // The kernel's order: a tile's raw maximum, scaled, starts the tile; the
    // weights are exp2(s * log2_scale - offset).
    math::SoftmaxState state;
    float output = 0.0f;
    for (int t = 0; t < tiles; ++t) {
      float tile_max = -INFINITY;
      for (int c = 0; c < kTileColumns; ++c)
        tile_max = std::max(tile_max, scores[static_cast<std::size_t>(t * kTileColumns + c)]);
      const float rescale = math::begin_tile(state, tile_max * log2_scale);
      CHECK(std::isfinite(rescale));
      output *= rescale;
      const float offset = math::exponent_offset(state);
      for (int c = 0; c < kTileColumns; ++c) {
        const auto i = static_cast<std::size_t>(t * kTileColumns + c);
        const float weight = math::softmax_exp2(std::fma(scores[i], log2_scale, -offset));
        CHECK(std::isfinite(weight));
        state.sum += weight;
        output += weight * values[i];
      }
      if (tile_max == -INFINITY && t == 0) {
        CHECK(state.max == -INFINITY);
        CHECK(state.sum == 0.0f);
      }
    }

    const PushedSoftmax pushed = push_all(scores, values, kScale);
    const math::SoftmaxState& reference = pushed.state;
    const float reference_output = pushed.output;
    CAPTURE(trial);
    CHECK(state.max == doctest::Approx(reference.max * math::log2_e).epsilon(1e-5));
    CHECK(output / state.sum == doctest::Approx(reference_output / reference.sum).epsilon(1e-5));
  }
}

namespace {

// One query tile of a ragged prefill: what its last row sees.
struct TileLimit {
  int limit;
  int first_limit;  // what its first row sees
  int rows;
};

std::vector<TileLimit> query_tiles(const std::vector<int>& cached, const std::vector<int>& fresh, int tile_rows) {
  std::vector<TileLimit> tiles;
  for (std::size_t s = 0; s < cached.size(); ++s)
    for (int row = 0; row < fresh[s]; row += tile_rows) {
      const int rows = std::min(tile_rows, fresh[s] - row);
      tiles.push_back({cached[s] + row + rows, cached[s] + row + 1, rows});
    }
  return tiles;
}

// The split plan of executor.cuh's make_prefill_split_plan over these tiles.
struct SplitTotals {
  int chunk;
  long long key_tiles;
  long long work;
  long long partial_slots;  // per head
};

SplitTotals split_totals(const std::vector<TileLimit>& tiles, int heads, long long target, int columns) {
  long long key_tiles = 0;
  int longest = 0;
  for (const TileLimit& tile : tiles) {
    key_tiles += math::key_tile_count(tile.limit, columns);
    longest = std::max(longest, math::key_tile_count(tile.limit, columns));
  }
  SplitTotals totals{math::prefill_split_chunk(static_cast<long long>(tiles.size()), key_tiles, longest, heads, target,
                                               columns),
                     key_tiles, 0, 0};
  for (const TileLimit& tile : tiles) {
    const int splits = math::prefill_splits(tile.limit, totals.chunk);
    totals.work += splits;
    if (splits > 1) totals.partial_slots += splits;
  }
  return totals;
}

}  // namespace

TEST_CASE("prefill splits start on K/V tile edges, cover each visible position once and mask only at the diagonal") {
  constexpr int kTileRows = 128;
  constexpr int kBand = 16;
  constexpr int kColumns = 64;
  for (int cached : {0, 5, 64, 130, 900})
    for (int fresh : {1, 17, 128, 200, 300})
      for (int chunk_tiles : {1, 2, 3, 5, 40})
        for (int first_row = 0; first_row < fresh; first_row += kTileRows) {
          CAPTURE(cached);
          CAPTURE(fresh);
          CAPTURE(chunk_tiles);
          CAPTURE(first_row);
          const math::QueryRows rows{0, std::min(kTileRows, fresh - first_row), cached + first_row + 1};
          const int limit = rows.limit(kTileRows - 1);
          const int chunk = chunk_tiles * kColumns;
          const int splits = math::prefill_splits(limit, chunk);
          std::vector<int> covered(static_cast<std::size_t>(limit), 0);
          int expected_begin = 0;
          for (int split = 0; split < splits; ++split) {
            const math::KeyRange range = math::prefill_split_range(limit, chunk, split);
            CHECK(range.begin == expected_begin);
            CHECK(range.begin % kColumns == 0);
            CHECK(range.begin < range.end);
            CHECK(range.end - range.begin <= chunk);
            for (int p = range.begin; p < range.end; ++p) ++covered[static_cast<std::size_t>(p)];
            expected_begin = range.end;
            // The kernel's K/V tiles of this split: masked (partial) or
            // skipped (none) only in a split whose tiles reach past what the
            // tile's first row sees (the diagonal, or the sequence's end
            // inside a K/V tile).
            const int tiles = math::key_tile_count(range.end - range.begin, kColumns);
            bool masked = false;
            for (int j = 0; j < tiles; ++j)
              for (int band = 0; band < kTileRows; band += kBand)
                masked = masked || math::key_tile_visibility(rows, band, kBand, range.begin + j * kColumns,
                                                             kColumns) != math::KeyTileVisibility::whole;
            if (range.begin + tiles * kColumns <= rows.limit(0)) CHECK_FALSE(masked);
            if (split + 1 == splits && rows.rows > 1) CHECK(masked);
          }
          CHECK(expected_begin == limit);
          CHECK(std::all_of(covered.begin(), covered.end(), [](int c) { return c == 1; }));
        }
}

TEST_CASE("the prefill split chunk fills the grid only when needed and stays within the workspace bounds") {
  constexpr int kTileRows = 128;
  constexpr int kColumns = 64;
  constexpr long long kTarget = 132;  // an H100's SMs, one block each

  // One sequence of 512 new tokens: 4 query tiles seeing 2, 4, 6, 8 K/V tiles.
  const std::vector<TileLimit> prompt = query_tiles({0}, {512}, kTileRows);
  const SplitTotals eight = split_totals(prompt, 8, kTarget, kColumns);
  CHECK(eight.chunk == 2 * kColumns);
  CHECK(eight.work == 1 + 2 + 3 + 4);  // 80 blocks at 8 heads, 2 K/V tiles each at most
  CHECK(eight.partial_slots == 2 + 3 + 4);
  const SplitTotals thirty_two = split_totals(prompt, 32, kTarget, kColumns);
  CHECK(thirty_two.chunk == 5 * kColumns);
  CHECK(thirty_two.work == 1 + 1 + 2 + 2);  // 192 blocks at 32 heads, 5 K/V tiles each at most
  const SplitTotals thirty_three = split_totals(prompt, 33, kTarget, kColumns);
  CHECK(thirty_three.work == 4);  // 132 blocks: no split
  CHECK(thirty_three.partial_slots == 0);

  std::mt19937 engine(5);
  std::uniform_int_distribution<int> sequences(1, 6), cached(0, 2000), fresh(1, 700), heads(1, 64);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<int> cached_lengths, fresh_lengths;
    for (int s = sequences(engine); s > 0; --s) {
      cached_lengths.push_back(cached(engine));
      fresh_lengths.push_back(fresh(engine));
    }
    const std::vector<TileLimit> tiles = query_tiles(cached_lengths, fresh_lengths, kTileRows);
    const auto tile_count = static_cast<long long>(tiles.size());
    const int h = heads(engine);
    const long long target = trial % 2 == 0 ? kTarget : 2 * kTarget;
    CAPTURE(trial);
    CAPTURE(h);
    const SplitTotals totals = split_totals(tiles, h, target, kColumns);
    CHECK(totals.chunk % kColumns == 0);
    CHECK(totals.chunk >= kColumns);
    if (tile_count * h >= target) CHECK(totals.work == tile_count);  // enough blocks: no split
    CHECK(totals.work <= math::prefill_work_bound(tile_count, totals.key_tiles, target));
    long long previous_bound = 0;
    for (int fewer = 1; fewer <= h; ++fewer) {
      const long long bound = math::prefill_partial_slot_bound(tile_count, totals.key_tiles, fewer, target);
      CHECK(bound >= previous_bound);
      CHECK(split_totals(tiles, fewer, target, kColumns).partial_slots * fewer <= bound);
      CHECK(split_totals(tiles, fewer, target, kColumns).work <=
            math::prefill_work_bound(tile_count, totals.key_tiles, target));
      previous_bound = bound;
    }
  }
}

TEST_CASE("split states in natural units merged in split order give the unsplit softmax") {
  constexpr float kScale = 0.125f;
  const float log2_scale = math::log2_softmax_scale(kScale);
  constexpr int kColumns = 8;
  std::mt19937 engine(17);
  std::uniform_real_distribution<float> uniform(-20.0f, 20.0f);
  for (int trial = 0; trial < 200; ++trial) {
    const int positions = 1 + trial % 50;
    const int chunk = kColumns * (1 + trial % 3);
    // A row that sees only the first `visible` positions: later splits may
    // see none of theirs.
    const int visible = 1 + trial % positions;
    std::vector<float> scores(static_cast<std::size_t>(positions)), values(scores.size());
    for (std::size_t i = 0; i < scores.size(); ++i) {
      scores[i] = static_cast<int>(i) < visible ? uniform(engine) : -INFINITY;
      values[i] = uniform(engine);
    }

    math::SoftmaxState merged;
    float merged_output = 0.0f;
    for (int split = 0; split < math::prefill_splits(positions, chunk); ++split) {
      const math::KeyRange range = math::prefill_split_range(positions, chunk, split);
      math::SoftmaxState state;  // the kernel's base-2 state over the split's tiles
      float output = 0.0f;
      for (int first = range.begin; first < range.end; first += kColumns) {
        float tile_max = -INFINITY;
        for (int p = first; p < std::min(first + kColumns, range.end); ++p)
          tile_max = std::max(tile_max, scores[static_cast<std::size_t>(p)]);
        output *= math::begin_tile(state, tile_max * log2_scale);
        const float offset = math::exponent_offset(state);
        for (int p = first; p < std::min(first + kColumns, range.end); ++p) {
          const float weight = math::softmax_exp2(std::fma(scores[static_cast<std::size_t>(p)], log2_scale, -offset));
          state.sum += weight;
          output += weight * values[static_cast<std::size_t>(p)];
        }
      }
      float scale_merged = 0.0f, scale_split = 0.0f;
      math::softmax_merge(merged, math::SoftmaxState{math::natural_max(state.max), state.sum}, scale_merged,
                          scale_split);
      CHECK(std::isfinite(scale_merged));
      CHECK(std::isfinite(scale_split));
      merged_output = merged_output * scale_merged + output * scale_split;
    }

    const PushedSoftmax pushed = push_all(scores, values, kScale);
    const math::SoftmaxState& reference = pushed.state;
    const float reference_output = pushed.output;
    CAPTURE(trial);
    CHECK(merged.max == doctest::Approx(reference.max).epsilon(1e-5));
    CHECK(merged_output / merged.sum == doctest::Approx(reference_output / reference.sum).epsilon(1e-5));
  }
}
