// Per-token layer skip for an attention layer (Radial Networks, Mixture-of-
// Depths): tokens flagged to skip pass through on the residual, the others
// add the attention output. What a skipped token leaves in this layer's KV
// cache is an explicit policy:
//
//   SkippedTokenKV::dropped  a skipped token writes no K/V here and later
//                            tokens do not see it at this layer. This is
//                            Mixture-of-Depths (unrouted tokens take no part
//                            in the block's attention) and Radial Networks'
//                            token-level layer skipping. The layer's cache
//                            grows by the kept tokens only, so the engine keeps
//                            per-layer cached lengths (`appended` reports them);
//                            RoPE still uses the tokens' true positions.
//   SkippedTokenKV::written  a skipped token's K/V are still computed from its
//                            residual stream and written, so later tokens can
//                            attend to it; only its own output is dropped.
//                            This is CALM's state propagation (exited tokens'
//                            states still feed the K/V of deeper layers). The
//                            skipped tokens' attention is computed and
//                            discarded: the saving is in the residual update.
//
// The skip flags are host memory (the decision that sizes the groups); the
// kept rows' indices are copied to the executor with load_indices.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "elastic/core/attention_batch.hpp"
#include "elastic/core/counts.hpp"
#include "elastic/core/executor.hpp"
#include "elastic/core/kv_cache.hpp"
#include "elastic/core/overlap.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/layers/elastic_attention.hpp"

namespace elastic {

enum class SkippedTokenKV { dropped, written };

template <ElementType T, WidthSet HeadCounts, int HeadDim>
class SkippableAttention {
 public:
  using Attention = ElasticAttention<T, HeadCounts, HeadDim>;

  SkippableAttention(const Attention& attention, SkippedTokenKV policy) : attention_(attention), policy_(policy) {}

  SkippedTokenKV policy() const { return policy_; }

  template <RoutingExecutorFor<T> E>
  std::size_t workspace_bytes(const E& executor, const AttentionBatch& batch, const KVCacheShape& cache) const {
    WorkspaceCursor cursor;
    carve(cursor, batch.tokens(), attention_bytes(executor, batch, cache));
    return cursor.bytes_used();
  }

  // residual[t] += attention(input)[t] for tokens with skip[t] == 0. appended[s]
  // receives how many positions sequence s's cache grew by at this layer.
  // Everything is checked before anything is computed, whatever the flags:
  // the head count, the shapes, the batch, the workspace and the overlap
  // contract (residual, cache, workspace and appended overlap nothing read).
  template <RoutingExecutorFor<T> E>
  void forward(E& executor, int heads, MatrixView<T> residual, ConstMatrixView<T> input, const KVCacheView<T>& cache,
               const AttentionBatch& batch, std::span<const int> skip, std::span<int> appended,
               Workspace workspace) const {
    constexpr auto op = "SkippableAttention::forward";
    attention_.check_heads(heads);
    const int tokens = detail::narrow_to_int(input.rows(), op, "the token count");
    detail::check_shape(input, input.rows(), attention_.hidden(), op, "input");
    detail::check_shape(residual, input.rows(), attention_.hidden(), op, "residual");
    require(skip.size() == static_cast<std::size_t>(tokens), op, ": ", skip.size(), " skip flags for ", tokens,
            " tokens");
    require(appended.size() == batch.sequences(), op, ": appended has ", appended.size(), " entries for ",
            batch.sequences(), " sequences");
    require(cache.shape().kv_heads == attention_.config().kv_heads && cache.shape().head_dim == HeadDim, op,
            ": the KV cache has ", cache.shape().kv_heads, " heads of ", cache.shape().head_dim,
            " dimensions, expected ", attention_.config().kv_heads, " of ", HeadDim);
    batch.validate(cache.shape(), tokens, attention_.config().rope.max_positions);
    const std::size_t workspace_needed = workspace_bytes(executor, batch, cache.shape());
    require<WorkspaceError>(workspace.bytes >= workspace_needed, op, ": workspace too small: need at least ",
                            workspace_needed, " bytes, found ", workspace.bytes);
    const AttentionWeights<T>& read = attention_.weights();
    detail::check_disjoint(
        op,
        {detail::region("residual", residual), detail::region("KV cache", cache),
         detail::region("workspace", workspace, workspace_needed),
         detail::region("appended lengths", appended.data(), static_cast<index_t>(appended.size()))},
        {detail::region("input", input), detail::region("q weight", read.q), detail::region("k weight", read.k),
         detail::region("v weight", read.v), detail::region("o weight", read.o),
         detail::region("skip flags", skip.data(), static_cast<index_t>(skip.size()))});

    // The kept tokens, and the batch they form with their true positions.
    Kept kept;
    int first = 0;
    for (std::size_t s = 0; s < batch.sequences(); ++s) {
      int count = 0;
      for (int j = 0; j < batch.new_lengths[s]; ++j)
        if (skip[static_cast<std::size_t>(first + j)] == 0) {
          kept.indices.push_back(first + j);
          kept.positions.push_back(batch.position(s, first, j));
          ++count;
        }
      kept.new_lengths.push_back(count);
      first += batch.new_lengths[s];
    }
    const int kept_tokens = static_cast<int>(kept.indices.size());
    const bool drop = policy_ == SkippedTokenKV::dropped;
    const AttentionBatch attended_batch =
        drop ? AttentionBatch{batch.cache_slots, batch.cached_lengths, kept.new_lengths, kept.positions} : batch;

    WorkspaceCursor cursor(workspace);
    const Buffers buffers = carve(cursor, tokens, attention_.workspace_bytes(executor, attended_batch, cache.shape()));
    for (std::size_t s = 0; s < batch.sequences(); ++s) appended[s] = drop ? kept.new_lengths[s] : batch.new_lengths[s];
    if (kept_tokens == 0 && drop) return;

    executor.load_indices(buffers.indices, kept.indices);
    const MatrixView<T> kept_rows = buffers.rows.first_rows(kept_tokens);
    if (drop) {
      executor.gather_rows(kept_rows, input, buffers.indices);
      const MatrixView<T> out = buffers.output.first_rows(kept_tokens);
      attention_.forward(executor, heads, out, ConstMatrixView<T>(kept_rows), cache, attended_batch, buffers.scratch);
      executor.scatter_add_rows(residual, ConstMatrixView<T>(out), buffers.indices);
    } else {
      attention_.forward(executor, heads, buffers.output, input, cache, batch, buffers.scratch);
      executor.gather_rows(kept_rows, ConstMatrixView<T>(buffers.output), buffers.indices);
      executor.scatter_add_rows(residual, ConstMatrixView<T>(kept_rows), buffers.indices);
    }
  }

 private:
  // The attention workspace any set of kept tokens needs. Under the dropped
  // policy the kept tokens form a batch of their own; no such batch needs more
  // than the whole one, except that keeping one token per sequence makes a
  // decode batch (split partials) out of one that is not.
  template <class E>
  std::size_t attention_bytes(const E& executor, const AttentionBatch& batch, const KVCacheShape& cache) const {
    std::size_t bytes = attention_.workspace_bytes(executor, batch, cache);
    const bool one_each_possible =
        std::all_of(batch.new_lengths.begin(), batch.new_lengths.end(), [](int length) { return length >= 1; });
    if (policy_ == SkippedTokenKV::dropped && one_each_possible && !batch.is_decode()) {
      const std::vector<int> ones(batch.sequences(), 1);
      const AttentionBatch one_each{batch.cache_slots, batch.cached_lengths, ones, {}};
      bytes = std::max(bytes, attention_.workspace_bytes(executor, one_each, cache));
    }
    return bytes;
  }

  struct Kept {
    std::vector<int> indices;      // packed rows of the kept tokens
    std::vector<int> positions;    // their RoPE positions
    std::vector<int> new_lengths;  // kept tokens per sequence
  };

  struct Buffers {
    int* indices;           // [tokens], executor memory
    MatrixView<T> rows;     // [tokens x hidden]
    MatrixView<T> output;   // [tokens x hidden]
    Workspace scratch;      // the attention layer's
  };

  Buffers carve(WorkspaceCursor& cursor, index_t tokens, std::size_t attention_bytes) const {
    const index_t hidden = attention_.hidden();
    Buffers buffers{};
    buffers.indices =
        cursor.take<int>(static_cast<std::size_t>(detail::narrow_to_int(tokens, "SkippableAttention", "the token count")));
    buffers.rows = cursor.take_matrix<T>(tokens, hidden);
    buffers.output = cursor.take_matrix<T>(tokens, hidden);
    buffers.scratch = cursor.take_workspace(attention_bytes);
    return buffers;
  }

  Attention attention_;
  SkippedTokenKV policy_;
};

}  // namespace elastic
