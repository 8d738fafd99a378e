// The index, mask and softmax maths of the tiled (flash) prefill attention
// kernel (cuda/attention_prefill_kernel.cuh), apart from the kernel so that
// host tests check the very functions it runs:
//
//   - where the m16n8k16 accumulators sit in the warp (PTX ISA, "matrix
//     fragments for mma.m16n8k16") and which lane addresses which row for
//     ldmatrix.x4, so that S = Q K^T reads Q and K, and O += P V reads P
//     straight from S's accumulators and V through ldmatrix.trans;
//   - the causal visibility of a K/V tile to a band of query rows: every
//     position visible (no mask), none (the tile is skipped), or some (the
//     only tiles that pay for masking: those the diagonal, or the end of the
//     sequence, crosses);
//   - the online softmax in base 2: the softmax scale times log2(e) is folded
//     into the scores, so each weight is one exp2 of a fused multiply-add,
//     exactly exp(scale * s - max) up to rounding; fully masked rows stay
//     safe (no exp of -inf - -inf), as with math::softmax_push;
//   - the split of a query tile's K/V range across blocks when a call's
//     tiles alone would leave most of the GPU idle (flash-decoding applied
//     to prefill): one chunk of K/V positions per call, a whole number of
//     K/V tiles, so every split starts on a tile edge, every visible
//     position falls in exactly one split and only the splits that reach
//     the diagonal mask; each split's (max, sum) state, in natural units,
//     merges with math::softmax_merge.
#pragma once

#include <cmath>

#include "elastic/core/macros.hpp"
#include "elastic/math/decode_splits.hpp"
#include "elastic/math/online_softmax.hpp"

namespace elastic::math {

// Row and column of one m16n8 float32 accumulator element (i = 0..3) that
// `lane` holds: rows lane / 4 and lane / 4 + 8, columns 2 (lane % 4) + {0, 1}.
ELASTIC_HOST_DEVICE constexpr int accumulator_row(int lane, int i) { return lane / 4 + i / 2 * 8; }
ELASTIC_HOST_DEVICE constexpr int accumulator_column(int lane, int i) { return lane % 4 * 2 + i % 2; }

// The A operand of k-step k of O += P V is the probabilities of columns
// [16k, 16k + 16): register `reg` (0..3) of it packs accumulator elements
// probability_element(reg, 0) and probability_element(reg, 1) of score
// n-tile probability_tile(k, reg).
ELASTIC_HOST_DEVICE constexpr int probability_tile(int k, int reg) { return 2 * k + reg / 2; }
ELASTIC_HOST_DEVICE constexpr int probability_element(int reg, int half) { return 2 * (reg % 2) + half; }

struct TileCoord {
  int row;
  int column;
};

// ldmatrix.x4 reads four 8x8 matrices of 16-bit elements; lane l gives the
// address of row l % 8 of matrix l / 8. Two arrangements of the four
// matrices within a 16x16 block of a row-major shared tile:
//   down_then_across: matrix m at rows (m & 1) * 8, columns (m >> 1) * 8.
//     Without .trans these are the A operand registers of m16n8k16 (Q);
//     with .trans, the B operands of two neighbouring n-tiles of a [k x n]
//     tile (V): {r0, r1} for columns 0-7, {r2, r3} for columns 8-15.
//   across_then_down: matrix m at rows (m >> 1) * 8, columns (m & 1) * 8.
//     Without .trans, the B operands of two n-tiles of an [n x k] tile (K):
//     {r0, r1} for rows 0-7, {r2, r3} for rows 8-15.
ELASTIC_HOST_DEVICE constexpr TileCoord ldmatrix_down_then_across(int lane) {
  return {(lane / 8 & 1) * 8 + lane % 8, (lane / 8 >> 1) * 8};
}
ELASTIC_HOST_DEVICE constexpr TileCoord ldmatrix_across_then_down(int lane) {
  return {(lane / 8 >> 1) * 8 + lane % 8, (lane / 8 & 1) * 8};
}

// Where the rows of one query tile come from and what they may see: row r
// sees cache positions [0, limit(r)). Rows past the sequence's end (padding,
// computed but not stored) see what its last row sees.
struct QueryRows {
  int first_token;  // packed row of the tile's first query
  int rows;         // valid rows
  int first_limit;  // cached length + first new row of the tile + 1

  ELASTIC_HOST_DEVICE constexpr int limit(int row) const { return first_limit + (row < rows ? row : rows - 1); }
};

// K/V tiles of `columns` positions that cover [0, limit).
ELASTIC_HOST_DEVICE constexpr int key_tile_count(int limit, int columns) { return (limit + columns - 1) / columns; }

enum class KeyTileVisibility {
  whole,    // every row of the band sees every position of the tile: no mask
  partial,  // the mask differs inside the tile: compute and mask
  none,     // no row sees any position: skip the tile
};

// How the band of query rows [first_row, first_row + band_rows) of `rows`
// sees K/V positions [first_position, first_position + columns). Limits
// grow with the row, so the band's first and last rows decide.
ELASTIC_HOST_DEVICE constexpr KeyTileVisibility key_tile_visibility(const QueryRows& rows, int first_row,
                                                                    int band_rows, int first_position,
                                                                    int columns) {
  if (first_position >= rows.limit(first_row + band_rows - 1)) return KeyTileVisibility::none;
  if (first_position + columns <= rows.limit(first_row)) return KeyTileVisibility::whole;
  return KeyTileVisibility::partial;
}

inline constexpr float log2_e = 1.44269504088896340736f;

// The factor that turns a raw score q.k into the exponent of the base-2
// softmax: exp(scale * s) = exp2(scale * log2(e) * s).
ELASTIC_HOST_DEVICE constexpr float log2_softmax_scale(float scale) { return scale * log2_e; }

// 2^x; 0 for -inf. On the device one MUFU.EX2 (ex2.approx.ftz: about 2 ulp,
// subnormal results flush to 0, which no softmax weight notices).
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE float softmax_exp2(float x) {
#if ELASTIC_DEVICE_PASS
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return std::exp2(x);
#endif
}

// Starts a tile of base-2 scores whose maximum is tile_max (-inf when all are
// masked): raises the state's maximum and returns the factor the row's
// earlier sum and output must be scaled by. The caller then adds
// softmax_exp2(score - exponent_offset(state)) of each score to the sum.
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE float begin_tile(SoftmaxState& state, float tile_max) {
  const float new_max = tile_max > state.max ? tile_max : state.max;
  // Nothing but -inf so far: nothing to rescale (exp2(-inf - -inf) is NaN).
  const float rescale = new_max == -INFINITY ? 1.0f : softmax_exp2(state.max - new_max);
  state.max = new_max;
  state.sum *= rescale;
  return rescale;
}

// What each score's exponent is taken relative to: the maximum, or 0 while
// it is -inf, so masked scores give exp2(-inf) = 0, never NaN.
ELASTIC_HOST_DEVICE constexpr float exponent_offset(const SoftmaxState& state) {
  return state.max == -INFINITY ? 0.0f : state.max;
}

// The state's maximum in natural units: the kernel keeps it in base 2
// (scaled by log2(e)), math::softmax_merge takes exp of differences.
ELASTIC_HOST_DEVICE constexpr float natural_max(float base2_max) { return base2_max * 0.693147180559945309f; }

// K/V positions [begin, end) of one split.
struct KeyRange {
  int begin;
  int end;
};

// The split chunk of a prefill call, in K/V positions (a multiple of
// `columns`): `tiles` query tiles that see key_tiles K/V tiles of `columns`
// positions in all, longest_key_tiles at most, each run by `heads` blocks,
// on a device that holds target_blocks blocks at once. No split (the
// longest tile's range in one chunk) when the unsplit grid already holds
// target_blocks; otherwise each block's share of the call's K/V tiles, at
// least one tile.
ELASTIC_HOST_DEVICE constexpr int prefill_split_chunk(long long tiles, long long key_tiles, int longest_key_tiles,
                                                      int heads, long long target_blocks, int columns) {
  const int whole = (longest_key_tiles > 1 ? longest_key_tiles : 1) * columns;
  if (heads <= 0 || tiles * heads >= target_blocks) return whole;
  const long long share = ceil_div(key_tiles * heads, target_blocks);
  return share >= longest_key_tiles ? whole : static_cast<int>(share) * columns;
}

// Splits of a query tile whose last row sees [0, limit) (limit >= 1).
ELASTIC_HOST_DEVICE constexpr int prefill_splits(int limit, int chunk) {
  return static_cast<int>(ceil_div(limit, chunk));
}

// The positions split `split` of that tile covers.
ELASTIC_HOST_DEVICE constexpr KeyRange prefill_split_range(int limit, int chunk, int split) {
  const int begin = split * chunk;
  return {begin, begin + chunk < limit ? begin + chunk : limit};
}

// The most split partials (one per head and split of a split tile) a call
// needs, non-decreasing in heads so that a workspace sized for a layer's full
// head count serves every smaller one. Splitting at all needs tiles * heads
// < target_blocks (none when the tiles alone fill the device even at one
// head); each split holds a K/V tile at least, and with a chunk of c >=
// key_tiles * heads / target_blocks K/V tiles a tile of n has at most n / c
// + 1 splits: target_blocks + tiles * heads partials, under 2 target_blocks.
ELASTIC_HOST_DEVICE constexpr long long prefill_partial_slot_bound(long long tiles, long long key_tiles, int heads,
                                                                  long long target_blocks) {
  if (tiles >= target_blocks) return 0;
  const long long split_heads = tiles * heads < target_blocks ? tiles * heads : target_blocks - 1;
  const long long by_grid = target_blocks + split_heads;
  const long long by_tiles = key_tiles * heads;
  return by_grid < by_tiles ? by_grid : by_tiles;
}

// The most (tile, split) work items a call has, whatever its head count.
ELASTIC_HOST_DEVICE constexpr long long prefill_work_bound(long long tiles, long long key_tiles,
                                                          long long target_blocks) {
  const long long by_grid = tiles + target_blocks;
  return by_grid < key_tiles ? by_grid : key_tiles;
}

}  // namespace elastic::math
