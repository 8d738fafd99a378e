// Prefill attention for the general ragged, causal case (flash attention):
// each thread block takes one query tile (PrefillShape::rows new tokens of one
// sequence) and one query head, keeps the tile's queries, outputs and online
// softmax states in registers, and streams the K/V rows the tile can see,
// [0, cached + last row + 1), through shared memory in tiles of
// PrefillShape::columns positions. Positions a row may not see (causal mask)
// score -inf; rows past the sequence's end are computed with the last row's
// mask and not stored. Query heads of one KV group run in neighbouring blocks
// and share the group's K/V through L2.
//
// The block's loop (prefill_attention) is the same for every element type:
// the queries are loaded with RoPE applied (rotate_vector_pair, in float32,
// rounded to T) into shared memory, K and V tiles arrive with cp.async (K of
// the next tile loads while V of this one is used, and the other way round),
// and the arithmetic is a policy:
//
//   TensorCoreRows<T, D>  float16 / bfloat16: S = Q K^T and O += P V on tensor
//                         cores (mma.sync m16n8k16, float32 accumulation,
//                         operands from shared memory through ldmatrix). Each
//                         warp owns 16 query rows; P is rounded to T for the
//                         second product, as in FlashAttention-2.
//   CudaCoreRows<D>       float32: four threads per query row, each with a
//                         quarter of the head dimensions, scores summed with
//                         two shuffles, all in float32 FMAs.
//
// Both keep math::SoftmaxState per row and rescale once per K/V tile. Tiles
// are launched longest first (the metadata lists them so), with the heads of
// one tile side by side: grid (heads, tiles).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/macros.hpp"
#include "elastic/cuda/attention_metadata.cuh"
#include "elastic/cuda/error.cuh"
#include "elastic/cuda/kv_append_kernel.cuh"
#include "elastic/math/online_softmax.hpp"
#include "elastic/math/row_dot.hpp"

namespace elastic::cuda {

template <class T>
struct PrefillShape {
  static constexpr bool tensor_cores = !std::is_same_v<T, float>;
  static constexpr int rows = tensor_cores ? 64 : 32;  // query rows per block
  static constexpr int columns = rows;                 // K/V positions per tile (the query tile reuses the K buffer)
  static constexpr int threads = 128;
  // Elements added to each shared row: 16 bytes, so the eight rows one
  // ldmatrix reads fall into different banks.
  static constexpr int padding = tensor_cores ? 8 : 0;
};

// Throws unless the prefill grid (heads x tiles) can be launched.
inline void check_prefill_grid(int tiles) {
  require(tiles <= 65535, "attention: prefill takes at most 65535 query tiles per call, found ", tiles);
}

// Row and column of one m16n8 float32 accumulator element (i = 0..3) that
// lane holds (PTX ISA, mma.m16n8k16 "fragment layout for C/D").
ELASTIC_HOST_DEVICE constexpr int accumulator_row(int lane, int i) { return lane / 4 + i / 2 * 8; }
ELASTIC_HOST_DEVICE constexpr int accumulator_column(int lane, int i) { return lane % 4 * 2 + i % 2; }

struct SharedCoord {
  int row;
  int column;
};

// ldmatrix.x4 reads four 8x8 matrices of 16-bit elements; lane l gives the
// address of row l % 8 of matrix l / 8. Two arrangements of the four
// matrices within a 16x16 block of a row-major shared tile:
//   down_then_across: matrix m at rows (m & 1) * 8, columns (m >> 1) * 8.
//     Without .trans these are the A operand registers a0..a3 of m16n8k16
//     (Q); with .trans, the B operands of two neighbouring n-tiles of a
//     [k x n] tile (V): {r0, r1} for columns 0-7, {r2, r3} for columns 8-15.
//   across_then_down: matrix m at rows (m >> 1) * 8, columns (m & 1) * 8.
//     Without .trans, the B operands of two n-tiles of an [n x k] tile (K):
//     {r0, r1} for rows 0-7, {r2, r3} for rows 8-15.
ELASTIC_HOST_DEVICE constexpr SharedCoord ldmatrix_down_then_across(int lane) {
  return {(lane / 8 & 1) * 8 + lane % 8, (lane / 8 >> 1) * 8};
}
ELASTIC_HOST_DEVICE constexpr SharedCoord ldmatrix_across_then_down(int lane) {
  return {(lane / 8 >> 1) * 8 + lane % 8, (lane / 8 & 1) * 8};
}

// Two floats rounded to T in one 32-bit register, the first in the low half
// (the element order of mma operands).
template <class T>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE std::uint32_t pack_pair(float first, float second) {
  return static_cast<std::uint32_t>(from_float<T>(first).bits) |
         static_cast<std::uint32_t>(from_float<T>(second).bits) << 16;
}

// Starts a K/V tile for a row whose tile maximum (of masked scores) is
// tile_max: raises the state's maximum and returns the factor that the row's
// earlier sum and output must be scaled by (math::softmax_push over a block of
// scores at once). The caller then adds softmax_exp(score - state.max) of each
// score to the sum.
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE float begin_tile(math::SoftmaxState& state, float tile_max) {
  const float new_max = tile_max > state.max ? tile_max : state.max;
  const float rescale = math::softmax_exp(state.max - new_max);  // 0 on the first tile
  state.max = new_max;
  state.sum *= rescale;
  return rescale;
}

namespace kernels {

__device__ __forceinline__ std::uint32_t shared_address(const void* pointer) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(pointer));
}

// 16 bytes global -> shared, asynchronously; bytes = 0 writes zeros.
__device__ __forceinline__ void copy_async_16(void* shared, const void* global, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared)), "l"(global),
               "r"(bytes));
}
__device__ __forceinline__ void commit_async() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most `Pending` committed groups are still in flight.
template <int Pending>
__device__ __forceinline__ void wait_async() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], const void* shared) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(shared)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], const void* shared) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(shared)));
}

// d += a * b for one m16n8k16 tile, T = half_t or bfloat16_t, float32 accumulators.
template <class T>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                             std::uint32_t b1) {
  if constexpr (std::is_same_v<T, half_t>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Quad reductions: the four lanes 4g..4g+3 hold the columns of the same rows.
__device__ __forceinline__ float quad_max(float value) {
  value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, 1));
  return fmaxf(value, __shfl_xor_sync(0xffffffffu, value, 2));
}
__device__ __forceinline__ float quad_sum(float value) {
  value += __shfl_xor_sync(0xffffffffu, value, 1);
  return value + __shfl_xor_sync(0xffffffffu, value, 2);
}

// Where the rows of a query tile come from and what they may see.
struct QueryTile {
  int first_token;  // packed row of the tile's first query
  int rows;         // valid rows (the rest are padding)
  int first_limit;  // row r sees positions [0, first_limit + min(r, rows - 1))

  __device__ int limit(int row) const { return first_limit + min(row, rows - 1); }
};

template <class T, int HeadDim>
struct TensorCoreRows {
  using Shape = PrefillShape<T>;
  static constexpr int stride = HeadDim + Shape::padding;
  static constexpr int head_steps = HeadDim / 16;          // k-steps of S = Q K^T
  static constexpr int score_tiles = Shape::columns / 8;   // n-tiles of S
  static constexpr int position_steps = Shape::columns / 16;  // k-steps of O += P V
  static constexpr int output_tiles = HeadDim / 8;         // n-tiles of O
  static_assert(Shape::rows == 16 * Shape::threads / 32, "each warp owns 16 query rows");

  std::uint32_t query[head_steps][4];
  float score[score_tiles][4];
  float output[output_tiles][4] = {};
  math::SoftmaxState state[2];  // rows lane / 4 and lane / 4 + 8 of the warp's 16; sums are this lane's columns only
  int limit[2];
  int first_row;  // the warp's first row in the tile
  int lane;
  float scale;

  // `tile`: the rotated queries, [rows x stride] in shared memory.
  __device__ TensorCoreRows(const T* tile, const QueryTile& rows, float scale_, int thread)
      : first_row(thread / 32 * 16), lane(thread % 32), scale(scale_) {
    for (int r = 0; r < 2; ++r) limit[r] = rows.limit(first_row + accumulator_row(lane, 2 * r));
    const SharedCoord at = ldmatrix_down_then_across(lane);
    ELASTIC_UNROLL
    for (int k = 0; k < head_steps; ++k)
      ldmatrix_x4(query[k], tile + (first_row + at.row) * stride + k * 16 + at.column);
  }

  // S = Q K^T for the K tile at `first_position`, masked and scaled; starts
  // the tile in each row's softmax and turns S into P.
  __device__ void scores(const T* keys, int first_position) {
    const SharedCoord at = ldmatrix_across_then_down(lane);
    ELASTIC_UNROLL
    for (int n = 0; n < score_tiles; ++n)
      ELASTIC_UNROLL
      for (int i = 0; i < 4; ++i) score[n][i] = 0.0f;
    ELASTIC_UNROLL
    for (int k = 0; k < head_steps; ++k)
      ELASTIC_UNROLL
      for (int n = 0; n < score_tiles; n += 2) {
        std::uint32_t b[4];
        ldmatrix_x4(b, keys + (n * 8 + at.row) * stride + k * 16 + at.column);
        mma_m16n8k16<T>(score[n], query[k], b[0], b[1]);
        mma_m16n8k16<T>(score[n + 1], query[k], b[2], b[3]);
      }
    ELASTIC_UNROLL
    for (int r = 0; r < 2; ++r) {
      float tile_max = -INFINITY;
      ELASTIC_UNROLL
      for (int n = 0; n < score_tiles; ++n)
        ELASTIC_UNROLL
        for (int c = 0; c < 2; ++c) {
          float& s = score[n][2 * r + c];
          s = first_position + n * 8 + accumulator_column(lane, c) < limit[r] ? s * scale : -INFINITY;
          tile_max = fmaxf(tile_max, s);
        }
      const float rescale = begin_tile(state[r], quad_max(tile_max));
      ELASTIC_UNROLL
      for (int n = 0; n < score_tiles; ++n)
        ELASTIC_UNROLL
        for (int c = 0; c < 2; ++c) {
          float& s = score[n][2 * r + c];
          s = math::softmax_exp(s - state[r].max);
          state[r].sum += s;
        }
      ELASTIC_UNROLL
      for (int n = 0; n < output_tiles; ++n) {
        output[n][2 * r] *= rescale;
        output[n][2 * r + 1] *= rescale;
      }
    }
  }

  // O += P V for the V tile; the accumulators of S n-tiles 2k and 2k + 1
  // are, element for element, the A operand of k-step k.
  __device__ void accumulate(const T* values) {
    const SharedCoord at = ldmatrix_down_then_across(lane);
    ELASTIC_UNROLL
    for (int k = 0; k < position_steps; ++k) {
      const std::uint32_t p[4] = {pack_pair<T>(score[2 * k][0], score[2 * k][1]),
                                  pack_pair<T>(score[2 * k][2], score[2 * k][3]),
                                  pack_pair<T>(score[2 * k + 1][0], score[2 * k + 1][1]),
                                  pack_pair<T>(score[2 * k + 1][2], score[2 * k + 1][3])};
      ELASTIC_UNROLL
      for (int n = 0; n < output_tiles; n += 2) {
        std::uint32_t b[4];
        ldmatrix_x4_trans(b, values + (k * 16 + at.row) * stride + n * 8 + at.column);
        mma_m16n8k16<T>(output[n], p, b[0], b[1]);
        mma_m16n8k16<T>(output[n + 1], p, b[2], b[3]);
      }
    }
  }

  // Writes the valid rows, divided by their softmax sums, for `head`.
  __device__ void store(const AttentionArgs<T, HeadDim>& args, const QueryTile& rows, int head) {
    ELASTIC_UNROLL
    for (int r = 0; r < 2; ++r) {
      const float sum = quad_sum(state[r].sum);
      const int row = first_row + accumulator_row(lane, 2 * r);
      if (row >= rows.rows) continue;
      T* destination = args.out + (rows.first_token + row) * args.out_stride + head * HeadDim;
      ELASTIC_UNROLL
      for (int n = 0; n < output_tiles; ++n)
        *reinterpret_cast<std::uint32_t*>(destination + n * 8 + accumulator_column(lane, 0)) =
            pack_pair<T>(output[n][2 * r] / sum, output[n][2 * r + 1] / sum);
    }
  }
};

template <int HeadDim>
struct CudaCoreRows {
  using Shape = PrefillShape<float>;
  static constexpr int stride = HeadDim + Shape::padding;
  static constexpr int threads_per_row = 4;
  static constexpr int vectors = HeadDim / 4 / threads_per_row;  // float4 vectors per thread
  static_assert(Shape::rows * threads_per_row == Shape::threads, "four threads per query row");

  float query[vectors][4];
  float output[vectors][4] = {};
  float score[Shape::columns];
  math::SoftmaxState state;
  int row;
  int part;  // this thread owns float4 vectors part, part + 4, part + 8, ... of the row
  int limit;

  __device__ CudaCoreRows(const float* tile, const QueryTile& rows, float scale, int thread)
      : row(thread / threads_per_row), part(thread % threads_per_row), limit(rows.limit(row)) {
    ELASTIC_UNROLL
    for (int i = 0; i < vectors; ++i)
      ELASTIC_UNROLL
      for (int e = 0; e < 4; ++e) query[i][e] = tile[row * stride + dim(i, e)] * scale;
  }

  __device__ int dim(int i, int e) const { return (i * threads_per_row + part) * 4 + e; }

  __device__ void scores(const float* keys, int first_position) {
    float tile_max = -INFINITY;
    ELASTIC_UNROLL
    for (int p = 0; p < Shape::columns; ++p) {
      float dot = 0.0f;
      ELASTIC_UNROLL
      for (int i = 0; i < vectors; ++i) {
        const float4 key = *reinterpret_cast<const float4*>(keys + p * stride + dim(i, 0));
        dot += query[i][0] * key.x + query[i][1] * key.y + query[i][2] * key.z + query[i][3] * key.w;
      }
      dot += __shfl_xor_sync(0xffffffffu, dot, 1);
      dot += __shfl_xor_sync(0xffffffffu, dot, 2);
      score[p] = first_position + p < limit ? dot : -INFINITY;
      tile_max = fmaxf(tile_max, score[p]);
    }
    const float rescale = begin_tile(state, tile_max);
    ELASTIC_UNROLL
    for (int p = 0; p < Shape::columns; ++p) {
      score[p] = math::softmax_exp(score[p] - state.max);
      state.sum += score[p];
    }
    ELASTIC_UNROLL
    for (int i = 0; i < vectors; ++i)
      ELASTIC_UNROLL
      for (int e = 0; e < 4; ++e) output[i][e] *= rescale;
  }

  __device__ void accumulate(const float* values) {
    ELASTIC_UNROLL
    for (int p = 0; p < Shape::columns; ++p)
      ELASTIC_UNROLL
      for (int i = 0; i < vectors; ++i) {
        const float4 value = *reinterpret_cast<const float4*>(values + p * stride + dim(i, 0));
        output[i][0] += score[p] * value.x;
        output[i][1] += score[p] * value.y;
        output[i][2] += score[p] * value.z;
        output[i][3] += score[p] * value.w;
      }
  }

  __device__ void store(const AttentionArgs<float, HeadDim>& args, const QueryTile& rows, int head) {
    if (row >= rows.rows) return;
    float* destination = args.out + (rows.first_token + row) * args.out_stride + head * HeadDim;
    ELASTIC_UNROLL
    for (int i = 0; i < vectors; ++i)
      *reinterpret_cast<float4*>(destination + dim(i, 0)) =
          make_float4(output[i][0] / state.sum, output[i][1] / state.sum, output[i][2] / state.sum,
                      output[i][3] / state.sum);
  }
};

template <class T, int HeadDim>
using PrefillRows =
    std::conditional_t<PrefillShape<T>::tensor_cores, TensorCoreRows<T, HeadDim>, CudaCoreRows<HeadDim>>;

// Starts copying K/V positions [first, first + columns) of one (slot, head)
// block of the cache into a shared tile; positions at or past `limit` become
// zeros (they are masked, and zeros keep 0 * value finite).
template <class T, int HeadDim>
__device__ __forceinline__ void load_tile_async(T* tile, const T* block, int first, int limit) {
  using Shape = PrefillShape<T>;
  constexpr int kWidth = math::vector_width<T>;
  constexpr int kVectors = HeadDim / kWidth;
  for (int i = static_cast<int>(threadIdx.x); i < Shape::columns * kVectors; i += Shape::threads) {
    const int row = i / kVectors;
    const int column = i % kVectors * kWidth;
    const bool inside = first + row < limit;
    const T* source = inside ? block + static_cast<std::size_t>(first + row) * HeadDim + column : block;
    copy_async_16(tile + row * PrefillRows<T, HeadDim>::stride + column, source, inside ? 16 : 0);
  }
}

// Loads the tile's queries for `head`, rotated for their positions and
// rounded to T, into `tile` (rows x stride); padding rows become zeros.
template <class T, int HeadDim>
__device__ __forceinline__ void load_query_tile(T* tile, const AttentionArgs<T, HeadDim>& args, const QueryTile& rows,
                                                int head) {
  using Shape = PrefillShape<T>;
  constexpr int kPairs = rope_vector_pairs<T, HeadDim>;
  for (int i = static_cast<int>(threadIdx.x); i < Shape::rows * kPairs; i += Shape::threads) {
    const int row = i / kPairs;
    const int v = i % kPairs;
    VectorFloats<T> low = {}, high = {};
    if (row < rows.rows) {
      const int token = rows.first_token + row;
      load_rotated_pair<T, HeadDim>(low, high, args.q + token * args.q_stride + head * HeadDim, v,
                                    args.batch.token_positions[token], args.rope_layout,
                                    args.rope_inverse_frequencies);
    }
    T* destination = tile + row * PrefillRows<T, HeadDim>::stride;
    math::store_vector(destination + vector_pair_dim<T, HeadDim>(v, false, 0), narrow<T>(low));
    math::store_vector(destination + vector_pair_dim<T, HeadDim>(v, true, 0), narrow<T>(high));
  }
}

// grid: (heads, tiles).
template <class T, int HeadDim>
__global__ void __launch_bounds__(PrefillShape<T>::threads) prefill_attention(const AttentionArgs<T, HeadDim> args) {
  using Shape = PrefillShape<T>;
  using Rows = PrefillRows<T, HeadDim>;
  __shared__ alignas(16) T keys[Shape::columns * Rows::stride];
  __shared__ alignas(16) T values[Shape::columns * Rows::stride];

  const AttentionMetadata& batch = args.batch;
  const int head = static_cast<int>(blockIdx.x);
  const int sequence = batch.tiles[2 * blockIdx.y];
  const int first_row = batch.tiles[2 * blockIdx.y + 1];
  const int cached = batch.cached_lengths[sequence];
  QueryTile tile;
  tile.first_token = batch.first_tokens[sequence] + first_row;
  tile.rows = min(Shape::rows, batch.new_lengths[sequence] - first_row);
  tile.first_limit = cached + first_row + 1;
  const int limit = tile.limit(Shape::rows - 1);  // what the tile's last row sees

  load_query_tile(keys, args, tile, head);
  __syncthreads();
  Rows work(keys, tile, args.scale, static_cast<int>(threadIdx.x));
  __syncthreads();

  const std::size_t base = args.cache_offset(batch.cache_slots[sequence], head / args.group_size, 0);
  const T* key_block = args.cache_keys + base;
  const T* value_block = args.cache_values + base;
  const int kv_tiles = (limit + Shape::columns - 1) / Shape::columns;
  // Every iteration commits exactly one group after each stage (empty at the
  // end), so "at most one group in flight" always means the older one landed.
  load_tile_async<T, HeadDim>(keys, key_block, 0, limit);
  commit_async();
  load_tile_async<T, HeadDim>(values, value_block, 0, limit);
  commit_async();
  for (int j = 0; j < kv_tiles; ++j) {
    const int next = (j + 1) * Shape::columns;
    wait_async<1>();  // K tile j
    __syncthreads();
    work.scores(keys, j * Shape::columns);
    __syncthreads();
    if (j + 1 < kv_tiles) load_tile_async<T, HeadDim>(keys, key_block, next, limit);
    commit_async();
    wait_async<1>();  // V tile j
    __syncthreads();
    work.accumulate(values);
    __syncthreads();
    if (j + 1 < kv_tiles) load_tile_async<T, HeadDim>(values, value_block, next, limit);
    commit_async();
  }
  work.store(args, tile, head);
}

}  // namespace kernels

// Enqueues prefill attention over the metadata's query tiles.
template <class T, int HeadDim>
void launch_prefill_attention(const AttentionArgs<T, HeadDim>& args, cudaStream_t stream) {
  if (args.batch.tile_count == 0) return;
  const dim3 grid(static_cast<unsigned>(args.heads), static_cast<unsigned>(args.batch.tile_count));
  kernels::prefill_attention<T, HeadDim><<<grid, PrefillShape<T>::threads, 0, stream>>>(args);
  ELASTIC_CUDA_CHECK_LAUNCH();
}

}  // namespace elastic::cuda
