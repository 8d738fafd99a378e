// Tests of Puzzle's replace-one scoring and the block library on tiny
// checkpoints: KL(parent || variant) and the loss against a direct float64
// computation from both models' logits; a linear replacement by the zero map
// scores as the skipped half; a map stored beside the block and chosen per
// call scores as a model whose half is that linear block; the library holds
// every variant, its stored sizes at zero cost, a fitted FFN map that beats
// the no-op on held-out rows; and its file round-trips while corrupt files
// are refused.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "elastic/io/model_source.hpp"
#include "elastic/model/decoder.hpp"
#include "elastic/model/host_sequence.hpp"
#include "elastic/model/host_weights.hpp"
#include "elastic/search/block_library.hpp"
#include "elastic/search/block_scoring.hpp"
#include "search/conversion_fixtures.hpp"
#include "support/python.hpp"
#include "support/test_support.hpp"
#include "support/tiny_checkpoint.hpp"

using namespace elastic;
using elastic::model::SubnetworkConfig;
using elastic::search::Half;
using elastic::search::VariantKind;

namespace {

std::vector<std::vector<int>> windows_of(int count, int length, int vocab, std::uint64_t seed) {
  std::vector<std::vector<int>> windows;
  for (int w = 0; w < count; ++w) windows.push_back(test::random_tokens(length, vocab, seed + w));
  return windows;
}

// log-softmax of every row of a window's logits, in float64.
std::vector<std::vector<double>> log_probabilities(std::span<const float> logits, std::size_t vocab) {
  std::vector<std::vector<double>> rows;
  for (std::size_t t = 0; t < logits.size() / vocab; ++t) {
    std::vector<double> row(logits.begin() + t * vocab, logits.begin() + (t + 1) * vocab);
    double top = row[0], sum = 0.0;
    for (double v : row) top = std::max(top, v);
    for (double v : row) sum += std::exp(v - top);
    for (double& v : row) v -= top + std::log(sum);
    rows.push_back(std::move(row));
  }
  return rows;
}

// Mean KL(parent || variant) and the variant's mean next-token loss, directly.
search::VariantScore direct_score(const io::ModelDescription& parent_model, const model::ModelWeights<float>& parent,
                                  const io::ModelDescription& variant_model, const model::ModelWeights<float>& variant,
                                  const SubnetworkConfig& config, const std::vector<std::vector<int>>& windows) {
  host::Executor executor(1);
  model::Decoder<float> parent_decoder(parent_model, parent), variant_decoder(variant_model, variant);
  double kl = 0.0, loss = 0.0, positions = 0.0;
  const auto vocab = static_cast<std::size_t>(parent_model.vocab);
  for (const std::vector<int>& window : windows) {
    model::HostSequence<float> a(parent_decoder, executor, 64, SubnetworkConfig::full(parent_model));
    model::HostSequence<float> b(variant_decoder, executor, 64, config);
    const auto p = log_probabilities(a.append_every(window), vocab);
    const auto q = log_probabilities(b.append_every(window), vocab);
    for (std::size_t t = 0; t + 1 < window.size(); ++t) {
      for (std::size_t v = 0; v < vocab; ++v) kl += std::exp(p[t][v]) * (p[t][v] - q[t][v]);
      loss -= q[t][static_cast<std::size_t>(window[t + 1])];
      positions += 1.0;
    }
  }
  return {kl / positions, loss / positions};
}

}  // namespace

TEST_CASE("replace-one scoring: KL and loss equal a direct float64 computation; a zero linear map scores as a skip") {
  test::TemporaryDirectory folder;
  test::write_llama_folder(folder.path(), test::tiny_llama(), 31);
  const test::LoadedModel loaded(folder.path());
  const io::ModelDescription& model = loaded.description();
  host::Executor executor(2);
  const auto windows = windows_of(3, 10, static_cast<int>(model.vocab), 40);
  search::ReplaceOneScorer scorer(model, loaded.weights.views(), executor, windows);
  CHECK(scorer.scored_positions() == 27);

  const search::VariantScore full = scorer.score(SubnetworkConfig::full(model));
  CHECK(std::abs(full.kl) < 1e-6);
  CHECK(full.lm_loss == doctest::Approx(scorer.parent_lm_loss()).epsilon(1e-9));

  SubnetworkConfig narrow = SubnetworkConfig::full(model);
  narrow.layers[1].mlp_width = 96;
  narrow.layers[0].heads = 2;
  const search::VariantScore scored = scorer.score(narrow);
  const search::VariantScore direct =
      direct_score(model, loaded.weights.views(), model, loaded.weights.views(), narrow, windows);
  MESSAGE("KL " << scored.kl << " (direct " << direct.kl << "), loss " << scored.lm_loss);
  CHECK(scored.kl > 1e-4);
  CHECK(scored.kl == doctest::Approx(direct.kl).epsilon(1e-5));
  CHECK(scored.lm_loss == doctest::Approx(direct.lm_loss).epsilon(1e-6));

  // The half replaced by W = 0 adds nothing: the same as skipping it.
  for (const Half half : {Half::attention, Half::ffn}) {
    search::LinearWeight zero{model.hidden, model.hidden,
                              std::vector<float>(static_cast<std::size_t>(model.hidden * model.hidden), 0.0f)};
    const search::LinearReplacement replaced(model, loaded.weights.views(), 1, half, zero);
    SubnetworkConfig skip = SubnetworkConfig::full(model);
    (half == Half::attention ? skip.layers[1].skip_attention : skip.layers[1].skip_ffn) = true;
    const search::VariantScore linear = scorer.score(replaced.model, replaced.weights);
    const search::VariantScore skipped = scorer.score(skip);
    CHECK(linear.kl == doctest::Approx(skipped.kl).epsilon(1e-5));
    CHECK(linear.lm_loss == doctest::Approx(skipped.lm_loss).epsilon(1e-6));
  }
}

TEST_CASE("a linear map stored beside the block runs, when a config asks, as the linear block would") {
  test::TemporaryDirectory folder;
  test::write_llama_folder(folder.path(), test::tiny_llama(), 33);
  const test::LoadedModel loaded(folder.path());
  const io::ModelDescription& model = loaded.description();
  host::Executor executor(2);
  search::CalibrationPass pass(model, loaded.weights.views(), executor, 32);
  const search::LinearMaps maps =
      search::LinearMaps::fit(search::collect_block_moments(pass, windows_of(4, 32, static_cast<int>(model.vocab), 90)),
                              search::default_relative_ridge);
  const search::ModelWithLinearMaps stored(model, loaded.weights.views(), maps);
  for (const io::LayerPlan& plan : stored.model.layers) CHECK((plan.attention_has_linear && plan.ffn_has_linear));
  const auto windows = windows_of(2, 12, static_cast<int>(model.vocab), 95);
  search::ReplaceOneScorer scorer(stored.model, stored.weights, executor, windows);
  // Nothing changes until a config asks for a map.
  CHECK(std::abs(scorer.score(SubnetworkConfig::full(stored.model)).kl) < 1e-6);
  for (const Half half : {Half::attention, Half::ffn}) {
    SubnetworkConfig config = SubnetworkConfig::full(stored.model);
    (half == Half::attention ? config.layers[0].linear_attention : config.layers[0].linear_ffn) = true;
    const search::VariantScore chosen = scorer.score(config);
    const search::LinearWeight& w = *(half == Half::attention ? maps.attention : maps.ffn)[0];
    const search::LinearReplacement replaced(model, loaded.weights.views(), 0, half, w);
    const search::VariantScore block = scorer.score(replaced.model, replaced.weights);
    MESSAGE(search::half_name(half) << ": KL " << chosen.kl << " as chosen, " << block.kl << " as a linear block");
    CHECK(chosen.kl > 1e-5);
    CHECK(chosen.kl == doctest::Approx(block.kl).epsilon(1e-5));
    CHECK(chosen.lm_loss == doctest::Approx(block.lm_loss).epsilon(1e-6));
  }
  // A config may not ask for a map the model does not store.
  SubnetworkConfig config = SubnetworkConfig::full(model);
  config.layers[1].linear_ffn = true;
  CHECK_THROWS_WITH_AS(config.validate(model), doctest::Contains("has no linear map stored"), Error);
}

TEST_CASE("linear maps fitted in turns of bounded moment memory equal the maps fitted at once") {
  test::TemporaryDirectory folder;
  test::write_llama_folder(folder.path(), test::tiny_llama(), 34);
  const test::LoadedModel loaded(folder.path());
  const io::ModelDescription& model = loaded.description();
  host::Executor executor(2);
  search::CalibrationPass pass(model, loaded.weights.views(), executor, 32);
  const std::vector<std::vector<int>> windows = windows_of(3, 32, static_cast<int>(model.vocab), 91);
  std::vector<int> tokens;
  for (const std::vector<int>& window : windows) tokens.insert(tokens.end(), window.begin(), window.end());
  const search::LinearMaps at_once =
      search::LinearMaps::fit(search::collect_block_moments(pass, windows), search::default_relative_ridge);

  // 2 layers x 2 halves; 16 hidden^2 bytes each.
  const std::int64_t half_bytes = search::moment_bytes(model);
  CHECK(half_bytes == 16 * model.hidden * model.hidden);
  CHECK(search::plan_fit_turns(model, 4 * half_bytes).size() == 1);
  CHECK(search::plan_fit_turns(model, 3 * half_bytes).size() == 2);
  CHECK(search::plan_fit_turns(model, 1).size() == 4);  // one half a turn at least
  for (const std::int64_t memory : {half_bytes, 3 * half_bytes, std::int64_t{1} << 40}) {
    CAPTURE(memory);
    const auto turns = search::plan_fit_turns(model, memory);
    long last_done = 0;
    const search::LinearMaps in_turns = search::fit_linear_maps(
        pass, tokens, 32, windows.size(), search::default_relative_ridge, turns, [&](long done, long total) {
          CHECK(done == last_done + 1);
          CHECK(total == static_cast<long>(turns.size()));
          last_done = done;
        });
    CHECK(last_done == static_cast<long>(turns.size()));
    for (const auto& [turned, once] : {std::pair{&in_turns.attention, &at_once.attention},
                                       std::pair{&in_turns.ffn, &at_once.ffn}}) {
      REQUIRE(turned->size() == model.layers.size());
      for (std::size_t i = 0; i < model.layers.size(); ++i) {
        REQUIRE((*turned)[i].has_value());
        CHECK((*turned)[i]->values == (*once)[i]->values);
      }
    }
  }
  CHECK_THROWS_WITH_AS(search::fit_linear_maps(pass, std::span(tokens).first(40), 32, 2,
                                               search::default_relative_ridge, search::plan_fit_turns(model, 1)),
                       doctest::Contains("2 windows of 32 tokens need 64 tokens, found 40"), Error);
}

TEST_CASE("block library: every variant scored, stored sizes free, fitted maps beat the no-op, file round trip") {
  test::TemporaryDirectory folder;
  test::write_llama_folder(folder.path(), test::tiny_llama(), 32);
  const test::LoadedModel loaded(folder.path());
  const io::ModelDescription& model = loaded.description();
  host::Executor executor(2);
  std::vector<search::ElasticLayerSets> sets(2);
  for (auto& layer : sets) layer = {{192, 128, 96}, {4, 2}, 0.0, 0.0};
  std::size_t last_done = 0, total = 0;
  search::CalibrationPass pass(model, loaded.weights.views(), executor, 64);
  const search::LinearMaps maps = search::LinearMaps::fit(
      search::collect_block_moments(pass, windows_of(12, 64, static_cast<int>(model.vocab), 50)),
      search::default_relative_ridge);
  const search::ModelWithLinearMaps stored(model, loaded.weights.views(), maps);
  const search::BlockLibrary library = search::score_block_library(
      stored.model, stored.weights, executor, sets, windows_of(2, 32, static_cast<int>(model.vocab), 70), {},
      [&](std::size_t done, std::size_t all) {
        CHECK(done == last_done + 1);
        last_done = done, total = all;
      });
  CHECK(last_done == total);
  CHECK(total == 2 * (2 + 1 + 2 + 3 + 1 + 1));
  REQUIRE(library.layers.size() == 2);
  for (const search::LayerVariants& layer : library.layers) {
    REQUIRE(layer.attention.size() == 5);
    REQUIRE(layer.ffn.size() == 5);
    CHECK(layer.attention[0].name(Half::attention) == "heads:4");
    CHECK(layer.attention[0].kl == 0.0);
    CHECK(layer.ffn[0].kl == 0.0);
    CHECK(layer.ffn[1].kl > 0.0);
    CHECK(layer.attention[2].kind == VariantKind::linear);
    CHECK(layer.attention[2].kl > 0.0);
    CHECK(layer.attention[3].kind == VariantKind::none);
    CHECK(layer.attention[3].kl > 0.0);
    CHECK(layer.attention[4].kind == VariantKind::linear_init);
    CHECK(layer.ffn[3].kind == VariantKind::linear);
    CHECK(layer.ffn[4].kind == VariantKind::none);
    // A SwiGLU of random weights is nearly linear in its input at this
    // scale, so its fit beats the no-op on held-out rows, in fit and in KL;
    // random attention mixes positions, which no map of the normed row
    // captures.
    CHECK(layer.ffn[3].fit_error < 1.0);
    CHECK(layer.ffn[3].kl < layer.ffn[4].kl);
    CHECK(std::isfinite(layer.attention[2].fit_error));
    CHECK(std::isfinite(layer.attention[4].fit_error));
  }

  const auto path = folder / "library.json";
  search::write_block_library(path, library);
  const search::BlockLibrary back = search::read_block_library(path, stored.model);
  // A library naming a map the model does not store is refused.
  CHECK_THROWS_WITH_AS(search::read_block_library(path, model), doctest::Contains("stores no linear map"),
                       io::FileError);
  CHECK(back.to_json() == library.to_json());

  const auto corrupt = [&](const std::string& text, const char* expected) {
    std::ofstream(folder / "bad.json") << text;
    CHECK_THROWS_WITH_AS(search::read_block_library(folder / "bad.json", stored.model), doctest::Contains(expected),
                         io::FileError);
  };
  nlohmann::json json = library.to_json();
  corrupt("{\"format\": 1", "");
  json["layers"].erase(1);
  corrupt(json.dump(), "expected 2 layers");
  json = library.to_json();
  json["layers"][0]["ffn"][1]["mlp_width"] = 500;
  json["layers"][0]["ffn"][1]["variant"] = "width:500";
  corrupt(json.dump(), "must use 1 to 192 neurons, found 500");
  json = library.to_json();
  json["layers"][1]["attention"][1]["kl"] = -1.0;
  corrupt(json.dump(), "negative KL");
  json = library.to_json();
  json["layers"][1]["attention"][1]["variant"] = "heads:3";
  json["layers"][1]["attention"][1]["heads"] = 3;
  corrupt(json.dump(), "whole KV groups");
  json = library.to_json();
  json["layers"][0]["ffn"][2]["variant"] = "sideways";
  corrupt(json.dump(), "unknown variant \"sideways\"");
  // Values of the wrong type or out of range are FileErrors, not the JSON
  // library's type errors or an undefined conversion.
  json = library.to_json();
  json["format"] = "1";
  corrupt(json.dump(), "expected \"format\": 1, found string \"1\"");
  json = library.to_json();
  json["calibration"] = {"c.txt"};
  corrupt(json.dump(), "expected \"calibration\" to be an object, found array");
  json = library.to_json();
  json["calibration"]["window"] = "32";
  corrupt(json.dump(), "\"calibration\": expected a non-negative whole number of at most 2147483647 for \"window\", "
                       "found string");
  json = library.to_json();
  json["layers"][0]["attention"][0]["heads"] = 1e300;
  corrupt(json.dump(), "layer 0 attention: expected a non-negative whole number of at most 2147483647 for \"heads\", "
                       "found number");
  json = library.to_json();
  json["layers"][1]["ffn"][0]["mlp_width"] = 96.5;
  corrupt(json.dump(), "layer 1 ffn: expected a non-negative whole number for \"mlp_width\", found number 96.5");
}
