// The decode kernel: a skinny GEMM for 1-16 tokens in which one warp computes
// one output neuron for every token. Each lane streams its 16-byte vectors of
// the weight row (of gate and up together for the fused SwiGLU), multiplies
// them with the tokens' activations, the warp sums its lanes' partials with a
// butterfly, and lane t stores token t through the epilogue. The fused SwiGLU
// variant reads gate row j and up row j in the same pass, so the intermediate
// activation is written once and the gate/up outputs never reach memory.
//
// The per-lane loop is math::accumulate_row_dots, shared with the host
// executor. Template parameters: MaxTokens (a bucket of 1, 4 or 16 tokens),
// NumRows (1 = linear, 2 = gate+up), StaticLength (the compile-time reduction
// length, or 0), Gathered (token t reads activation row source_rows[t]).
//
// Route groups use two indexed forms: Gathered reads a group's tokens in
// place (gather_swiglu), and output_rows adds token t's result into output
// row output_rows[t] (linear_scatter_add), rounding the sum once. The indices
// are device memory the host never checks: a token whose index lies outside
// the indexed matrix is skipped (nothing is read from or written to that
// row), as the gather and scatter-add kernels skip theirs. For a route group
// sized in device memory (group_count), the kernel reads the group's start
// and size itself and runs min(size, tokens) tokens; a start and size that
// do not fit the plan (a plan left as it was by an invalid choice) run none.
#pragma once

#include <cuda_runtime.h>

#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/cuda/error.cuh"
#include "elastic/math/row_dot.hpp"

namespace elastic::cuda {

// Token counts the decode kernel is compiled for; a call uses the smallest
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

namespace kernels {

inline constexpr int row_dot_warps_per_block = 4;
inline constexpr int warp_size = 32;

// Sums every value over the 32 lanes of a warp; all lanes end with the sums.
template <int NumRows, int MaxTokens>
__device__ __forceinline__ void warp_sum(float (&values)[NumRows][MaxTokens]) {
  ELASTIC_UNROLL
  for (int offset = warp_size / 2; offset > 0; offset /= 2)
    ELASTIC_UNROLL
    for (int r = 0; r < NumRows; ++r)
      ELASTIC_UNROLL
      for (int t = 0; t < MaxTokens; ++t)
        values[r][t] += __shfl_xor_sync(0xffffffffu, values[r][t], offset);
}

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

template <class T, int MaxTokens, int NumRows, int StaticLength, bool Gathered, class Epilogue>
__global__ void __launch_bounds__(row_dot_warps_per_block* warp_size)
    row_dots(const RowDotParams<T, NumRows> params, const Epilogue epilogue) {
  const TokenSelection selection = select_tokens(params);
  if (selection.tokens == 0) return;  // an empty route group: the whole grid leaves

  // A gathered block stages its tokens' rows in shared memory (row 0 in place
  // of an out-of-range index, whose token is then not stored).
  __shared__ int source_rows[Gathered ? MaxTokens : 1];
  if constexpr (Gathered) {
    const int t = static_cast<int>(threadIdx.x);
    if (t < MaxTokens) {
      const int index = t < selection.tokens ? selection.source_rows[t] : 0;
      source_rows[t] = row_in_range(index, params.source_row_count) ? index : 0;
    }
    __syncthreads();
  }

  const int lane = static_cast<int>(threadIdx.x) % warp_size;
  const int row = static_cast<int>(blockIdx.x) * row_dot_warps_per_block +
                  static_cast<int>(threadIdx.x) / warp_size;
  if (row >= params.rows) return;  // whole warps leave together

  math::RowDotArgs<T, NumRows> args;
  ELASTIC_UNROLL
  for (int r = 0; r < NumRows; ++r) args.weight_rows[r] = params.weights[r] + row * params.weight_strides[r];
  args.activations = params.activations;
  args.activation_stride = params.activation_stride;
  args.token_rows = Gathered ? source_rows : nullptr;
  args.length = params.length;
  args.tokens = selection.tokens;

  float dots[NumRows][MaxTokens] = {};
  math::accumulate_row_dots<T, MaxTokens, NumRows, warp_size, StaticLength, Gathered>(dots, args, lane);
  warp_sum(dots);

  ELASTIC_UNROLL
  for (int t = 0; t < MaxTokens; ++t) {
    if (t != lane || t >= selection.tokens) continue;
    if (Gathered && !row_in_range(selection.source_rows[t], params.source_row_count)) continue;
    const float value = math::finish_row_dots(epilogue, dots, t);
    if (selection.output_rows == nullptr) {
      params.output[t * params.output_stride + row] = from_float<T>(value);
    } else {
      const int output_row = selection.output_rows[t];
      if (!row_in_range(output_row, params.output_row_count)) continue;
      T& target = params.output[output_row * params.output_stride + row];
      target = from_float<T>(to_float(target) + value);
    }
  }
}

}  // namespace kernels

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

// Enqueues out = epilogue(x . w_r^T ...) on the stream (indexed as params says).
template <class T, int NumRows, int StaticLength, bool Gathered, class Epilogue>
void launch_row_dots(const RowDotParams<T, NumRows>& params, Epilogue epilogue, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(
      (params.rows + kernels::row_dot_warps_per_block - 1) / kernels::row_dot_warps_per_block);
  dispatch_token_bucket(params.tokens, [&]<int MaxTokens>() {
    kernels::row_dots<T, MaxTokens, NumRows, StaticLength, Gathered, Epilogue>
        <<<blocks, kernels::row_dot_warps_per_block * kernels::warp_size, 0, stream>>>(params, epilogue);
  });
  ELASTIC_CUDA_CHECK_LAUNCH();
}

}  // namespace elastic::cuda
