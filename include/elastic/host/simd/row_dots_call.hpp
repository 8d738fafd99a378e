// What one call of the host's vector row-dot kernel (row_dots-inl.hpp)
// computes: for up to max_call_tokens tokens t and up to max_call_rows weight
// rows r (one weight's rows, or the gate and up rows of a fused SwiGLU),
//   partials[r][t] += w_r . x_t
// over `length` elements, x_t being activation row token_rows[t] (or t).
// A SwiGLU call passes the gate rows, then as many up rows, and gets
//   partials[n][t] = silu(w_gate_n . x_t) * (w_up_n . x_t)
// in the gate rows' partials (the up rows' hold their dots).
#pragma once

#include "elastic/core/dtype.hpp"
#include "elastic/core/tensor.hpp"

namespace elastic::host::simd {

inline constexpr int max_call_tokens = 16;
inline constexpr int max_call_rows = 12;

struct RowDotsCall {
  DType dtype;                            // of the weights and the activations
  int rows;                               // 1 .. max_call_rows (even for SwiGLU)
  bool swiglu;                            // gate rows, then up rows (see above)
  const void* weight_rows[max_call_rows];  // each row's first element
  const void* activations;                // row 0 of the activation matrix
  index_t activation_stride;              // elements between activation rows
  const int* token_rows;                  // token t reads row token_rows[t]; nullptr: row t
  int length;                             // elements per row
  int tokens;                             // 1 .. max_call_tokens
  float (*partials)[max_call_tokens];     // [rows][max_call_tokens], added to
};

}  // namespace elastic::host::simd
