// What one call of the host's quantised row-dot kernel (quant_row_dots-inl.hpp)
// computes: for up to 16 tokens t and one or two weight rows r stored in a
// block format,
//   partials[r][t] += w_r . x_t
// where x_t arrives quantised as the kernel wants it (QuantizedActivations):
// per 32-element block k, int8 values a (held widened to int16) and a float
// scale s, x ~= s * a. The dot product of a weight block with an activation
// block is then an integer dot product times the two blocks' float scales,
// plus, for formats with a per-block minimum (Q4_1, Q5_1, Q4_K, Q5_K), that
// minimum times s * sum(a), which the activation block carries precomputed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "elastic/core/quantized_matrix.hpp"
#include "elastic/host/simd/row_dots_call.hpp"

namespace elastic::host::simd {

// Elements per activation block; every format's blocks and sub-blocks are
// whole numbers of it (or, for Q6_K's 16-element sub-blocks, its halves).
inline constexpr int activation_block = 32;

// Quantised activation rows, token after token, each `blocks` blocks long.
struct QuantizedActivations {
  const std::int16_t* values;  // token t, element i: values[t * blocks * 32 + i], in [-127, 127]
  const float* scales;         // token t, block k: scales[t * blocks + k]
  const float* scaled_sums;    // scales[...] * (sum of the block's values)
  int blocks;
};

struct QuantRowDotsCall {
  QuantFormat format;                    // of the weight rows
  int num_rows;                          // 1 (linear) or 2 (gate and up)
  const std::byte* weight_rows[2];       // each row's first block
  QuantizedActivations activations;      // rows of the call's tokens, first token first
  int tokens;                            // 1 .. max_call_tokens
  float (*partials)[max_call_tokens];    // [num_rows][max_call_tokens], added to
};

}  // namespace elastic::host::simd
