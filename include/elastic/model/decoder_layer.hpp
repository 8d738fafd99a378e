// One layer of a heterogeneous (Puzzle / Nemotron-NAS) Llama decoder: an
// attention half and an FFN half, each a residual block over the stream h.
//
//   attention half: GQA   h += o(attention(rope(q n), rope(k n), v n)),  n = RMSNorm(h)
//                   linear h += W n                 (Puzzle's replacement, W: hidden x hidden)
//                   none   h unchanged
//   FFN half:       SwiGLU h += down(silu(gate n) * up n),  n = RMSNorm(h)
//                   linear h += W n
//                   none   h unchanged
//
// A GQA or SwiGLU half may also hold a linear map beside it (an elastic
// checkpoint's fitted replacement); a group of size 0 runs that map instead.
//
// The GQA attention is an ElasticAttention over any query-head prefix
// (AnyWidth) with the layer's own KV-head count; head_dim (64 or 128) is
// read from the model at run time and picks the HeadDim specialisation. The
// SwiGLU is an ElasticMLP over any neuron prefix, or over the widths of
// MlpWidths when a deployment names them. Each half adds into the
// residual rows through the executor's row primitives (scatter_add_rows,
// linear_scatter_add, ElasticMLP::add_to_rows), so the residual is rounded
// once per half. A half runs once per group of sequences a BatchSchedule
// forms (one group of the whole batch, with the identity row list, when
// every sequence makes the same choice). The layer holds views only.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <variant>

#include "elastic/core/attention_batch.hpp"
#include "elastic/core/checks.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/executor.hpp"
#include "elastic/core/kv_cache.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/widths.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/layers/elastic_attention.hpp"
#include "elastic/layers/elastic_mlp.hpp"
#include "elastic/model/batch_schedule.hpp"
#include "elastic/model/model_weights.hpp"
#include "elastic/model/subnetwork_config.hpp"

namespace elastic::model {

// What the decoder needs of an executor: the layer primitives, attention,
// and the row primitives (gather, scatter-add, RMSNorm, index upload).
template <class E, class T>
concept DecoderExecutorFor = AttentionExecutorFor<E, T> && RoutingExecutorFor<E, T>;

// The buffers every layer of one forward shares (carved by the Decoder).
template <ElementType T>
struct LayerBuffers {
  MatrixView<T> residual;      // [tokens x hidden], read and updated in place
  MatrixView<T> normed;        // [tokens x hidden], the RMSNorm of the residual
  MatrixView<T> block_output;  // [tokens x hidden], the attention output before the residual add
  const int* rows = nullptr;   // 0, 1, ..., tokens - 1 in executor memory
  const int* indices = nullptr;  // the forward's index array (BatchSchedule row offsets point into it)
  Workspace scratch;           // for the layer's blocks
};

// W: the matrices' view (see model_weights.hpp).
template <ElementType T, WidthSet MlpWidths = AnyWidth, class W = ConstMatrixView<T>>
class DecoderLayer {
 public:
  DecoderLayer(const io::ModelDescription& model, std::size_t index, const LayerWeights<T, W>& weights)
      : plan_(model.layers.at(index)), weights_(weights), epsilon_(model.rms_epsilon) {
    const std::string op = elastic::detail::concat("DecoderLayer ", index);
    const index_t hidden = model.hidden;
    if (plan_.attention != io::AttentionKind::none) check_weight(weights.attention_norm, 1, hidden, op, "attention norm");
    if (plan_.attention_runs_linear())
      check_weight(weights.linear_attention, hidden, hidden, op, "linear attention weight");
    if (plan_.ffn != io::FfnKind::none) check_weight(weights.ffn_norm, 1, hidden, op, "FFN norm");
    if (plan_.ffn_runs_linear()) check_weight(weights.linear_ffn, hidden, hidden, op, "linear FFN weight");
    if (plan_.attention == io::AttentionKind::gqa)
      attention_.emplace(make_attention(model, index, weights.attention));
    if (plan_.ffn == io::FfnKind::swiglu) mlp_.emplace(weights.mlp);
  }

  const io::LayerPlan& plan() const { return plan_; }

  // Scratch bytes a forward over this batch needs at any choice, for the
  // groups `schedule` forms at this layer.
  template <DecoderExecutorFor<T> E>
  std::size_t workspace_bytes(const E& executor, const AttentionBatch& batch, const LayerGroups& groups,
                              const BatchSchedule& schedule, const KVCacheShape& cache, index_t hidden_size) const {
    const index_t tokens = batch.tokens();
    std::size_t bytes = executor.template linear_scatter_add_workspace_bytes<T>(tokens, hidden_size, hidden_size);
    if (attention_)
      for (const HalfGroup& group : groups.attention) {
        const SequenceSet& set = schedule.set(group.set);
        const AttentionBatch& part = set.whole ? batch : set.batch();
        if (group.size > 0)
          bytes = std::max(bytes, std::visit([&](const auto& a) { return a.workspace_bytes(executor, part, cache); },
                                           *attention_));
      }
    if (mlp_) bytes = std::max(bytes, mlp_->add_to_rows_workspace_bytes(executor, tokens));
    return bytes;
  }

  // Runs both halves over buffers.residual, each group of sequences as its
  // choice says (validated by the caller against the model); a GQA group
  // appends its sequences' keys and values to `cache`.
  template <DecoderExecutorFor<T> E>
  void forward(E& executor, const LayerGroups& groups, const BatchSchedule& schedule, const LayerBuffers<T>& buffers,
               const KVCacheView<T>& cache, const AttentionBatch& batch) const {
    for (const HalfGroup& group : groups.attention) {
      const SequenceSet& set = schedule.set(group.set);
      const int* rows = set.whole ? buffers.rows : buffers.indices + set.rows_offset;
      const index_t count = set.whole ? buffers.residual.rows() : set.tokens();
      const MatrixView<T> normed =
          normalise(executor, buffers.normed, buffers, weights_.attention_norm, set.whole, rows, count);
      if (group.size > 0) {
        const MatrixView<T> output = buffers.block_output.first_rows(count);
        std::visit([&](const auto& a) {
          a.forward(executor, static_cast<int>(group.size), output, ConstMatrixView<T>(normed), cache,
                    set.whole ? batch : set.batch(), buffers.scratch);
        }, *attention_);
        executor.scatter_add_rows(buffers.residual, ConstMatrixView<T>(output), rows);
      } else {
        executor.linear_scatter_add(buffers.residual, ConstMatrixView<T>(normed), weights_.linear_attention, rows,
                                    buffers.scratch);
      }
    }
    // The SwiGLU reads its rows of the whole normed batch by index; a linear
    // map reads a gathered copy, kept in block_output (free in this half)
    // so that the SwiGLU groups after it still find the normed batch.
    if (std::any_of(groups.ffn.begin(), groups.ffn.end(), [](const HalfGroup& group) { return group.size > 0; }))
      executor.rms_norm(buffers.normed, ConstMatrixView<T>(buffers.residual), weights_.ffn_norm, epsilon_);
    for (const HalfGroup& group : groups.ffn) {
      const SequenceSet& set = schedule.set(group.set);
      const int* rows = set.whole ? buffers.rows : buffers.indices + set.rows_offset;
      const index_t count = set.whole ? buffers.residual.rows() : set.tokens();
      if (group.size > 0) {
        mlp_->add_to_rows(executor, static_cast<int>(group.size), buffers.residual, ConstMatrixView<T>(buffers.normed),
                          rows, count, buffers.scratch);
      } else {
        const MatrixView<T> normed =
            normalise(executor, buffers.block_output, buffers, weights_.ffn_norm, set.whole, rows, count);
        executor.linear_scatter_add(buffers.residual, ConstMatrixView<T>(normed), weights_.linear_ffn, rows,
                                    buffers.scratch);
      }
    }
  }

 private:
  using Attention = std::variant<ElasticAttention<T, AnyWidth, 64, W>, ElasticAttention<T, AnyWidth, 128, W>>;

  static Attention make_attention(const io::ModelDescription& model, std::size_t index,
                                  const AttentionWeights<T, W>& weights) {
    const AttentionConfig config{.heads = model.heads, .kv_heads = model.layers[index].kv_heads, .rope = model.rope};
    switch (model.head_dim) {
      case 64: return Attention(std::in_place_index<0>, weights, config);
      case 128: return Attention(std::in_place_index<1>, weights, config);
      default:
        throw Error(elastic::detail::concat("DecoderLayer: layer ", index, ": head_dim must be 64 or 128, found ",
                                   model.head_dim));
    }
  }

  template <class View>
  static void check_weight(const View& weight, index_t rows, index_t cols, const std::string& op,
                           const char* name) {
    elastic::detail::check_shape(weight, rows, cols, op, name);
    elastic::detail::check_view(weight, op, name);
  }

  // RMSNorm of the set's residual rows into the first rows of `target`
  // ([tokens x hidden]): all rows for the whole batch, else gathered.
  template <class E>
  MatrixView<T> normalise(E& executor, const MatrixView<T>& target, const LayerBuffers<T>& buffers,
                          const ConstMatrixView<T>& norm, bool whole, const int* rows, index_t count) const {
    const MatrixView<T> normed = target.first_rows(count);
    if (whole) {
      executor.rms_norm(normed, ConstMatrixView<T>(buffers.residual), norm, epsilon_);
    } else {
      executor.gather_rows(normed, ConstMatrixView<T>(buffers.residual), rows);
      executor.rms_norm(normed, ConstMatrixView<T>(normed), norm, epsilon_);
    }
    return normed;
  }

  io::LayerPlan plan_;
  LayerWeights<T, W> weights_;
  float epsilon_;
  std::optional<Attention> attention_;
  std::optional<ElasticMLP<T, MlpWidths, W>> mlp_;
};

}  // namespace elastic::model
