// The tensor-core decode kernel's maths checked on the host. Lane maps
// (cuda/row_dot_fragments.hpp): a warp is emulated lane by lane, each lane
// filling its registers from 16-byte vectors exactly as the kernel does, and
// an mma.m16n8k16 is emulated from the PTX ISA's fragment layouts for A, B
// and C/D, written out independently below; over all chunks of a row the
// result must equal the plain matrix product, for row tiles cut short,
// reduction tails and 1-16 tokens. Work plan
// (cuda/tensor_core_row_dot_plan.hpp): the blocks' loops are run as the
// kernel runs them, and every (tile, group) must be computed exactly once,
// each warp's walk must name the group before the loops reach it, and the
// shared memory must fit.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "elastic/cuda/row_dot_fragments.hpp"
#include "elastic/cuda/tensor_core_row_dot_plan.hpp"

namespace fragments = elastic::cuda::fragments;
namespace plan = elastic::cuda::tensor_core_plan;

namespace {

constexpr int kLanes = 32;

// PTX ISA, mma.m16n8k16 with .f16/.bf16 operands: groupID = lane / 4,
// threadID_in_group = lane % 4. A register r (0..3) element e (0..1): row
// groupID + 8 (r % 2), column 2 threadID_in_group + e + 8 (r / 2). B register
// r (0..1) element e: row 2 threadID_in_group + e + 8 r, column groupID.
// C/D element i (0..3): row groupID + 8 (i / 2), column 2 threadID_in_group + i % 2.
int ptx_a_row(int lane, int reg) { return lane / 4 + 8 * (reg % 2); }
int ptx_a_col(int lane, int reg, int e) { return 2 * (lane % 4) + e + 8 * (reg / 2); }
int ptx_b_row(int lane, int reg, int e) { return 2 * (lane % 4) + e + 8 * reg; }
int ptx_b_col(int lane) { return lane / 4; }
int ptx_c_row(int lane, int i) { return lane / 4 + 8 * (i / 2); }
int ptx_c_col(int lane, int i) { return 2 * (lane % 4) + i % 2; }

using Vector = std::array<float, fragments::vector_elements>;
using Matrix = std::vector<std::vector<float>>;

Matrix random_matrix(int rows, int cols, unsigned seed) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  Matrix m(rows, std::vector<float>(cols));
  for (auto& row : m)
    for (float& x : row) x = value(generator);
  return m;
}

// The 8 elements a lane loads of `row` at `element`, zero past the length
// (lengths are whole vectors, as the kernels require).
Vector load(const std::vector<float>& row, int element) {
  Vector v{};
  if (element < static_cast<int>(row.size()))
    for (int e = 0; e < fragments::vector_elements; ++e) v[e] = row[element + e];
  return v;
}

// out[row][token] for one 16-row tile starting at `first_row` of `weights`,
// computed as the kernel's warp computes it (rows past the last read the
// last row, as the kernel clamps them).
Matrix emulate_warp(const Matrix& weights, int first_row, const Matrix& x) {
  const int rows = static_cast<int>(weights.size());
  const int length = static_cast<int>(weights[0].size());
  const int tokens = static_cast<int>(x.size());
  const int tiles = (tokens + fragments::tokens_per_tile - 1) / fragments::tokens_per_tile;
  // acc[lane][tile][i]: the lanes' accumulator registers.
  std::vector<std::array<std::array<double, 4>, 2>> acc(kLanes);
  for (int chunk = 0; chunk < length; chunk += fragments::chunk_elements) {
    std::array<std::array<Vector, 2>, kLanes> a{};  // [lane][row half]
    std::array<std::array<Vector, 2>, kLanes> b{};  // [lane][token tile]
    for (int lane = 0; lane < kLanes; ++lane) {
      const int element = chunk + fragments::chunk_vector_offset(lane);
      for (int half = 0; half < 2; ++half) {
        const int row = std::min(first_row + fragments::a_row(lane, half), rows - 1);
        a[lane][half] = load(weights[row], element);
      }
      for (int n = 0; n < tiles; ++n) {
        const int t = fragments::b_token(lane, n);
        if (t < tokens) b[lane][n] = load(x[t], element);
      }
    }
    for (int step = 0; step < fragments::steps_per_chunk; ++step) {
      // The mma's operands, assembled from the lanes' registers by the PTX layout.
      double a_tile[16][16] = {}, b_tile[2][16][8] = {};
      for (int lane = 0; lane < kLanes; ++lane)
        for (int e = 0; e < 2; ++e) {
          for (int reg = 0; reg < 4; ++reg)
            a_tile[ptx_a_row(lane, reg)][ptx_a_col(lane, reg, e)] =
                a[lane][fragments::a_half(reg)][2 * fragments::a_word(step, reg) + e];
          for (int n = 0; n < tiles; ++n)
            for (int reg = 0; reg < 2; ++reg)
              b_tile[n][ptx_b_row(lane, reg, e)][ptx_b_col(lane)] = b[lane][n][2 * fragments::b_word(step, reg) + e];
        }
      for (int lane = 0; lane < kLanes; ++lane)
        for (int n = 0; n < tiles; ++n)
          for (int i = 0; i < 4; ++i)
            for (int kk = 0; kk < fragments::mma_k; ++kk)
              acc[lane][n][i] += a_tile[ptx_c_row(lane, i)][kk] * b_tile[n][kk][ptx_c_col(lane, i)];
    }
  }
  Matrix out(16, std::vector<float>(tokens, NAN));
  for (int lane = 0; lane < kLanes; ++lane)
    for (int n = 0; n < tiles; ++n)
      for (int i = 0; i < 4; ++i) {
        const int t = fragments::c_token(lane, n, i);
        if (t < tokens) out[fragments::c_row(lane, i)][t] = static_cast<float>(acc[lane][n][i]);
      }
  return out;
}

}  // namespace

TEST_CASE("the chunk permutation maps each mma step's k positions onto the chunk once") {
  std::array<int, fragments::chunk_elements> seen{};
  for (int step = 0; step < fragments::steps_per_chunk; ++step)
    for (int kk = 0; kk < fragments::mma_k; ++kk) ++seen[fragments::physical_k(step, kk)];
  for (int count : seen) CHECK(count == 1);
}

TEST_CASE("a lane's A and B words hold the chunk elements the permutation assigns to its k positions") {
  for (int lane = 0; lane < kLanes; ++lane)
    for (int step = 0; step < fragments::steps_per_chunk; ++step)
      for (int e = 0; e < 2; ++e) {
        for (int reg = 0; reg < 4; ++reg) {
          CAPTURE(lane);
          CAPTURE(reg);
          CHECK(fragments::a_row(lane, fragments::a_half(reg)) == ptx_a_row(lane, reg));
          CHECK(fragments::chunk_vector_offset(lane) + 2 * fragments::a_word(step, reg) + e ==
                fragments::physical_k(step, ptx_a_col(lane, reg, e)));
        }
        for (int reg = 0; reg < 2; ++reg)
          CHECK(fragments::chunk_vector_offset(lane) + 2 * fragments::b_word(step, reg) + e ==
                fragments::physical_k(step, ptx_b_row(lane, reg, e)));
      }
}

TEST_CASE("an emulated warp of mma.m16n8k16 computes the row dots of a 16-row tile") {
  for (int length : {8, 16, 24, 32, 40, 72, 200}) {
    for (int tokens : {1, 2, 3, 4, 5, 8, 9, 15, 16}) {
      for (int rows : {16, 21, 35}) {
        CAPTURE(length);
        CAPTURE(tokens);
        CAPTURE(rows);
        const Matrix w = random_matrix(rows, length, static_cast<unsigned>(length * 131 + rows));
        const Matrix x = random_matrix(tokens, length, static_cast<unsigned>(tokens * 7 + length));
        for (int first_row = 0; first_row < rows; first_row += fragments::rows_per_tile) {
          const Matrix out = emulate_warp(w, first_row, x);
          for (int r = 0; r < fragments::rows_per_tile && first_row + r < rows; ++r)
            for (int t = 0; t < tokens; ++t) {
              double expected = 0;
              for (int k = 0; k < length; ++k) expected += static_cast<double>(w[first_row + r][k]) * x[t][k];
              CHECK(out[r][t] == doctest::Approx(expected).epsilon(1e-6).scale(1.0));
            }
        }
      }
    }
  }
}

namespace {

// Runs every block's loops over (unit, piece, group) as the kernel does,
// checking each warp's walk against them, and counts how often each
// (tile, group of the whole length) is computed.
void check_plan_covers_once(int rows, int length, int multiprocessors, int piece_elements) {
  plan::Split split = plan::split_plan(rows, length, multiprocessors);
  split.piece_elements = piece_elements;
  const int tiles_per_unit = plan::warps / split.k_splits;
  const int tiles = (rows + fragments::rows_per_tile - 1) / fragments::rows_per_tile;
  const int groups = plan::round_up_to_group(length) / plan::group_elements;
  const int pieces = plan::pieces(length, piece_elements);
  const int blocks = std::min(split.units, multiprocessors);
  REQUIRE(split.units * tiles_per_unit >= tiles);
  CHECK((split.units - 1) * tiles_per_unit < tiles);
  CHECK((split.k_splits == 1 || split.k_splits <= groups));
  std::vector<int> computed(static_cast<std::size_t>(split.units * tiles_per_unit * groups));
  for (int block = 0; block < blocks; ++block)
    for (int warp = 0; warp < plan::warps; ++warp) {
      const int split_index = warp % split.k_splits;
      const plan::GroupWalk walk{split_index, split.k_splits, split.units, blocks, pieces, piece_elements, length};
      plan::WalkPosition ahead = walk.first(block);
      for (int unit = block; unit < split.units; unit += blocks)
        for (int piece = 0; piece < pieces; ++piece)
          for (int group = split_index; group < walk.groups_in(piece); group += split.k_splits) {
            CHECK((ahead.unit == unit && ahead.piece == piece && ahead.group == group));
            const int tile = unit * tiles_per_unit + warp / split.k_splits;
            ++computed[static_cast<std::size_t>(tile * groups + piece * piece_elements / plan::group_elements + group)];
            ahead = walk.next(ahead);
          }
      CHECK(ahead.unit >= split.units);
    }
  int wrong = 0;
  for (int count : computed) wrong += count != 1;
  CHECK(wrong == 0);
}

}  // namespace

TEST_CASE("the tensor-core decode plan computes every tile and group exactly once") {
  for (int multiprocessors : {1, 7, 132}) {
    for (int rows : {1, 16, 45, 200, 1536, 4096}) {
      for (int length : {0, 8, 64, 200, 576, 4096}) {
        for (int piece : {64, 192, std::max(plan::round_up_to_group(length), plan::group_elements)}) {
          CAPTURE(multiprocessors);
          CAPTURE(rows);
          CAPTURE(length);
          CAPTURE(piece);
          check_plan_covers_once(rows, length, multiprocessors, piece);
        }
      }
    }
  }
}

TEST_CASE("the tensor-core decode plan spreads Llama-sized shapes over 132 SMs") {
  const plan::Split up = plan::split_plan(14336, 4096, 132);  // gate and up of Llama-3-8B
  CHECK(up.k_splits == 16);
  CHECK(up.units == 896);
  const plan::Split down = plan::split_plan(4096, 14336, 132);
  CHECK(down.k_splits == 8);
  CHECK(down.units == 128);
}

TEST_CASE("the staged piece and the partials fit the shared memory") {
  constexpr int limit = 227 * 1024 - 64;  // H100 / H200 opt-in per block, less 64 bytes of static shared memory
  for (int staged_tokens : {8, 16})
    for (int k_splits : {1, 16})
      for (int length : {8, 576, 4096, 6208, 6272, 14336, 28672}) {
        CAPTURE(staged_tokens);
        CAPTURE(k_splits);
        CAPTURE(length);
        const int partials = plan::partial_bytes(k_splits, 2, staged_tokens / 8);
        const int piece = plan::piece_elements(length, staged_tokens, 2, partials, limit);
        CHECK(piece % plan::group_elements == 0);
        CHECK(piece >= std::min(plan::round_up_to_group(length), 4096));
        CHECK(piece <= plan::round_up_to_group(length));
        CHECK(plan::shared_bytes(piece, staged_tokens, 2, partials) <= limit);
        // The next wider piece would not fit, unless the whole length already does.
        if (piece < plan::round_up_to_group(length))
          CHECK(plan::shared_bytes(piece + plan::group_elements, staged_tokens, 2, partials) > limit);
      }
}
