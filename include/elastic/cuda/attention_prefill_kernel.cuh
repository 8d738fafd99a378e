// Prefill attention for the general ragged, causal case, FlashAttention-2
// style: each thread block takes one query tile (PrefillShape::rows new
// tokens of one sequence, as the metadata lists them, longest first) and one
// query head, keeps the tile's queries, outputs and online softmax states in
// registers, and streams the K/V rows the tile can see, [0, cached + last
// row + 1), through shared memory in tiles of PrefillShape::columns
// positions, double-buffered with cp.async: tile j + 1 loads while tile j is
// used. Rows past the sequence's end are computed with its last row's mask
// and not stored. Query heads of one KV group run in neighbouring blocks and
// share the group's K/V through L2. The queries are rotated (RoPE, in
// float32, rounded to T) into the second K/V stage while the first tile
// loads; the block then holds them in registers.
//
// Split K/V ranges (flash-decoding applied to prefill): when heads x query
// tiles would not fill the device (fewer blocks than the SMs hold at once),
// the host cuts each tile's K/V range into splits of one chunk per call, a
// whole number of K/V tiles (math::prefill_split_chunk: the call's K/V tiles
// x heads shared over the resident blocks), and the grid runs (tile, split)
// work items, longest first. A split block runs the same loop over its
// chunk and writes its rows' unnormalised outputs and (max, sum) states,
// float32, into partials in the workspace; merge_prefill_splits then merges
// a tile's splits in split order with math::softmax_merge and writes the
// rows. A tile that sees one chunk or less (every tile, when the grid is
// already full) writes its output directly, and a call where no tile
// splits has no partials and no merge.
//
// Softmax in base 2 (math/attention_tiles.hpp): log2(e) is folded into the
// softmax scale, each weight is one ex2 of a fused multiply-add, and the
// epilogue multiplies by one reciprocal per row. The arithmetic is a policy:
//
//   TensorCoreRows<T, D>  float16 / bfloat16: 128 query rows over 8 warps,
//                         16 rows each; S = Q K^T and O += P V on tensor
//                         cores (mma.sync m16n8k16, float32 accumulation,
//                         operands through ldmatrix, P read straight from
//                         S's accumulators and rounded to T as in
//                         FlashAttention-2). K/V tiles of 64 positions. Each
//                         warp classifies each K/V tile for its 16 rows:
//                         wholly visible (no mask), partly (the diagonal or
//                         the sequence's end crosses it: masked; at most two
//                         per warp and tile of queries) or not at all
//                         (skipped: a quarter of the diagonal work).
//   CudaCoreRows<D>       float32: 32 rows, four threads per query row, each
//                         with a quarter of the head dimensions, scores summed
//                         with two shuffles, all in float32 FMAs; masked on
//                         every tile.
//
// Resources on sm_90 (nvcc 13.0, -Xptxas -v; the same in every translation
// unit that instantiates the kernel), dynamic shared memory = 4 K/V tiles:
//
//   T, head_dim    threads  registers  spills  shared memory  blocks per SM
//   bf16/f16, 128  256      223        none    69,632 B       1 (registers; 8 warps)
//   bf16/f16, 64   256      128        8 B     36,864 B       2 (registers; 16 warps)
//   float, 128     128      243        none    65,536 B       2 (registers)
//   float, 64      128      157        none    32,768 B       3 (registers)
//   merge_prefill_splits, every T and head_dim: 256 threads, 46 registers,
//   no spills, no shared memory
//
// The partial store costs the float32 kernels registers (198 and 143 before
// it) but no residency; at 16 bits it changed nothing at head_dim 128 and
// cut the spill at 64 from 20 to 8 bytes (local loads through L1, against
// 64 mma.sync per warp and K/V tile: the price of two blocks per SM).
// (32 bytes of stack in each hold the rotated query vectors of the prologue.)
// Above 48 KB the launch needs the opt-in (cuda/dynamic_shared_memory.cuh).
//
// Expected rate (no device measurement yet), bf16 at head_dim 128: a K/V tile
// is 1024 mma.sync per block (4.2 MFLOP) against 8192 ex2 (512 cycles of
// MUFU at 16 per cycle and SM) and about 180 other instructions per thread
// (360 issue cycles per SM), so with 8 warps per SM (two per scheduler: one in
// its softmax while the other multiplies) long causal sequences should run
// at about 300-380 TFLOP/s on H100/H200, 0.4-0.48x of the measured ~800
// TFLOP/s bf16 GEMM: mma.sync issues at about two thirds of Hopper's wgmma
// rate, so 0.5x and above needs wgmma with TMA loads (FlashAttention-3's
// route). Short sequences were bound by the longest tile: at 512 tokens x 8
// heads the unsplit grid is 4 tiles x 8 heads = 32 blocks on 132 SMs, and
// the last tile's warps each stream 512 positions (8 K/V tiles) for their
// 16 rows; shorter query tiles or more heads per block do not shorten that
// chain (every warp owns 16 rows however tall the tile). With the split
// (132 SMs, one block each at head_dim 128) the tiles' 20 K/V tiles x 8
// heads give a chunk of 2 K/V tiles: 1 + 2 + 3 + 4 = 10 work items x 8
// heads = 80 blocks of at most 128 positions, a quarter of the chain, plus
// 9 x 8 partial slots (4.7 MB of float32, written and read back through L2)
// and a merge grid of 8 x 4 blocks (8 of which return at once). At 32
// heads (128 unsplit blocks) the chunk is 5 K/V tiles: 6 work items x 32
// heads = 192 blocks of at most 320 positions, against 8 K/V tiles; from
// 33 heads on (132 blocks) nothing splits. Whether the merge pass and the
// partial traffic leave a net gain at 512 tokens waits for a device run
// (elastic_cuda_attention_benchmark, prefill context:512, whose blocks and
// split_chunk counters report the plan).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "elastic/core/attention_batch.hpp"
#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/macros.hpp"
#include "elastic/cuda/async_copy.cuh"
#include "elastic/cuda/attention_metadata.cuh"
#include "elastic/cuda/dynamic_shared_memory.cuh"
#include "elastic/cuda/error.cuh"
#include "elastic/cuda/kv_append_kernel.cuh"
#include "elastic/cuda/warp_mma.cuh"
#include "elastic/math/attention_tiles.hpp"
#include "elastic/math/online_softmax.hpp"
#include "elastic/math/row_dot.hpp"

namespace elastic::cuda {

template <class T>
struct PrefillShape {
  static constexpr bool tensor_cores = !std::is_same_v<T, float>;
  static constexpr int rows = tensor_cores ? 128 : 32;     // query rows per block (the metadata's tile)
  static constexpr int columns = tensor_cores ? 64 : 32;   // K/V positions per tile
  static constexpr int threads = tensor_cores ? 256 : 128;
  // Elements added to each shared row: 16 bytes, so the eight rows one
  // ldmatrix reads fall into different banks.
  static constexpr int padding = tensor_cores ? 8 : 0;
  static_assert(rows <= 2 * columns, "the query tile lives in the second K/V stage");
};

// The block's dynamic shared memory: K and V tiles in two stages,
// [K0][V0][K1][V1], each tile `columns` rows of `stride` elements. The
// rotated query tile occupies stage 1 until the queries are in registers;
// stage 0 loads meanwhile.
template <class T, int HeadDim>
struct PrefillSharedLayout {
  using Shape = PrefillShape<T>;
  static constexpr int stride = HeadDim + Shape::padding;
  static constexpr int tile_elements = Shape::columns * stride;
  static constexpr std::size_t bytes = 4 * static_cast<std::size_t>(tile_elements) * sizeof(T);

  ELASTIC_HOST_DEVICE static constexpr int keys(int stage) { return 2 * stage * tile_elements; }
  ELASTIC_HOST_DEVICE static constexpr int values(int stage) { return keys(stage) + tile_elements; }
  ELASTIC_HOST_DEVICE static constexpr int queries() { return keys(1); }
};

// Blocks per SM the kernel is compiled for, and the split plan aims at: two
// at head_dim 64 (at most 128 registers a thread), one at 128 (its O, S and
// Q fragments alone take 128).
template <class T>
inline constexpr int prefill_blocks_per_sm(int head_dim) {
  return PrefillShape<T>::tensor_cores && head_dim == 64 ? 2 : 1;
}

// The split plan of a prefill call with `heads` query heads on a device of
// sm_count multiprocessors (see PrefillSplitPlan).
template <class T>
PrefillSplitPlan plan_prefill_splits(const AttentionBatch& batch, int heads, int head_dim, int sm_count) {
  using Shape = PrefillShape<T>;
  const long long target_blocks = static_cast<long long>(std::max(sm_count, 1)) * prefill_blocks_per_sm<T>(head_dim);
  return make_prefill_split_plan(batch, Shape::rows, Shape::columns, heads, target_blocks);
}

// Throws unless the prefill grid (heads x work items) can be launched.
inline void check_prefill_grid(const PrefillSplitPlan& plan) {
  require(plan.work <= 65535, "attention: prefill takes at most 65535 query tiles (and splits) per call, found ",
          plan.work);
}

// The split partials of a prefill call: slot (partial slot * heads + head)
// holds, for each of the query tile's PrefillShape<T>::rows rows, the
// softmax state of the split (maximum in natural units) at index slot *
// rows + row and the unnormalised output, HeadDim floats, at (slot * rows +
// row) * HeadDim. Null when no tile of the call splits.
struct PrefillPartials {
  math::SoftmaxState* states = nullptr;
  float* values = nullptr;
};

// Two floats rounded to T in one 32-bit register, the first in the low half
// (the element order of mma operands).
template <class T>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE std::uint32_t pack_pair(float first, float second) {
  return static_cast<std::uint32_t>(from_float<T>(first).bits) |
         static_cast<std::uint32_t>(from_float<T>(second).bits) << 16;
}

namespace kernels {

// Quad reductions: the four lanes 4g..4g+3 hold the columns of the same rows.
__device__ __forceinline__ float quad_max(float value) {
  value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, 1));
  return fmaxf(value, __shfl_xor_sync(0xffffffffu, value, 2));
}
__device__ __forceinline__ float quad_sum(float value) {
  value += __shfl_xor_sync(0xffffffffu, value, 1);
  return value + __shfl_xor_sync(0xffffffffu, value, 2);
}

// float16 / bfloat16 on tensor cores: warp w owns query rows [16w, 16w + 16)
// of the tile; its Q fragments stay in registers, S of one K/V tile and O
// live in m16n8 accumulators.
template <class T, int HeadDim>
struct TensorCoreRows {
  using Shape = PrefillShape<T>;
  static constexpr int stride = PrefillSharedLayout<T, HeadDim>::stride;
  static constexpr int band_rows = 16;
  static constexpr int head_steps = HeadDim / 16;             // k-steps of S = Q K^T
  static constexpr int score_tiles = Shape::columns / 8;      // n-tiles of S
  static constexpr int position_steps = Shape::columns / 16;  // k-steps of O += P V
  static constexpr int output_tiles = HeadDim / 8;            // n-tiles of O
  static_assert(Shape::rows == band_rows * Shape::threads / 32, "each warp owns 16 query rows");

  std::uint32_t query[head_steps][4];
  float score[score_tiles][4];
  float output[output_tiles][4] = {};
  math::SoftmaxState state[2];  // rows lane / 4 and lane / 4 + 8 of the band; sums are this lane's columns only
  int limit[2];
  math::QueryRows rows;
  int first_row;  // the band's first row in the tile
  int lane;
  float scale;  // log2(e) times the softmax scale

  // `tile`: the rotated queries, [Shape::rows x stride] in shared memory.
  __device__ TensorCoreRows(const T* tile, const math::QueryRows& rows_, float log2_scale, int thread)
      : rows(rows_), first_row(thread / 32 * band_rows), lane(thread % 32), scale(log2_scale) {
    for (int r = 0; r < 2; ++r) limit[r] = rows.limit(first_row + math::accumulator_row(lane, 2 * r));
    const math::TileCoord at = math::ldmatrix_down_then_across(lane);
    ELASTIC_UNROLL
    for (int k = 0; k < head_steps; ++k)
      warp_mma::ldmatrix_x4(query[k], tile + (first_row + at.row) * stride + k * 16 + at.column);
  }

  // One K/V tile starting at cache position first_position: skipped when the
  // band sees none of it, masked only when the band sees part of it.
  __device__ void step(const T* keys, const T* values, int first_position) {
    const math::KeyTileVisibility visibility =
        math::key_tile_visibility(rows, first_row, band_rows, first_position, Shape::columns);
    if (visibility == math::KeyTileVisibility::none) return;
    if (visibility == math::KeyTileVisibility::whole) {
      scores<false>(keys, first_position);
    } else {
      scores<true>(keys, first_position);
    }
    accumulate(values);
  }

  // S = Q K^T for the K tile; starts the tile in each row's softmax and
  // turns S into P (unnormalised, relative to the row's running maximum).
  template <bool Masked>
  __device__ void scores(const T* keys, int first_position) {
    const math::TileCoord at = math::ldmatrix_across_then_down(lane);
    ELASTIC_UNROLL
    for (int n = 0; n < score_tiles; ++n)
      ELASTIC_UNROLL
      for (int i = 0; i < 4; ++i) score[n][i] = 0.0f;
    ELASTIC_UNROLL
    for (int k = 0; k < head_steps; ++k)
      ELASTIC_UNROLL
      for (int n = 0; n < score_tiles; n += 2) {
        std::uint32_t b[4];
        warp_mma::ldmatrix_x4(b, keys + (n * 8 + at.row) * stride + k * 16 + at.column);
        warp_mma::mma_m16n8k16<T>(score[n], query[k], b[0], b[1]);
        warp_mma::mma_m16n8k16<T>(score[n + 1], query[k], b[2], b[3]);
      }
    ELASTIC_UNROLL
    for (int r = 0; r < 2; ++r) {
      float tile_max = -INFINITY;
      ELASTIC_UNROLL
      for (int n = 0; n < score_tiles; ++n)
        ELASTIC_UNROLL
        for (int c = 0; c < 2; ++c) {
          float& s = score[n][2 * r + c];
          if constexpr (Masked) {
            if (first_position + n * 8 + math::accumulator_column(lane, c) >= limit[r]) s = -INFINITY;
          }
          tile_max = fmaxf(tile_max, s);
        }
      // The scale is positive: the maximum of the scaled scores is the scaled maximum.
      const float rescale = math::begin_tile(state[r], quad_max(tile_max) * scale);
      const float offset = math::exponent_offset(state[r]);
      ELASTIC_UNROLL
      for (int n = 0; n < score_tiles; ++n)
        ELASTIC_UNROLL
        for (int c = 0; c < 2; ++c) {
          float& s = score[n][2 * r + c];
          s = math::softmax_exp2(fmaf(s, scale, -offset));
          state[r].sum += s;
        }
      ELASTIC_UNROLL
      for (int n = 0; n < output_tiles; ++n) {
        output[n][2 * r] *= rescale;
        output[n][2 * r + 1] *= rescale;
      }
    }
  }

  // O += P V for the V tile; P is rounded to T, as in FlashAttention-2.
  __device__ void accumulate(const T* values) {
    const math::TileCoord at = math::ldmatrix_down_then_across(lane);
    ELASTIC_UNROLL
    for (int k = 0; k < position_steps; ++k) {
      std::uint32_t p[4];
      ELASTIC_UNROLL
      for (int reg = 0; reg < 4; ++reg) {
        const float(&tile)[4] = score[math::probability_tile(k, reg)];
        p[reg] = pack_pair<T>(tile[math::probability_element(reg, 0)], tile[math::probability_element(reg, 1)]);
      }
      ELASTIC_UNROLL
      for (int n = 0; n < output_tiles; n += 2) {
        std::uint32_t b[4];
        warp_mma::ldmatrix_x4_trans(b, values + (k * 16 + at.row) * stride + n * 8 + at.column);
        warp_mma::mma_m16n8k16<T>(output[n], p, b[0], b[1]);
        warp_mma::mma_m16n8k16<T>(output[n + 1], p, b[2], b[3]);
      }
    }
  }

  // Writes the valid rows, times the reciprocal of their softmax sums, for `head`.
  __device__ void store(const AttentionArgs<T, HeadDim>& args, int head) {
    ELASTIC_UNROLL
    for (int r = 0; r < 2; ++r) {
      const float inverse_sum = 1.0f / quad_sum(state[r].sum);
      const int row = first_row + math::accumulator_row(lane, 2 * r);
      if (row >= rows.rows) continue;
      T* destination = args.out + (rows.first_token + row) * args.out_stride + head * HeadDim;
      ELASTIC_UNROLL
      for (int n = 0; n < output_tiles; ++n)
        *reinterpret_cast<std::uint32_t*>(destination + n * 8 + math::accumulator_column(lane, 0)) =
            pack_pair<T>(output[n][2 * r] * inverse_sum, output[n][2 * r + 1] * inverse_sum);
    }
  }

  // Writes the valid rows' unnormalised outputs and softmax states into
  // partial slot `slot` (PrefillPartials).
  __device__ void store_partial(const PrefillPartials& partials, std::size_t slot) {
    ELASTIC_UNROLL
    for (int r = 0; r < 2; ++r) {
      const float sum = quad_sum(state[r].sum);
      const int row = first_row + math::accumulator_row(lane, 2 * r);
      if (row >= rows.rows) continue;
      const std::size_t at = slot * Shape::rows + row;
      if (lane % 4 == 0) partials.states[at] = math::SoftmaxState{math::natural_max(state[r].max), sum};
      float* destination = partials.values + at * HeadDim;
      ELASTIC_UNROLL
      for (int n = 0; n < output_tiles; ++n)
        *reinterpret_cast<float2*>(destination + n * 8 + math::accumulator_column(lane, 0)) =
            make_float2(output[n][2 * r], output[n][2 * r + 1]);
    }
  }
};

// float32 on CUDA cores: four threads per query row, each with a quarter of
// the head dimensions, scores summed with two shuffles, all in float32 FMAs.
template <int HeadDim>
struct CudaCoreRows {
  using Shape = PrefillShape<float>;
  static constexpr int stride = PrefillSharedLayout<float, HeadDim>::stride;
  static constexpr int threads_per_row = 4;
  static constexpr int vectors = HeadDim / 4 / threads_per_row;  // float4 vectors per thread
  static_assert(Shape::rows * threads_per_row == Shape::threads, "four threads per query row");

  float query[vectors][4];
  float output[vectors][4] = {};
  float score[Shape::columns];
  math::SoftmaxState state;
  math::QueryRows rows;
  int row;
  int part;  // this thread owns float4 vectors part, part + 4, part + 8, ... of the row
  int limit;

  // The queries are scaled by log2_scale once, so the scores come out in base 2.
  __device__ CudaCoreRows(const float* tile, const math::QueryRows& rows_, float log2_scale, int thread)
      : rows(rows_), row(thread / threads_per_row), part(thread % threads_per_row), limit(rows.limit(row)) {
    ELASTIC_UNROLL
    for (int i = 0; i < vectors; ++i)
      ELASTIC_UNROLL
      for (int e = 0; e < 4; ++e) query[i][e] = tile[row * stride + dim(i, e)] * log2_scale;
  }

  __device__ int dim(int i, int e) const { return (i * threads_per_row + part) * 4 + e; }

  __device__ void step(const float* keys, const float* values, int first_position) {
    scores(keys, first_position);
    accumulate(values);
  }

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
    const float rescale = math::begin_tile(state, tile_max);
    const float offset = math::exponent_offset(state);
    ELASTIC_UNROLL
    for (int p = 0; p < Shape::columns; ++p) {
      score[p] = math::softmax_exp2(score[p] - offset);
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

  __device__ void store(const AttentionArgs<float, HeadDim>& args, int head) {
    if (row >= rows.rows) return;
    const float inverse_sum = 1.0f / state.sum;
    float* destination = args.out + (rows.first_token + row) * args.out_stride + head * HeadDim;
    ELASTIC_UNROLL
    for (int i = 0; i < vectors; ++i)
      *reinterpret_cast<float4*>(destination + dim(i, 0)) =
          make_float4(output[i][0] * inverse_sum, output[i][1] * inverse_sum, output[i][2] * inverse_sum,
                      output[i][3] * inverse_sum);
  }

  // The row's unnormalised output and softmax state into partial slot `slot`.
  __device__ void store_partial(const PrefillPartials& partials, std::size_t slot) {
    if (row >= rows.rows) return;
    const std::size_t at = slot * Shape::rows + row;
    if (part == 0) partials.states[at] = math::SoftmaxState{math::natural_max(state.max), state.sum};
    float* destination = partials.values + at * HeadDim;
    ELASTIC_UNROLL
    for (int i = 0; i < vectors; ++i)
      *reinterpret_cast<float4*>(destination + dim(i, 0)) =
          make_float4(output[i][0], output[i][1], output[i][2], output[i][3]);
  }
};

template <class T, int HeadDim>
using PrefillRows =
    std::conditional_t<PrefillShape<T>::tensor_cores, TensorCoreRows<T, HeadDim>, CudaCoreRows<HeadDim>>;

// Thread `thread` starts its share of copying K/V positions [first, first +
// columns) of one (slot, head) block of the cache into a shared tile;
// positions at or past `limit` become zeros (they are masked, and zeros keep
// 0 * value finite).
template <class T, int HeadDim>
__device__ __forceinline__ void load_tile_async(T* tile, const T* block, int first, int limit, int thread) {
  using Shape = PrefillShape<T>;
  constexpr int kWidth = math::vector_width<T>;
  constexpr int kVectors = HeadDim / kWidth;
  static_assert(Shape::columns * kVectors % Shape::threads == 0, "every thread copies the same number of vectors");
  ELASTIC_UNROLL
  for (int k = 0; k < Shape::columns * kVectors / Shape::threads; ++k) {
    const int i = thread + k * Shape::threads;
    const int row = i / kVectors;
    const int column = i % kVectors * kWidth;
    const bool inside = first + row < limit;
    const T* source = inside ? block + static_cast<std::size_t>(first + row) * HeadDim + column : block;
    async_copy::copy_16(tile + row * PrefillSharedLayout<T, HeadDim>::stride + column, source, inside ? 16 : 0);
  }
}

// Thread `thread` loads its share of the tile's queries for `head`, rotated
// for their positions and rounded to T, into `tile` (rows x stride); padding
// rows become zeros.
template <class T, int HeadDim>
__device__ __forceinline__ void load_query_tile(T* tile, const AttentionArgs<T, HeadDim>& args,
                                                const math::QueryRows& rows, int head, int thread) {
  using Shape = PrefillShape<T>;
  constexpr int kPairs = rope_vector_pairs<T, HeadDim>;
  for (int i = thread; i < Shape::rows * kPairs; i += Shape::threads) {
    const int row = i / kPairs;
    const int v = i % kPairs;
    VectorFloats<T> low = {}, high = {};
    if (row < rows.rows) {
      const int token = rows.first_token + row;
      load_rotated_pair<T, HeadDim>(low, high, args.q + token * args.q_stride + head * HeadDim, v,
                                    args.batch.token_positions[token], args.rope_layout,
                                    args.rope_inverse_frequencies);
    }
    T* destination = tile + row * PrefillSharedLayout<T, HeadDim>::stride;
    math::store_vector(destination + vector_pair_dim<T, HeadDim>(v, false, 0), narrow<T>(low));
    math::store_vector(destination + vector_pair_dim<T, HeadDim>(v, true, 0), narrow<T>(high));
  }
}

// grid: (heads, work items); PrefillSharedLayout<T, HeadDim>::bytes of
// dynamic shared memory. A block runs split `split` of its query tile: the
// K/V tiles of math::prefill_split_range, then the output (a tile of one
// split) or its partial slot.
template <class T, int HeadDim>
__global__ void __launch_bounds__(PrefillShape<T>::threads, (prefill_blocks_per_sm<T>(HeadDim)))
    prefill_attention(const AttentionArgs<T, HeadDim> args, const PrefillPartials partials) {
  using Shape = PrefillShape<T>;
  using Layout = PrefillSharedLayout<T, HeadDim>;
  using Rows = PrefillRows<T, HeadDim>;
  extern __shared__ __align__(16) unsigned char prefill_shared[];
  T* shared = reinterpret_cast<T*>(prefill_shared);
  const int thread = static_cast<int>(threadIdx.x);

  const AttentionMetadata& batch = args.batch;
  const int head = static_cast<int>(blockIdx.x);
  const int* entry = batch.tiles + 4 * batch.work[2 * blockIdx.y];
  const int split = batch.work[2 * blockIdx.y + 1];
  const int sequence = entry[0];
  const int first_row = entry[1];
  math::QueryRows tile;
  tile.first_token = batch.first_tokens[sequence] + first_row;
  tile.rows = min(Shape::rows, batch.new_lengths[sequence] - first_row);
  tile.first_limit = batch.cached_lengths[sequence] + first_row + 1;
  // What the tile's last row sees, cut to this split's share; the share
  // starts on a K/V tile edge.
  const math::KeyRange range = math::prefill_split_range(tile.limit(Shape::rows - 1), batch.key_chunk, split);
  const int first_position = range.begin;
  const int key_tiles = math::key_tile_count(range.end - first_position, Shape::columns);

  const std::size_t base = args.cache_offset(batch.cache_slots[sequence], head / args.group_size, 0);
  const T* key_block = args.cache_keys + base;
  const T* value_block = args.cache_values + base;
  // K/V tile 0 into stage 0 while the queries are rotated into stage 1.
  load_tile_async<T, HeadDim>(shared + Layout::keys(0), key_block, first_position, range.end, thread);
  load_tile_async<T, HeadDim>(shared + Layout::values(0), value_block, first_position, range.end, thread);
  async_copy::commit();
  load_query_tile(shared + Layout::queries(), args, tile, head, thread);
  __syncthreads();
  Rows work(shared + Layout::queries(), tile, math::log2_softmax_scale(args.scale), thread);
  __syncthreads();  // stage 1 is free

  // Each iteration commits exactly one group (empty at the end), so "at
  // most one group in flight" means that tile j has landed.
  for (int j = 0; j < key_tiles; ++j) {
    const int stage = j % 2;
    if (j + 1 < key_tiles) {
      const int next = first_position + (j + 1) * Shape::columns;
      load_tile_async<T, HeadDim>(shared + Layout::keys(1 - stage), key_block, next, range.end, thread);
      load_tile_async<T, HeadDim>(shared + Layout::values(1 - stage), value_block, next, range.end, thread);
    }
    async_copy::commit();
    async_copy::wait<1>();
    __syncthreads();
    work.step(shared + Layout::keys(stage), shared + Layout::values(stage), first_position + j * Shape::columns);
    __syncthreads();  // the next iteration refills this stage
  }
  if (entry[2] == 1) {
    work.store(args, head);
  } else {
    work.store_partial(partials, static_cast<std::size_t>(entry[3] + split) * args.heads + head);
  }
}

inline constexpr int prefill_merge_threads = 256;

// grid: (heads, tiles), prefill_merge_threads threads. Merges the partials
// of each split tile in split order with math::softmax_merge and writes its
// rows; tiles of one split were finished by prefill_attention.
template <class T, int HeadDim>
__global__ void __launch_bounds__(prefill_merge_threads)
    merge_prefill_splits(const AttentionArgs<T, HeadDim> args, const PrefillPartials partials) {
  using Shape = PrefillShape<T>;
  constexpr int kVectors = HeadDim / 4;  // float4 vectors per row
  const int head = static_cast<int>(blockIdx.x);
  const int* entry = args.batch.tiles + 4 * blockIdx.y;
  const int splits = entry[2];
  if (splits == 1) return;
  const int sequence = entry[0];
  const int first_row = entry[1];
  const int rows = min(Shape::rows, args.batch.new_lengths[sequence] - first_row);
  const int first_token = args.batch.first_tokens[sequence] + first_row;
  for (int i = static_cast<int>(threadIdx.x); i < rows * kVectors; i += prefill_merge_threads) {
    const int row = i / kVectors;
    const int column = i % kVectors * 4;
    math::SoftmaxState state;
    float merged[4] = {};
    for (int split = 0; split < splits; ++split) {
      const std::size_t at =
          (static_cast<std::size_t>(entry[3] + split) * args.heads + head) * Shape::rows + row;
      float scale_merged, scale_split;
      math::softmax_merge(state, partials.states[at], scale_merged, scale_split);
      const float4 value = *reinterpret_cast<const float4*>(partials.values + at * HeadDim + column);
      merged[0] = merged[0] * scale_merged + value.x * scale_split;
      merged[1] = merged[1] * scale_merged + value.y * scale_split;
      merged[2] = merged[2] * scale_merged + value.z * scale_split;
      merged[3] = merged[3] * scale_merged + value.w * scale_split;
    }
    const float inverse_sum = 1.0f / state.sum;
    T* destination = args.out + (first_token + row) * args.out_stride + head * HeadDim + column;
    ELASTIC_UNROLL
    for (int e = 0; e < 4; ++e) destination[e] = from_float<T>(merged[e] * inverse_sum);
  }
}

}  // namespace kernels

// Enqueues prefill attention over the metadata's work items and, when a
// tile splits (partials not null), the merge of its splits.
template <class T, int HeadDim>
void launch_prefill_attention(const AttentionArgs<T, HeadDim>& args, const PrefillPartials& partials,
                              cudaStream_t stream) {
  if (args.batch.work_count == 0) return;
  // Above 48 KB of dynamic shared memory the launch needs the opt-in.
  const int allowed = allow_most_dynamic_shared_memory<kernels::prefill_attention<T, HeadDim>>();
  require(static_cast<std::size_t>(allowed) >= PrefillSharedLayout<T, HeadDim>::bytes, "attention: prefill needs ",
          PrefillSharedLayout<T, HeadDim>::bytes, " bytes of shared memory per block, the device allows ", allowed);
  const dim3 grid(static_cast<unsigned>(args.heads), static_cast<unsigned>(args.batch.work_count));
  kernels::prefill_attention<T, HeadDim>
      <<<grid, PrefillShape<T>::threads, PrefillSharedLayout<T, HeadDim>::bytes, stream>>>(args, partials);
  ELASTIC_CUDA_CHECK_LAUNCH();
  if (partials.states == nullptr) return;
  const dim3 merge_grid(static_cast<unsigned>(args.heads), static_cast<unsigned>(args.batch.tile_count));
  kernels::merge_prefill_splits<T, HeadDim><<<merge_grid, kernels::prefill_merge_threads, 0, stream>>>(args, partials);
  ELASTIC_CUDA_CHECK_LAUNCH();
}

}  // namespace elastic::cuda
