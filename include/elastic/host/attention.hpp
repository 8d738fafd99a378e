// The host executor's attention: rotate and append the new keys and values
// to the cache, then causal attention of every new token over its
// sequence's cache positions, in float32 with the online softmax of
// math/online_softmax.hpp (the maths the CUDA kernels run too).
//
// The call is cut into tiles of query rows that read one KV head
// (attention_plan.hpp): the heads of a GQA group for a block of tokens. Each
// task runs the vector kernel (simd/attention_tile-inl.hpp) over its tile's
// cache positions, or over one split of them when the tiles alone would
// leave threads idle; split tiles then merge their partial states in split
// order with math::softmax_merge. The RoPE angles of each new token are
// computed once, when its keys are appended, and reused for its query heads.
// The plan, the angles and the split states live in storage of the calling
// thread that keeps its capacity from call to call: the primitive needs no
// workspace, and allocates nothing once calls stop growing.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "elastic/core/attention_params.hpp"
#include "elastic/core/dtype.hpp"
#include "elastic/core/kv_cache.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/host/attention_plan.hpp"
#include "elastic/host/simd/kernels.hpp"
#include "elastic/host/thread_pool.hpp"
#include "elastic/math/online_softmax.hpp"
#include "elastic/math/rope.hpp"

namespace elastic::host::kernels {

// What one call keeps between its steps.
struct AttentionScratch {
  AttentionPlan plan;
  std::vector<float> angles;    // [tokens][head_dim]: the cosines of a token's pairs, then their sines
  std::vector<float> partials;  // the split tiles' states (AttentionPlan::partial_floats)
};

inline AttentionScratch& attention_scratch() {
  thread_local AttentionScratch scratch;
  return scratch;
}

// head = scale * (source rotated by a token's angles).
template <class T, int HeadDim>
void rotate_head(float* head, const T* source, const float* angles, RopeLayout layout, float scale) {
  for (int pair = 0; pair < HeadDim / 2; ++pair) {
    int first, second;
    math::rope_pair_dims<HeadDim>(layout, pair, first, second);
    float x0 = to_float(source[first]), x1 = to_float(source[second]);
    math::rotate_pair_by(x0, x1, angles[pair], angles[HeadDim / 2 + pair]);
    head[first] = x0 * scale;
    head[second] = x1 * scale;
  }
}

// Computes each new token's RoPE angles, rotates its keys and writes its
// keys and values into the cache.
template <class T, int HeadDim>
void append_to_cache(ThreadPool& pool, AttentionScratch& scratch, ConstMatrixView<T> k, ConstMatrixView<T> v,
                     const KVCacheView<T>& cache, const AttentionBatch& batch, const AttentionParams<HeadDim>& params) {
  const AttentionPlan& plan = scratch.plan;
  scratch.angles.resize(static_cast<std::size_t>(k.rows()) * HeadDim);
  pool.parallel_for(0, k.rows(), 16, [&](index_t lo, index_t hi) {
    for (index_t t = lo; t < hi; ++t) {
      const int token = static_cast<int>(t);
      const int s = plan.sequence_of(token);
      const int j = token - plan.first_token[s];
      const int position = batch.position(static_cast<std::size_t>(s), plan.first_token[s], j);
      float* angles = scratch.angles.data() + t * HeadDim;
      for (int pair = 0; pair < HeadDim / 2; ++pair)
        math::rope_cos_sin(position, params.rope_inverse_frequencies[pair], angles[pair], angles[HeadDim / 2 + pair]);

      const int cache_position = batch.cached_lengths[s] + j;
      for (int head = 0; head < params.kv_heads; ++head) {
        float key[HeadDim];
        rotate_head<T, HeadDim>(key, k.row(t) + head * HeadDim, angles, params.rope_layout, 1.0f);
        const std::size_t offset = cache.offset(batch.cache_slots[s], head, cache_position);
        std::transform(key, key + HeadDim, cache.keys() + offset, [](float x) { return from_float<T>(x); });
        std::copy_n(v.row(t) + head * HeadDim, HeadDim, cache.values() + offset);
      }
    }
  });
}

// The softmax state of a tile's rows: per row the running maximum and sum
// and HeadDim accumulators.
template <int HeadDim>
struct TileState {
  float max[simd::max_attention_rows];
  float sum[simd::max_attention_rows];
  alignas(64) float accumulators[simd::max_attention_rows * HeadDim];
};

// out row = accumulators / sum, rounded once to the storage type.
template <class T, int HeadDim>
void store_row(T* destination, const float* accumulators, float sum) {
  for (int d = 0; d < HeadDim; ++d) destination[d] = from_float<T>(accumulators[d] / sum);
}

// Where row r of a tile (token r / heads, head r % heads) writes its output.
template <class T, int HeadDim>
T* output_row(const MatrixView<T>& out, const AttentionTile& tile, int r) {
  return out.row(tile.first_token + r / tile.heads) + (tile.first_head + r % tile.heads) * HeadDim;
}

// One task: the tile's rows over split `split` of its positions; a tile of
// one split writes its output, the others leave their state in the partials.
template <class T, int HeadDim>
void run_tile(const AttentionScratch& scratch, float* partials, const AttentionTile& tile, int split,
              MatrixView<T> out, ConstMatrixView<T> q, const KVCacheView<T>& cache, const AttentionBatch& batch,
              const AttentionParams<HeadDim>& params) {
  const int rows = tile.rows();
  const int s = tile.sequence;
  const int first_visible = batch.cached_lengths[s] + (tile.first_token - scratch.plan.first_token[s]) + 1;
  alignas(64) float queries[simd::max_attention_rows * HeadDim];
  int visible[simd::max_attention_rows];
  TileState<HeadDim> state;
  for (int r = 0; r < rows; ++r) {
    const int t = tile.first_token + r / tile.heads;
    rotate_head<T, HeadDim>(queries + r * HeadDim, q.row(t) + (tile.first_head + r % tile.heads) * HeadDim,
                            scratch.angles.data() + static_cast<std::size_t>(t) * HeadDim, params.rope_layout,
                            params.scale);
    visible[r] = first_visible + r / tile.heads;  // causal: up to and including itself
    state.max[r] = -INFINITY;
    state.sum[r] = 0.0f;
  }
  std::fill(state.accumulators, state.accumulators + rows * HeadDim, 0.0f);

  const std::size_t base = cache.offset(batch.cache_slots[s], tile.kv_head, 0);
  simd::AttentionTileCall call{};
  call.dtype = dtype_of<T>;
  call.head_dim = HeadDim;
  call.keys = cache.keys() + base;
  call.values = cache.values() + base;
  call.begin = split * tile.split_length;
  call.end = std::min(tile.positions, call.begin + tile.split_length);
  call.rows = rows;
  call.queries = queries;
  call.visible = visible;
  call.max = state.max;
  call.sum = state.sum;
  call.accumulators = state.accumulators;
  simd::attention_tile(call);

  if (tile.splits == 1) {
    for (int r = 0; r < rows; ++r)
      store_row<T, HeadDim>(output_row<T, HeadDim>(out, tile, r), state.accumulators + r * HeadDim, state.sum[r]);
    return;
  }
  float* partial = partials + tile.first_partial + static_cast<std::size_t>(split) * rows * (HeadDim + 2);
  std::copy_n(state.max, rows, partial);
  std::copy_n(state.sum, rows, partial + rows);
  std::copy_n(state.accumulators, rows * HeadDim, partial + 2 * rows);
}

// Merges a split tile's partial states in split order and writes its output.
template <class T, int HeadDim>
void merge_splits(const float* partials, const AttentionTile& tile, MatrixView<T> out) {
  const int rows = tile.rows();
  const std::size_t split_floats = static_cast<std::size_t>(rows) * (HeadDim + 2);
  const float* first = partials + tile.first_partial;
  for (int r = 0; r < rows; ++r) {
    math::SoftmaxState merged{first[r], first[rows + r]};
    float accumulators[HeadDim];
    std::copy_n(first + 2 * rows + r * HeadDim, HeadDim, accumulators);
    for (int k = 1; k < tile.splits; ++k) {
      const float* split = first + k * split_floats;
      float scale_merged, scale_split;
      math::softmax_merge(merged, math::SoftmaxState{split[r], split[rows + r]}, scale_merged, scale_split);
      const float* split_accumulators = split + 2 * rows + r * HeadDim;
      for (int d = 0; d < HeadDim; ++d)
        accumulators[d] = accumulators[d] * scale_merged + split_accumulators[d] * scale_split;
    }
    store_row<T, HeadDim>(output_row<T, HeadDim>(out, tile, r), accumulators, merged.sum);
  }
}

// The whole primitive (see core/attention_params.hpp), on the pool's threads.
template <class T, int HeadDim>
void attention(ThreadPool& pool, MatrixView<T> out, ConstMatrixView<T> q, ConstMatrixView<T> k,
               ConstMatrixView<T> v, const KVCacheView<T>& cache, const AttentionBatch& batch,
               const AttentionParams<HeadDim>& params) {
  AttentionScratch& scratch = attention_scratch();
  const AttentionPlan& plan = scratch.plan;
  scratch.plan.build(batch, params.heads, params.kv_heads, params.group_size, HeadDim, pool.size());
  append_to_cache(pool, scratch, k, v, cache, batch, params);

  scratch.partials.resize(plan.partial_floats);
  float* partials = scratch.partials.data();
  pool.parallel_for(0, static_cast<index_t>(plan.tasks.size()), 1, [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) {
      const AttentionTask task = plan.tasks[static_cast<std::size_t>(i)];
      run_tile(scratch, partials, plan.tiles[static_cast<std::size_t>(task.tile)], task.split, out, q, cache, batch,
               params);
    }
  });
  // Splits happen only with fewer than four tiles per thread: merging them
  // is shorter than handing the merge to the pool.
  for (const AttentionTile& tile : plan.tiles)
    if (tile.splits > 1) merge_splits<T, HeadDim>(partials, tile, out);
}

}  // namespace elastic::host::kernels
