// How the tensor-core decode kernel (tensor_core_row_dot_kernel.cuh) divides
// its work, as plain functions host tests can run: the split-k factor and
// unit count a launch picks, how much of the reduction it stages in shared
// memory at a time, and the order in which one warp visits its groups (which
// the kernel follows one group ahead to keep its weight loads in flight).
//
// Vocabulary: a tile is 16 weight rows (one warp's mma M); a unit is the
// 16 / k_splits tiles one block computes at a time, k_splits warps per tile;
// a piece is the stretch of the reduction staged in shared memory at once; a
// group is the 64 reduction elements a warp loads per step. A block walks
// units blockIdx, blockIdx + gridDim, ...; for each unit every piece; in each
// piece its warp `split` takes groups split, split + k_splits, ...
#pragma once

#include <algorithm>

#include "elastic/core/macros.hpp"
#include "elastic/cuda/row_dot_fragments.hpp"

namespace elastic::cuda::tensor_core_plan {

inline constexpr int warps = 16;  // per block; one block per SM
inline constexpr int chunks_per_group = 2;
inline constexpr int group_elements = fragments::chunk_elements * chunks_per_group;
// Added to each staged row's length (a multiple of group_elements, so of 128
// bytes for 16-bit elements): rows then start 64 bytes apart modulo 128, and
// the 8 lanes of a 16-byte shared load phase (2 tokens x 4 quads) hit 8
// distinct bank groups.
inline constexpr int staged_row_padding = 32;

struct Split {
  int k_splits;        // warps per tile: 1, 2, 4, 8 or 16
  int units;           // units of warps / k_splits tiles
  int piece_elements;  // reduction elements staged at a time, a multiple of group_elements
};

ELASTIC_HOST_DEVICE constexpr int round_up_to_group(int elements) {
  return (elements + group_elements - 1) / group_elements * group_elements;
}

// The split-k factor whose units spread most evenly over the SMs (one block
// each): the smallest that keeps 95% of the SMs' unit slots busy, else the
// best one. k_splits never exceeds the reduction's groups, so every warp of
// a tile has work. piece_elements is left to stage_plan.
constexpr Split split_plan(int rows, int length, int multiprocessors) {
  const int tiles = (rows + fragments::rows_per_tile - 1) / fragments::rows_per_tile;
  const int groups = round_up_to_group(length) / group_elements;
  Split best{1, 0, 0};
  double best_busy = -1.0;
  for (int k_splits = 1; k_splits <= warps; k_splits *= 2) {
    if (k_splits > 1 && k_splits > groups) break;
    const int tiles_per_unit = warps / k_splits;
    const int units = (tiles + tiles_per_unit - 1) / tiles_per_unit;
    const int rounds = (units + multiprocessors - 1) / multiprocessors;
    const double busy = static_cast<double>(units) / (static_cast<double>(rounds) * multiprocessors);
    if (busy > best_busy + 1e-9) {
      best = {k_splits, units, 0};
      best_busy = busy;
    }
    if (busy >= 0.95) break;
  }
  return best;
}

// Bytes of the split-k partial sums: every thread's accumulators.
constexpr int partial_bytes(int k_splits, int num_rows, int token_tiles) {
  return k_splits > 1 ? warps * 32 * num_rows * token_tiles * 4 * static_cast<int>(sizeof(float)) : 0;
}

// The widest piece (a multiple of group_elements, at most the whole length
// rounded up, at least one group) whose staged rows and the partials fit in
// `shared_limit` bytes of dynamic shared memory; 0 when not even one group
// fits.
constexpr int piece_elements(int length, int staged_tokens, int element_bytes, int partials, int shared_limit) {
  const int row_elements = (shared_limit - partials) / (staged_tokens * element_bytes);
  const int widest = std::max(0, (row_elements - staged_row_padding) / group_elements * group_elements);
  return std::min(std::max(round_up_to_group(length), group_elements), widest);
}

// Pieces of a reduction: at least one, so an empty one still runs its epilogue.
ELASTIC_HOST_DEVICE constexpr int pieces(int length, int piece_elements) {
  return std::max(1, (length + piece_elements - 1) / piece_elements);
}

// Dynamic shared memory of a launch: the staged rows, then the partials.
constexpr int shared_bytes(int piece, int staged_tokens, int element_bytes, int partials) {
  return staged_tokens * (piece + staged_row_padding) * element_bytes + partials;
}

struct WalkPosition {
  int unit;
  int piece;
  int group;  // within the piece
};

// One warp's walk over its groups, in the order the block's loops run them.
struct GroupWalk {
  int split, k_splits, units, unit_stride, pieces, piece_elements, length;

  ELASTIC_HOST_DEVICE constexpr int groups_in(int piece) const {
    const int elements = std::min(piece_elements, length - piece * piece_elements);
    return round_up_to_group(elements) / group_elements;
  }
  // The first position at or after `at` (whose group is split when it moves
  // on to a later piece) where this warp has a group; unit >= units when none.
  ELASTIC_HOST_DEVICE constexpr WalkPosition settle(WalkPosition at) const {
    while (at.unit < units && at.group >= groups_in(at.piece)) {
      at.group = split;
      if (++at.piece == pieces) {
        at.piece = 0;
        at.unit += unit_stride;
      }
    }
    return at;
  }
  ELASTIC_HOST_DEVICE constexpr WalkPosition first(int block) const { return settle({block, 0, split}); }
  ELASTIC_HOST_DEVICE constexpr WalkPosition next(WalkPosition at) const {
    at.group += k_splits;
    return settle(at);
  }
};

}  // namespace elastic::cuda::tensor_core_plan
