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
//
// sm_90, CUDA 13.0, -Xptxas -v (512 threads, __launch_bounds__(512, 1)),
// the same for half and bfloat16, no spills, no stack:
//   linear,  bucket 4:  87 registers     bucket 16:  96 registers
//   SwiGLU,  bucket 4: 108 registers     bucket 16: 118 registers
//   (gathered SwiGLU the same, plus 16 / 64 bytes of static shared memory)
// 118 x 512 = 60 K of the SM's 64 K registers: one block, 16 warps, per SM.
// Shared memory is dynamic: the staged activations (8 or 16 token rows of
// the piece plus 32 elements, up to the opt-in limit, 227 KB on H100/H200:
// 16 tokens stage up to ~6900 elements at once, 4 tokens ~13900) and, with
// split-k, 16-32 KB of partial sums. The main loop is ~210 SASS instructions
// per group for SwiGLU at 16 tokens (8 LDG.128, 4 LDS.128, 16 HMMA), about
// 26 per 16-byte weight vector.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "elastic/core/dtype.hpp"
#include "elastic/cuda/error.cuh"
#include "elastic/cuda/row_dot_fragments.hpp"
#include "elastic/cuda/row_dot_params.cuh"
#include "elastic/cuda/warp_mma.cuh"
#include "elastic/math/row_dot.hpp"

namespace elastic::cuda {

// Element types the tensor-core decode kernel takes.
template <class T>
inline constexpr bool has_tensor_core_row_dots = std::is_same_v<T, half_t> || std::is_same_v<T, bfloat16_t>;

namespace kernels::tensor_core {

inline constexpr int warps = 16;
inline constexpr int threads = warps * warp_size;
inline constexpr int chunks_per_group = 2;  // chunks a warp loads per step
inline constexpr int group_elements = fragments::chunk_elements * chunks_per_group;
// Added to each staged row's length (a multiple of group_elements, so of 128
// bytes): rows then start 64 bytes apart modulo 128, and the 8 lanes of a
// 16-byte shared load phase (2 tokens x 4 quads) hit 8 distinct bank groups.
inline constexpr int staged_row_padding = 32;

// How a launch divides its work; the launcher computes it.
struct Split {
  int k_splits;        // warps per 16-row tile: 1, 2, 4, 8 or 16
  int units;           // blocks of warps / k_splits tiles
  int piece_elements;  // reduction elements staged at a time, a multiple of group_elements
};

struct Words {
  std::uint32_t word[4];
};

__device__ __forceinline__ Words stream_weights(const void* source) {
  Words v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.word[0]), "=r"(v.word[1]), "=r"(v.word[2]), "=r"(v.word[3])
      : "l"(source));
  return v;
}

__device__ __forceinline__ Words load_staged(const void* source) {
  Words v;
  const std::uint32_t address = warp_mma::shared_address(source);
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.word[0]), "=r"(v.word[1]), "=r"(v.word[2]), "=r"(v.word[3])
               : "r"(address));
  return v;
}

// A warp's place in its walk over (unit, piece, group); group counts groups
// of the piece, and the warp takes groups split, split + k_splits, ...
struct WalkPosition {
  int unit;
  int piece;
  int group;
};

// Walks one warp's groups in order; the block's loops visit the same
// (unit, piece) sequence, so the warp can load a group before its turn.
struct GroupWalk {
  int split, k_splits, units, unit_stride, pieces, piece_elements, length;

  __device__ __forceinline__ int groups_in(int piece) const {
    const int elements = min(piece_elements, length - piece * piece_elements);
    return (elements + group_elements - 1) / group_elements;
  }
  // The first position at or after `at` (whose group starts at split) where
  // this warp has a group; unit == units when there is none.
  __device__ __forceinline__ WalkPosition settle(WalkPosition at) const {
    while (at.unit < units && at.group >= groups_in(at.piece)) {
      at.group = split;
      if (++at.piece == pieces) {
        at.piece = 0;
        at.unit += unit_stride;
      }
    }
    return at;
  }
  __device__ __forceinline__ WalkPosition next(WalkPosition at) const {
    at.group += k_splits;
    return settle(at);
  }
};

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
// tokens that read no row. Each thread keeps 4 loads in flight.
template <class T, bool Gathered>
__device__ __forceinline__ void stage_activations(T* staged, int stride, const T* activations,
                                                  index_t activation_stride, const int* source_rows, int tokens,
                                                  int staged_tokens, int piece_start, int staged_elements,
                                                  int length) {
  constexpr int kWidth = math::vector_width<T>;
  constexpr int kInFlight = 4;
  const int row_vectors = staged_elements / kWidth;
  const int vectors = staged_tokens * row_vectors;
  for (int base = static_cast<int>(threadIdx.x); base < vectors; base += kInFlight * threads) {
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
    row_dots(const RowDotParams<T, NumRows> params, const Split split_plan,
                         const Epilogue epilogue) {
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
  const int k_splits = split_plan.k_splits;
  const int split = warp % k_splits;
  const int tile_in_unit = warp / k_splits;
  const int tiles_per_unit = warps / k_splits;
  const int stride = split_plan.piece_elements + staged_row_padding;
  const int pieces = (params.length + split_plan.piece_elements - 1) / split_plan.piece_elements;
  T* const staged = reinterpret_cast<T*>(shared_storage);
  float* const partials = reinterpret_cast<float*>(staged + kTiles * fragments::tokens_per_tile * stride);

  const GroupWalk walk{split,  k_splits, split_plan.units, static_cast<int>(gridDim.x), pieces,
                       split_plan.piece_elements, params.length};
  WalkPosition ahead = walk.settle({static_cast<int>(blockIdx.x), 0, split});
  WeightGroup<NumRows> next;
  if (ahead.unit < split_plan.units) load_weight_group(next, params, ahead, walk, tile_in_unit, tiles_per_unit, lane);

  for (int unit = static_cast<int>(blockIdx.x); unit < split_plan.units; unit += static_cast<int>(gridDim.x)) {
    float acc[NumRows][kTiles][4] = {};
    for (int piece = 0; piece < pieces; ++piece) {
      const int piece_start = piece * split_plan.piece_elements;
      if (pieces > 1 || unit == static_cast<int>(blockIdx.x)) {
        __syncthreads();  // the previous piece is no longer read
        const int staged_elements =
            min(split_plan.piece_elements,
                (params.length - piece_start + group_elements - 1) / group_elements * group_elements);
        stage_activations<T, Gathered>(staged, stride, params.activations, params.activation_stride, source_rows,
                                       tokens, staged_tokens, piece_start, staged_elements, params.length);
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
        if (ahead.unit < split_plan.units)
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

// The split-k factor (warps per 16-row tile) whose units spread most evenly
// over the SMs: the smallest reaching 95% of the SMs' unit slots busy, else
// the best one. k_splits is bounded by the reduction's groups, so every warp
// of a tile has work.
inline kernels::tensor_core::Split plan_tensor_core_split(int rows, int length, int multiprocessors) {
  namespace tc = kernels::tensor_core;
  const int tiles = (rows + fragments::rows_per_tile - 1) / fragments::rows_per_tile;
  const int groups = (length + tc::group_elements - 1) / tc::group_elements;
  tc::Split best{1, 0, 0};
  double best_busy = -1.0;
  for (int k_splits = 1; k_splits <= tc::warps; k_splits *= 2) {
    if (k_splits > 1 && k_splits > groups) break;
    const int tiles_per_unit = tc::warps / k_splits;
    const int units = (tiles + tiles_per_unit - 1) / tiles_per_unit;
    const int rounds = (units + multiprocessors - 1) / multiprocessors;
    const double busy = static_cast<double>(units) / (static_cast<double>(rounds) * multiprocessors);
    if (busy > best_busy + 1e-9) {
      best = {k_splits, units, 0};
      best_busy = busy;
    }
    if (busy >= 0.95) break;
  }
  return best;
}

// Enqueues the tensor-core decode kernel for 1 to decode_max_tokens tokens in
// two buckets, up to 4 (one token tile, 8 staged rows) and up to 16 (two
// tiles; the second is skipped on the device while 8 or fewer run). Single
// tokens go to the CUDA-core kernel, which wastes no token columns.
template <class T, int NumRows, bool Gathered, class Epilogue>
void launch_tensor_core_row_dots(const RowDotParams<T, NumRows>& params, Epilogue epilogue, cudaStream_t stream) {
  static_assert(has_tensor_core_row_dots<T>, "the tensor-core decode kernel takes half_t or bfloat16_t");
  namespace tc = kernels::tensor_core;
  require(params.tokens >= 1 && params.tokens <= decode_max_tokens, "decode kernels take 1 to ",
          decode_max_tokens, " tokens, found ", params.tokens);
  int device = 0, multiprocessors = 0, shared_limit = 0;
  ELASTIC_CUDA_CHECK(cudaGetDevice(&device));
  ELASTIC_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
  ELASTIC_CUDA_CHECK(cudaDeviceGetAttribute(&shared_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  tc::Split split = plan_tensor_core_split(params.rows, params.length, multiprocessors);

  const auto launch = [&]<int MaxTokens>() {
    constexpr int kTiles = (MaxTokens + fragments::tokens_per_tile - 1) / fragments::tokens_per_tile;
    constexpr int kStagedTokens = kTiles * fragments::tokens_per_tile;
    constexpr int kStaticBytes = (Gathered ? MaxTokens : 1) * static_cast<int>(sizeof(int));
    const int partial_bytes =
        split.k_splits > 1 ? tc::threads * NumRows * kTiles * 4 * static_cast<int>(sizeof(float)) : 0;
    // The widest piece (a multiple of group_elements) whose padded rows fit.
    const int row_elements =
        (shared_limit - kStaticBytes - partial_bytes) / (kStagedTokens * static_cast<int>(sizeof(T)));
    const int widest = (row_elements - tc::staged_row_padding) / tc::group_elements * tc::group_elements;
    const int whole = (params.length + tc::group_elements - 1) / tc::group_elements * tc::group_elements;
    split.piece_elements = std::min(whole, widest);
    const int shared_bytes =
        kStagedTokens * (split.piece_elements + tc::staged_row_padding) * static_cast<int>(sizeof(T)) +
        partial_bytes;
    const auto kernel = tc::row_dots<T, MaxTokens, NumRows, Gathered, Epilogue>;
    ELASTIC_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, shared_bytes));
    const unsigned blocks = static_cast<unsigned>(std::min(split.units, multiprocessors));
    kernel<<<blocks, tc::threads, shared_bytes, stream>>>(params, split, epilogue);
  };
  if (params.tokens <= 4) launch.template operator()<4>();
  else launch.template operator()<decode_max_tokens>();
  ELASTIC_CUDA_CHECK_LAUNCH();
}

}  // namespace elastic::cuda
