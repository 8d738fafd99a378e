// Elastic multi-head attention (Llama: o(attn(rope(q(x)), rope(k(x)), v(x))))
// with Flextron's nested heads and Puzzle's per-layer KV-head counts.
//
// Heads are stored in importance order, grouped by KV head: query heads
// [g*G, (g+1)*G) share KV head g, with G = heads / kv_heads (1 for MHA, heads
// for MQA). A forward over the first h query heads (h from the compile-time
// set HeadCounts) uses the first ceil(h / G) KV heads: dropping a whole group
// drops its KV head too. It reads the first h*D rows of q, the first
// ceil(h/G)*D rows of k and v, and the first h*D columns of o, all as strided
// views of the full weights. head_dim D is a compile-time parameter (64 or
// 128). The layer writes the new tokens' keys and values into the caller's
// KV cache (kv_cache_shape gives its shape, KVCacheShape::bytes_required its
// size) and attends causally over each sequence of the ragged batch.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "elastic/core/attention_batch.hpp"
#include "elastic/core/attention_params.hpp"
#include "elastic/core/checks.hpp"
#include "elastic/core/executor.hpp"
#include "elastic/core/kv_cache.hpp"
#include "elastic/core/quantized_checks.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/widths.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/math/rope.hpp"

namespace elastic {

// q: [heads*D x hidden]; k, v: [kv_heads*D x hidden]; o: [hidden x heads*D].
// W: the weights' view, as for MLPWeights.
template <ElementType T, class W = ConstMatrixView<T>>
struct AttentionWeights {
  W q;
  W k;
  W v;
  W o;
};

struct AttentionConfig {
  int heads = 0;
  int kv_heads = 0;
  RopeConfig rope{};
  float scale = 0.0f;  // 0: 1/sqrt(head_dim)
};

template <ElementType T, WidthSet HeadCounts, int HeadDim, class W = ConstMatrixView<T>>
class ElasticAttention {
 public:
  static_assert(is_supported_head_dim(HeadDim), "ElasticAttention: head_dim must be 64 or 128");
  using element_type = T;
  using head_counts = HeadCounts;
  static constexpr int head_dim = HeadDim;

  ElasticAttention(const AttentionWeights<T, W>& weights, const AttentionConfig& config)
      : weights_(weights), config_(config) {
    constexpr auto op = "ElasticAttention";
    require(config.heads > 0 && config.kv_heads > 0 && config.heads % config.kv_heads == 0, op,
            ": heads must be a positive multiple of kv_heads, found ", config.heads, " and ", config.kv_heads);
    const index_t hidden = weights.q.cols();
    detail::check_shape(weights.q, index_t{config.heads} * HeadDim, hidden, op, "q weight");
    detail::check_shape(weights.k, index_t{config.kv_heads} * HeadDim, hidden, op, "k weight");
    detail::check_shape(weights.v, index_t{config.kv_heads} * HeadDim, hidden, op, "v weight");
    detail::check_shape(weights.o, hidden, index_t{config.heads} * HeadDim, op, "o weight");
    for (const auto* w : {&weights.q, &weights.k, &weights.v, &weights.o}) detail::check_view(*w, op, "weight");
    detail::check_reduction_length<T>(hidden, op);
    detail::check_rope(config.rope, op);
    require(std::isfinite(config.scale) && config.scale >= 0.0f, op,
            ": scale must be finite and positive (or 0 for 1/sqrt(head_dim)), found ", config.scale);
    if constexpr (requires { HeadCounts::values; })
      for (int heads : HeadCounts::values) check_heads(heads);
    const float scale = config.scale != 0.0f ? config.scale : 1.0f / std::sqrt(static_cast<float>(HeadDim));
    params_ = AttentionParams<HeadDim>::make(config.heads, config.kv_heads, group_size(), scale, config.rope);
  }

  index_t hidden() const { return weights_.q.cols(); }
  const AttentionConfig& config() const { return config_; }
  int group_size() const { return config_.heads / config_.kv_heads; }
  int kv_heads_for(int heads) const { return (heads - 1) / group_size() + 1; }

  // The cache this layer needs for `slots` sequences of up to `capacity` tokens.
  KVCacheShape kv_cache_shape(int slots, int capacity) const {
    return {slots, config_.kv_heads, capacity, HeadDim};
  }

  // Bytes of workspace a forward over this batch needs at any head count.
  template <ExecutorFor<T> E>
  std::size_t workspace_bytes(const E& executor, const AttentionBatch& batch, const KVCacheShape& cache) const {
    WorkspaceCursor cursor;
    carve(cursor, executor, batch, cache, config_.heads);
    return cursor.bytes_used();
  }

  // The full weights, and those a forward over the first `heads` query heads
  // reads (slices, not copies).
  const AttentionWeights<T, W>& weights() const { return weights_; }
  AttentionWeights<T, W> weights_at(int heads) const {
    const index_t q_rows = index_t{heads} * HeadDim;
    const index_t kv_rows = index_t{kv_heads_for(heads)} * HeadDim;
    return {weights_.q.first_rows(q_rows), weights_.k.first_rows(kv_rows), weights_.v.first_rows(kv_rows),
            weights_.o.first_cols(q_rows)};
  }

  // Throws WidthError unless `heads` is in the set and at most the stored heads.
  void check_heads(int heads) const {
    require<WidthError>(HeadCounts::contains(heads), "ElasticAttention head count ", heads,
                        " is not in the head-count set ", HeadCounts::describe());
    require<WidthError>(heads >= 1 && heads <= config_.heads, "ElasticAttention head count ", heads,
                        " must be between 1 and the stored ", config_.heads, " heads");
  }

  // y = o_h(attention(rope(q_h x), rope(k_g x), v_g x)) over the first `heads`
  // query heads; x, y: [tokens x hidden], tokens packed per sequence as
  // AttentionBatch describes. Appends the new keys and values to `cache`.
  // y may be x itself; nothing else the call writes (y, the KV cache, the
  // workspace) may overlap anything it reads (x, the layer's weights).
  template <ExecutorFor<T> E>
  void forward(E& executor, int heads, MatrixView<T> y, ConstMatrixView<T> x, const KVCacheView<T>& cache,
               const AttentionBatch& batch, Workspace workspace) const {
    check_forward(executor, heads, y, x, cache, batch, workspace, "ElasticAttention::forward");
    WorkspaceCursor cursor(workspace);
    const Buffers buffers = carve(cursor, executor, batch, cache.shape(), heads);
    const AttentionWeights<T, W> sliced = weights_at(heads);
    const int kv_heads = kv_heads_for(heads);
    AttentionParams<HeadDim> params = params_;
    params.heads = heads;
    params.kv_heads = kv_heads;
    HeadCounts::dispatch(heads, [&]<int Heads>() {
      executor.linear(buffers.q, x, sliced.q, buffers.scratch);
      executor.linear(buffers.k, x, sliced.k, buffers.scratch);
      executor.linear(buffers.v, x, sliced.v, buffers.scratch);
      executor.attention(buffers.attended, ConstMatrixView<T>(buffers.q), ConstMatrixView<T>(buffers.k),
                         ConstMatrixView<T>(buffers.v), cache, batch, params, buffers.scratch);
      constexpr int kLength = Heads == dynamic_extent ? dynamic_extent : Heads * HeadDim;
      executor.linear(y, ConstMatrixView<T>(buffers.attended), sliced.o, buffers.scratch, Extent<kLength>{});
    });
  }

 private:
  struct Buffers {
    MatrixView<T> q, k, v, attended;
    Workspace scratch;
  };

  // What forward() checks before it computes: the head count, the shapes, the
  // cache, the batch and the overlap contract (against the workspace bytes
  // this head count uses).
  template <class E>
  void check_forward(const E& executor, int heads, const MatrixView<T>& y, const ConstMatrixView<T>& x,
                     const KVCacheView<T>& cache, const AttentionBatch& batch, const Workspace& workspace,
                     const char* op) const {
    check_heads(heads);
    detail::check_shape(x, x.rows(), hidden(), op, "input x");
    detail::check_shape(y, x.rows(), hidden(), op, "output y");
    require(cache.shape().kv_heads == config_.kv_heads && cache.shape().head_dim == HeadDim, op,
            ": the KV cache has ", cache.shape().kv_heads, " heads of ", cache.shape().head_dim,
            " dimensions, expected ", config_.kv_heads, " of ", HeadDim);
    batch.validate(cache.shape(), x.rows(), config_.rope.max_positions);
    WorkspaceCursor measure;
    carve(measure, executor, batch, cache.shape(), heads);
    detail::check_disjoint(op,
                           {detail::region("output y", y).allow_in_place_of("input x"),
                            detail::region("workspace", workspace, measure.bytes_used()),
                            detail::region("KV cache", cache)},
                           {detail::region("input x", x), detail::region("q weight", weights_.q),
                            detail::region("k weight", weights_.k), detail::region("v weight", weights_.v),
                            detail::region("o weight", weights_.o)});
  }

  template <class E>
  Buffers carve(WorkspaceCursor& cursor, const E& executor, const AttentionBatch& batch, const KVCacheShape& cache,
                int heads) const {
    const index_t tokens = batch.tokens();
    const index_t q_width = index_t{heads} * HeadDim;
    const index_t kv_width = index_t{kv_heads_for(heads)} * HeadDim;
    auto matrix = [&](index_t cols) { return cursor.take_matrix<T>(tokens, cols); };
    Buffers buffers{matrix(q_width), matrix(kv_width), matrix(kv_width), matrix(q_width), {}};
    const std::size_t scratch_bytes =
        std::max({executor.template linear_workspace_bytes<T>(tokens, q_width, hidden()),
                  executor.template linear_workspace_bytes<T>(tokens, hidden(), q_width),
                  executor.template attention_workspace_bytes<T>(batch, heads, HeadDim, cache)});
    buffers.scratch = cursor.take_workspace(scratch_bytes);
    return buffers;
  }

  AttentionWeights<T, W> weights_;
  AttentionConfig config_;
  AttentionParams<HeadDim> params_;
};

}  // namespace elastic
