// The decode skinny GEMM (2-16 tokens, half and bfloat16) on tensor cores:
// out[t, j] = epilogue(x[t] . w_r[j] ...) with one mma.m16n8k16 per 16 weight
// rows, 8 tokens and 16 reduction elements, accumulating in float32.
//
// Work split. A warp owns a tile of 16 weight rows (A, the mma's M) and
// multiplies it with every token (B's columns: one n8 tile, or two for more
// than 8 tokens). The block's 16 warps form a unit of 16 / k_splits tiles,
// k_splits warps sharing each tile's reduction length (split-k, summed in
// shared memory before the epilogue). One block runs per SM and walks the
// units blockIdx.x, blockIdx.x + gridDim.x, ...; the launcher picks k_splits
// so the units spread evenly over the SMs.
//
// Operands. The block stages the tokens' activations [tokens x length] (read
// by index when gathered) in shared memory once, or piece by piece when they
// do not fit, zero beyond the length; each lane then reads its B fragment as
// one 16-byte vector per token tile and 32-element chunk. Weights stream from
// global memory, 16 bytes per lane, row and chunk, without touching L1; the k
// permutation in row_dot_fragments.hpp lets those vectors feed the mma
// directly. A warp loads its next group of chunks (2 chunks, 64 elements, of
// both its row halves and of gate and up) before it multiplies the current
// one, across piece and unit boundaries too, so loads stay in flight over
// the block's barriers. Rows past the last (rows not a multiple of 16) read
// the last row and are not stored; a reduction tail (lengths are multiples
// of 8) loads zeros past the length.
//
// Bytes in flight (Little's law): H200 needs about 4.3 TB/s x 0.7 us = 3 MB
// over 132 SMs, 23 KB per SM; H100 3.0 TB/s x 0.65 us, 15 KB per SM. Each
// warp keeps one group ahead: 16 rows x 64 elements x 2 bytes = 2 KB per
// weight matrix, so 16 warps hold 32 KB (linear) or 64 KB (gate and up) per
// SM, plus the loads' L2::256B prefetch of the next 128 bytes of each row.
// Staging reads the activations from L2 once per block when they fit (gate
// and up of Llama-3-8B at 16 tokens: 132 x 128 KB = 17 MB beside 235 MB of
// weights), but once per unit when they come in pieces: the down projection
// (14336 long, 3 pieces at 16 tokens, units of 2 tiles) re-reads 458 KB per
// 917 KB of weights, L2 traffic a measurement should watch.
//
// sm_90, CUDA 13.0, -Xptxas -v (512 threads, __launch_bounds__(512, 1)),
// the same for half and bfloat16, no spills, no stack:
//   linear,             bucket 4:  85 registers   bucket 16:  96 registers
//   SwiGLU,             bucket 4: 110 registers   bucket 16: 118 registers
//   SwiGLU, gathered,   bucket 4: 108 registers   bucket 16: 118 registers
//   (gathered: plus 16 / 64 bytes of static shared memory)
// 118 x 512 = 60 K of the SM's 64 K registers: one block, 16 warps, per SM.
// Shared memory is dynamic (tensor_core_row_dot_plan.hpp sizes it): the
// staged activations, 8 or 16 token rows of the piece plus 32 elements, up
// to the opt-in limit (227 KB on H100/H200: 16 tokens stage 6208-7168
// elements at once, 4 tokens 13440-14464), and, with split-k, 16-32 KB of
// partial sums. The main loop is ~210 SASS instructions
// per group for SwiGLU at 16 tokens (8 LDG.128, 4 LDS.128, 16 HMMA), about
// 26 per 16-byte weight vector.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "elastic/core/dtype.hpp"
#include "elastic/cuda/dynamic_shared_memory.cuh"
#include "elastic/cuda/error.cuh"
#include "elastic/cuda/row_dot_fragments.hpp"
#include "elastic/cuda/row_dot_params.cuh"
#include "elastic/cuda/tensor_core_row_dot_plan.hpp"
#include "elastic/cuda/warp_mma.cuh"
#include "elastic/math/row_dot.hpp"

namespace elastic::cuda {

// Element types the tensor-core decode kernel takes.
template <class T>
inline constexpr bool has_tensor_core_row_dots = std::is_same_v<T, half_t> || std::is_same_v<T, bfloat16_t>;

namespace kernels::tensor_core {

using tensor_core_plan::chunks_per_group;
using tensor_core_plan::group_elements;
using tensor_core_plan::GroupWalk;
using tensor_core_plan::round_up_to_group;
using tensor_core_plan::Split;
using tensor_core_plan::staged_row_padding;
using tensor_core_plan::WalkPosition;
using tensor_core_plan::warps;

inline constexpr int threads = warps * warp_size;

struct Words {
  std::uint32_t word[4];
};

// 16 bytes of weights through the read-only path without allocating in L1
// (nothing reads them twice), asking L2 to fetch the whole 256-byte segment
// (the row's neighbouring group, which the next load of the row wants).
__device__ __forceinline__ Words stream_weights(const void* source) {
  Words v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.word[0]), "=r"(v.word[1]), "=r"(v.word[2]), "=r"(v.word[3])
      : "l"(source));
  return v;
}

// 16 bytes of the staged activations. Volatile, so the load stays after the
// barrier that publishes the piece.
__device__ __forceinline__ Words load_staged(const void* source) {
  Words v;
  const std::uint32_t address = warp_mma::shared_address(source);
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.word[0]), "=r"(v.word[1]), "=r"(v.word[2]), "=r"(v.word[3])
               : "r"(address));
  return v;
}

// One group of weights per lane: [matrix][chunk][row half].
template <int NumRows>
using WeightGroup = Words[NumRows][chunks_per_group][2];

template <class T, int NumRows>
__device__ __forceinline__ void load_weight_group(WeightGroup<NumRows>& a, const RowDotParams<T, NumRows>& params,
                                                  const WalkPosition& at, const GroupWalk& walk, int tile_in_unit,
                                                  int tiles_per_unit, int lane) {
  const int tile_row = (at.unit * tiles_per_unit + tile_in_unit) * fragments::rows_per_tile;
  const int element = at.piece * walk.piece_elements + at.group * group_elements +
                      fragments::chunk_vector_offset(lane);
  ELASTIC_UNROLL
  for (int half = 0; half < 2; ++half) {
    const int row = min(tile_row + fragments::a_row(lane, half), params.rows - 1);
    ELASTIC_UNROLL
    for (int r = 0; r < NumRows; ++r) {
      const T* source = params.weights[r] + row * params.weight_strides[r] + element;
      ELASTIC_UNROLL
      for (int c = 0; c < chunks_per_group; ++c) {
        const int k = element + c * fragments::chunk_elements;
        a[r][c][half] = k < params.length ? stream_weights(source + c * fragments::chunk_elements) : Words{};
      }
    }
  }
}

// Copies the tokens' activations [piece_start, piece_start + staged_elements)
// into shared memory rows of `stride` elements, zero past the length and for
// tokens that read no row; `thread` is the caller's index in the block. Each
// thread keeps 4 loads in flight.
template <class T, bool Gathered>
__device__ __forceinline__ void stage_activations(T* staged, int stride, const T* activations,
                                                  index_t activation_stride, const int* source_rows, int tokens,
                                                  int staged_tokens, int piece_start, int staged_elements,
                                                  int length, int thread) {
  constexpr int kWidth = math::vector_width<T>;
  constexpr int kInFlight = 4;
  const int row_vectors = staged_elements / kWidth;
  const int vectors = staged_tokens * row_vectors;
  for (int base = thread; base < vectors; base += kInFlight * threads) {
    math::Vector16<T> values[kInFlight];
    ELASTIC_UNROLL
    for (int u = 0; u < kInFlight; ++u) {
      const int i = base + u * threads;
      const int t = i / row_vectors;
      const int element = piece_start + (i % row_vectors) * kWidth;
      const int row = i >= vectors || t >= tokens ? -1 : Gathered ? source_rows[t] : t;
      values[u] = {};
      if (i < vectors && row >= 0 && element < length)
        values[u] = math::load_vector(activations + row * activation_stride + element);
    }
    ELASTIC_UNROLL
    for (int u = 0; u < kInFlight; ++u) {
      const int i = base + u * threads;
      if (i < vectors) math::store_vector(staged + (i / row_vectors) * stride + (i % row_vectors) * kWidth, values[u]);
    }
  }
}

template <class T, int MaxTokens, int NumRows, bool Gathered, class Epilogue>
__global__ void __launch_bounds__(threads, 1)
    row_dots(const RowDotParams<T, NumRows> params, const Split work, const Epilogue epilogue) {
  constexpr int kTiles = (MaxTokens + fragments::tokens_per_tile - 1) / fragments::tokens_per_tile;
  constexpr int kAccumulators = NumRows * kTiles * 4;
  extern __shared__ int4 shared_storage[];
  __shared__ int source_rows[Gathered ? MaxTokens : 1];

  const TokenSelection selection = select_tokens(params);
  if (selection.tokens == 0) return;  // an empty route group: the whole grid leaves
  const int tokens = selection.tokens;
  const bool second_tile = kTiles == 2 && tokens > fragments::tokens_per_tile;  // block-uniform
  const int staged_tokens = second_tile ? 2 * fragments::tokens_per_tile : fragments::tokens_per_tile;

  if constexpr (Gathered) {
    // -1 marks a token that reads no row: out of range, or past the count.
    const int t = static_cast<int>(threadIdx.x);
    if (t < MaxTokens) {
      const int index = t < tokens ? selection.source_rows[t] : -1;
      source_rows[t] = row_in_range(index, params.source_row_count) ? index : -1;
    }  // visible after the first staging barrier
  }

  const int warp = static_cast<int>(threadIdx.x) / warp_size;
  const int lane = static_cast<int>(threadIdx.x) % warp_size;
  const int k_splits = work.k_splits;
  const int split = warp % k_splits;
  const int tile_in_unit = warp / k_splits;
  const int tiles_per_unit = warps / k_splits;
  const int stride = work.piece_elements + staged_row_padding;
  const int pieces = tensor_core_plan::pieces(params.length, work.piece_elements);
  T* const staged = reinterpret_cast<T*>(shared_storage);
  float* const partials = reinterpret_cast<float*>(staged + kTiles * fragments::tokens_per_tile * stride);

  const GroupWalk walk{split, k_splits, work.units, static_cast<int>(gridDim.x),
                       pieces, work.piece_elements, params.length};
  WalkPosition ahead = walk.first(static_cast<int>(blockIdx.x));
  WeightGroup<NumRows> next;
  if (ahead.unit < work.units) load_weight_group(next, params, ahead, walk, tile_in_unit, tiles_per_unit, lane);

  for (int unit = static_cast<int>(blockIdx.x); unit < work.units; unit += static_cast<int>(gridDim.x)) {
    float acc[NumRows][kTiles][4] = {};
    for (int piece = 0; piece < pieces; ++piece) {
      const int piece_start = piece * work.piece_elements;
      if (pieces > 1 || unit == static_cast<int>(blockIdx.x)) {
        __syncthreads();  // the previous piece is no longer read
        const int staged_elements = min(work.piece_elements, round_up_to_group(params.length - piece_start));
        stage_activations<T, Gathered>(staged, stride, params.activations, params.activation_stride, source_rows,
                                       tokens, staged_tokens, piece_start, staged_elements, params.length,
                                       static_cast<int>(threadIdx.x));
        __syncthreads();
      }
      const int groups = walk.groups_in(piece);
      for (int group = split; group < groups; group += k_splits) {
        WeightGroup<NumRows> a;
        ELASTIC_UNROLL
        for (int r = 0; r < NumRows; ++r)
          ELASTIC_UNROLL
          for (int c = 0; c < chunks_per_group; ++c)
            ELASTIC_UNROLL
            for (int half = 0; half < 2; ++half) a[r][c][half] = next[r][c][half];
        ahead = walk.next(ahead);
        if (ahead.unit < work.units)
          load_weight_group(next, params, ahead, walk, tile_in_unit, tiles_per_unit, lane);

        ELASTIC_UNROLL
        for (int c = 0; c < chunks_per_group; ++c) {
          const int element = group * group_elements + c * fragments::chunk_elements +
                              fragments::chunk_vector_offset(lane);
          Words b[kTiles];
          ELASTIC_UNROLL
          for (int n = 0; n < kTiles; ++n)
            if (n == 0 || second_tile) b[n] = load_staged(staged + fragments::b_token(lane, n) * stride + element);
          ELASTIC_UNROLL
          for (int step = 0; step < fragments::steps_per_chunk; ++step)
            ELASTIC_UNROLL
            for (int r = 0; r < NumRows; ++r) {
              std::uint32_t fragment[4];
              ELASTIC_UNROLL
              for (int reg = 0; reg < 4; ++reg)
                fragment[reg] = a[r][c][fragments::a_half(reg)].word[fragments::a_word(step, reg)];
              ELASTIC_UNROLL
              for (int n = 0; n < kTiles; ++n)
                if (n == 0 || second_tile)
                  warp_mma::mma_m16n8k16<T>(acc[r][n], fragment, b[n].word[fragments::b_word(step, 0)],
                                  b[n].word[fragments::b_word(step, 1)]);
            }
        }
      }
    }

    if (k_splits > 1) {
      // Warps past the first of each tile hand their sums to the first.
      float* const mine = partials + warp * kAccumulators * warp_size + lane;
      __syncthreads();  // the previous unit's partials have been read
      if (split != 0) {
        ELASTIC_UNROLL
        for (int r = 0; r < NumRows; ++r)
          ELASTIC_UNROLL
          for (int n = 0; n < kTiles; ++n)
            ELASTIC_UNROLL
            for (int i = 0; i < 4; ++i) mine[((r * kTiles + n) * 4 + i) * warp_size] = acc[r][n][i];
      }
      __syncthreads();
      if (split != 0) continue;
      for (int other = 1; other < k_splits; ++other) {
        const float* const theirs = mine + other * kAccumulators * warp_size;
        ELASTIC_UNROLL
        for (int r = 0; r < NumRows; ++r)
          ELASTIC_UNROLL
          for (int n = 0; n < kTiles; ++n)
            ELASTIC_UNROLL
            for (int i = 0; i < 4; ++i) acc[r][n][i] += theirs[((r * kTiles + n) * 4 + i) * warp_size];
      }
    }

    const int tile_row = (unit * tiles_per_unit + tile_in_unit) * fragments::rows_per_tile;
    ELASTIC_UNROLL
    for (int n = 0; n < kTiles; ++n)
      ELASTIC_UNROLL
      for (int i = 0; i < 4; ++i) {
        const int t = fragments::c_token(lane, n, i);
        const int row = tile_row + fragments::c_row(lane, i);
        if (t >= tokens || row >= params.rows) continue;
        if constexpr (Gathered)
          if (source_rows[t] < 0) continue;
        float dots[NumRows][1];
        ELASTIC_UNROLL
        for (int r = 0; r < NumRows; ++r) dots[r][0] = acc[r][n][i];
        store_row_dot(params, selection, t, row, math::finish_row_dots(epilogue, dots, 0));
      }
  }
}

}  // namespace kernels::tensor_core

// Enqueues the tensor-core decode kernel for 1 to decode_max_tokens tokens in
// two buckets, up to 4 (one token tile, 8 staged rows) and up to 16 (two
// tiles; the second is skipped on the device while 8 or fewer run). Single
// tokens go to the CUDA-core kernel, which wastes no token columns. An empty
// reduction stages nothing and stores epilogue(0).
template <class T, int NumRows, bool Gathered, class Epilogue>
void launch_tensor_core_row_dots(const RowDotParams<T, NumRows>& params, Epilogue epilogue, int multiprocessors,
                                 cudaStream_t stream) {
  static_assert(has_tensor_core_row_dots<T>, "the tensor-core decode kernel takes half_t or bfloat16_t");
  namespace plan = tensor_core_plan;
  require(params.tokens >= 1 && params.tokens <= decode_max_tokens, "decode kernels take 1 to ",
          decode_max_tokens, " tokens, found ", params.tokens);
  plan::Split split = plan::split_plan(params.rows, params.length, multiprocessors);

  const auto launch = [&]<int MaxTokens>() {
    constexpr int kTiles = (MaxTokens + fragments::tokens_per_tile - 1) / fragments::tokens_per_tile;
    constexpr int kStagedTokens = kTiles * fragments::tokens_per_tile;
    constexpr int kElementBytes = static_cast<int>(sizeof(T));
    constexpr auto kernel = kernels::tensor_core::row_dots<T, MaxTokens, NumRows, Gathered, Epilogue>;
    const int shared_limit = allow_most_dynamic_shared_memory<kernel>();
    const int partials = plan::partial_bytes(split.k_splits, NumRows, kTiles);
    split.piece_elements = plan::piece_elements(params.length, kStagedTokens, kElementBytes, partials, shared_limit);
    require(split.piece_elements > 0, "decode row dots: ", shared_limit,
            " bytes of dynamic shared memory per block do not hold one staged group");
    const int shared_bytes = plan::shared_bytes(split.piece_elements, kStagedTokens, kElementBytes, partials);
    const unsigned blocks = static_cast<unsigned>(std::min(split.units, multiprocessors));
    kernel<<<blocks, kernels::tensor_core::threads, shared_bytes, stream>>>(params, split, epilogue);
  };
  if (params.tokens <= 4) launch.template operator()<4>();
  else launch.template operator()<decode_max_tokens>();
  ELASTIC_CUDA_CHECK_LAUNCH();
}

}  // namespace elastic::cuda
