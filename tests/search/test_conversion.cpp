// Tests of the conversion stages on tiny checkpoints: the calibration pass
// computes the decoder's function and shows each block's internals as
// defined; importance scores equal their definitions computed directly from
// the observed activations in float64; a permutation (random or by
// importance) leaves the model's logits unchanged at full width, and a
// narrower sub-network of the permuted model keeps the highest-ranked units;
// the elastic checkpoint written from a Hugging Face folder or a GGUF file
// loads back computing the permuted model.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastic/io/model_source.hpp"
#include "elastic/model/decoder.hpp"
#include "elastic/model/host_sequence.hpp"
#include "elastic/model/host_weights.hpp"
#include "elastic/search/calibration_pass.hpp"
#include "elastic/search/elastic_checkpoint.hpp"
#include "elastic/search/importance.hpp"
#include "elastic/search/linear_maps.hpp"
#include "elastic/search/permutation.hpp"
#include "io/tokenizer_fixtures.hpp"
#include "model/reference_logits.hpp"
#include "search/conversion_fixtures.hpp"
#include "support/error_message.hpp"
#include "support/python.hpp"
#include "support/test_support.hpp"
#include "support/tiny_checkpoint.hpp"
#include "support/tiny_gguf.hpp"

using namespace elastic;
using elastic::model::SubnetworkConfig;
using elastic::search::BlockObservation;
using elastic::search::CalibrationPass;
using elastic::search::Half;
using elastic::search::ImportanceCollector;
using elastic::search::ModelPermutation;
using elastic::search::PermutedWeights;
using elastic::search::RankingMethod;

namespace {

// `count` values uniform in [-0.05, 0.05], none zero: a linear map's weights.
std::vector<float> random_floats(index_t count, std::uint64_t seed) {
  const test::HostMatrix<float> m = test::random_matrix<float>(1, count, seed, 0.05f);
  return {m.values.begin(), m.values.end()};
}

// A copy of a matrix view's values, row-major.
std::vector<double> copy_of(const ConstMatrixView<float>& m) {
  std::vector<double> values;
  for (index_t r = 0; r < m.rows(); ++r)
    for (index_t c = 0; c < m.cols(); ++c) values.push_back(m(r, c));
  return values;
}

// Observations kept for checking, per (layer, half).
struct Kept {
  int layer;
  Half half;
  index_t tokens, hidden, inner_width;
  std::vector<double> normed, inner, output, residual;
};

// A random permutation that keeps query heads with their KV heads.
ModelPermutation random_permutation(const io::ModelDescription& model, std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  ModelPermutation permutation = ModelPermutation::identity(model);
  for (std::size_t i = 0; i < model.layers.size(); ++i) {
    search::LayerPermutation& layer = permutation.layers[i];
    std::shuffle(layer.neurons.begin(), layer.neurons.end(), engine);
    if (layer.kv_heads.empty()) continue;
    std::shuffle(layer.kv_heads.begin(), layer.kv_heads.end(), engine);
    const int group = model.heads / model.layers[i].kv_heads;
    layer.query_heads.clear();
    for (int g : layer.kv_heads) {
      std::vector<int> members(static_cast<std::size_t>(group));
      std::iota(members.begin(), members.end(), g * group);
      std::shuffle(members.begin(), members.end(), engine);
      layer.query_heads.insert(layer.query_heads.end(), members.begin(), members.end());
    }
  }
  return permutation;
}

}  // namespace

TEST_CASE("calibration pass: equals the decoder, and its observations are the blocks' internals") {
  for (const bool nemotron : {false, true}) {
    CAPTURE(nemotron);
    test::TemporaryDirectory folder;
    if (nemotron) test::write_nemotron_folder(folder.path(), test::nemotron_model(), 21);
    else test::write_llama_folder(folder.path(), test::tiny_llama(), 21);
    const test::LoadedModel loaded(folder.path());
    const io::ModelDescription& model = loaded.description();
    host::Executor executor(2);
    const std::vector<int> tokens = test::random_tokens(13, static_cast<int>(model.vocab), 5);

    CalibrationPass pass(model, loaded.weights.views(), executor, 16);
    std::vector<Kept> kept;
    pass.run(tokens, [&](const BlockObservation& block) {
      kept.push_back({block.layer, block.half, block.output.rows(), block.output.cols(), block.inner.cols(),
                      copy_of(block.normed), copy_of(block.inner), copy_of(block.output), copy_of(block.residual)});
    });
    test::HostMatrix<float> logits(13, model.vocab), normed(13, model.hidden);
    test::fill_poison(logits);
    pass.logits(logits.view(), normed.view());
    const std::vector<float> expected =
        test::decoder_logits(model, loaded.weights.views(), tokens, SubnetworkConfig::full(model), executor);
    const double error = test::relative_error(std::vector<float>(logits.values.begin(), logits.values.end()), expected);
    MESSAGE("calibration pass against the decoder: " << error);
    CHECK(error < 1e-5);

    // One observation per half that computes, in layer order.
    std::size_t halves = 0;
    for (const io::LayerPlan& plan : model.layers)
      halves += (plan.attention != io::AttentionKind::none) + (plan.ffn != io::FfnKind::none);
    REQUIRE(kept.size() == halves);
    for (const Kept& block : kept) {
      CAPTURE(block.layer);
      const io::LayerPlan& plan = model.layers[static_cast<std::size_t>(block.layer)];
      const model::LayerWeights<float>& w = loaded.weights.views().layers[static_cast<std::size_t>(block.layer)];
      CHECK(block.tokens == 13);
      // Output from the internals, in float64: SwiGLU down . a, GQA o . c,
      // linear W . n; SwiGLU activations from the normed input.
      double diff = 0.0, top = 0.0;
      for (index_t t = 0; t < block.tokens; ++t)
        for (index_t r = 0; r < block.hidden; ++r) {
          double sum = 0.0;
          const bool swiglu = block.half == Half::ffn && plan.ffn == io::FfnKind::swiglu;
          const bool gqa = block.half == Half::attention && plan.attention == io::AttentionKind::gqa;
          const ConstMatrixView<float> matrix = swiglu ? w.mlp.down
                                                : gqa  ? w.attention.o
                                                : block.half == Half::ffn ? w.linear_ffn
                                                                          : w.linear_attention;
          const std::vector<double>& input = swiglu || gqa ? block.inner : block.normed;
          for (index_t c = 0; c < matrix.cols(); ++c) sum += matrix(r, c) * input[t * matrix.cols() + c];
          diff = std::max(diff, std::abs(sum - block.output[t * block.hidden + r]));
          top = std::max(top, std::abs(sum));
        }
      CHECK(diff / top < 1e-5);
      if (block.half == Half::ffn && plan.ffn == io::FfnKind::swiglu) {
        double error = 0.0, largest = 0.0;
        for (index_t t = 0; t < block.tokens; ++t)
          for (index_t j = 0; j < block.inner_width; ++j) {
            double gate = 0.0, up = 0.0;
            for (index_t c = 0; c < block.hidden; ++c) {
              gate += w.mlp.gate(j, c) * block.normed[t * block.hidden + c];
              up += w.mlp.up(j, c) * block.normed[t * block.hidden + c];
            }
            const double activation = gate / (1.0 + std::exp(-gate)) * up;
            error = std::max(error, std::abs(activation - block.inner[t * block.inner_width + j]));
            largest = std::max(largest, std::abs(activation));
          }
        CHECK(error / largest < 1e-5);
      }
    }
  }
}

TEST_CASE("importance: minitron, flap and contributions equal their definitions over the observed windows") {
  test::TemporaryDirectory folder;
  test::write_llama_folder(folder.path(), test::tiny_llama(), 22);
  const test::LoadedModel loaded(folder.path());
  const io::ModelDescription& model = loaded.description();
  host::Executor executor(2);
  CalibrationPass pass(model, loaded.weights.views(), executor, 12);
  ImportanceCollector collector(model, loaded.weights.views(), executor, 12);
  std::vector<Kept> kept;
  for (int window = 0; window < 3; ++window) {
    const std::vector<int> tokens = test::random_tokens(window == 2 ? 7 : 12, static_cast<int>(model.vocab), 30 + window);
    pass.run(tokens, [&](const BlockObservation& block) {
      collector(block);
      if (block.layer == 1)
        kept.push_back({block.layer, block.half, block.output.rows(), block.output.cols(), block.inner.cols(),
                        copy_of(block.normed), copy_of(block.inner), copy_of(block.output), copy_of(block.residual)});
    });
  }
  const model::LayerWeights<float>& w = loaded.weights.views().layers[1];
  const index_t width = model.layers[1].intermediate, head_dim = model.head_dim, hidden = model.hidden;

  // Minitron neurons: sqrt(sum over windows of (mean_t |a|)^2); flap:
  // sample variance over all tokens times ||down[:, j]||^2.
  std::vector<double> minitron(static_cast<std::size_t>(width), 0.0), flap(static_cast<std::size_t>(width), 0.0);
  std::vector<double> minitron_heads(static_cast<std::size_t>(model.heads), 0.0);
  std::vector<double> flap_heads(static_cast<std::size_t>(model.heads), 0.0);
  double attention_ratio = 0.0, ffn_ratio = 0.0;
  index_t all_tokens = 0;
  const auto ratio_sum = [&](const Kept& block) {
    double sum = 0.0;
    for (index_t t = 0; t < block.tokens; ++t) {
      double f = 0.0, x_f = 0.0;
      for (index_t c = 0; c < hidden; ++c) {
        const double out = block.output[t * hidden + c];
        f += out * out;
        x_f += (block.residual[t * hidden + c] + out) * (block.residual[t * hidden + c] + out);
      }
      sum += std::sqrt(f / x_f);
    }
    return sum;
  };
  const auto variance_times = [&](const std::vector<const Kept*>& blocks, index_t column, index_t width_of,
                                  const ConstMatrixView<float>& projection) {
    double sum = 0.0, squares = 0.0, count = 0.0, norm = 0.0;
    for (const Kept* block : blocks)
      for (index_t t = 0; t < block->tokens; ++t) {
        const double value = block->inner[t * width_of + column];
        sum += value, squares += value * value, count += 1.0;
      }
    const double mean = sum / count;
    double variance = 0.0;
    for (const Kept* block : blocks)
      for (index_t t = 0; t < block->tokens; ++t) {
        const double d = block->inner[t * width_of + column] - mean;
        variance += d * d;
      }
    for (index_t r = 0; r < projection.rows(); ++r) norm += double(projection(r, column)) * projection(r, column);
    return variance / (count - 1.0) * norm;
  };
  std::vector<const Kept*> ffn_blocks, attention_blocks;
  for (const Kept& block : kept) (block.half == Half::ffn ? ffn_blocks : attention_blocks).push_back(&block);
  for (const Kept* block : ffn_blocks) {
    ffn_ratio += ratio_sum(*block);
    all_tokens += block->tokens;
    for (index_t j = 0; j < width; ++j) {
      double mean = 0.0;
      for (index_t t = 0; t < block->tokens; ++t) mean += std::abs(block->inner[t * width + j]);
      mean /= double(block->tokens);
      minitron[j] += mean * mean;
    }
  }
  for (index_t j = 0; j < width; ++j) flap[j] = variance_times(ffn_blocks, j, width, w.mlp.down);
  const index_t q_width = index_t{model.heads} * head_dim;
  for (const Kept* block : attention_blocks) {
    attention_ratio += ratio_sum(*block);
    for (int h = 0; h < model.heads; ++h) {
      double mean = 0.0;
      for (index_t t = 0; t < block->tokens; ++t) {
        double norm = 0.0;
        for (index_t r = 0; r < hidden; ++r) {
          double sum = 0.0;
          for (index_t c = 0; c < head_dim; ++c)
            sum += w.attention.o(r, h * head_dim + c) * block->inner[t * q_width + h * head_dim + c];
          norm += sum * sum;
        }
        mean += std::sqrt(norm);
      }
      mean /= double(block->tokens);
      minitron_heads[static_cast<std::size_t>(h)] += mean * mean;
    }
  }
  for (int h = 0; h < model.heads; ++h)
    for (index_t c = 0; c < head_dim; ++c)
      flap_heads[static_cast<std::size_t>(h)] += variance_times(attention_blocks, h * head_dim + c, q_width, w.attention.o);

  const auto close = [](double a, double b) { return std::abs(a - b) <= 1e-6 * std::max(std::abs(b), 1e-30); };
  const search::LayerImportance by_minitron = collector.layer(1, RankingMethod::minitron);
  const search::LayerImportance by_flap = collector.layer(1, RankingMethod::flap);
  REQUIRE(by_minitron.neurons.size() == static_cast<std::size_t>(width));
  REQUIRE(by_flap.heads.size() == static_cast<std::size_t>(model.heads));
  for (index_t j = 0; j < width; ++j) {
    CHECK(close(by_minitron.neurons[j], std::sqrt(minitron[j])));
    CHECK(close(by_flap.neurons[j], flap[j]));
  }
  for (int h = 0; h < model.heads; ++h) {
    CHECK(std::abs(by_minitron.heads[h] - std::sqrt(minitron_heads[h])) <= 1e-5 * std::sqrt(minitron_heads[h]));
    CHECK(close(by_flap.heads[h], flap_heads[h]));
  }
  CHECK(all_tokens == 31);
  CHECK(close(by_minitron.attention_contribution, attention_ratio / 31.0));
  CHECK(close(by_flap.ffn_contribution, ffn_ratio / 31.0));
  CHECK(by_minitron.attention_contribution > 0.0);
}

TEST_CASE("permutation: the permuted model computes the same logits, and prefixes keep the highest-ranked units") {
  for (const bool nemotron : {false, true}) {
    CAPTURE(nemotron);
    test::TemporaryDirectory folder;
    if (nemotron) test::write_nemotron_folder(folder.path(), test::nemotron_model(), 23);
    else test::write_llama_folder(folder.path(), test::tiny_llama(), 23);
    const test::LoadedModel loaded(folder.path());
    const io::ModelDescription& model = loaded.description();
    host::Executor executor(2);
    const std::vector<int> tokens = test::random_tokens(11, static_cast<int>(model.vocab), 6);
    const std::vector<float> original =
        test::decoder_logits(model, loaded.weights.views(), tokens, SubnetworkConfig::full(model), executor);
    const ModelPermutation permutation = random_permutation(model, 7);
    const PermutedWeights permuted(model, loaded.weights.views(), permutation);
    const std::vector<float> logits =
        test::decoder_logits(model, permuted.views(), tokens, SubnetworkConfig::full(model), executor);
    const double error = test::relative_error(logits, original);
    MESSAGE("permuted against original: " << error);
    CHECK(error < 1e-5);
    CHECK(permuted.views().layers[0].attention.q.data() != loaded.weights.views().layers[0].attention.q.data());

    // Half the neurons and one KV group of the permuted model are the
    // chosen ones of the original: the same logits as the original with
    // the other units' down columns and o columns zeroed.
    std::vector<std::vector<float>> masked_storage;
    model::ModelWeights<float> masked = loaded.weights.views();
    SubnetworkConfig config = SubnetworkConfig::full(model);
    for (std::size_t i = 0; i < model.layers.size(); ++i) {
      const io::LayerPlan& plan = model.layers[i];
      const search::LayerPermutation& order = permutation.layers[i];
      const auto zeroed_columns = [&](const ConstMatrixView<float>& w, const std::vector<int>& kept, index_t group) {
        std::vector<float>& values = masked_storage.emplace_back(static_cast<std::size_t>(w.rows() * w.cols()), 0.0f);
        for (int unit : kept)
          for (index_t r = 0; r < w.rows(); ++r)
            for (index_t c = unit * group; c < (unit + 1) * group; ++c) values[r * w.cols() + c] = w(r, c);
        return ConstMatrixView<float>(values.data(), w.rows(), w.cols());
      };
      if (plan.ffn == io::FfnKind::swiglu) {
        config.layers[i].mlp_width = plan.intermediate / 2;
        masked.layers[i].mlp.down = zeroed_columns(
            masked.layers[i].mlp.down, {order.neurons.begin(), order.neurons.begin() + plan.intermediate / 2}, 1);
      }
      if (plan.attention == io::AttentionKind::gqa && plan.kv_heads > 1) {
        const int group = model.heads / plan.kv_heads;
        config.layers[i].heads = group;
        masked.layers[i].attention.o = zeroed_columns(masked.layers[i].attention.o,
                                                      {order.query_heads.begin(), order.query_heads.begin() + group},
                                                      model.head_dim);
      }
    }
    const double prefix_error =
        test::relative_error(test::decoder_logits(model, permuted.views(), tokens, config, executor),
                       test::decoder_logits(model, masked, tokens, SubnetworkConfig::full(model), executor));
    MESSAGE("prefix of the permuted model against the masked original: " << prefix_error);
    CHECK(prefix_error < 1e-5);
  }
}

TEST_CASE("permutation: by importance orders units by score, groups by their heads' sum, and rejects bad orders") {
  io::ModelDescription model;
  model.hidden = 8, model.vocab = 4, model.heads = 6, model.head_dim = 64;
  model.layers = {{io::AttentionKind::gqa, 3, io::FfnKind::swiglu, 5}};
  search::LayerImportance scores;
  scores.neurons = {0.5, 3.0, 1.0, 3.0, 0.1};
  scores.heads = {1.0, 2.0, 5.0, 0.5, 0.2, 0.4};  // groups {0,1}: 3.0, {2,3}: 5.5, {4,5}: 0.6
  const ModelPermutation permutation = ModelPermutation::by_importance(model, {scores});
  CHECK(permutation.layers[0].neurons == std::vector<int>{1, 3, 2, 0, 4});
  CHECK(permutation.layers[0].kv_heads == std::vector<int>{1, 0, 2});
  CHECK(permutation.layers[0].query_heads == std::vector<int>{2, 3, 1, 0, 5, 4});
  permutation.validate(model);

  ModelPermutation wrong = permutation;
  wrong.layers[0].query_heads = {0, 2, 1, 3, 4, 5};
  CHECK_THROWS_WITH_AS(wrong.validate(model), doctest::Contains("must read new KV head 0"), Error);
  wrong = permutation;
  wrong.layers[0].neurons = {0, 1, 1, 3, 4};
  CHECK_THROWS_WITH_AS(wrong.validate(model), doctest::Contains("not a permutation of 0 .. 4"), Error);
  wrong = permutation;
  wrong.layers[0].kv_heads.pop_back();
  CHECK_THROWS_WITH_AS(wrong.validate(model), doctest::Contains("expected 3 KV heads, found 2"), Error);
  scores.neurons.pop_back();
  CHECK_THROWS_WITH_AS(ModelPermutation::by_importance(model, {scores}),
                       doctest::Contains("expected 5 neuron scores, found 4"), Error);
}

TEST_CASE("elastic checkpoint: loads back computing the permuted model, Q/K rows in rotate-half order, with its sets "
          "and linear maps") {
  const io::TokenizerSpec tokenizer = test::small_byte_level_spec();
  for (const bool gguf : {false, true}) {
    CAPTURE(gguf);
    test::TemporaryDirectory folder;
    test::TinyModel m = test::tiny_llama();
    m.vocab = static_cast<int>(tokenizer.tokens.size() + 7) / 8 * 8;  // the decoder wants whole vectors
    std::filesystem::create_directories(folder / "tiny");
    if (gguf) test::write_gguf(folder / "tiny.gguf", m, 24);
    else test::write_llama_folder(folder / "tiny", m, 24);
    const test::LoadedModel loaded(gguf ? folder / "tiny.gguf" : folder / "tiny");
    const io::ModelDescription& model = loaded.description();
    CHECK(model.rope.layout == (gguf ? RopeLayout::interleaved : RopeLayout::rotate_half));
    host::Executor executor(2);
    const PermutedWeights permuted(model, loaded.weights.views(), random_permutation(model, 8));
    // Layer 0 stores a linear map beside its attention, layer 1 beside its FFN.
    search::LinearMaps maps;
    maps.attention = {search::LinearWeight{model.hidden, model.hidden, random_floats(model.hidden * model.hidden, 3)},
                      std::nullopt};
    maps.ffn = {std::nullopt, search::LinearWeight{model.hidden, model.hidden, random_floats(model.hidden * model.hidden, 4)}};
    const search::ModelWithLinearMaps stored(model, permuted.views(), maps);
    std::vector<search::LayerImportance> importance(model.layers.size());
    importance[0].attention_contribution = 0.25;
    importance[1].ffn_contribution = 0.5;
    const search::ElasticMetadata metadata = search::ElasticMetadata::with_default_sets(
        stored.model, {RankingMethod::flap, RankingMethod::minitron},
        {"calibration.txt", search::fnv1a64_hex("text"), 1024, 64}, importance, {512, 1e-3});
    const std::vector<int> tokens = test::random_tokens(12, m.vocab, 9);
    const SubnetworkConfig full = SubnetworkConfig::full(model);
    SubnetworkConfig linear = full;
    linear.layers[0].linear_attention = linear.layers[1].linear_ffn = true;
    const std::vector<float> expected = test::decoder_logits(model, permuted.views(), tokens, full, executor);
    const std::vector<float> expected_linear =
        test::decoder_logits(stored.model, stored.weights, tokens, linear, executor);
    CHECK(test::relative_error(expected_linear, expected) > 1e-2);  // the maps change the function

    for (const io::TensorType dtype : {io::TensorType::f32, io::TensorType::bf16}) {
      CAPTURE(io::type_name(dtype));
      const std::filesystem::path out = folder / (dtype == io::TensorType::f32 ? "elastic_f32" : "elastic_bf16");
      search::write_elastic_checkpoint(out, stored.model, stored.weights, tokenizer, metadata, dtype);
      const test::LoadedModel back(out);
      CHECK(back.description().layers[0].attention_has_linear);
      CHECK_FALSE(back.description().layers[0].ffn_has_linear);
      CHECK(back.description().layers[1].ffn_has_linear);
      const search::LinearFitRecord fit = search::model_linear_fit(out);
      CHECK(fit.tokens == 512);
      CHECK(fit.relative_ridge == 1e-3);
      CHECK(back.description().rope.layout == RopeLayout::rotate_half);
      CHECK(back.description().tied_embeddings == model.tied_embeddings);
      REQUIRE(back.source.tokenizer().has_value());
      CHECK(back.source.tokenizer()->tokens == tokenizer.tokens);
      const double error = test::relative_error(test::decoder_logits(back.description(), back.weights.views(), tokens,
                                                         SubnetworkConfig::full(back.description()), executor),
                                          expected);
      const double linear_error =
          test::relative_error(test::decoder_logits(back.description(), back.weights.views(), tokens, linear, executor),
                               expected_linear);
      MESSAGE("written and read back against the permuted model: " << error << ", with its linear maps: "
              << linear_error);
      CHECK(error < (dtype == io::TensorType::f32 ? 1e-5 : 2e-2));
      CHECK(linear_error < (dtype == io::TensorType::f32 ? 1e-5 : 2e-2));

      std::ifstream config_file(out / "config.json");
      const nlohmann::json config = nlohmann::json::parse(config_file);
      const nlohmann::json& elastic = config.at("elastic");
      CHECK(elastic.at("ranking").at("neurons") == "flap");
      CHECK(elastic.at("ranking").at("heads") == "minitron");
      CHECK(elastic.at("calibration").at("fnv1a64") == search::fnv1a64_hex("text"));
      CHECK(elastic.at("layers").size() == 2);
      CHECK(elastic.at("layers")[0].at("mlp_widths") == std::vector<int>{192, 128, 96, 32});
      CHECK(elastic.at("layers")[0].at("heads") == std::vector<int>{4, 2});
      CHECK(elastic.at("layers")[0].at("attention_contribution") == 0.25);
      CHECK(elastic.at("layers")[1].at("ffn_contribution") == 0.5);
      // The flags say which maps the model stores.
      CHECK(elastic.at("layers")[0].at("linear_attention") == true);
      CHECK(elastic.at("layers")[0].at("linear_ffn") == false);
      CHECK(elastic.at("layers")[1].at("linear_attention") == false);
      CHECK(elastic.at("layers")[1].at("linear_ffn") == true);
    }

    // Refused before anything is written: an existing folder, a tokenizer
    // the writer cannot express; no temporary folder is left behind.
    CHECK_THROWS_WITH_AS(search::write_elastic_checkpoint(folder / "elastic_f32", stored.model, stored.weights,
                                                          tokenizer, metadata, io::TensorType::f32),
                         doctest::Contains("already exists"), Error);
    CHECK_THROWS_AS(search::write_elastic_checkpoint(folder / "sentencepiece", stored.model, stored.weights,
                                                     test::small_sentencepiece_spec(), metadata, io::TensorType::f32),
                    Error);
    CHECK_THROWS_WITH_AS(search::write_elastic_checkpoint(folder / "f16", stored.model, stored.weights, tokenizer,
                                                          metadata, io::TensorType::f16),
                         doctest::Contains("expected f32 or bf16"), Error);
    for (const auto& entry : std::filesystem::directory_iterator(folder.path()))
      CHECK_MESSAGE(entry.path().filename().string().find("partial") == std::string::npos, entry.path());
    CHECK_FALSE(std::filesystem::exists(folder / "sentencepiece"));
    CHECK_FALSE(std::filesystem::exists(folder / "mismatch"));
  }
}

TEST_CASE("elastic sets: read back from the metadata they were written as; bad sets are refused naming the layer") {
  io::ModelDescription model;
  model.hidden = 64, model.vocab = 8, model.heads = 6, model.head_dim = 64;
  model.layers = {{io::AttentionKind::gqa, 3, io::FfnKind::swiglu, 256}, {io::AttentionKind::none, 0, io::FfnKind::linear, 0}};
  std::vector<search::LayerImportance> importance(2);
  importance[0].ffn_contribution = 0.125;
  const search::ElasticMetadata metadata =
      search::ElasticMetadata::with_default_sets(model, {}, {"c.txt", "0", 64, 32}, importance);
  CHECK(metadata.layers[0].mlp_widths == std::vector<std::int64_t>{256, 192, 128, 64});
  // Other fractions: each width rounded down to whole 32-neuron blocks, repeats left out.
  const double finer[] = {1.0, 0.875, 0.5, 0.45, 0.1};
  CHECK(search::default_layer_sets(model, finer)[0].mlp_widths == std::vector<std::int64_t>{256, 224, 128, 96});
  const double unsorted[] = {1.0, 0.5, 0.75}, partial[] = {0.75, 0.5}, zero[] = {1.0, 0.0};
  CHECK_THROWS_WITH_AS(search::default_layer_sets(model, unsorted),
                       doctest::Contains("must decrease strictly and stay above 0, found 0.75 after 0.5"), Error);
  CHECK_THROWS_WITH_AS(search::default_layer_sets(model, partial), doctest::Contains("must start with 1"), Error);
  CHECK_THROWS_AS(search::default_layer_sets(model, zero), Error);
  CHECK(metadata.layers[0].heads == std::vector<int>{6, 4, 2});
  CHECK(metadata.layers[1].mlp_widths.empty());
  const nlohmann::json json = nlohmann::json::parse(metadata.to_json(model).dump());
  const std::vector<search::ElasticLayerSets> sets = search::read_elastic_sets(json, model, "config.json");
  REQUIRE(sets.size() == 2);
  CHECK(sets[0].mlp_widths == metadata.layers[0].mlp_widths);
  CHECK(sets[0].heads == metadata.layers[0].heads);
  CHECK(sets[0].ffn_contribution == 0.125);

  nlohmann::json bad = json;
  bad["layers"][0]["heads"] = {6, 3};
  CHECK_THROWS_WITH_AS(search::read_elastic_sets(bad, model, "config.json"),
                       doctest::Contains("layer 0: \"heads\" must decrease strictly within 1 .. 6 in steps of 2, found number 3"),
                       io::FileError);
  bad = json;
  bad["layers"][0]["mlp_widths"] = {256, 300};
  CHECK_THROWS_AS(search::read_elastic_sets(bad, model, "config.json"), io::FileError);
  bad = json;
  bad["layers"].erase(1);
  CHECK_THROWS_WITH_AS(search::read_elastic_sets(bad, model, "config.json"), doctest::Contains("the model's 2 layers"),
                       io::FileError);
  // Values of the wrong type are FileErrors too, not the JSON library's type errors.
  bad = json;
  bad["layers"][1] = {256};
  CHECK_THROWS_WITH_AS(search::read_elastic_sets(bad, model, "config.json"),
                       doctest::Contains("layer 1: expected an object, found array"), io::FileError);
  bad = json;
  bad["layers"][0]["attention_contribution"] = "high";
  CHECK_THROWS_WITH_AS(search::read_elastic_sets(bad, model, "config.json"),
                       doctest::Contains("layer 0: expected \"attention_contribution\" to be a finite number, found "
                                         "string \"high\""),
                       io::FileError);
  bad = json;
  bad["layers"][0]["heads"] = 6;
  CHECK_THROWS_WITH_AS(search::read_elastic_sets(bad, model, "config.json"),
                       doctest::Contains("layer 0: expected \"heads\" to be an array, found number 6"), io::FileError);
}

TEST_SUITE("reference") {
  // An independent numpy forward with Hugging Face's conventions
  // (tests/search/reference/hf_llama_numpy.py: transformers.AutoConfig,
  // safetensors' numpy loader, rotate-half RoPE) reads the written checkpoint
  // and computes the parent's logits, whether the parent came from a Hugging
  // Face folder or from a GGUF file with interleaved RoPE rows and tied
  // embeddings; the linear maps stored beside the blocks (and the "elastic"
  // key that lists them) leave that reading unchanged. Where torch is
  // installed, transformers' own LlamaForCausalLM loads the checkpoint too
  // (hf_llama_transformers.py) and must compute the same logits.
  TEST_CASE("elastic checkpoint: a plain llama to Hugging Face's conventions, computing the parent's logits") {
    const bool transformers_runs =
        test::run_python_script("search/reference/hf_llama_transformers.py", {"--available"}).starts_with("yes");
    if (!transformers_runs) MESSAGE("torch is not installed: only the numpy reading is checked");
    const io::TokenizerSpec tokenizer = test::small_byte_level_spec();
    for (const bool gguf : {false, true}) {
      CAPTURE(gguf);
      test::TemporaryDirectory folder;
      test::TinyModel m = test::tiny_llama();
      m.vocab = static_cast<int>(tokenizer.tokens.size() + 7) / 8 * 8;
      std::filesystem::create_directories(folder / "tiny");
      if (gguf) test::write_gguf(folder / "tiny.gguf", m, 25);
      else test::write_llama_folder(folder / "tiny", m, 25);
      const test::LoadedModel loaded(gguf ? folder / "tiny.gguf" : folder / "tiny");
      const io::ModelDescription& model = loaded.description();
      host::Executor executor(2);
      const PermutedWeights permuted(model, loaded.weights.views(), random_permutation(model, 9));
      search::LinearMaps maps;
      for (std::uint64_t i = 0; i < model.layers.size(); ++i)
        for (auto* half : {&maps.attention, &maps.ffn})
          half->push_back(search::LinearWeight{model.hidden, model.hidden, random_floats(model.hidden * model.hidden, 30 + i)});
      const search::ModelWithLinearMaps stored(model, permuted.views(), maps);
      search::write_elastic_checkpoint(
          folder / "elastic", stored.model, stored.weights, tokenizer,
          search::ElasticMetadata::with_default_sets(stored.model, {}, {"c.txt", "0", 1, 1},
                                                     std::vector<search::LayerImportance>(model.layers.size())),
          io::TensorType::f32);
      const std::vector<int> tokens = test::random_tokens(9, m.vocab, 10);
      const std::vector<float> parent =
          test::decoder_logits(model, loaded.weights.views(), tokens, SubnetworkConfig::full(model), executor);
      const std::vector<float> hugging_face = test::reference_logits(
          "search/reference/hf_llama_numpy.py", (folder / "elastic").string(), tokens, static_cast<std::size_t>(m.vocab));
      const double error = test::relative_error(parent, hugging_face);
      MESSAGE("the parent against Hugging Face's reading of the elastic checkpoint: " << error);
      CHECK(error < 1e-4);
      if (transformers_runs) {
        const std::vector<float> llama = test::reference_logits("search/reference/hf_llama_transformers.py",
                                                                (folder / "elastic").string(), tokens,
                                                                static_cast<std::size_t>(m.vocab));
        const double llama_error = test::relative_error(parent, llama);
        MESSAGE("the parent against transformers' LlamaForCausalLM on the elastic checkpoint: " << llama_error);
        CHECK(llama_error < 1e-4);
      }
    }
  }
}
