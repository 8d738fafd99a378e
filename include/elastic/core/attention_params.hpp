// What the executors' attention primitive needs besides tensors: head counts
// for this call, the softmax scale and RoPE (layout plus the inverse
// frequency of each rotated pair, computed once per layer), and the shared
// checks of a call's arguments.
//
//   attention(out, q, k, v, cache, batch, params, workspace, Extent<HeadDim>)
//
// q: [tokens x heads*HeadDim], k, v: [tokens x kv_heads*HeadDim], all before
// RoPE; out: [tokens x heads*HeadDim]. Query head i reads KV head
// i / group_size with group_size = ceil(heads / kv_heads) for the layer (see
// ElasticAttention). The primitive rotates k and appends k, v to the cache,
// then rotates q and attends causally over each sequence's cache positions.
// check_rope rejects a RoPE configuration that would give non-finite angles
// (theta <= 0, NaN or infinite factors, an empty frequency band) up front.
#pragma once

#include <array>
#include <cmath>
#include <string_view>

#include "elastic/core/attention_batch.hpp"
#include "elastic/core/checks.hpp"
#include "elastic/core/kv_cache.hpp"
#include "elastic/core/overlap.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/math/rope.hpp"

namespace elastic {

// Head dimensions the attention kernels are compiled for.
inline constexpr bool is_supported_head_dim(int head_dim) { return head_dim == 64 || head_dim == 128; }

template <int HeadDim>
struct AttentionParams {
  static_assert(is_supported_head_dim(HeadDim), "head_dim must be 64 or 128");
  int heads = 0;        // query heads in this call
  int kv_heads = 0;     // KV heads in this call (the first kv_heads of the cache)
  int group_size = 1;   // query heads per KV head: query head i reads KV head i / group_size
  float scale = 0.0f;   // softmax scale, usually 1/sqrt(HeadDim)
  RopeLayout rope_layout = RopeLayout::rotate_half;
  int max_positions = 0;
  std::array<float, HeadDim / 2> rope_inverse_frequencies{};

  static AttentionParams make(int heads, int kv_heads, int group_size, float scale, const RopeConfig& rope) {
    AttentionParams params;
    params.heads = heads;
    params.kv_heads = kv_heads;
    params.group_size = group_size;
    params.scale = scale;
    params.rope_layout = rope.layout;
    params.max_positions = rope.max_positions;
    for (int i = 0; i < HeadDim / 2; ++i) params.rope_inverse_frequencies[i] = math::rope_inverse_frequency(i, HeadDim, rope);
    return params;
  }
};

namespace detail {

inline void check_rope(const RopeConfig& rope, std::string_view op) {
  require(std::isfinite(rope.theta) && rope.theta > 0.0f, op, ": rope.theta must be finite and positive, found ",
          rope.theta);
  require(rope.layout == RopeLayout::rotate_half || rope.layout == RopeLayout::interleaved, op,
          ": rope.layout must be rotate_half or interleaved, found ", static_cast<int>(rope.layout));
  require(rope.max_positions > 0, op, ": rope.max_positions must be positive, found ", rope.max_positions);
  if (!rope.llama3_scaling) return;
  const Llama3RopeScaling& s = rope.llama3;
  require(std::isfinite(s.factor) && s.factor > 0.0f, op, ": rope.llama3.factor must be finite and positive, found ",
          s.factor);
  require(std::isfinite(s.low_freq_factor) && s.low_freq_factor > 0.0f && std::isfinite(s.high_freq_factor) &&
              s.high_freq_factor > s.low_freq_factor,
          op, ": rope.llama3 needs finite frequency factors with 0 < low_freq_factor < high_freq_factor, found ",
          s.low_freq_factor, " and ", s.high_freq_factor);
  require(s.original_max_positions > 0, op, ": rope.llama3.original_max_positions must be positive, found ",
          s.original_max_positions);
}

// Parameters built other than by AttentionParams::make are checked too.
template <int HeadDim>
void check_attention_params(const AttentionParams<HeadDim>& params, std::string_view op) {
  require(std::isfinite(params.scale) && params.scale > 0.0f, op, ": the softmax scale must be finite and positive, found ",
          params.scale);
  require(params.rope_layout == RopeLayout::rotate_half || params.rope_layout == RopeLayout::interleaved, op,
          ": the RoPE layout must be rotate_half or interleaved, found ", static_cast<int>(params.rope_layout));
  require(params.max_positions > 0, op, ": max_positions must be positive, found ", params.max_positions);
  for (float frequency : params.rope_inverse_frequencies)
    require(std::isfinite(frequency) && frequency >= 0.0f, op,
            ": RoPE inverse frequencies must be finite and non-negative, found ", frequency);
}

template <class T, int HeadDim>
void check_attention(const MatrixView<T>& out, const ConstMatrixView<T>& q, const ConstMatrixView<T>& k,
                     const ConstMatrixView<T>& v, const KVCacheView<T>& cache, const AttentionBatch& batch,
                     const AttentionParams<HeadDim>& params) {
  constexpr std::string_view op = "attention";
  const index_t tokens = q.rows();
  require(params.heads > 0 && params.kv_heads > 0 && params.group_size > 0, op,
          ": heads, kv_heads and group_size must be positive, found ", params.heads, ", ", params.kv_heads, " and ",
          params.group_size);
  require((params.heads - 1) / params.group_size + 1 == params.kv_heads, op, ": ", params.heads,
          " query heads in groups of ", params.group_size, " need ", (params.heads - 1) / params.group_size + 1,
          " KV heads, found ", params.kv_heads);
  check_shape(q, tokens, index_t{params.heads} * HeadDim, op, "queries");
  check_shape(k, tokens, index_t{params.kv_heads} * HeadDim, op, "keys");
  check_shape(v, tokens, index_t{params.kv_heads} * HeadDim, op, "values");
  check_shape(out, tokens, index_t{params.heads} * HeadDim, op, "output");
  require(!cache.empty(), op, ": the KV cache has no heads");
  require(cache.shape().head_dim == HeadDim, op, ": the KV cache has head_dim ", cache.shape().head_dim,
          ", expected ", HeadDim);
  require(params.kv_heads <= cache.shape().kv_heads, op, ": ", params.kv_heads,
          " KV heads requested but the cache holds ", cache.shape().kv_heads);
  check_attention_params(params, op);
  check_view(q, op, "queries");
  check_view(k, op, "keys");
  check_view(v, op, "values");
  check_view(out, op, "output");
  check_disjoint(op, {region("output", out), region("KV cache", cache)},
                 {region("queries", q), region("keys", k), region("values", v)});
  batch.validate(cache.shape(), tokens, params.max_positions);
}

}  // namespace detail
}  // namespace elastic
