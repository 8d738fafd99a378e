// One sequence run through a Decoder on the host executor: the KV cache, the
// workspace and the logits buffer a generation loop or a perplexity window
// needs, owned once and reused, so appending tokens allocates nothing after
// the first call at a given chunk size. Long inputs are fed in chunks
// (chunked prefill equals one prefill); decode is an append of one token.
// The sub-network is fixed for the sequence's life (see subnetwork_config.hpp:
// its KV cache holds only what that sub-network writes).
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "elastic/core/error.hpp"
#include "elastic/host/executor.hpp"
#include "elastic/host/workspace_buffer.hpp"
#include "elastic/model/decoder.hpp"
#include "elastic/model/sequence_steps.hpp"
#include "elastic/model/subnetwork_config.hpp"

namespace elastic::model {

// MlpWidths: the decoder's width set (AnyWidth, or a deployment's Widths<...>).
template <ElementType T, WidthSet MlpWidths = AnyWidth, class W = ConstMatrixView<T>>
class HostSequence {
 public:
  // A sequence of at most `capacity` positions through `decoder` (which must
  // outlive it), run as `config` on `executor`.
  HostSequence(Decoder<T, MlpWidths, W>& decoder, host::Executor& executor, int capacity, SubnetworkConfig config)
      : decoder_(decoder),
        executor_(executor),
        config_(std::move(config)),
        cache_shape_(decoder.cache_shape(1, capacity)),
        cache_memory_(cache_shape_.template bytes_required<T>()),
        cache_(cache_memory_.get(), cache_shape_) {
    config_.validate(decoder.description(), static_cast<int>(math::vector_width<T>));
  }

  int length() const { return length_; }
  int capacity() const { return cache_shape_.capacity; }
  int vocab() const { return static_cast<int>(decoder_.description().vocab); }
  const SubnetworkConfig& config() const { return config_; }

  // Forgets every position (the cache is overwritten from the start).
  void reset() { length_ = 0; }

  // Appends `tokens` in chunks of at most `chunk` and returns the logits of
  // the last one [vocab].
  std::span<const float> append(std::span<const int> tokens, int chunk = 512) {
    check_tokens_fit(tokens, length_, capacity(), "HostSequence::append");
    check_chunk_size(chunk, "HostSequence::append");
    std::span<const float> last;
    for_each_chunk(tokens, chunk, [&](std::span<const int> part) { last = run(part, LogitsFor::last_token); });
    return last;
  }

  // Appends `tokens` in one forward and returns every position's logits,
  // [tokens x vocab] row-major (valid until the next call).
  std::span<const float> append_every(std::span<const int> tokens) {
    check_tokens_fit(tokens, length_, capacity(), "HostSequence::append_every");
    return run(tokens, LogitsFor::every_token);
  }

 private:
  std::span<const float> run(std::span<const int> tokens, LogitsFor logits_for) {
    const LoneSequenceStep step{0, length_, static_cast<int>(tokens.size())};
    const AttentionBatch batch = step.batch();
    const index_t rows = Decoder<T, MlpWidths, W>::logit_rows(batch, logits_for);
    const std::size_t logit_count = static_cast<std::size_t>(rows) * static_cast<std::size_t>(vocab());
    if (logits_.bytes() < logit_count * sizeof(float)) logits_ = host::WorkspaceBuffer(logit_count * sizeof(float));
    const std::size_t bytes = decoder_.workspace_bytes(executor_, batch, cache_shape_, logits_for);
    if (workspace_.bytes() < bytes) workspace_ = host::WorkspaceBuffer(bytes);
    auto* logits = static_cast<float*>(logits_.get().data);
    decoder_.forward(executor_, config_, tokens, batch, cache_, logits_for, MatrixView<float>(logits, rows, vocab()),
                     workspace_.get());
    length_ += step.fresh;
    return {logits, logit_count};
  }

  Decoder<T, MlpWidths, W>& decoder_;
  host::Executor& executor_;
  SubnetworkConfig config_;
  ModelCacheShape cache_shape_;
  host::WorkspaceBuffer cache_memory_;
  ModelKVCache<T> cache_;
  host::WorkspaceBuffer workspace_;
  host::WorkspaceBuffer logits_;
  int length_ = 0;
};

}  // namespace elastic::model
