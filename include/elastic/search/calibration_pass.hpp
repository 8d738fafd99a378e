// What conversion and block scoring look inside: one window of calibration
// tokens through a model in float32 on the host executor, built from the
// executor's unfused primitives so that each block's internals can be
// observed. For a GQA attention that is every query head's context before
// the output projection; for a SwiGLU FFN, the neuron activations
// silu(gate n) * (up n) before the down projection; for every half that
// computes, its normed input n, its output before the residual add and the
// residual it adds into. The pass computes the function model::Decoder
// computes (the tests hold the two together to float32 round-off), without
// the decoder's fusions, which conversion can afford.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "elastic/core/attention_params.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/host/executor.hpp"
#include "elastic/host/workspace_buffer.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/model/kv_cache.hpp"
#include "elastic/model/model_weights.hpp"
#include "elastic/model/sequence_steps.hpp"
#include "elastic/search/half_variant.hpp"

namespace elastic::search {

// What one half of one layer computed over a window's tokens. The views are
// valid for the duration of the observer's call.
struct BlockObservation {
  int layer = 0;
  Half half = Half::attention;
  ConstMatrixView<float> normed;    // [tokens x hidden]: RMSNorm of the residual, the block's input
  ConstMatrixView<float> inner;     // GQA: the heads' context [tokens x heads * head_dim] (head h in
                                    // columns h * head_dim ...); SwiGLU: neuron activations
                                    // [tokens x width]; a linear block: empty
  ConstMatrixView<float> output;    // [tokens x hidden]: what the block adds to the residual
  ConstMatrixView<float> residual;  // [tokens x hidden]: the residual before the add
};

class CalibrationPass {
 public:
  // A pass over windows of at most `window` tokens through the model
  // `weights` holds (which must outlive the pass), on `executor`.
  CalibrationPass(const io::ModelDescription& model, const model::ModelWeights<float>& weights,
                  host::Executor& executor, int window)
      : model_(model), weights_(weights), executor_(executor), window_(window) {
    require(window > 0 && window <= model.rope.max_positions, "CalibrationPass: the window must hold 1 to the ",
            model.rope.max_positions, " positions the model supports, found ", window);
    require(model.head_dim == 64 || model.head_dim == 128, "CalibrationPass: head_dim must be 64 or 128, found ",
            model.head_dim);
    require(weights.layers.size() == model.layers.size(), "CalibrationPass: expected weights for ",
            model.layers.size(), " layers, found ", weights.layers.size());
    const index_t rows = window, hidden = model.hidden;
    index_t inner = 0, kv_width = 0;
    for (const io::LayerPlan& plan : model.layers) {
      if (plan.attention == io::AttentionKind::gqa) {
        inner = std::max<index_t>(inner, index_t{model.heads} * model.head_dim);
        kv_width = std::max<index_t>(kv_width, index_t{plan.kv_heads} * model.head_dim);
      }
      if (plan.ffn == io::FfnKind::swiglu) inner = std::max<index_t>(inner, plan.intermediate);
    }
    const model::ModelCacheShape cache_shape = model::ModelCacheShape::for_model(model, 1, window);
    const auto carve = [&](WorkspaceCursor& cursor) {
      Buffers buffers;
      buffers.residual = cursor.take_matrix<float>(rows, hidden);
      buffers.normed = cursor.take_matrix<float>(rows, hidden);
      buffers.output = cursor.take_matrix<float>(rows, hidden);
      buffers.inner = cursor.take_matrix<float>(rows, std::max<index_t>(inner, 1));
      buffers.q = cursor.take_matrix<float>(rows, index_t{model.heads} * model.head_dim);
      buffers.k = cursor.take_matrix<float>(rows, std::max<index_t>(kv_width, 1));
      buffers.v = cursor.take_matrix<float>(rows, std::max<index_t>(kv_width, 1));
      buffers.cache = cursor.take_workspace(cache_shape.bytes_required<float>());
      return buffers;
    };
    WorkspaceCursor measure;
    carve(measure);
    memory_ = host::WorkspaceBuffer(measure.bytes_used());
    WorkspaceCursor cursor(memory_.get());
    buffers_ = carve(cursor);
    cache_.emplace(buffers_.cache, cache_shape);
  }

  int window() const { return window_; }
  const io::ModelDescription& description() const { return model_; }

  // Runs `tokens` (1 to window() ids of the vocabulary) from an empty cache
  // and calls observe(const BlockObservation&) for every half that computes,
  // layer by layer, the attention half before the FFN half.
  template <class Observe>
  void run(std::span<const int> tokens, Observe&& observe) {
    require(!tokens.empty() && tokens.size() <= static_cast<std::size_t>(window_), "CalibrationPass::run: expected 1 to ",
            window_, " tokens, found ", tokens.size());
    for (int token : tokens)
      require(token >= 0 && token < model_.vocab, "CalibrationPass::run: token id ", token,
              " is outside the vocabulary of ", model_.vocab);
    tokens_ = static_cast<index_t>(tokens.size());
    const model::LoneSequenceStep step{0, 0, static_cast<int>(tokens.size())};
    const AttentionBatch batch = step.batch();
    const MatrixView<float> residual = buffers_.residual.first_rows(tokens_);
    executor_.gather_rows(residual, weights_.token_embedding, tokens.data());
    for (std::size_t i = 0; i < model_.layers.size(); ++i) {
      const io::LayerPlan& plan = model_.layers[i];
      const model::LayerWeights<float>& layer = weights_.layers[i];
      const int index = static_cast<int>(i);
      if (plan.attention == io::AttentionKind::gqa)
        half(index, Half::attention, layer.attention_norm, observe, [&](const auto& normed, const auto& output) {
          return attention(plan, layer.attention, cache_->layer(i), batch, normed, output);
        });
      else if (plan.attention == io::AttentionKind::linear)
        half(index, Half::attention, layer.attention_norm, observe, [&](const auto& normed, const auto& output) {
          executor_.linear(output, normed, layer.linear_attention);
          return ConstMatrixView<float>();
        });
      if (plan.ffn == io::FfnKind::swiglu)
        half(index, Half::ffn, layer.ffn_norm, observe, [&](const auto& normed, const auto& output) {
          const MatrixView<float> neurons = buffers_.inner.first_rows(tokens_).first_cols(plan.intermediate);
          executor_.swiglu(neurons, normed, layer.mlp.gate, layer.mlp.up);
          executor_.linear(output, ConstMatrixView<float>(neurons), layer.mlp.down);
          return ConstMatrixView<float>(neurons);
        });
      else if (plan.ffn == io::FfnKind::linear)
        half(index, Half::ffn, layer.ffn_norm, observe, [&](const auto& normed, const auto& output) {
          executor_.linear(output, normed, layer.linear_ffn);
          return ConstMatrixView<float>();
        });
    }
  }

  // The residual stream after the last layer for the last run's tokens
  // [tokens x hidden], before the output norm.
  ConstMatrixView<float> hidden() const { return buffers_.residual.first_rows(tokens_); }

  // The last run's logits, [tokens x vocab] into `logits`; `normed` is
  // scratch of [tokens x hidden] (both the caller's).
  void logits(MatrixView<float> logits, MatrixView<float> normed) {
    executor_.rms_norm(normed, hidden(), weights_.output_norm, model_.rms_epsilon);
    executor_.linear(logits, ConstMatrixView<float>(normed), weights_.lm_head);
  }

 private:
  struct Buffers {
    MatrixView<float> residual, normed, output, inner, q, k, v;
    Workspace cache;
  };

  // One residual half: n = RMSNorm(h), output = block(n) (which returns
  // the internals it exposes), observe, h += output.
  template <class Observe, class Block>
  void half(int layer, Half which, const ConstMatrixView<float>& norm, Observe& observe, Block&& block) {
    const MatrixView<float> residual = buffers_.residual.first_rows(tokens_);
    const MatrixView<float> normed = buffers_.normed.first_rows(tokens_);
    const MatrixView<float> output = buffers_.output.first_rows(tokens_);
    executor_.rms_norm(normed, ConstMatrixView<float>(residual), norm, model_.rms_epsilon);
    const ConstMatrixView<float> inner = block(ConstMatrixView<float>(normed), output);
    observe(BlockObservation{layer, which, ConstMatrixView<float>(normed), inner, ConstMatrixView<float>(output),
                             ConstMatrixView<float>(residual)});
    for (index_t t = 0; t < tokens_; ++t) {
      float* row = residual.row(t);
      const float* add = output.row(t);
      for (index_t c = 0; c < residual.cols(); ++c) row[c] += add[c];
    }
  }

  ConstMatrixView<float> attention(const io::LayerPlan& plan, const AttentionWeights<float>& weights,
                                   const KVCacheView<float>& cache, const AttentionBatch& batch,
                                   const ConstMatrixView<float>& normed, const MatrixView<float>& output) {
    const index_t q_width = index_t{model_.heads} * model_.head_dim;
    const index_t kv_width = index_t{plan.kv_heads} * model_.head_dim;
    const MatrixView<float> q = buffers_.q.first_rows(tokens_);
    const MatrixView<float> k = buffers_.k.first_rows(tokens_).first_cols(kv_width);
    const MatrixView<float> v = buffers_.v.first_rows(tokens_).first_cols(kv_width);
    const MatrixView<float> context = buffers_.inner.first_rows(tokens_).first_cols(q_width);
    executor_.linear(q, normed, weights.q);
    executor_.linear(k, normed, weights.k);
    executor_.linear(v, normed, weights.v);
    const auto attend = [&]<int HeadDim>() {
      const auto params =
          AttentionParams<HeadDim>::make(model_.heads, plan.kv_heads, model_.heads / plan.kv_heads,
                                         1.0f / std::sqrt(static_cast<float>(HeadDim)), model_.rope);
      executor_.attention(context, ConstMatrixView<float>(q), ConstMatrixView<float>(k), ConstMatrixView<float>(v),
                          cache, batch, params);
    };
    if (model_.head_dim == 64) attend.template operator()<64>();
    else attend.template operator()<128>();
    executor_.linear(output, ConstMatrixView<float>(context), weights.o);
    return ConstMatrixView<float>(context);
  }

  io::ModelDescription model_;
  const model::ModelWeights<float>& weights_;
  host::Executor& executor_;
  int window_;
  host::WorkspaceBuffer memory_;
  Buffers buffers_;
  std::optional<model::ModelKVCache<float>> cache_;
  index_t tokens_ = 0;
};

}  // namespace elastic::search
