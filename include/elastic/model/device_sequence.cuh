// One sequence run through a Decoder on the CUDA executor: the CUDA twin of
// HostSequence (same constructor, calls, contract and error messages). It
// owns the device KV cache, the device workspace, the device float32 logits
// and a pinned host copy of the logits it returns; the weights the Decoder
// views must be device memory (DeviceWeights). Buffers are allocated only
// when a call needs more than they hold, and a call's buffers are grown
// before any of its forwards is enqueued, so nothing is freed under queued
// work. Each call enqueues its forwards on the executor's stream and
// synchronises once, reading the logits back; the executor's own uploads
// from pageable memory (token ids, attention metadata) may also wait for the
// stream (cuda/attention_metadata.cuh).
//
// A decode step is not captured in a CUDA graph yet. The executor's
// attention can be (cuda::Executor::plan_decode_attention, then
// run_decode_attention + advance_decode_attention, which read the lengths
// and the split plan from device memory), but two things on this path are
// still fixed at enqueue time:
//   1. Decoder::forward stages the token ids, the row indices and each
//      sequence's last row in a host vector and copies them with
//      cuda::Executor::load_indices, a cudaMemcpyAsync from pageable memory;
//      a replayed copy would re-read that vector, which only a new forward
//      refills (and may have reallocated), so never the new token.
//   2. Each GQA layer calls attention(), which plans on every call (host
//      checks and an upload of the batch from the executor's pinned ring)
//      instead of running a plan made once before the capture.
// Capturing needs the token ids in device memory the graph reads (written
// before each replay from pinned memory, or by a sampler on the device) and
// the layers running per-layer decode plans made at capture time.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <span>
#include <utility>

#include "elastic/core/attention_batch.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/cuda/device_buffer.cuh"
#include "elastic/cuda/error.cuh"
#include "elastic/cuda/executor.cuh"
#include "elastic/math/row_dot.hpp"
#include "elastic/model/decoder.hpp"
#include "elastic/model/kv_cache.hpp"
#include "elastic/model/sequence_steps.hpp"
#include "elastic/model/subnetwork_config.hpp"

namespace elastic::model {

// MlpWidths: the decoder's width set (AnyWidth, or a deployment's Widths<...>).
template <ElementType T, WidthSet MlpWidths = AnyWidth>
class DeviceSequence {
 public:
  // A sequence of at most `capacity` positions through `decoder` (which must
  // outlive it, over device weights), run as `config` on `executor`.
  DeviceSequence(Decoder<T, MlpWidths>& decoder, cuda::Executor& executor, int capacity, SubnetworkConfig config)
      : decoder_(decoder),
        executor_(executor),
        config_(std::move(config)),
        cache_shape_(decoder.cache_shape(1, capacity)),
        cache_memory_(cache_shape_.template bytes_required<T>(), "the KV cache"),
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
  // the last one [vocab] (host memory, valid until the next call).
  std::span<const float> append(std::span<const int> tokens, int chunk = 512) {
    check_tokens_fit(tokens, length_, capacity(), "DeviceSequence::append");
    check_chunk_size(chunk, "DeviceSequence::append");
    int cached = length_;
    for_each_chunk(tokens, chunk, [&](std::span<const int> part) {
      reserve({0, cached, static_cast<int>(part.size())}, LogitsFor::last_token);
      cached += static_cast<int>(part.size());
    });
    for_each_chunk(tokens, chunk, [&](std::span<const int> part) { enqueue(part, LogitsFor::last_token); });
    return read_logits(1);
  }

  // Appends `tokens` in one forward and returns every position's logits,
  // [tokens x vocab] row-major (host memory, valid until the next call).
  std::span<const float> append_every(std::span<const int> tokens) {
    check_tokens_fit(tokens, length_, capacity(), "DeviceSequence::append_every");
    reserve({0, length_, static_cast<int>(tokens.size())}, LogitsFor::every_token);
    enqueue(tokens, LogitsFor::every_token);
    return read_logits(static_cast<index_t>(tokens.size()));
  }

 private:
  // Grows the buffers to what a forward of `step` needs.
  void reserve(const LoneSequenceStep& step, LogitsFor logits_for) {
    const AttentionBatch batch = step.batch();
    const std::size_t logit_count =
        static_cast<std::size_t>(Decoder<T, MlpWidths>::logit_rows(batch, logits_for)) * static_cast<std::size_t>(vocab());
    if (logits_.size() < logit_count) logits_ = cuda::DeviceBuffer<float>(logit_count, "the logits");
    if (host_logits_.size() < logit_count)
      host_logits_ = cuda::PinnedBuffer<float>(logit_count, "the logits read back");
    const std::size_t bytes = decoder_.workspace_bytes(executor_, batch, cache_shape_, logits_for);
    if (workspace_.bytes() < bytes) workspace_ = cuda::WorkspaceBuffer(bytes, "the decoder workspace");
  }

  // Enqueues the forward of `tokens` after the sequence's positions.
  void enqueue(std::span<const int> tokens, LogitsFor logits_for) {
    const LoneSequenceStep step{0, length_, static_cast<int>(tokens.size())};
    const AttentionBatch batch = step.batch();
    const MatrixView<float> logits(logits_.data(), Decoder<T, MlpWidths>::logit_rows(batch, logits_for), vocab());
    decoder_.forward(executor_, config_, tokens, batch, cache_, logits_for, logits, workspace_.get());
    length_ += step.fresh;
  }

  // Copies the first `rows` rows of logits to the host and waits for them.
  std::span<const float> read_logits(index_t rows) {
    const std::size_t count = static_cast<std::size_t>(rows) * static_cast<std::size_t>(vocab());
    ELASTIC_CUDA_CHECK(cudaMemcpyAsync(host_logits_.data(), logits_.data(), count * sizeof(float),
                                       cudaMemcpyDeviceToHost, executor_.stream()));
    ELASTIC_CUDA_CHECK(cudaStreamSynchronize(executor_.stream()));
    return {host_logits_.data(), count};
  }

  Decoder<T, MlpWidths>& decoder_;
  cuda::Executor& executor_;
  SubnetworkConfig config_;
  ModelCacheShape cache_shape_;
  cuda::WorkspaceBuffer cache_memory_;
  ModelKVCache<T> cache_;
  cuda::WorkspaceBuffer workspace_;
  cuda::DeviceBuffer<float> logits_;
  cuda::PinnedBuffer<float> host_logits_;
  int length_ = 0;
};

}  // namespace elastic::model
