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
// The GQA attention is an ElasticAttention over any query-head prefix
// (AnyWidth) with the layer's own KV-head count; head_dim (64 or 128) is
// read from the model at run time and picks the HeadDim specialisation. The
// SwiGLU is an ElasticMLP over any neuron prefix. Each half adds into the
// residual rows through the executor's row primitives (scatter_add_rows,
// linear_scatter_add, ElasticMLP::add_to_rows) with the identity row list,
// so the residual is rounded once per half. The layer holds views only.
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
  Workspace scratch;           // for the layer's blocks
};

template <ElementType T>
class DecoderLayer {
 public:
  DecoderLayer(const io::ModelDescription& model, std::size_t index, const LayerWeights<T>& weights)
      : plan_(model.layers.at(index)), weights_(weights), epsilon_(model.rms_epsilon) {
    const std::string op = detail::concat("DecoderLayer ", index);
    const index_t hidden = model.hidden;
    if (plan_.attention != io::AttentionKind::none) check_weight(weights.attention_norm, 1, hidden, op, "attention norm");
    if (plan_.attention == io::AttentionKind::linear)
      check_weight(weights.linear_attention, hidden, hidden, op, "linear attention weight");
    if (plan_.ffn != io::FfnKind::none) check_weight(weights.ffn_norm, 1, hidden, op, "FFN norm");
    if (plan_.ffn == io::FfnKind::linear) check_weight(weights.linear_ffn, hidden, hidden, op, "linear FFN weight");
    if (plan_.attention == io::AttentionKind::gqa)
      attention_.emplace(make_attention(model, index, weights.attention));
    if (plan_.ffn == io::FfnKind::swiglu) mlp_.emplace(weights.mlp);
  }

  const io::LayerPlan& plan() const { return plan_; }

  // Scratch bytes a forward over this batch needs at any choice.
  template <DecoderExecutorFor<T> E>
  std::size_t workspace_bytes(const E& executor, const AttentionBatch& batch, const KVCacheShape& cache,
                              index_t hidden_size) const {
    const index_t tokens = batch.tokens();
    std::size_t bytes = executor.template linear_scatter_add_workspace_bytes<T>(tokens, hidden_size, hidden_size);
    if (attention_)
      bytes = std::max(bytes, std::visit([&](const auto& a) { return a.workspace_bytes(executor, batch, cache); },
                                         *attention_));
    if (mlp_) bytes = std::max(bytes, mlp_->add_to_rows_workspace_bytes(executor, tokens));
    return bytes;
  }

  // Runs both halves over buffers.residual as `choice` says (validated by
  // the caller against the model); a GQA half appends the batch's keys and
  // values to `cache`.
  template <DecoderExecutorFor<T> E>
  void forward(E& executor, const LayerChoice& choice, const LayerBuffers<T>& buffers, const KVCacheView<T>& cache,
               const AttentionBatch& batch) const {
    if (!choice.skip_attention) {
      if (attention_) {
        normalise(executor, buffers, weights_.attention_norm);
        std::visit([&](const auto& a) {
          a.forward(executor, choice.heads, buffers.block_output, buffers.normed, cache, batch, buffers.scratch);
        }, *attention_);
        executor.scatter_add_rows(buffers.residual, ConstMatrixView<T>(buffers.block_output), buffers.rows);
      } else if (plan_.attention == io::AttentionKind::linear) {
        add_linear_block(executor, buffers, weights_.attention_norm, weights_.linear_attention);
      }
    }
    if (!choice.skip_ffn) {
      if (mlp_) {
        normalise(executor, buffers, weights_.ffn_norm);
        mlp_->add_to_rows(executor, static_cast<int>(choice.mlp_width), buffers.residual,
                          ConstMatrixView<T>(buffers.normed), buffers.rows, buffers.residual.rows(), buffers.scratch);
      } else if (plan_.ffn == io::FfnKind::linear) {
        add_linear_block(executor, buffers, weights_.ffn_norm, weights_.linear_ffn);
      }
    }
  }

 private:
  using Attention = std::variant<ElasticAttention<T, AnyWidth, 64>, ElasticAttention<T, AnyWidth, 128>>;

  static Attention make_attention(const io::ModelDescription& model, std::size_t index,
                                  const AttentionWeights<T>& weights) {
    const AttentionConfig config{.heads = model.heads, .kv_heads = model.layers[index].kv_heads, .rope = model.rope};
    switch (model.head_dim) {
      case 64: return Attention(std::in_place_index<0>, weights, config);
      case 128: return Attention(std::in_place_index<1>, weights, config);
      default:
        throw Error(detail::concat("DecoderLayer: layer ", index, ": head_dim must be 64 or 128, found ",
                                   model.head_dim));
    }
  }

  static void check_weight(const ConstMatrixView<T>& weight, index_t rows, index_t cols, const std::string& op,
                           const char* name) {
    detail::check_shape(weight, rows, cols, op, name);
    detail::check_view(weight, op, name);
  }

  template <class E>
  void normalise(E& executor, const LayerBuffers<T>& buffers, const ConstMatrixView<T>& norm) const {
    executor.rms_norm(buffers.normed, ConstMatrixView<T>(buffers.residual), norm, epsilon_);
  }

  // h += W RMSNorm(h): Puzzle's linear replacement of either half.
  template <class E>
  void add_linear_block(E& executor, const LayerBuffers<T>& buffers, const ConstMatrixView<T>& norm,
                        const ConstMatrixView<T>& weight) const {
    normalise(executor, buffers, norm);
    executor.linear_scatter_add(buffers.residual, ConstMatrixView<T>(buffers.normed), weight, buffers.rows,
                                buffers.scratch);
  }

  io::LayerPlan plan_;
  LayerWeights<T> weights_;
  float epsilon_;
  std::optional<Attention> attention_;
  std::optional<ElasticMLP<T, AnyWidth>> mlp_;
};

}  // namespace elastic::model
