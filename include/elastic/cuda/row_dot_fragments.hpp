// Which weight row, token and reduction index each lane's registers hold in
// the tensor-core decode kernel (tensor_core_row_dot_kernel.cuh), written as
// plain constexpr functions so host tests can drive them lane by lane.
//
// The kernel runs mma.m16n8k16 (PTX ISA, "Matrix fragments for mma.m16n8k16
// with floating point type") with 16 weight rows as A (M), tokens as B's
// columns (N) and a 16-wide slice of the row length as K. In that layout lane
// (group = lane / 4, quad = lane % 4) holds, for both A rows group and
// group + 8 and for B's column group, the same four k positions
// {2 quad, 2 quad + 1, 2 quad + 8, 2 quad + 9}. A dot product does not care
// about the order of k, so the kernel feeds the mma's k positions from a
// permuted stretch of the row: within a 32-element chunk, mma step s (0 or 1)
// takes its k position kk from element physical_k(s, kk), which puts the four
// positions of lane (group, quad) at elements 8 quad + 4 s .. 8 quad + 4 s + 3.
// Each lane therefore loads one contiguous 16-byte vector (8 elements at
// chunk_vector_offset) per row and chunk, from global memory for A and from
// shared memory for B, and its 32-bit words feed both mma steps directly:
// no shuffles, no ldmatrix, and A and B see the same permutation.
#pragma once

#include "elastic/core/macros.hpp"

namespace elastic::cuda::fragments {

inline constexpr int rows_per_tile = 16;     // M of one mma: the weight rows one warp computes
inline constexpr int tokens_per_tile = 8;    // N of one mma
inline constexpr int mma_k = 16;             // K of one mma
inline constexpr int chunk_elements = 32;    // two mma steps fed by one 16-byte vector per lane and row
inline constexpr int vector_elements = 8;    // 16-bit elements in a 16-byte vector
inline constexpr int steps_per_chunk = chunk_elements / mma_k;

ELASTIC_HOST_DEVICE constexpr int lane_group(int lane) { return lane / 4; }
ELASTIC_HOST_DEVICE constexpr int lane_quad(int lane) { return lane % 4; }

// The element (0..31) of a chunk that mma step s uses for its k position kk
// (0..15): a bijection from (s, kk) onto the chunk.
ELASTIC_HOST_DEVICE constexpr int physical_k(int step, int kk) {
  return vector_elements * ((kk % 8) / 2) + 4 * step + 2 * (kk / 8) + kk % 2;
}

// First element, within a chunk, of the 16-byte vector a lane loads of each
// A row and of its B token's activations.
ELASTIC_HOST_DEVICE constexpr int chunk_vector_offset(int lane) { return vector_elements * lane_quad(lane); }

// The tile row (0..15) of the lane's A vector `half` (0: rows 0-7, 1: rows 8-15).
ELASTIC_HOST_DEVICE constexpr int a_row(int lane, int half) { return lane_group(lane) + 8 * half; }

// The token of the lane's B vector in token tile `tile`.
ELASTIC_HOST_DEVICE constexpr int b_token(int lane, int tile) { return tokens_per_tile * tile + lane_group(lane); }

// A register `reg` (0..3) of mma step s is 32-bit word a_word(s, reg) of the
// lane's A vector a_half(reg); B register `reg` (0..1) is word b_word(s, reg)
// of its B vector. Words hold two elements, low one first.
ELASTIC_HOST_DEVICE constexpr int a_half(int reg) { return reg % 2; }
ELASTIC_HOST_DEVICE constexpr int a_word(int step, int reg) { return 2 * step + reg / 2; }
ELASTIC_HOST_DEVICE constexpr int b_word(int step, int reg) { return 2 * step + reg; }

// Accumulator element i (0..3) of token tile `tile`: its tile row and token.
ELASTIC_HOST_DEVICE constexpr int c_row(int lane, int i) { return lane_group(lane) + 8 * (i / 2); }
ELASTIC_HOST_DEVICE constexpr int c_token(int lane, int tile, int i) {
  return tokens_per_tile * tile + 2 * lane_quad(lane) + i % 2;
}

}  // namespace elastic::cuda::fragments
