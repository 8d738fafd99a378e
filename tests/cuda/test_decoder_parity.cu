// The whole decoder on the CUDA executor against the host decoder, for one
// element type chosen by the build (ELASTIC_TEST_DTYPE: float or
// bfloat16_t). The tiny nemotron-nas checkpoint of tiny_host_decoder.hpp
// (GQA, linear and no-op blocks) is copied to the device by DeviceWeights;
// a prefill through Decoder::forward into poisoned logits, and chunked
// prefill, decode steps and append_every through DeviceSequence, must give
// the HostSequence's logits, at full size and as a sub-network (fewer heads,
// narrower MLPs, skipped halves); and one batch whose sequences each run
// their own sub-network must give each sequence's logits alone on the host.
// Error measure: max|a - b| / max|host|.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "cuda/device_buffer.cuh"
#include "cuda/dtype_under_test.cuh"
#include "cuda/tiny_host_decoder.hpp"
#include "elastic/cuda/device_buffer.cuh"
#include "elastic/cuda/executor.cuh"
#include "elastic/model/decoder.hpp"
#include "elastic/model/device_sequence.cuh"
#include "elastic/model/device_weights.cuh"
#include "elastic/model/sequence_steps.hpp"
#include "support/error_message.hpp"
#include "support/test_support.hpp"

using namespace elastic;
using elastic::model::LogitsFor;
using elastic::model::SubnetworkConfig;
using test::TestType;

namespace elastic::test {
namespace {

// Both sides round every activation to T; in bfloat16 their roundings part
// wherever their summation orders do (each side is within 2e-2 of a float64
// reference on this model).
constexpr double decoder_tolerance = std::is_same_v<TestType, float> ? 1e-4 : 3e-2;

// max|got - expected| / max|expected|; infinity when a value is not finite.
double max_relative_error(std::span<const float> got, std::span<const float> expected) {
  REQUIRE(got.size() == expected.size());
  double diff = 0.0, top = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, std::abs(double{got[i]} - double{expected[i]}));
    top = std::max(top, std::abs(double{expected[i]}));
  }
  return diff / top;
}

// Narrower MLPs, fewer heads (a partial KV group, MQA with one head, half
// of four KV heads), a skipped linear attention and a skipped FFN.
SubnetworkConfig sliced_config(const io::ModelDescription& model) {
  SubnetworkConfig config = SubnetworkConfig::full(model);
  config.layers[0].heads = 3;
  config.layers[0].mlp_width = 200;
  config.layers[1].skip_attention = true;
  config.layers[1].mlp_width = 64;
  config.layers[3].heads = 1;
  config.layers[4].heads = 2;
  config.layers[4].skip_ffn = true;
  return config;
}

// The checkpoint on both sides: the host decoder, and a decoder over the
// device copies of its weights.
struct TwoDecoders {
  explicit TwoDecoders(bool tied = false)
      : host(7, tied), weights(host.weights()), decoder(host.description(), weights.views()) {}

  int vocab() const { return static_cast<int>(host.description().vocab); }

  // The error of one prefill of `tokens` through Decoder::forward into
  // poisoned device logits, against the host.
  double prefill_error(const SubnetworkConfig& config, std::span<const int> tokens) {
    host.start_sequence(32, config);
    const std::vector<float> expected = host.append_every(tokens);
    const model::LoneSequenceStep step{0, 0, static_cast<int>(tokens.size())};
    const AttentionBatch batch = step.batch();
    const model::ModelCacheShape shape = decoder.cache_shape(1, 32);
    const cuda::WorkspaceBuffer cache_memory(shape.bytes_required<TestType>());
    const model::ModelKVCache<TestType> cache(cache_memory.get(), shape);
    const cuda::WorkspaceBuffer workspace(decoder.workspace_bytes(executor, batch, shape, LogitsFor::every_token));
    DeviceMatrix<float> logits = poisoned_device_matrix<float>(step.fresh, vocab());
    decoder.forward(executor, config, tokens, batch, cache, LogitsFor::every_token, logits.view(), workspace.get());
    return max_relative_error(logits.to_host().values, expected);
  }

  TinyHostDecoder<TestType> host;
  model::DeviceWeights<TestType> weights;
  model::Decoder<TestType> decoder;
  cuda::Executor executor;
};

}  // namespace
}  // namespace elastic::test

TEST_CASE("cuda decoder prefill matches the host decoder, full and sub-network: " ELASTIC_TEST_DTYPE_NAME) {
  test::TwoDecoders both;
  for (const bool sliced : {false, true})
    for (const int length : {5, 21}) {  // decode-bucket row dots, then cuBLASLt
      CAPTURE(sliced);
      CAPTURE(length);
      const io::ModelDescription& model = both.host.description();
      const SubnetworkConfig config = sliced ? test::sliced_config(model) : SubnetworkConfig::full(model);
      const double error = both.prefill_error(config, test::random_tokens(length, both.vocab(), 11));
      MESSAGE((sliced ? "sub-network" : "full"), " prefill of ", length, ": ", error);
      CHECK(error < test::decoder_tolerance);
    }
}

TEST_CASE("cuda DeviceWeights: a tied LM head shares the embedding's copy: " ELASTIC_TEST_DTYPE_NAME) {
  test::TwoDecoders tied(true);
  const test::TinyHostDecoder<TestType> untied_host(7);
  const model::DeviceWeights<TestType> untied(untied_host.weights());
  const io::ModelDescription& model = tied.host.description();
  CHECK(tied.weights.views().lm_head.data() == tied.weights.views().token_embedding.data());
  CHECK(untied.views().lm_head.data() != untied.views().token_embedding.data());
  CHECK(untied.bytes() - tied.weights.bytes() ==
        static_cast<std::size_t>(model.vocab * model.hidden) * sizeof(TestType));
  const double error = tied.prefill_error(SubnetworkConfig::full(model), test::random_tokens(6, tied.vocab(), 5));
  CHECK(error < test::decoder_tolerance);
}

TEST_CASE("cuda DeviceSequence matches HostSequence through chunked prefill, decode and append_every: "
          ELASTIC_TEST_DTYPE_NAME) {
  test::TwoDecoders both;
  const std::vector<int> tokens = test::random_tokens(32, both.vocab(), 3);
  const std::span<const int> all(tokens);
  for (const bool sliced : {false, true}) {
    CAPTURE(sliced);
    const io::ModelDescription& model = both.host.description();
    const SubnetworkConfig config = sliced ? test::sliced_config(model) : SubnetworkConfig::full(model);
    both.host.start_sequence(40, config);
    model::DeviceSequence<TestType> device(both.decoder, both.executor, 40, config);
    CHECK(device.capacity() == 40);
    CHECK(device.vocab() == both.vocab());

    // Chunks of 17 (cuBLASLt) and 4, six decode steps, then 5 tokens at once.
    double worst = test::max_relative_error(device.append(all.first(21), 17), both.host.append(all.first(21), 17));
    for (std::size_t position = 21; position < 27; ++position)
      worst = std::max(worst, test::max_relative_error(device.append(all.subspan(position, 1)),
                                                        both.host.append(all.subspan(position, 1), 512)));
    worst = std::max(worst, test::max_relative_error(device.append_every(all.subspan(27)),
                                                      both.host.append_every(all.subspan(27))));
    CHECK(device.length() == 32);
    MESSAGE((sliced ? "sub-network" : "full"), " sequence: ", worst);
    CHECK(worst < test::decoder_tolerance);

    device.reset();  // a fresh prefill over the old cache contents
    both.host.start_sequence(40, config);
    const double fresh_error =
        test::max_relative_error(device.append_every(all.first(9)), both.host.append_every(all.first(9)));
    CHECK(fresh_error < test::decoder_tolerance);

    CHECK(test::error_of([&] { device.append(all); }) ==
          "DeviceSequence::append: 32 tokens do not fit: the sequence holds 9 of its 40 positions");
    CHECK(test::error_of([&] { device.append(all.first(2), 0); }) ==
          "DeviceSequence::append: chunk must be positive, found 0");
    CHECK(test::error_of([&] { device.append_every({}); }) ==
          "DeviceSequence::append_every: expected at least one token");
    CHECK(device.length() == 9);
  }
}

TEST_CASE("cuda decoder: a batch whose sequences run different sub-networks matches each sequence alone on the host: "
          ELASTIC_TEST_DTYPE_NAME) {
  test::TwoDecoders both;
  const io::ModelDescription& model = both.host.description();
  const auto vocab = static_cast<std::size_t>(both.vocab());
  // a: the full model; b: the sliced configuration; c: layer 0's attention
  // and layer 4's FFN as their stored linear maps (beside the others' GQA
  // and SwiGLU groups), a narrower MLP, a skipped linear FFN and a skipped
  // GQA attention.
  std::vector<SubnetworkConfig> configs{SubnetworkConfig::full(model), test::sliced_config(model),
                                        SubnetworkConfig::full(model)};
  configs[2].layers[0].linear_attention = true;
  configs[2].layers[0].mlp_width = 128;
  configs[2].layers[2].skip_ffn = true;
  configs[2].layers[4].skip_attention = true;
  configs[2].layers[4].linear_ffn = true;
  constexpr std::size_t sequences = 3;
  constexpr int capacity = 32;

  // Each sequence alone through the host decoder: logits of every position.
  std::vector<std::vector<int>> tokens;
  std::vector<std::vector<float>> alone;
  for (std::size_t s = 0; s < sequences; ++s) {
    tokens.push_back(test::random_tokens(12 + static_cast<int>(s), both.vocab(), 40 + s));
    both.host.start_sequence(capacity, configs[s]);
    alone.push_back(both.host.append_every(tokens[s]));
  }

  const model::ModelCacheShape shape = both.decoder.cache_shape(static_cast<int>(sequences), capacity);
  const elastic::cuda::WorkspaceBuffer cache_memory(shape.bytes_required<TestType>());
  const model::ModelKVCache<TestType> cache(cache_memory.get(), shape);
  // Three steps over slots 2, 0, 1: a ragged prefill (3, 5, 4 tokens), a
  // decode step (the decode kernels), then the rest of every sequence.
  const std::vector<int> slots{2, 0, 1};
  const std::vector<std::vector<int>> first_steps{{3, 5, 4}, {1, 1, 1}};
  std::vector<int> cached(sequences, 0);
  double worst = 0.0;
  for (std::size_t step = 0; step < 3; ++step) {
    CAPTURE(step);
    std::vector<int> fresh(sequences), packed;
    for (std::size_t s = 0; s < sequences; ++s) {
      fresh[s] = step < first_steps.size() ? first_steps[step][s] : static_cast<int>(tokens[s].size()) - cached[s];
      packed.insert(packed.end(), tokens[s].begin() + cached[s], tokens[s].begin() + cached[s] + fresh[s]);
    }
    const AttentionBatch batch{slots, cached, fresh, {}};
    const elastic::cuda::WorkspaceBuffer workspace(
        both.decoder.workspace_bytes(both.executor, batch, shape, LogitsFor::every_token, configs));
    test::DeviceMatrix<float> logits = test::poisoned_device_matrix<float>(static_cast<index_t>(packed.size()), both.vocab());
    both.decoder.forward(both.executor, configs, packed, batch, cache, LogitsFor::every_token, logits.view(),
                         workspace.get());
    const test::HostMatrix<float> got = logits.to_host();
    std::size_t row = 0;
    for (std::size_t s = 0; s < sequences; ++s) {
      const std::size_t rows = static_cast<std::size_t>(fresh[s]);
      const std::span<const float> got_rows(got.values.data() + row * vocab, rows * vocab);
      const std::span<const float> expected(alone[s].data() + static_cast<std::size_t>(cached[s]) * vocab, rows * vocab);
      worst = std::max(worst, test::max_relative_error(got_rows, expected));
      row += rows;
      cached[s] += fresh[s];
    }
  }
  MESSAGE("mixed sub-networks: ", worst);
  CHECK(worst < test::decoder_tolerance);
}
