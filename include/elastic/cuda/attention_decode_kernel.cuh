// Decode attention (flash-decoding): every sequence brings one new token, so
// each query head reads its sequence's whole KV range once and the work is
// memory-bound. To fill the GPU when there are few sequences, each sequence's
// range is cut into splits of `chunk` positions, each split runs in its own
// thread block, and a second small kernel merges the splits.
//
// One block handles one split of one sequence for the query heads of ONE KV
// group (up to DecodeShape::heads = 8 of them; a larger group takes several
// blocks side by side in the grid, so they meet in L2): it reads each K/V row
// of its split once, with 16-byte loads, and scores it against all of the
// group's heads, whose rotated queries wait in shared memory. Inside the
// block, HeadDim / vector-width lanes read one cache row together (a "lane
// group"); the block's lane groups take rows round-robin, each keeps an
// online softmax (math::softmax_push) and an output accumulator per head for
// its rows, and at the end the lane groups' states meet in shared memory and
// merge with math::softmax_merge. A sequence with one split stores its output
// directly; otherwise the block writes a partial (state + unnormalised
// output) into the workspace and combine_decode_splits() merges the partials
// with math::softmax_merge, in split order.
//
// The split size is one number per call: the total KV work divided so that
// the grid holds about decode_blocks_per_sm blocks per SM (one resident wave
// at the kernel's launch bounds), but never fewer than decode_min_chunk
// positions per split. The executor reads the SM count once, at
// construction. The workspace holds the partials of the smallest possible
// split size (decode_partial_slots), which bounds every call's split count.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

#include "elastic/core/attention_batch.hpp"
#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/macros.hpp"
#include "elastic/cuda/attention_metadata.cuh"
#include "elastic/cuda/error.cuh"
#include "elastic/cuda/kv_append_kernel.cuh"
#include "elastic/math/online_softmax.hpp"
#include "elastic/math/row_dot.hpp"

namespace elastic::cuda {

template <class T, int HeadDim>
struct DecodeShape {
  static constexpr int width = math::vector_width<T>;   // elements per 16-byte vector
  static constexpr int lanes_per_row = HeadDim / width;  // lanes that read one cache row together
  static_assert(lanes_per_row <= 32 && 32 % lanes_per_row == 0, "a cache row must fit a warp in whole vectors");
  static constexpr int rows_per_warp = 32 / lanes_per_row;
  static constexpr int warps = 4;
  static constexpr int threads = warps * 32;
  static constexpr int row_groups = warps * rows_per_warp;  // cache rows a block reads per step
  // Query heads per block: a whole GQA group of up to 8 heads reads each K/V
  // row once. The rotated queries sit in shared memory (every lane group
  // reads the same slice); a lane keeps heads * width output floats.
  static constexpr int heads = 8;
  static constexpr int unroll = 2;  // rows in flight per lane group (4 would spill at 3 blocks per SM)
};

// The fewest KV positions a split covers; bounds the partials a call stores.
inline constexpr int decode_min_chunk = 128;
// Blocks per SM the decode kernel is built for (__launch_bounds__), and the
// grid size the split choice aims at.
inline constexpr int decode_blocks_per_sm = 3;

// Blocks that share one KV group's rows of a split: one per DecodeShape::heads
// query heads of the group.
template <class T, int HeadDim>
int decode_head_batches(int group_size) {
  constexpr int heads = DecodeShape<T, HeadDim>::heads;
  return (group_size + heads - 1) / heads;
}

// KV positions per split for a decode batch whose every position is read by
// `readers` blocks (KV heads x head batches), on `sm_count` SMs.
inline int decode_split_chunk(const AttentionBatch& batch, long long readers, int sm_count) {
  long long positions = 0;
  for (std::size_t s = 0; s < batch.sequences(); ++s) positions += batch.cached_lengths[s] + batch.new_lengths[s];
  const long long target = static_cast<long long>(std::max(sm_count, 1)) * decode_blocks_per_sm;
  return static_cast<int>(std::max<long long>(decode_min_chunk, (positions * readers + target - 1) / target));
}

// Split partials per query head the workspace holds for a decode batch: the
// split count at one reader, which a call with more readers (a larger chunk)
// never exceeds.
inline std::size_t decode_partial_slots(const AttentionBatch& batch, int sm_count) {
  const int chunk = decode_split_chunk(batch, 1, sm_count);
  std::size_t slots = 0;
  for (std::size_t s = 0; s < batch.sequences(); ++s)
    slots += static_cast<std::size_t>((batch.cached_lengths[s] + batch.new_lengths[s] + chunk - 1) / chunk);
  return slots;
}

// Throws unless the decode grid (splits x KV heads x sequences) can be launched.
inline void check_decode_grid(const AttentionBatch& batch, int kv_heads) {
  require(batch.sequences() <= 65535, "attention: decode takes at most 65535 sequences per call, found ",
          batch.sequences());
  require(kv_heads <= 65535, "attention: decode takes at most 65535 KV heads, found ", kv_heads);
}

// Per split slot s and query head h: the softmax state (index s * heads + h)
// and the unnormalised output (HeadDim floats at (s * heads + h) * HeadDim).
struct DecodePartials {
  math::SoftmaxState* states = nullptr;
  float* values = nullptr;
};

// One lane's share of a decode block: `width` dimensions (the lane's place in
// its lane group) of every head's output, and every head's online softmax
// state over the rows its lane group has read. The queries stay in shared
// memory: `query` below is the lane's slice of one head's rotated, scaled
// query. The kernel drives it; a host loop can drive every lane of a group
// the same way.
template <class T, int HeadDim>
struct DecodeLane {
  using Shape = DecodeShape<T, HeadDim>;
  float output[Shape::heads][Shape::width] = {};
  math::SoftmaxState state[Shape::heads];

  // Where a lane's slice of head h's query starts in `queries` (heads x HeadDim floats).
  ELASTIC_HOST_DEVICE static constexpr int query_offset(int h, int lane_in_row) {
    return h * HeadDim + lane_in_row * Shape::width;
  }

  // This lane's part of a score: its slice of the query times its slice of a key.
  ELASTIC_HOST_DEVICE static float partial_score(const float* query, const VectorFloats<T>& key) {
    float score = 0.0f;
    ELASTIC_UNROLL
    for (int e = 0; e < Shape::width; ++e) score += query[e] * key[e];
    return score;
  }

  // Adds a row with head h's full score and this lane's slice of its value.
  ELASTIC_HOST_DEVICE void push(int h, float score, const VectorFloats<T>& value) {
    float rescale, weight;
    math::softmax_push(state[h], score, rescale, weight);
    ELASTIC_UNROLL
    for (int e = 0; e < Shape::width; ++e) output[h][e] = output[h][e] * rescale + weight * value[e];
  }
};

namespace kernels {

// Rotates and scales the first `active` query heads from first_head of
// `token` into shared memory (heads x HeadDim floats).
template <class T, int HeadDim>
__device__ __forceinline__ void load_decode_queries(float* queries, const AttentionArgs<T, HeadDim>& args, int token,
                                                    int first_head, int active) {
  constexpr int kPairs = rope_vector_pairs<T, HeadDim>;
  const int position = args.batch.token_positions[token];
  for (int item = static_cast<int>(threadIdx.x); item < active * kPairs; item += DecodeShape<T, HeadDim>::threads) {
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

// grid: (max_splits * head_batches, kv_heads, sequences); blocks past their
// sequence's split count, or past the group's last head, return at once.
template <class T, int HeadDim>
__global__ void __launch_bounds__(DecodeShape<T, HeadDim>::threads, decode_blocks_per_sm)
    decode_attention(const AttentionArgs<T, HeadDim> args, const DecodePartials partials, const int chunk,
                     const int head_batches) {
  using Shape = DecodeShape<T, HeadDim>;
  const AttentionMetadata& batch = args.batch;
  const int sequence = static_cast<int>(blockIdx.z);
  const int group = static_cast<int>(blockIdx.y);
  const int split = static_cast<int>(blockIdx.x) / head_batches;
  const int first_split = batch.first_splits[sequence];
  const int splits = batch.first_splits[sequence + 1] - first_split;
  if (split >= splits) return;
  const int first_head = group * args.group_size + static_cast<int>(blockIdx.x) % head_batches * Shape::heads;
  const int active = min(Shape::heads, min((group + 1) * args.group_size, args.heads) - first_head);
  if (active <= 0) return;

  const int token = batch.first_tokens[sequence];
  const int begin = split * chunk;
  const int end = min(batch.cached_lengths[sequence] + batch.new_lengths[sequence], begin + chunk);

  __shared__ alignas(16) float queries[Shape::heads * HeadDim];
  load_decode_queries(queries, args, token, first_head, active);
  __syncthreads();

  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int lane_in_row = lane % Shape::lanes_per_row;
  const int row_group = static_cast<int>(threadIdx.x) / 32 * Shape::rows_per_warp + lane / Shape::lanes_per_row;
  DecodeLane<T, HeadDim> work;

  const std::size_t base = args.cache_offset(batch.cache_slots[sequence], group, 0) + lane_in_row * Shape::width;
  const T* keys = args.cache_keys + base;
  const T* values = args.cache_values + base;
  // The loop bounds are the same for the whole block, so every lane of a warp
  // takes part in the lane-group shuffles; rows past `end` are loaded as
  // nothing and not pushed.
  for (int step = begin; step < end; step += Shape::row_groups * Shape::unroll) {
    math::Vector16<T> key_vectors[Shape::unroll] = {};
    math::Vector16<T> value_vectors[Shape::unroll] = {};
    ELASTIC_UNROLL
    for (int u = 0; u < Shape::unroll; ++u) {
      const int row = step + u * Shape::row_groups + row_group;
      if (row < end) {
        key_vectors[u] = math::load_vector(keys + static_cast<std::size_t>(row) * HeadDim);
        value_vectors[u] = math::load_vector(values + static_cast<std::size_t>(row) * HeadDim);
      }
    }
    ELASTIC_UNROLL
    for (int u = 0; u < Shape::unroll; ++u) {
      const bool valid = step + u * Shape::row_groups + row_group < end;
      VectorFloats<T> key, value;
      widen<T>(key_vectors[u], key);
      widen<T>(value_vectors[u], value);
      ELASTIC_UNROLL
      for (int h = 0; h < Shape::heads; ++h) {
        if (h >= active) break;  // the same for the whole block
        float score = work.partial_score(queries + work.query_offset(h, lane_in_row), key);
        ELASTIC_UNROLL
        for (int offset = Shape::lanes_per_row / 2; offset > 0; offset /= 2)
          score += __shfl_xor_sync(0xffffffffu, score, offset);
        if (valid) work.push(h, score, value);
      }
    }
  }

  // Merge the lane groups' states and outputs, one (head, dimension) per thread.
  __shared__ float group_max[Shape::row_groups * Shape::heads];
  __shared__ float group_sum[Shape::row_groups * Shape::heads];
  __shared__ float group_output[Shape::row_groups * Shape::heads * HeadDim];
  ELASTIC_UNROLL
  for (int h = 0; h < Shape::heads; ++h) {
    if (h >= active) break;
    const int slot = row_group * Shape::heads + h;
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
      const int slot = r * Shape::heads + h;
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

}  // namespace kernels

// Enqueues decode attention over splits of `chunk` positions (the chunk the
// metadata's first_splits were counted with) and, when a sequence has more
// than one split, the combine.
template <class T, int HeadDim>
void launch_decode_attention(const AttentionArgs<T, HeadDim>& args, const DecodePartials& partials, int chunk,
                             cudaStream_t stream) {
  using Shape = DecodeShape<T, HeadDim>;
  const int head_batches = decode_head_batches<T, HeadDim>(args.group_size);
  const dim3 grid(static_cast<unsigned>(args.batch.max_splits * head_batches), static_cast<unsigned>(args.kv_heads),
                  static_cast<unsigned>(args.batch.sequences));
  kernels::decode_attention<T, HeadDim><<<grid, Shape::threads, 0, stream>>>(args, partials, chunk, head_batches);
  ELASTIC_CUDA_CHECK_LAUNCH();
  if (args.batch.max_splits > 1) {
    const dim3 combine_grid(static_cast<unsigned>(args.heads), static_cast<unsigned>(args.batch.sequences));
    kernels::combine_decode_splits<T, HeadDim><<<combine_grid, HeadDim, 0, stream>>>(args, partials);
    ELASTIC_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace elastic::cuda
