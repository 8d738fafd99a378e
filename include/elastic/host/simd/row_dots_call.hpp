// What one call of the host's vector row-dot kernel (row_dots-inl.hpp, run
// through dispatch.hpp) computes: for up to 16 tokens t and one or two
// weight rows r,
//   partials[r][t] += w_r . x_t
// over `length` elements, x_t being activation row token_rows[t] (or t).
#pragma once

#include "elastic/core/dtype.hpp"
#include "elastic/core/tensor.hpp"

namespace elastic::host::simd {

inline constexpr int max_call_tokens = 16;

struct RowDotsCall {
  DType dtype;                      // of the weights and the activations
  int num_rows;                     // 1 (linear) or 2 (gate and up)
  const void* weight_rows[2];       // each row's first element
  const void* activations;          // row 0 of the activation matrix
  index_t activation_stride;        // elements between activation rows
  const int* token_rows;            // token t reads row token_rows[t]; nullptr: row t
  int length;                       // elements per row
  int tokens;                       // 1 .. max_call_tokens
  float (*partials)[max_call_tokens];  // [num_rows][max_call_tokens], added to
};

}  // namespace elastic::host::simd
