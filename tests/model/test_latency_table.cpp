// Tests of the latency and memory table the budget search reads: its JSON
// form round-trips; predicted() and memory_bytes() are the hand sums of the
// chosen variants; a corrupt file or a sub-network the table does not cover
// is refused with a message naming what was expected and found; measuring
// a tiny llama checkpoint fills every variant with finite, non-negative
// times and the weight and KV bytes computed here by hand. No assertion is
// made on speed.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastic/io/model_source.hpp"
#include "elastic/model/decoder.hpp"
#include "elastic/model/host_weights.hpp"
#include "elastic/search/elastic_checkpoint.hpp"
#include "elastic/search/latency_measurement.hpp"
#include "elastic/search/latency_table.hpp"
#include "support/error_message.hpp"
#include "support/python.hpp"
#include "support/test_support.hpp"
#include "support/tiny_checkpoint.hpp"

using namespace elastic;
using elastic::model::SubnetworkConfig;
using elastic::search::Half;
using elastic::search::HalfVariant;
using elastic::search::LatencyTable;
using elastic::search::Phase;
using elastic::search::VariantCost;
using elastic::test::error_of;

namespace {

// Two llama layers: 4 query heads of 64 in 2 KV groups, SwiGLU width 192;
// layer 1 stores a linear map for its FFN.
io::ModelDescription two_layer_model() {
  io::ModelDescription model;
  model.architecture = "llama";
  model.hidden = 256;
  model.vocab = 96;
  model.heads = 4;
  model.head_dim = 64;
  model.layers.assign(2, {io::AttentionKind::gqa, 2, io::FfnKind::swiglu, 192});
  model.layers[1].ffn_has_linear = true;
  return model;
}

VariantCost cost(search::HalfVariant variant, double decode_s, double prefill_s, std::int64_t weight_bytes,
                 std::int64_t kv_bytes_per_token) {
  return {variant, decode_s, prefill_s, weight_bytes, kv_bytes_per_token};
}

// A table for two_layer_model() with distinct numbers everywhere.
LatencyTable small_table() {
  LatencyTable table;
  table.threads = 2;
  table.device = "test cpu";
  table.decode_context = 64;
  table.decode_steps = 4;
  table.prefill_tokens = 64;
  table.kv_element_bytes = 4;
  table.fixed = {0.001, 0.02, 1000};
  for (int i = 0; i < 2; ++i) {
    const double scale = 1.0 + i;
    search::LayerCosts& layer = table.layers.emplace_back();
    layer.attention = {cost(HalfVariant::prefix(4), 0.004 * scale, 0.04 * scale, 400, 2 * 2 * 64 * 4),
                       cost(HalfVariant::prefix(2), 0.002 * scale, 0.02 * scale, 200, 2 * 1 * 64 * 4),
                       cost(HalfVariant::none(), 0.0, 0.0, 0, 0)};
    layer.ffn = {cost(HalfVariant::prefix(192), 0.003 * scale, 0.03 * scale, 300, 0),
                 cost(HalfVariant::prefix(96), 0.0015 * scale, 0.015 * scale, 150, 0),
                 cost(HalfVariant::none(), 0.0, 0.0, 0, 0)};
    if (i == 1) layer.ffn.insert(layer.ffn.end() - 1, cost(HalfVariant::linear(), 0.0005, 0.005, 90, 0));
  }
  table.checks.push_back({"full", 0.02, 0.021, 0.2, 0.19});
  return table;
}

// `table`'s JSON with `edit` applied, parsed back against the two-layer model.
template <class Edit>
std::string parse_error_after(Edit edit) {
  nlohmann::json document = search::latency_table_json(small_table());
  edit(document);
  return error_of<io::FileError>(
      [&] { search::parse_latency_table(document, "table.json", two_layer_model()); });
}

}  // namespace

TEST_CASE("a latency table round-trips through its JSON file") {
  const test::TemporaryDirectory folder("latency-table");
  const LatencyTable table = small_table();
  search::write_latency_table(folder / "latency_table.json", table);
  const LatencyTable read = search::read_latency_table(folder / "latency_table.json", two_layer_model());
  CHECK(search::latency_table_json(read) == search::latency_table_json(table));
  CHECK(read.layers[1].ffn[1].variant == HalfVariant::prefix(96));
  CHECK(read.layers[1].ffn[2].variant == HalfVariant::linear());
  CHECK(read.layers[0].attention[1].kv_bytes_per_token == 512);
  CHECK(read.checks.at(0).name == "full");
  const nlohmann::json written = search::latency_table_json(table);
  CHECK(written["layers"][0]["attention"][0]["variant"] == "heads:4");
  CHECK(written["layers"][0]["ffn"][1]["variant"] == "width:96");
  CHECK(written["layers"][0]["ffn"][2]["variant"] == "none");
  CHECK(written["layers"][1]["ffn"][2]["variant"] == "linear");
  CHECK(written["layers"][1]["ffn"][2]["mlp_width"] == 0);
  CHECK_FALSE(written["layers"][0]["ffn"][0].contains("kv_bytes_per_token"));
}

TEST_CASE("predicted time and memory are the hand sums of the chosen variants") {
  const LatencyTable table = small_table();
  SubnetworkConfig config = SubnetworkConfig::full(two_layer_model());
  // Layer 0: 2 heads, FFN skipped; layer 1: attention skipped, width 96.
  config.layers[0].heads = 2;
  config.layers[0].skip_ffn = true;
  config.layers[1].skip_attention = true;
  config.layers[1].mlp_width = 96;
  CHECK(search::predicted(table, config, Phase::decode) == doctest::Approx(0.001 + 0.002 + 0.0015 * 2));
  CHECK(search::predicted(table, config, Phase::prefill) == doctest::Approx(0.02 + 0.02 + 0.015 * 2));
  CHECK(search::memory_bytes(table, config, 100) == 1000 + 200 + 150 + 2 * 1 * 64 * 4 * 100);
  const SubnetworkConfig full = SubnetworkConfig::full(two_layer_model());
  CHECK(search::predicted(table, full, Phase::decode) ==
        doctest::Approx(0.001 + (0.004 + 0.003) + (0.008 + 0.006)));
  CHECK(search::memory_bytes(table, full, 0) == 1000 + 2 * (400 + 300));
  // Layer 1's FFN as its linear map.
  SubnetworkConfig linear = full;
  linear.layers[1].linear_ffn = true;
  CHECK(search::predicted(table, linear, Phase::decode) == doctest::Approx(0.001 + (0.004 + 0.003) + (0.008 + 0.0005)));
  CHECK(search::memory_bytes(table, linear, 0) == 1000 + (400 + 300) + (400 + 90));
}

TEST_CASE("a sub-network the table does not cover is refused, naming the layer and the variants") {
  SubnetworkConfig config = SubnetworkConfig::full(two_layer_model());
  config.layers[1].mlp_width = 128;
  const std::string message = error_of([&] { search::predicted(small_table(), config, Phase::decode); });
  CHECK(message.find("layer 1 runs the FFN as width:128, which the table lacks (it has width:192, width:96, linear, "
                     "none)") !=
        std::string::npos);
  config.layers.pop_back();
  CHECK(error_of([&] { search::memory_bytes(small_table(), config, 1); })
            .find("expected a sub-network of 2 layers, found 1") != std::string::npos);
}

TEST_CASE("corrupt latency tables are refused with what was expected and found") {
  const test::TemporaryDirectory folder("latency-table");
  test::write_text(folder / "bad.json", "{\"format\": 1, \"layers\": [");
  const std::string bad_json =
      error_of<io::FileError>([&] { search::read_latency_table(folder / "bad.json", two_layer_model()); });
  CHECK(bad_json.find("bad.json: expected well-formed UTF-8 JSON") != std::string::npos);

  CHECK(parse_error_after([](nlohmann::json& d) { d["format"] = 2; })
            .find("table.json: expected latency table format 1, found 2") != std::string::npos);
  CHECK(parse_error_after([](nlohmann::json& d) { d.erase("fixed"); })
            .find("latency table: expected the key \"fixed\"") != std::string::npos);
  CHECK(parse_error_after([](nlohmann::json& d) { d["layers"][1]["ffn"][0].erase("prefill_s"); })
            .find("layer 1 ffn variant 0: expected the key \"prefill_s\"") != std::string::npos);
  CHECK(parse_error_after([](nlohmann::json& d) { d["layers"][0]["attention"][1]["decode_s"] = -0.5; })
            .find("layer 0 attention variant 1: \"decode_s\" must be a finite non-negative number of seconds, "
                  "found number -0.5") != std::string::npos);
  CHECK(parse_error_after([](nlohmann::json& d) { d["layers"].erase(1); })
            .find("expected 2 layers (the model's), found 1") != std::string::npos);
  CHECK(parse_error_after([](nlohmann::json& d) { d["layers"][0]["attention"][1]["heads"] = 3; })
            .find("expected the name \"heads:3\" (or \"none\" or \"linear\" with size 0), found \"heads:2\" with "
                  "size 3") != std::string::npos);
  CHECK(parse_error_after([](nlohmann::json& d) {
          d["layers"][0]["attention"][1]["heads"] = 3;
          d["layers"][0]["attention"][1]["variant"] = "heads:3";
        }).find("expected whole KV groups of the layer's gqa attention (4 heads in groups of 2), found 3 heads") !=
        std::string::npos);
  CHECK(parse_error_after([](nlohmann::json& d) { d["layers"][0]["attention"][0]["kv_bytes_per_token"] = 1; })
            .find("expected kv_bytes_per_token 1024, found 1") != std::string::npos);
  CHECK(parse_error_after([](nlohmann::json& d) {
          d["layers"][0]["ffn"][0]["mlp_width"] = 256;
          d["layers"][0]["ffn"][0]["variant"] = "width:256";
        }).find("expected an MLP width up to the layer's swiglu FFN width 192, found 256") != std::string::npos);
  CHECK(parse_error_after([](nlohmann::json& d) { d["layers"][1]["ffn"].erase(3); })
            .find("layer 1 ffn: expected the variants to end with \"none\"") != std::string::npos);
  CHECK(parse_error_after([](nlohmann::json& d) { d["layers"][0]["ffn"][2]["decode_s"] = 0.1; })
            .find("expected zero time and bytes for \"none\"") != std::string::npos);
  // "linear" only where the layer stores a map, with size 0.
  CHECK(parse_error_after([](nlohmann::json& d) { d["layers"][0]["ffn"][1] = d["layers"][1]["ffn"][2]; })
            .find("layer 0 ffn variant 1: \"linear\", but the layer stores no linear map for this half") !=
        std::string::npos);
  CHECK(parse_error_after([](nlohmann::json& d) { d["layers"][1]["ffn"][2]["mlp_width"] = 96; })
            .find("expected the name \"width:96\" (or \"none\" or \"linear\" with size 0), found \"linear\" with "
                  "size 96") != std::string::npos);
  CHECK(parse_error_after([](nlohmann::json& d) { d["layers"][1]["ffn"].push_back(d["layers"][1]["ffn"][2]); })
            .find("\"linear\" appears twice") != std::string::npos);
  // Counts kept as int are refused when they do not fit, not wrapped, and
  // byte counts are bounded so a sub-network's memory cannot overflow.
  CHECK(parse_error_after([](nlohmann::json& d) { d["kv_element_bytes"] = (std::int64_t{1} << 32) + 4; })
            .find("latency table: \"kv_element_bytes\" must be at most 8, found 4294967300") != std::string::npos);
  CHECK(parse_error_after([](nlohmann::json& d) { d["fixed"]["weight_bytes"] = std::int64_t{1} << 62; })
            .find("\"fixed\": \"weight_bytes\" must be at most 1125899906842624, found 4611686018427387904") !=
        std::string::npos);
  CHECK(parse_error_after([](nlohmann::json& d) { d["decode"]["context"] = std::int64_t{1} << 40; })
            .find("\"decode\": \"context\" must be at most 2147483647") != std::string::npos);
}

TEST_CASE("an elastic checkpoint's sets are read back from config.json, and fit the model") {
  const test::TemporaryDirectory folder("latency-sets");
  const io::ModelDescription model = two_layer_model();
  const std::string layer = R"({"mlp_widths": [192, 96], "heads": [4, 2]})";
  test::write_text(folder / "config.json", R"({"model_type": "llama", "elastic": {"layers": [)" + layer + ", " +
                                               layer + "]}}");
  const auto sets = search::read_elastic_layer_sets(folder / "config.json", model);
  REQUIRE(sets.has_value());
  CHECK(sets->at(1).mlp_widths == std::vector<std::int64_t>{192, 96});
  CHECK(sets->at(1).heads == std::vector<int>{4, 2});
  test::write_text(folder / "plain.json", R"({"model_type": "llama"})");
  CHECK_FALSE(search::read_elastic_layer_sets(folder / "plain.json", model).has_value());
  test::write_text(folder / "odd.json", R"({"elastic": {"layers": [{"mlp_widths": [192], "heads": [3]}, )" + layer +
                                            "]}}");
  CHECK(error_of<io::FileError>([&] { search::read_elastic_layer_sets(folder / "odd.json", model); })
            .find("layer 0: \"heads\" must decrease strictly within 1 .. 4 in steps of 2, found number 3") !=
          std::string::npos);
}

TEST_CASE("measuring a tiny llama checkpoint fills every variant of the table") {
  const test::TemporaryDirectory folder("latency-measure");
  const test::TinyModel tiny;  // 2 layers, 4 heads of 64 in 2 KV groups, SwiGLU 192, hidden 256
  test::write_llama_folder(folder.path(), tiny, 11);
  const io::ModelSource source = io::ModelSource::open(folder.path());
  const model::HostWeights<float> weights(source);
  // Every half also stores a linear map (random: only its time is measured).
  io::ModelDescription model = weights.description();
  model::ModelWeights<float> views = weights.views();
  std::vector<test::HostMatrix<float>> maps;
  maps.reserve(4);
  for (std::size_t i = 0; i < 2; ++i) {
    maps.push_back(test::random_matrix<float>(256, 256, 60 + i, 0.05f));
    model.layers[i].attention_has_linear = true;
    views.layers[i].linear_attention = maps.back().view();
    maps.push_back(test::random_matrix<float>(256, 256, 70 + i, 0.05f));
    model.layers[i].ffn_has_linear = true;
    views.layers[i].linear_ffn = maps.back().view();
  }
  model::Decoder<float> decoder(model, views);
  host::Executor executor(1);
  const search::LatencySettings settings{.context = 8, .decode_steps = 2, .prefill_tokens = 12, .repetitions = 1};
  const LatencyTable table = search::measure_latency_table(decoder, views, executor,
                                                           search::default_layer_sets(model), settings);

  CHECK(table.threads == 1);
  CHECK(table.kv_element_bytes == 4);
  CHECK(table.decode_context == 8);
  CHECK(table.prefill_tokens == 12);
  const std::int64_t hidden = 256, f32 = 4;
  CHECK(table.fixed.weight_bytes == (2 * 96 * hidden + hidden) * f32);  // embedding, LM head (untied), norm
  CHECK(std::isfinite(table.fixed.decode_s));
  CHECK(table.fixed.decode_s > 0.0);
  REQUIRE(table.layers.size() == 2);
  for (const search::LayerCosts& layer : table.layers) {
    REQUIRE(layer.attention.size() == 4);
    REQUIRE(layer.ffn.size() == 6);
    const std::vector<std::int64_t> heads{4, 2}, widths{192, 128, 96, 32};
    for (std::size_t v = 0; v < heads.size(); ++v) {
      const VariantCost& cost = layer.attention[v];
      CHECK(cost.variant == HalfVariant::prefix(heads[v]));
      const std::int64_t q_rows = heads[v] * 64, kv_rows = heads[v] / 2 * 64;
      const std::int64_t norm = heads[v] > 0 ? hidden : 0;
      CHECK(cost.weight_bytes == (norm + 2 * q_rows * hidden + 2 * kv_rows * hidden) * f32);
      CHECK(cost.kv_bytes_per_token == 2 * kv_rows * f32);
    }
    for (std::size_t v = 0; v < widths.size(); ++v) {
      const VariantCost& cost = layer.ffn[v];
      CHECK(cost.variant == HalfVariant::prefix(widths[v]));
      CHECK(cost.weight_bytes == (hidden + 3 * widths[v] * hidden) * f32);
    }
    for (const Half half : {Half::attention, Half::ffn}) {
      const std::vector<VariantCost>& costs = layer.of(half);
      const VariantCost &linear = costs[costs.size() - 2], &none = costs.back();
      CHECK(linear.variant == HalfVariant::linear());
      CHECK(linear.weight_bytes == (hidden + hidden * hidden) * f32);
      CHECK(linear.kv_bytes_per_token == 0);
      CHECK(none.variant == HalfVariant::none());
    }
    for (const Half half : {Half::attention, Half::ffn})
      for (const VariantCost& cost : layer.of(half)) {
        CHECK((std::isfinite(cost.decode_s) && cost.decode_s >= 0.0));
        CHECK((std::isfinite(cost.prefill_s) && cost.prefill_s >= 0.0));
        if (cost.variant == HalfVariant::none())
          CHECK((cost.decode_s == 0.0 && cost.prefill_s == 0.0 && cost.weight_bytes == 0));
      }
  }
  REQUIRE(table.checks.size() == 3);
  CHECK(table.checks[0].name == "full");
  for (const search::LatencyCheck& check : table.checks)
    CHECK((check.measured_decode_s > 0.0 && check.measured_prefill_s > 0.0 && check.predicted_decode_s > 0.0));
  // The measured table is a valid file for the model.
  search::write_latency_table(folder / "latency_table.json", table);
  CHECK(search::latency_table_json(search::read_latency_table(folder / "latency_table.json", model)) ==
        search::latency_table_json(table));
}
