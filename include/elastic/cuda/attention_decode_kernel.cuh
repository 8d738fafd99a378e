// Decode attention (flash-decoding): every sequence brings one new token, so
// each query head reads its sequence's whole KV range once and the work is
// memory-bound. To fill the GPU when there are few sequences, each sequence's
// range is cut into splits (math/decode_splits.hpp), each split runs in its
// own thread block, and a second small kernel merges the splits.
//
// One block handles one split of one sequence for the query heads of one KV
// group: Heads of them, a compile-time bucket (1, 2, 4 or 8) that covers the
// group (group 3, SmolLM2's, runs in the 4 bucket; a group larger than 8
// takes several blocks side by side in the grid, so they meet in L2). Each
// K/V row of the split is read once and scored against all of the block's
// heads. HeadDim / vector-width lanes read one cache row together (a "lane
// group"); a lane keeps its 16-byte slice of every head's rotated, scaled
// query and of every head's output accumulator in registers.
//
// Loads run ahead of the arithmetic through a ring of `stages` shared-memory
// stages filled by cp.async: each stage holds tile_rows K rows and their V
// rows, and every thread copies exactly the 16-byte pieces it later reads, so
// the ring needs no barrier, only each thread's cp.async.wait_group. While a
// tile is scored, the next stages - 1 tiles are in flight. A lane group
// scores its rows_per_group rows of a tile together and folds them into its
// online softmax with one rescale (the same result as math::softmax_push row
// by row, up to rounding). At the end the lane groups' states meet in shared
// memory (the ring's storage) and merge with math::softmax_merge. A sequence
// with one split stores its output directly; otherwise the block writes a
// partial (state + unnormalised output) into the workspace and
// combine_decode_splits() merges a sequence's partials in split order.
//
// The split plan is computed on the device: plan_decode_splits (one block)
// reads the lengths from the device metadata and writes the chunk and each
// sequence's first partial; the attention grid is sized on the host only from
// bounds (DecodeGrid, made at plan time for a maximum context), and blocks
// past their sequence's splits return at once. So nothing the host passes to
// a launch depends on the current lengths, and a captured decode step stays
// right while the sequences grow.
//
// Resources (sm_90, CUDA 13.0 -O3, -Xptxas -v: registers per thread, no
// spill stores or loads in any instantiation, a 32-byte stack frame that
// only sincosf's slow argument reduction in the query RoPE touches; static
// shared memory = the 32 KB ring + Heads * HeadDim * 4 B of queries + the
// merge states):
//
//   T          HeadDim  Heads=1  2    4    8     shared (Heads 1 / 8)   resident blocks/SM (1/2/4/8)
//   bfloat16   128      56       80   126  211   33.3 KB / 37.4 KB      6 / 6 / 4 / 2
//   bfloat16    64      63       80   126  209   33.2 KB / 35.8 KB      6 / 6 / 4 / 2
//   half       128      54       85   134  218   33.3 KB / 37.4 KB      6 / 6 / 3 / 2
//   half        64      63       86   132  216   33.2 KB / 35.8 KB      6 / 6 / 3 / 2
//   float      128      45       61   87   141   33.3 KB / 37.1 KB      6 / 6 / 5 / 3
//   float       64      45       61   89   141   33.1 KB / 35.3 KB      6 / 6 / 5 / 3
//
// (residency: 64K registers and 228 KB of shared memory per SM; the grid
// aims at decode_blocks_per_sm(Heads) = 3, or 2 for Heads 8, per SM).
// Bytes in flight: a stage is 8 KB of K + V (128 threads x 16 B x 2 rows x
// 2 tensors) for every T and HeadDim, and a block keeps 3 stages = 24 KB in
// flight while it scores the fourth; with 2-3 blocks per SM that is 48-72 KB
// per SM, and one block per SM (the 1k-context grid: 8 KV heads x 16 splits
// of 64 positions = 128 blocks) still holds 24 KB, against the ~26 KB an
// H200 SM needs to cover its latency (4.8 TB/s x ~0.7 us / 132 SMs; ~18 KB
// on an H100).
#pragma once

#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "elastic/core/attention_batch.hpp"
#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/macros.hpp"
#include "elastic/cuda/async_copy.cuh"
#include "elastic/cuda/attention_metadata.cuh"
#include "elastic/cuda/error.cuh"
#include "elastic/cuda/kv_append_kernel.cuh"
#include "elastic/math/decode_splits.hpp"
#include "elastic/math/online_softmax.hpp"
#include "elastic/math/row_dot.hpp"

namespace elastic::cuda {

// Blocks per SM a decode block of `heads` query heads is built for
// (__launch_bounds__) and the grid aims at: registers bound the residency,
// a lane holds 2 * heads * vector-width floats of queries and outputs.
inline constexpr int decode_blocks_per_sm(int heads) { return heads >= 8 ? 2 : 3; }

template <class T, int HeadDim, int Heads>
struct DecodeShape {
  static constexpr int width = math::vector_width<T>;   // elements per 16-byte vector
  static constexpr int lanes_per_row = HeadDim / width;  // lanes that read one cache row together
  static_assert(lanes_per_row <= 32 && 32 % lanes_per_row == 0, "a cache row must fit a warp in whole vectors");
  static constexpr int rows_per_warp = 32 / lanes_per_row;
  static constexpr int warps = 4;
  static constexpr int threads = warps * 32;
  static constexpr int row_groups = warps * rows_per_warp;  // lane groups per block
  static constexpr int rows_per_group = 2;                  // rows a lane group scores per tile
  static constexpr int tile_rows = row_groups * rows_per_group;
  static constexpr int stages = 4;
  static constexpr int heads = Heads;
  static_assert(Heads == 1 || Heads == 2 || Heads == 4 || Heads == 8, "decode head buckets are 1, 2, 4 and 8");
  static constexpr int blocks_per_sm = decode_blocks_per_sm(Heads);

  static constexpr int tile_elements = tile_rows * HeadDim;  // of K (and of V) per stage
  static constexpr std::size_t ring_bytes = std::size_t{stages} * 2 * tile_elements * sizeof(T);
  static constexpr std::size_t merge_bytes = std::size_t{row_groups} * Heads * HeadDim * sizeof(float);
  static constexpr std::size_t storage_bytes = ring_bytes > merge_bytes ? ring_bytes : merge_bytes;
};

// The head bucket of a GQA group: the smallest of 1, 2, 4, 8 that holds it,
// 8 for larger groups (which take several blocks).
inline constexpr int decode_heads_per_block(int group_size) {
  return group_size <= 1 ? 1 : group_size <= 2 ? 2 : group_size <= 4 ? 4 : 8;
}

// Calls f.template operator()<Heads>() for the bucket of group_size.
template <class F>
decltype(auto) with_decode_heads(int group_size, F&& f) {
  switch (decode_heads_per_block(group_size)) {
    case 1: return f.template operator()<1>();
    case 2: return f.template operator()<2>();
    case 4: return f.template operator()<4>();
    default: return f.template operator()<8>();
  }
}

// The most blocks per SM any bucket aims at: bounds the partials of every call.
inline constexpr int decode_max_blocks_per_sm = decode_blocks_per_sm(1);

// The decode grid of a plan: fixed for every length up to its maximum context.
struct DecodeGrid {
  int heads_per_block = 1;
  int head_batches = 1;      // blocks side by side for one KV group
  int split_bound = 1;       // the grid's split dimension
  long long readers = 1;     // blocks that read each KV position: kv_heads * head_batches
  long long target_blocks = 1;
};

inline DecodeGrid make_decode_grid(int group_size, int kv_heads, int max_visible, int sm_count) {
  DecodeGrid grid;
  grid.heads_per_block = decode_heads_per_block(group_size);
  grid.head_batches = (group_size + grid.heads_per_block - 1) / grid.heads_per_block;
  grid.readers = static_cast<long long>(kv_heads) * grid.head_batches;
  grid.target_blocks = static_cast<long long>(std::max(sm_count, 1)) * decode_blocks_per_sm(grid.heads_per_block);
  grid.split_bound = math::decode_split_bound(max_visible, grid.readers, grid.target_blocks);
  return grid;
}

// Split partials per query head that a decode batch of `sequences` sequences
// of at most max_visible positions may need, whatever its group size.
inline std::size_t decode_partial_slots(int sequences, int max_visible, int sm_count) {
  return static_cast<std::size_t>(math::decode_partial_slot_bound(
      sequences, max_visible, 1, static_cast<long long>(std::max(sm_count, 1)) * decode_max_blocks_per_sm));
}

// Throws unless the decode grid (splits x KV heads x sequences) can be launched.
inline void check_decode_grid(std::size_t sequences, int kv_heads) {
  require(sequences <= 65535, "attention: decode takes at most 65535 sequences per call, found ", sequences);
  require(kv_heads <= 65535, "attention: decode takes at most 65535 KV heads, found ", kv_heads);
}

// Per split slot s and query head h: the softmax state (index s * heads + h)
// and the unnormalised output (HeadDim floats at (s * heads + h) * HeadDim).
struct DecodePartials {
  math::SoftmaxState* states = nullptr;
  float* values = nullptr;
};

// One lane's share of a decode block: its `width` dimensions (its place in
// its lane group) of every head's scaled query and output, and every head's
// online softmax state over the rows its lane group has read. The kernel
// drives it; a host loop can drive every lane of a group the same way.
template <class T, int HeadDim, int Heads>
struct DecodeLane {
  using Shape = DecodeShape<T, HeadDim, Heads>;
  static constexpr int kRows = Shape::rows_per_group;
  float query[Heads][Shape::width] = {};
  float output[Heads][Shape::width] = {};
  math::SoftmaxState state[Heads];

  // This lane's part of head h's score: its slice of the query times its slice of a key.
  ELASTIC_HOST_DEVICE float partial_score(int h, const VectorFloats<T>& key) const {
    float score = 0.0f;
    ELASTIC_UNROLL
    for (int e = 0; e < Shape::width; ++e) score += query[h][e] * key[e];
    return score;
  }

  // Adds the lane group's rows of one tile to head h: their full scores, and
  // this lane's slice of their values; rows with valid[r] false add nothing.
  ELASTIC_HOST_DEVICE void push_rows(int h, const float (&scores)[kRows], const bool (&valid)[kRows],
                                     const VectorFloats<T> (&values)[kRows]) {
    float tile_max = -INFINITY;
    ELASTIC_UNROLL
    for (int r = 0; r < kRows; ++r)
      if (valid[r] && scores[r] > tile_max) tile_max = scores[r];
    const float new_max = tile_max > state[h].max ? tile_max : state[h].max;
    if (new_max == -INFINITY) return;  // nothing valid yet
    const float rescale = math::softmax_exp(state[h].max - new_max);  // 0 on the first valid tile
    float weights[kRows];
    float sum = 0.0f;
    ELASTIC_UNROLL
    for (int r = 0; r < kRows; ++r) {
      weights[r] = valid[r] ? math::softmax_exp(scores[r] - new_max) : 0.0f;
      sum += weights[r];
    }
    state[h].sum = state[h].sum * rescale + sum;
    state[h].max = new_max;
    ELASTIC_UNROLL
    for (int e = 0; e < Shape::width; ++e) {
      float value = output[h][e] * rescale;
      ELASTIC_UNROLL
      for (int r = 0; r < kRows; ++r) value += weights[r] * values[r][e];
      output[h][e] = value;
    }
  }
};

namespace kernels {

// The split plan of a decode batch from its device lengths (one block of
// Threads): the chunk of math::decode_chunk and each sequence's first
// partial slot. (Kernels in these headers are templates, so every
// translation unit that includes them may define them.)
inline constexpr int plan_threads = 256;

template <int Threads>
__global__ void __launch_bounds__(Threads)
    plan_decode_splits(const AttentionMetadata batch, DecodeDeviceFields fields, long long readers,
                       long long target_blocks, int split_bound) {
  using Reduce = cub::BlockReduce<long long, Threads>;
  using Scan = cub::BlockScan<int, Threads>;
  __shared__ union {
    typename Reduce::TempStorage reduce;
    typename Scan::TempStorage scan;
  } temp;
  __shared__ int chunk;
  const int thread = static_cast<int>(threadIdx.x);
  const auto visible = [&](int s) { return batch.cached_lengths[s] + batch.new_lengths[s]; };

  long long total = 0;
  long long longest = 0;
  for (int s = thread; s < batch.sequences; s += Threads) {
    total += visible(s);
    longest = max(longest, static_cast<long long>(visible(s)));
  }
  total = Reduce(temp.reduce).Sum(total);
  __syncthreads();
  longest = Reduce(temp.reduce).Reduce(longest, [](long long a, long long b) { return a > b ? a : b; });
  if (thread == 0) {
    chunk = math::decode_chunk(total, static_cast<int>(longest), readers, target_blocks, split_bound);
    *fields.split_chunk = chunk;
  }
  __syncthreads();

  int first = 0;
  for (int base = 0; base < batch.sequences; base += Threads) {
    const int s = base + thread;
    const int splits = s < batch.sequences ? math::decode_splits(visible(s), chunk) : 0;
    int offset, count;
    Scan(temp.scan).ExclusiveSum(splits, offset, count);
    if (s < batch.sequences) fields.first_splits[s] = first + offset;
    first += count;
    __syncthreads();
  }
  if (thread == 0) fields.first_splits[batch.sequences] = first;
}

// Rotates and scales the first `active` query heads from first_head of
// `token` into shared memory (Heads x HeadDim floats).
template <class T, int HeadDim, int Heads>
__device__ __forceinline__ void load_decode_queries(float* queries, const AttentionArgs<T, HeadDim>& args, int token,
                                                    int first_head, int active) {
  constexpr int kPairs = rope_vector_pairs<T, HeadDim>;
  const int position = args.batch.token_positions[token];
  for (int item = static_cast<int>(threadIdx.x); item < active * kPairs;
       item += DecodeShape<T, HeadDim, Heads>::threads) {
    const int h = item / kPairs;
    const int v = item % kPairs;
    VectorFloats<T> low, high;
    load_rotated_pair<T, HeadDim>(low, high, args.q + token * args.q_stride + (first_head + h) * HeadDim, v, position,
                                  args.rope_layout, args.rope_inverse_frequencies);
    ELASTIC_UNROLL
    for (int e = 0; e < math::vector_width<T>; ++e) {
      queries[h * HeadDim + vector_pair_dim<T, HeadDim>(v, false, e)] = low[e] * args.scale;
      queries[h * HeadDim + vector_pair_dim<T, HeadDim>(v, true, e)] = high[e] * args.scale;
    }
  }
}

// grid: (split_bound * head_batches, kv_heads, sequences); blocks past their
// sequence's split count, or past the group's last head, return at once.
template <class T, int HeadDim, int Heads>
__global__ void __launch_bounds__(DecodeShape<T, HeadDim, Heads>::threads,
                                  DecodeShape<T, HeadDim, Heads>::blocks_per_sm)
    decode_attention(const AttentionArgs<T, HeadDim> args, const DecodePartials partials, const int head_batches) {
  using Shape = DecodeShape<T, HeadDim, Heads>;
  constexpr int kRows = Shape::rows_per_group;
  const AttentionMetadata& batch = args.batch;
  const int sequence = static_cast<int>(blockIdx.z);
  const int group = static_cast<int>(blockIdx.y);
  const int split = static_cast<int>(blockIdx.x) / head_batches;
  const int first_split = batch.first_splits[sequence];
  const int splits = batch.first_splits[sequence + 1] - first_split;
  if (split >= splits) return;
  const int first_head = group * args.group_size + static_cast<int>(blockIdx.x) % head_batches * Heads;
  const int active = min(Heads, min((group + 1) * args.group_size, args.heads) - first_head);
  if (active <= 0) return;

  const int token = batch.first_tokens[sequence];
  const int chunk = *batch.split_chunk;
  const int begin = split * chunk;
  const int end = min(batch.cached_lengths[sequence] + batch.new_lengths[sequence], begin + chunk);
  const int tiles = (end - begin + Shape::tile_rows - 1) / Shape::tile_rows;

  __shared__ alignas(16) unsigned char storage[Shape::storage_bytes];
  __shared__ alignas(16) float queries[Heads * HeadDim];
  T* const ring = reinterpret_cast<T*>(storage);

  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int lane_in_row = lane % Shape::lanes_per_row;
  const int row_group = static_cast<int>(threadIdx.x) / 32 * Shape::rows_per_warp + lane / Shape::lanes_per_row;
  const std::size_t base = args.cache_offset(batch.cache_slots[sequence], group, 0) + lane_in_row * Shape::width;
  const T* const keys = args.cache_keys + base;
  const T* const values = args.cache_values + base;
  // This thread's piece of row r of a stage (K; V follows tile_elements later).
  const auto piece = [&](int stage, int r) {
    return ring + (2 * stage * Shape::tile_rows + r) * HeadDim + lane_in_row * Shape::width;
  };
  const auto tile_row = [&](int r) { return r * Shape::row_groups + row_group; };
  // Starts the copy of this thread's pieces of tile t (rows past `end` are
  // zero-filled) and commits a group, empty past the last tile, so that
  // async_copy::wait counts tiles.
  const auto fetch = [&](int t) {
    if (t < tiles) {
      const int stage = t % Shape::stages;
      ELASTIC_UNROLL
      for (int r = 0; r < kRows; ++r) {
        const int row = begin + t * Shape::tile_rows + tile_row(r);
        const std::size_t offset = static_cast<std::size_t>(row < end ? row : begin) * HeadDim;
        const int bytes = row < end ? 16 : 0;
        async_copy::copy_16(piece(stage, tile_row(r)), keys + offset, bytes);
        async_copy::copy_16(piece(stage, tile_row(r)) + Shape::tile_elements, values + offset, bytes);
      }
    }
    async_copy::commit();
  };
  ELASTIC_UNROLL
  for (int t = 0; t < Shape::stages - 1; ++t) fetch(t);

  load_decode_queries<T, HeadDim, Heads>(queries, args, token, first_head, active);
  __syncthreads();
  DecodeLane<T, HeadDim, Heads> work;
  ELASTIC_UNROLL
  for (int h = 0; h < Heads; ++h)
    if (h < active)
      ELASTIC_UNROLL
      for (int e = 0; e < Shape::width; ++e) work.query[h][e] = queries[h * HeadDim + lane_in_row * Shape::width + e];

  // The loop bounds are the same for the whole block, so every lane of a warp
  // takes part in the lane-group shuffles.
  for (int t = 0; t < tiles; ++t) {
    async_copy::wait<Shape::stages - 2>();  // tile t has landed
    fetch(t + Shape::stages - 1);            // into the stage this thread finished reading last round
    const int stage = t % Shape::stages;
    float scores[Heads][kRows];
    bool valid[kRows];
    VectorFloats<T> row_values[kRows];
    ELASTIC_UNROLL
    for (int r = 0; r < kRows; ++r) {
      valid[r] = begin + t * Shape::tile_rows + tile_row(r) < end;
      VectorFloats<T> key;
      widen<T>(*reinterpret_cast<const math::Vector16<T>*>(piece(stage, tile_row(r))), key);
      widen<T>(*reinterpret_cast<const math::Vector16<T>*>(piece(stage, tile_row(r)) + Shape::tile_elements),
               row_values[r]);
      ELASTIC_UNROLL
      for (int h = 0; h < Heads; ++h) {
        if (h >= active) break;  // the same for the whole block
        float score = work.partial_score(h, key);
        ELASTIC_UNROLL
        for (int offset = Shape::lanes_per_row / 2; offset > 0; offset /= 2)
          score += __shfl_xor_sync(0xffffffffu, score, offset);
        scores[h][r] = score;
      }
    }
    ELASTIC_UNROLL
    for (int h = 0; h < Heads; ++h) {
      if (h >= active) break;
      work.push_rows(h, scores[h], valid, row_values);
    }
  }
  async_copy::wait<0>();
  __syncthreads();  // every lane is done with the ring: its storage now holds the merge

  // Merge the lane groups' states and outputs, one (head, dimension) per thread.
  __shared__ float group_max[Shape::row_groups * Heads];
  __shared__ float group_sum[Shape::row_groups * Heads];
  float* const group_output = reinterpret_cast<float*>(storage);
  ELASTIC_UNROLL
  for (int h = 0; h < Heads; ++h) {
    if (h >= active) break;
    const int slot = row_group * Heads + h;
    if (lane_in_row == 0) {
      group_max[slot] = work.state[h].max;
      group_sum[slot] = work.state[h].sum;
    }
    ELASTIC_UNROLL
    for (int e = 0; e < Shape::width; ++e)
      group_output[slot * HeadDim + lane_in_row * Shape::width + e] = work.output[h][e];
  }
  __syncthreads();

  for (int item = static_cast<int>(threadIdx.x); item < active * HeadDim; item += Shape::threads) {
    const int h = item / HeadDim;
    const int d = item % HeadDim;
    math::SoftmaxState state;
    float output = 0.0f;
    for (int r = 0; r < Shape::row_groups; ++r) {
      const int slot = r * Heads + h;
      float scale_merged, scale_group;
      math::softmax_merge(state, math::SoftmaxState{group_max[slot], group_sum[slot]}, scale_merged, scale_group);
      output = output * scale_merged + group_output[slot * HeadDim + d] * scale_group;
    }
    const int head = first_head + h;
    if (splits == 1) {
      args.out[token * args.out_stride + head * HeadDim + d] = from_float<T>(output / state.sum);
    } else {
      const std::size_t slot = static_cast<std::size_t>(first_split + split) * args.heads + head;
      partials.values[slot * HeadDim + d] = output;
      if (d == 0) partials.states[slot] = state;
    }
  }
}

// grid: (heads, sequences), one thread per dimension. Sequences with one
// split were finished by decode_attention.
template <class T, int HeadDim>
__global__ void __launch_bounds__(HeadDim) combine_decode_splits(const AttentionArgs<T, HeadDim> args,
                                                                 const DecodePartials partials) {
  const int head = static_cast<int>(blockIdx.x);
  const int sequence = static_cast<int>(blockIdx.y);
  const int d = static_cast<int>(threadIdx.x);
  const int first_split = args.batch.first_splits[sequence];
  const int splits = args.batch.first_splits[sequence + 1] - first_split;
  if (splits <= 1) return;
  math::SoftmaxState state;
  float output = 0.0f;
  for (int split = 0; split < splits; ++split) {
    const std::size_t slot = static_cast<std::size_t>(first_split + split) * args.heads + head;
    float scale_merged, scale_split;
    math::softmax_merge(state, partials.states[slot], scale_merged, scale_split);
    output = output * scale_merged + partials.values[slot * HeadDim + d] * scale_split;
  }
  const int token = args.batch.first_tokens[sequence];
  args.out[token * args.out_stride + head * HeadDim + d] = from_float<T>(output / state.sum);
}

// One step further: every sequence's cached length and its token's position
// grow by one (the token just appended is now cached), except a sequence
// whose next token would see more than max_context positions: it stays
// where it is, so a replay past the plan's bound recomputes its last
// position instead of appending past the positions the plan checked.
template <int Threads>
__global__ void __launch_bounds__(Threads) advance_decode_lengths(DecodeDeviceFields fields, int sequences,
                                                                 int max_context) {
  const int s = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (s >= sequences || fields.cached_lengths[s] + 2 > max_context) return;
  ++fields.cached_lengths[s];
  ++fields.token_positions[s];
}

}  // namespace kernels

// Enqueues the device split plan, decode attention over it and, when a
// sequence can have more than one split, the combine. Every launch
// dimension comes from `grid` and args.batch's counts, none from lengths.
template <class T, int HeadDim>
void launch_decode_attention(const AttentionArgs<T, HeadDim>& args, const DecodeGrid& grid,
                             const DecodeDeviceFields& fields, const DecodePartials& partials, cudaStream_t stream) {
  kernels::plan_decode_splits<kernels::plan_threads>
      <<<1, kernels::plan_threads, 0, stream>>>(args.batch, fields, grid.readers, grid.target_blocks, grid.split_bound);
  ELASTIC_CUDA_CHECK_LAUNCH();
  with_decode_heads(args.group_size, [&]<int Heads>() {
    const dim3 blocks(static_cast<unsigned>(grid.split_bound * grid.head_batches), static_cast<unsigned>(args.kv_heads),
                      static_cast<unsigned>(args.batch.sequences));
    kernels::decode_attention<T, HeadDim, Heads>
        <<<blocks, DecodeShape<T, HeadDim, Heads>::threads, 0, stream>>>(args, partials, grid.head_batches);
    ELASTIC_CUDA_CHECK_LAUNCH();
  });
  if (grid.split_bound > 1) {
    const dim3 blocks(static_cast<unsigned>(args.heads), static_cast<unsigned>(args.batch.sequences));
    kernels::combine_decode_splits<T, HeadDim><<<blocks, HeadDim, 0, stream>>>(args, partials);
    ELASTIC_CUDA_CHECK_LAUNCH();
  }
}

// Everything a decode run enqueues from: the launch arguments (the device
// metadata among them), the grid, the device-written fields and the partials.
template <class T, int HeadDim>
struct DecodeAttentionPlan {
  AttentionArgs<T, HeadDim> args;
  DecodeGrid grid;
  DecodeDeviceFields fields;
  DecodePartials partials;
  int max_context = 0;  // positions any sequence may see (the advance stops there)
};

// Enqueues one step's advance of a decode batch's lengths.
inline void launch_advance_decode_lengths(const DecodeDeviceFields& fields, int sequences, int max_context,
                                          cudaStream_t stream) {
  constexpr int kThreads = 128;
  kernels::advance_decode_lengths<kThreads>
      <<<(sequences + kThreads - 1) / kThreads, kThreads, 0, stream>>>(fields, sequences, max_context);
  ELASTIC_CUDA_CHECK_LAUNCH();
}

}  // namespace elastic::cuda
