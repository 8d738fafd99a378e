// The heterogeneous Llama-family decoder: token embedding, one DecoderLayer
// per layer of the model description (each with its own attention and FFN
// variant), final RMSNorm and the LM head, over views of one weight copy.
// Every forward runs the sub-network a SubnetworkConfig chooses (one for the
// whole batch, or one per sequence: see batch_schedule.hpp), over a
// ragged batch of sequences (AttentionBatch: per sequence a KV slot, its
// cached length and its new-token count; token ids packed in order) that may
// mix prefill, chunked prefill and decode, and writes float32 logits for
// every new token or only for each sequence's last one.
//
// Memory follows the layers' two-phase pattern: workspace_bytes() sizes the
// caller's workspace for a batch, forward() carves it and allocates nothing
// once its host staging of row indices has grown to the batch size (one
// forward at a time per Decoder). Everything a call could refuse (the
// configuration, token ids, the batch against the cache, logits, workspace,
// overlaps) is checked before anything is written. The executor is a
// template parameter: the host executor or any with the same primitives.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <tuple>
#include <type_traits>
#include <vector>

#include "elastic/core/attention_batch.hpp"
#include "elastic/core/checks.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/overlap.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/widths.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/layers/elastic_linear.hpp"
#include "elastic/math/row_dot.hpp"
#include "elastic/model/batch_schedule.hpp"
#include "elastic/model/decoder_layer.hpp"
#include "elastic/model/float_logits.hpp"
#include "elastic/model/kv_cache.hpp"
#include "elastic/model/model_weights.hpp"
#include "elastic/model/subnetwork_config.hpp"

namespace elastic::model {

// Which positions get logits: all new tokens (perplexity, checking) or the
// last new token of each sequence (generation).
enum class LogitsFor : std::uint8_t { every_token, last_token };

// MlpWidths: AnyWidth runs any SwiGLU width a checkpoint or configuration
// asks for; a deployment that knows the widths it serves names them,
// e.g. Decoder<bfloat16_t, Widths<384, 768, 1152, 1536>> (every width must
// fit every SwiGLU layer; a configuration asking for another is refused up
// front). W is the view of the weight matrices (model_weights.hpp):
// QuantizedMatrixView runs a GGUF file's blocks on the host executor.
template <ElementType T, WidthSet MlpWidths = AnyWidth, class W = ConstMatrixView<T>>
class Decoder {
 public:
  using matrix_view = W;

  Decoder(const io::ModelDescription& model, const ModelWeights<T, W>& weights)
      : model_(model),
        weights_(weights),
        lm_head_(check_model_wide(model, weights)),
        full_config_(SubnetworkConfig::full(model)) {
    for (std::size_t i = 0; i < model.layers.size(); ++i) layers_.emplace_back(model, i, weights.layers[i]);
    collect_weight_regions();
  }

  const io::ModelDescription& description() const { return model_; }

  // The KV cache this model needs for `slots` sequences of `capacity` positions.
  ModelCacheShape cache_shape(int slots, int capacity) const {
    return ModelCacheShape::for_model(model_, slots, capacity);
  }

  // Rows of logits a forward writes: one per new token, or one per sequence.
  static index_t logit_rows(const AttentionBatch& batch, LogitsFor logits) {
    return logits == LogitsFor::every_token ? batch.tokens() : static_cast<index_t>(batch.sequences());
  }

  // Workspace bytes forward() needs for this batch: for any one
  // configuration of the whole batch when `configs` is empty, else for
  // these (one for all sequences, or one per sequence). Plans in the
  // schedule forward() reuses, so a decode loop that sizes every step
  // allocates nothing (one call at a time per Decoder, as for forward()).
  template <DecoderExecutorFor<T> E>
  std::size_t workspace_bytes(const E& executor, const AttentionBatch& batch, const ModelCacheShape& cache,
                              LogitsFor logits, std::span<const SubnetworkConfig> configs = {}) const {
    check_batch(batch, cache, batch.tokens());
    schedule_.build(model_, configs.empty() ? std::span(&full_config_, 1) : configs, batch, index_offset(batch));
    return required_bytes(executor, batch, cache, logits, schedule_);
  }

  // Runs the sub-network `config` over the packed `tokens` of `batch`,
  // appending each GQA layer's keys and values to `cache`, and writes
  // float32 logits [logit_rows(batch, logits_for) x vocab] into `logits`.
  template <DecoderExecutorFor<T> E>
  void forward(E& executor, const SubnetworkConfig& config, std::span<const int> tokens, const AttentionBatch& batch,
               const ModelKVCache<T>& cache, LogitsFor logits_for, MatrixView<float> logits, Workspace workspace) {
    forward(executor, std::span(&config, 1), tokens, batch, cache, logits_for, logits, workspace);
  }

  // As above with a configuration per sequence (configs[s] for sequence s;
  // a single entry applies to all): every head count, MLP width and skip
  // may differ between the sequences of one batch (see batch_schedule.hpp).
  // Each sequence must keep its configuration for the life of its cache.
  template <DecoderExecutorFor<T> E>
  void forward(E& executor, std::span<const SubnetworkConfig> configs, std::span<const int> tokens,
               const AttentionBatch& batch, const ModelKVCache<T>& cache, LogitsFor logits_for,
               MatrixView<float> logits, Workspace workspace) {
    check_forward(executor, configs, tokens, batch, cache, logits_for, logits, workspace);
    WorkspaceCursor cursor(workspace);
    const Buffers buffers = carve(cursor, executor, batch, cache.shape(), logits_for, schedule_);
    upload_indices(executor, buffers, tokens, batch);

    executor.gather_rows(buffers.layer.residual, weights_.token_embedding, buffers.token_ids);
    for (std::size_t i = 0; i < layers_.size(); ++i)
      layers_[i].forward(executor, schedule_.layer(i), schedule_, buffers.layer, cache.layer(i), batch);

    const ConstMatrixView<T> residual(buffers.layer.residual);
    if (logits_for == LogitsFor::every_token) {
      executor.rms_norm(buffers.final_hidden, residual, weights_.output_norm, model_.rms_epsilon);
    } else {
      executor.gather_rows(buffers.final_hidden, residual, buffers.last_rows);
      executor.rms_norm(buffers.final_hidden, ConstMatrixView<T>(buffers.final_hidden), weights_.output_norm,
                        model_.rms_epsilon);
    }
    const int vocab = static_cast<int>(model_.vocab), hidden = static_cast<int>(model_.hidden);
    if constexpr (std::is_same_v<T, float>) {
      lm_head_.forward(executor, vocab, hidden, logits, buffers.final_hidden, buffers.layer.scratch);
    } else {
      lm_head_.forward(executor, vocab, hidden, buffers.logits, buffers.final_hidden, buffers.layer.scratch);
      widen_logits(executor, logits, ConstMatrixView<T>(buffers.logits));
    }
  }

 private:
  struct Buffers {
    LayerBuffers<T> layer;
    MatrixView<T> final_hidden;  // [logit rows x hidden]
    MatrixView<T> logits;        // [logit rows x vocab], 16-bit T only
    int* token_ids = nullptr;    // [tokens], then the rows [tokens], then last_rows [sequences]
    const int* last_rows = nullptr;
  };

  static W check_model_wide(const io::ModelDescription& model, const ModelWeights<T, W>& weights) {
    constexpr auto op = "Decoder";
    constexpr int vector = math::vector_width<T>;
    require(weights.layers.size() == model.layers.size(), op, ": the weights have ", weights.layers.size(),
            " layers, the model ", model.layers.size());
    require(model.hidden % vector == 0 && model.vocab % vector == 0, op, ": hidden size and vocabulary must be ",
            "multiples of ", vector, " ", dtype_name(dtype_of<T>), " elements (16 bytes), found ", model.hidden,
            " and ", model.vocab);
    require(model.vocab <= elastic::detail::int_max && model.hidden <= elastic::detail::int_max, op, ": vocabulary ",
            model.vocab, " and hidden size ", model.hidden, " must fit in int");
    elastic::detail::check_shape(weights.token_embedding, model.vocab, model.hidden, op, "token embedding");
    elastic::detail::check_shape(weights.output_norm, 1, model.hidden, op, "output norm");
    elastic::detail::check_shape(weights.lm_head, model.vocab, model.hidden, op, "LM head");
    elastic::detail::check_view(weights.token_embedding, op, "token embedding");
    elastic::detail::check_view(weights.output_norm, op, "output norm");
    elastic::detail::check_view(weights.lm_head, op, "LM head");
    return weights.lm_head;
  }

  void collect_weight_regions() {
    const auto add = [&](const auto&... views) {
      (weight_regions_.push_back(elastic::detail::region("model weights", views)), ...);
    };
    add(weights_.token_embedding, weights_.output_norm, weights_.lm_head);
    for (const LayerWeights<T, W>& layer : weights_.layers) std::apply(add, layer_view_refs(layer));
  }

  // The index array holds the token ids, the identity rows, each
  // sequence's last row, then the schedule's row lists.
  static std::size_t index_offset(const AttentionBatch& batch) {
    return static_cast<std::size_t>(2 * batch.tokens()) + batch.sequences();
  }

  template <class E>
  std::size_t required_bytes(const E& executor, const AttentionBatch& batch, const ModelCacheShape& cache,
                             LogitsFor logits_for, const BatchSchedule& schedule) const {
    WorkspaceCursor cursor;
    carve(cursor, executor, batch, cache, logits_for, schedule);
    return cursor.bytes_used();
  }

  template <class E>
  Buffers carve(WorkspaceCursor& cursor, const E& executor, const AttentionBatch& batch, const ModelCacheShape& cache,
                LogitsFor logits_for, const BatchSchedule& schedule) const {
    const index_t tokens = batch.tokens();
    const index_t rows = logit_rows(batch, logits_for);
    Buffers buffers;
    buffers.layer.residual = cursor.take_matrix<T>(tokens, model_.hidden);
    buffers.layer.normed = cursor.take_matrix<T>(tokens, model_.hidden);
    buffers.layer.block_output = cursor.take_matrix<T>(tokens, model_.hidden);
    buffers.final_hidden = cursor.take_matrix<T>(rows, model_.hidden);
    if constexpr (!std::is_same_v<T, float>) buffers.logits = cursor.take_matrix<T>(rows, model_.vocab);
    buffers.token_ids = cursor.take<int>(index_offset(batch) + schedule.index_count());
    if (buffers.token_ids != nullptr) {
      buffers.layer.rows = buffers.token_ids + tokens;
      buffers.last_rows = buffers.token_ids + 2 * tokens;
      buffers.layer.indices = buffers.token_ids;
    }
    std::size_t scratch = lm_head_.workspace_bytes(executor, rows);
    for (std::size_t i = 0; i < layers_.size(); ++i)
      scratch = std::max(scratch, layers_[i].workspace_bytes(executor, batch, schedule.layer(i), schedule,
                                                             cache.layers.at(i), model_.hidden));
    buffers.layer.scratch = cursor.take_workspace(scratch);
    return buffers;
  }

  // Token ids, the identity rows and each sequence's last row, staged in one
  // host array and copied to executor memory in one call.
  template <class E>
  void upload_indices(E& executor, const Buffers& buffers, std::span<const int> tokens, const AttentionBatch& batch) {
    const std::size_t count = tokens.size();
    staged_indices_.resize(2 * count + batch.sequences());
    staged_indices_.reserve(staged_indices_.size() + schedule_.index_count());
    std::copy(tokens.begin(), tokens.end(), staged_indices_.begin());
    std::iota(staged_indices_.begin() + static_cast<std::ptrdiff_t>(count),
              staged_indices_.begin() + static_cast<std::ptrdiff_t>(2 * count), 0);
    int end = 0;
    for (std::size_t s = 0; s < batch.sequences(); ++s) {
      end += batch.new_lengths[s];
      staged_indices_[2 * count + s] = end - 1;
    }
    schedule_.append_row_indices(staged_indices_);
    executor.load_indices(buffers.token_ids, staged_indices_);
  }

  void check_batch(const AttentionBatch& batch, const ModelCacheShape& cache, index_t tokens) const {
    batch.validate({cache.slots, 1, cache.capacity, model_.head_dim}, tokens, model_.rope.max_positions);
  }

  // Checks everything, then builds schedule_ for the batch.
  template <class E>
  void check_forward(const E& executor, std::span<const SubnetworkConfig> configs, std::span<const int> tokens,
                     const AttentionBatch& batch, const ModelKVCache<T>& cache, LogitsFor logits_for,
                     const MatrixView<float>& logits, const Workspace& workspace) {
    constexpr auto op = "Decoder::forward";
    for (const SubnetworkConfig& config : configs) {
      config.validate(model_, math::vector_width<T>);
      for (std::size_t i = 0; i < config.layers.size(); ++i) {
        const LayerChoice& choice = config.layers[i];
        if (model_.layers[i].ffn == io::FfnKind::swiglu && !choice.skip_ffn && !choice.linear_ffn)
          require<WidthError>(MlpWidths::contains(static_cast<int>(choice.mlp_width)), op, ": layer ", i,
                              " asks for MLP width ", choice.mlp_width, ", which is not in this decoder's width set ",
                              MlpWidths::describe());
      }
    }
    const ModelCacheShape& shape = cache.shape();
    require(shape.layers.size() == model_.layers.size(), op, ": the KV cache has ", shape.layers.size(),
            " layers, the model ", model_.layers.size());
    for (std::size_t i = 0; i < shape.layers.size(); ++i) {
      const KVCacheShape& found = shape.layers[i];
      const KVCacheShape expected = ModelCacheShape::layer_shape(model_, model_.layers[i], shape.slots, shape.capacity);
      require(found.kv_heads == expected.kv_heads && found.head_dim == expected.head_dim &&
                  found.slots == expected.slots && found.capacity == expected.capacity,
              op, ": KV cache layer ", i, " holds ", found.slots, " slots of ", found.capacity, " positions, ",
              found.kv_heads, " heads of ", found.head_dim, "; expected ", expected.slots, " of ", expected.capacity,
              ", ", expected.kv_heads, " of ", expected.head_dim);
    }
    check_batch(batch, shape, static_cast<index_t>(tokens.size()));
    for (std::size_t t = 0; t < tokens.size(); ++t)
      require(tokens[t] >= 0 && tokens[t] < model_.vocab, op, ": token ", t, " has id ", tokens[t],
              ", expected 0 <= id < ", model_.vocab, " (the vocabulary)");
    if (logits_for == LogitsFor::last_token)
      for (std::size_t s = 0; s < batch.sequences(); ++s)
        require(batch.new_lengths[s] >= 1, op, ": sequence ", s,
                " brings no new token, so it has no last position to give logits for");
    elastic::detail::check_shape(logits, logit_rows(batch, logits_for), model_.vocab, op, "logits");
    elastic::detail::check_view(logits, op, "logits");
    schedule_.build(model_, configs, batch, index_offset(batch));
    const std::size_t needed = required_bytes(executor, batch, shape, logits_for, schedule_);
    require<WorkspaceError>(workspace.bytes >= needed, op, ": workspace too small: need at least ", needed,
                            " bytes, found ", workspace.bytes);
    const elastic::detail::Region written[] = {elastic::detail::region("logits", logits),
                                      elastic::detail::region("workspace", workspace, needed),
                                      elastic::detail::region("KV cache", cache.memory(), shape.bytes_required<T>())};
    elastic::detail::check_disjoint(op, written, weight_regions_);
  }

  io::ModelDescription model_;
  ModelWeights<T, W> weights_;
  ElasticLinear<T, AnyWidth, AnyWidth, W> lm_head_;
  std::vector<DecoderLayer<T, MlpWidths, W>> layers_;
  std::vector<elastic::detail::Region> weight_regions_;
  std::vector<int> staged_indices_;
  SubnetworkConfig full_config_;     // every layer as stored: what workspace_bytes sizes for by default
  mutable BatchSchedule schedule_;   // of the current forward or size query; its storage is reused
};

}  // namespace elastic::model
