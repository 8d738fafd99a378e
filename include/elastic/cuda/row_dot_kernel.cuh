// The decode kernel on CUDA cores: a skinny GEMM in which one warp computes
// one output neuron for every token. Each lane streams its 16-byte vectors of
// the weight row (of gate and up together for the fused SwiGLU), multiplies
// them with the tokens' activations, the warp sums its lanes' partials with a
// butterfly, and lane t stores token t through the epilogue. The fused SwiGLU
// variant reads gate row j and up row j in the same pass, so the intermediate
// activation is written once and the gate/up outputs never reach memory.
// launch_row_dots() sends 2-16 tokens of half and bfloat16 to the tensor-core
// kernel (tensor_core_row_dot_kernel.cuh) and runs single tokens and float32
// here.
//
// The per-lane loop is math::accumulate_row_dots, shared with the host
// executor. Template parameters: MaxTokens (a bucket of 1, 4 or 16 tokens),
// NumRows (1 = linear, 2 = gate+up), Gathered (token t reads activation row
// source_rows[t]). The length is a run-time value: a compile-time length
// (math's StaticLength) neither unrolled the loop nor saved instructions
// under nvcc 13.0 for sm_90, and only cost registers (-Xptxas -v, linear, 4096
// elements: 1 token 47 -> 54 registers at half, 48 -> 52 at float; 16 tokens
// 120 -> 255 with spills at half, 168 -> 255 with spills at float), so the
// kernels are no longer instantiated per width.
//
// Route groups use two indexed forms: Gathered reads a group's tokens in
// place (gather_swiglu), and output_rows adds token t's result into output
// row output_rows[t] (linear_scatter_add), rounding the sum once; indices out
// of range are skipped and groups sized in device memory are read on the
// device (row_dot_params.cuh).
#pragma once

#include <cuda_runtime.h>

#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/cuda/error.cuh"
#include "elastic/cuda/row_dot_params.cuh"
#include "elastic/cuda/tensor_core_row_dot_kernel.cuh"
#include "elastic/math/row_dot.hpp"

namespace elastic::cuda {

namespace kernels {

inline constexpr int row_dot_warps_per_block = 4;

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

template <class T, int MaxTokens, int NumRows, bool Gathered, class Epilogue>
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
  math::accumulate_row_dots<T, MaxTokens, NumRows, warp_size, Gathered>(dots, args, lane);
  warp_sum(dots);

  ELASTIC_UNROLL
  for (int t = 0; t < MaxTokens; ++t) {
    if (t != lane || t >= selection.tokens) continue;
    if (Gathered && !row_in_range(selection.source_rows[t], params.source_row_count)) continue;
    store_row_dot(params, selection, t, row, math::finish_row_dots(epilogue, dots, t));
  }
}

}  // namespace kernels

// Enqueues out = epilogue(x . w_r^T ...) on the stream (indexed as params
// says): 2-16 tokens of half and bfloat16 on tensor cores (spread over the
// device's `multiprocessors` SMs), single tokens and float32 here.
template <class T, int NumRows, bool Gathered, class Epilogue>
void launch_row_dots(const RowDotParams<T, NumRows>& params, Epilogue epilogue, int multiprocessors,
                     cudaStream_t stream) {
  const auto launch = [&]<int MaxTokens>() {
    const unsigned blocks = static_cast<unsigned>(
        (params.rows + kernels::row_dot_warps_per_block - 1) / kernels::row_dot_warps_per_block);
    kernels::row_dots<T, MaxTokens, NumRows, Gathered, Epilogue>
        <<<blocks, kernels::row_dot_warps_per_block * kernels::warp_size, 0, stream>>>(params, epilogue);
    ELASTIC_CUDA_CHECK_LAUNCH();
  };
  if constexpr (has_tensor_core_row_dots<T>) {
    if (params.tokens == 1) launch.template operator()<1>();
    else launch_tensor_core_row_dots<T, NumRows, Gathered>(params, epilogue, multiprocessors, stream);
  } else {
    dispatch_token_bucket(params.tokens, launch);
  }
}

}  // namespace elastic::cuda
