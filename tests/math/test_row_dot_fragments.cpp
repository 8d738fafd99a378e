// The lane maps of the tensor-core decode kernel (cuda/row_dot_fragments.hpp)
// checked on the host: a warp is emulated lane by lane, each lane filling its
// registers from 16-byte vectors exactly as the kernel does, and an
// mma.m16n8k16 is emulated from the PTX ISA's fragment layouts for A, B and
// C/D, written out independently below. Over all chunks of a row the result
// must equal the plain matrix product, for row tiles cut short, reduction
// tails and 1-16 tokens.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "elastic/cuda/row_dot_fragments.hpp"

namespace fragments = elastic::cuda::fragments;

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
