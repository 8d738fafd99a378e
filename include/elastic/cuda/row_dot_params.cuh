// What both decode kernels (the CUDA-core one in row_dot_kernel.cuh and the
// tensor-core one in tensor_core_row_dot_kernel.cuh) take and share: the
// params struct, the token buckets, and how a kernel reads which tokens it
// runs (a route group sized in device memory, indexed rows).
//
// The indices are device memory the host never checks: a token whose index
// lies outside the indexed matrix is skipped (nothing is read from or written
// to that row), as the gather and scatter-add kernels skip theirs. For a
// route group sized in device memory (group_count), a kernel reads the
// group's start and size itself and runs min(size, tokens) tokens; a start
// and size that do not fit the plan (a plan left as it was by an invalid
// choice) run none.
#pragma once

#include <cuda_runtime.h>

#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/tensor.hpp"

namespace elastic::cuda {

// Token counts the decode kernels are compiled for; a call uses the smallest
// bucket that holds its tokens.
inline constexpr int decode_max_tokens = 16;

template <class T, int NumRows>
struct RowDotParams {
  const T* weights[NumRows];
  index_t weight_strides[NumRows];
  const T* activations;  // [tokens x length], or [source_row_count x length] when gathered
  index_t activation_stride;
  T* output;  // [tokens x rows], or [output_row_count x rows] with output_rows
  index_t output_stride;
  int rows;
  int length;
  int tokens;
  const int* source_rows = nullptr;  // Gathered: token t's activation row
  index_t source_row_count = 0;
  const int* output_rows = nullptr;  // non-null: token t's result is added to this output row
  index_t output_row_count = 0;
  // Non-null: the indexed rows start at source_rows/output_rows + *group_first
  // and *group_count of them (at most `tokens`) are used.
  const int* group_first = nullptr;
  const int* group_count = nullptr;
  int group_plan_tokens = 0;  // bound on *group_first + *group_count
};

// Calls f.template operator()<Bucket>() with the smallest token bucket that
// holds `tokens` (1 <= tokens <= decode_max_tokens).
template <class F>
void dispatch_token_bucket(int tokens, F&& f) {
  require(tokens >= 1 && tokens <= decode_max_tokens, "decode kernels take 1 to ", decode_max_tokens,
          " tokens, found ", tokens);
  if (tokens == 1) f.template operator()<1>();
  else if (tokens <= 4) f.template operator()<4>();
  else f.template operator()<16>();
}

namespace kernels {

inline constexpr int warp_size = 32;

__device__ __forceinline__ bool row_in_range(int row, index_t rows) { return row >= 0 && row < rows; }

// The tokens a call runs and where its indexed rows start.
struct TokenSelection {
  int tokens;
  const int* source_rows;
  const int* output_rows;
};

template <class T, int NumRows>
__device__ __forceinline__ TokenSelection select_tokens(const RowDotParams<T, NumRows>& params) {
  TokenSelection selection{params.tokens, params.source_rows, params.output_rows};
  if (params.group_count != nullptr) {
    const int first = *params.group_first;
    const int count = *params.group_count;
    const bool fits = first >= 0 && count >= 0 && count <= params.group_plan_tokens - first;
    selection.tokens = fits ? min(count, params.tokens) : 0;
    if (selection.source_rows != nullptr) selection.source_rows += first;
    if (selection.output_rows != nullptr) selection.output_rows += first;
  }
  return selection;
}

// Writes token t's finished value into output row `row`: stored, or added
// into output row output_rows[t] (the sum rounded once) when the call
// scatters; an out-of-range output row is skipped.
template <class T, int NumRows>
__device__ __forceinline__ void store_row_dot(const RowDotParams<T, NumRows>& params,
                                              const TokenSelection& selection, int t, int row, float value) {
  if (selection.output_rows == nullptr) {
    params.output[t * params.output_stride + row] = from_float<T>(value);
    return;
  }
  const int output_row = selection.output_rows[t];
  if (!row_in_range(output_row, params.output_row_count)) return;
  T& target = params.output[output_row * params.output_stride + row];
  target = from_float<T>(to_float(target) + value);
}

}  // namespace kernels

}  // namespace elastic::cuda
