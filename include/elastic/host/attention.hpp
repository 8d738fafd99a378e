// The host executor's attention "kernels": rotate and append the new keys and values
// to the cache, then causal attention of every new token over its sequence's
// cache positions, one (token, query head) pair per task on the thread pool.
// Each pair streams the cache once with the online softmax of
// math/online_softmax.hpp, in float32, the maths the CUDA kernels run too.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "elastic/core/attention_params.hpp"
#include "elastic/core/dtype.hpp"
#include "elastic/core/kv_cache.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/host/thread_pool.hpp"
#include "elastic/math/online_softmax.hpp"
#include "elastic/math/rope.hpp"

namespace elastic::host::kernels {

// The sequence of each packed token and its index inside the sequence.
struct TokenMap {
  explicit TokenMap(const AttentionBatch& batch) {
    first_token.reserve(batch.sequences() + 1);
    first_token.push_back(0);
    for (int length : batch.new_lengths) first_token.push_back(first_token.back() + length);
  }
  int sequence_of(int token) const {
    return static_cast<int>(std::upper_bound(first_token.begin(), first_token.end(), token) - first_token.begin()) - 1;
  }
  std::vector<int> first_token;
};

template <class T, int HeadDim>
void load_head(float (&head)[HeadDim], const T* source) {
  for (int d = 0; d < HeadDim; ++d) head[d] = to_float(source[d]);
}

template <class T, int HeadDim>
void append_to_cache(ThreadPool& pool, const TokenMap& map, ConstMatrixView<T> k, ConstMatrixView<T> v,
                     const KVCacheView<T>& cache, const AttentionBatch& batch, const AttentionParams<HeadDim>& params) {
  pool.parallel_for(0, k.rows(), 16, [&](index_t lo, index_t hi) {
    for (index_t t = lo; t < hi; ++t) {
      const int token = static_cast<int>(t);
      const int s = map.sequence_of(token);
      const int j = token - map.first_token[s];
      const int position = batch.position(static_cast<std::size_t>(s), map.first_token[s], j);
      const int cache_position = batch.cached_lengths[s] + j;
      for (int head = 0; head < params.kv_heads; ++head) {
        float key[HeadDim];
        load_head(key, k.row(t) + head * HeadDim);
        math::rotate_head(key, position, params.rope_layout, params.rope_inverse_frequencies.data());
        const std::size_t offset = cache.offset(batch.cache_slots[s], head, cache_position);
        for (int d = 0; d < HeadDim; ++d) {
          cache.keys()[offset + d] = from_float<T>(key[d]);
          cache.values()[offset + d] = v.row(t)[head * HeadDim + d];
        }
      }
    }
  });
}

template <class T, int HeadDim>
void attend(ThreadPool& pool, const TokenMap& map, MatrixView<T> out, ConstMatrixView<T> q,
            const KVCacheView<T>& cache, const AttentionBatch& batch, const AttentionParams<HeadDim>& params) {
  const index_t tasks = q.rows() * params.heads;
  pool.parallel_for(0, tasks, 4, [&](index_t lo, index_t hi) {
    for (index_t task = lo; task < hi; ++task) {
      const int token = static_cast<int>(task / params.heads);
      const int head = static_cast<int>(task % params.heads);
      const int s = map.sequence_of(token);
      const int j = token - map.first_token[s];
      const int position = batch.position(static_cast<std::size_t>(s), map.first_token[s], j);
      const int visible = batch.cached_lengths[s] + j + 1;  // causal: up to and including itself

      float query[HeadDim];
      load_head(query, q.row(token) + head * HeadDim);
      math::rotate_head(query, position, params.rope_layout, params.rope_inverse_frequencies.data());
      for (float& value : query) value *= params.scale;

      float accumulator[HeadDim] = {};
      math::SoftmaxState state;
      const std::size_t base = cache.offset(batch.cache_slots[s], head / params.group_size, 0);
      for (int p = 0; p < visible; ++p) {
        const T* key = cache.keys() + base + static_cast<std::size_t>(p) * HeadDim;
        const T* value = cache.values() + base + static_cast<std::size_t>(p) * HeadDim;
        float score = 0.0f;
        for (int d = 0; d < HeadDim; ++d) score += query[d] * to_float(key[d]);
        float rescale, weight;
        math::softmax_push(state, score, rescale, weight);
        for (int d = 0; d < HeadDim; ++d) accumulator[d] = accumulator[d] * rescale + weight * to_float(value[d]);
      }
      T* destination = out.row(token) + head * HeadDim;
      for (int d = 0; d < HeadDim; ++d) destination[d] = from_float<T>(accumulator[d] / state.sum);
    }
  });
}

}  // namespace elastic::host::kernels
