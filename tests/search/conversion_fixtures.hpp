// What the conversion and search tests share: a checkpoint loaded in
// float32, the small llama they write, every position's logits through the
// decoder, and the logits' relative error.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <span>
#include <vector>

#include <doctest/doctest.h>

#include "elastic/host/executor.hpp"
#include "elastic/io/model_source.hpp"
#include "elastic/model/decoder.hpp"
#include "elastic/model/host_sequence.hpp"
#include "elastic/model/host_weights.hpp"
#include "elastic/model/subnetwork_config.hpp"
#include "support/tiny_checkpoint.hpp"

namespace elastic::test {

// A checkpoint folder or GGUF file loaded in float32.
struct LoadedModel {
  explicit LoadedModel(const std::filesystem::path& path) : source(io::ModelSource::open(path)), weights(source) {}
  const io::ModelDescription& description() const { return weights.description(); }
  io::ModelSource source;
  model::HostWeights<float> weights;
};

// Two llama layers: 4 query heads in 2 KV groups, SwiGLU width 192.
inline TinyModel tiny_llama() {
  TinyModel m;
  m.kv_heads = 2;
  m.intermediate = 192;
  m.layers = 2;
  return m;
}

// Every position's logits of `tokens` through the decoder over `weights`.
inline std::vector<float> decoder_logits(const io::ModelDescription& description,
                                         const model::ModelWeights<float>& weights, const std::vector<int>& tokens,
                                         const model::SubnetworkConfig& config, host::Executor& executor) {
  model::Decoder<float> decoder(description, weights);
  model::HostSequence<float> sequence(decoder, executor, static_cast<int>(tokens.size()), config);
  const std::span<const float> logits = sequence.append_every(tokens);
  return {logits.begin(), logits.end()};
}

// max|a - b| / max|b|; infinity when a value of `a` is not finite.
inline double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0.0, top = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    top = std::max(top, std::abs(double(b[i])));
  }
  return diff / top;
}

}  // namespace elastic::test
