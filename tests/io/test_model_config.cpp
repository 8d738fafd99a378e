// Tests of the config.json reader: Llama configs as Meta's Llama 3 and
// SmolLM2 ship them, the newer rope_parameters spelling, a Nemotron-NAS
// config with every block kind, and one config per rule that must be
// refused with FileError naming the path, the key, what was expected and
// what was found.
#include <doctest/doctest.h>

#include <fstream>
#include <initializer_list>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "elastic/io/model_config.hpp"
#include "support/python.hpp"

namespace {

using elastic::io::AttentionKind;
using elastic::io::FfnKind;
using elastic::io::FileError;
using elastic::io::LayerPlan;
using elastic::io::ModelDescription;
using nlohmann::json;

const json llama3_config = json::parse(R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "_name_or_path": "meta-llama/Llama-3.1-8B-Instruct",
  "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32, "num_key_value_heads": 8,
  "num_hidden_layers": 32, "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05,
  "rope_theta": 500000.0, "hidden_act": "silu", "attention_bias": false, "mlp_bias": false,
  "attention_dropout": 0.0, "pretraining_tp": 1, "torch_dtype": "bfloat16", "use_cache": true,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "tie_word_embeddings": false,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"}
})");

const json smollm2_config = json::parse(R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
  "num_attention_heads": 9, "num_key_value_heads": 3, "num_hidden_layers": 30, "vocab_size": 49152,
  "max_position_embeddings": 8192, "rms_norm_eps": 1e-05, "rope_theta": 100000, "rope_scaling": null,
  "hidden_act": "silu", "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2, "head_dim": 64,
  "attention_bias": false, "mlp_bias": false, "pretraining_tp": 1
})");

// Llama-3.3-Nemotron-Super-like: hidden 8192, 64 heads, six layers covering
// every block kind.
const json nemotron_config = json::parse(R"({
  "architectures": ["DeciLMForCausalLM"], "model_type": "nemotron-nas", "hidden_size": 8192,
  "num_attention_heads": 64, "num_key_value_heads": null, "intermediate_size": null, "num_hidden_layers": 6,
  "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
  "hidden_act": "silu", "attention_bias": false, "mlp_bias": false, "tie_word_embeddings": false,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "block_configs": [
    {"attention": {"n_heads_in_group": 8, "no_op": false, "replace_with_linear": false, "sparsify": null,
                   "num_sink_tokens": null, "use_prefill_window_in_sink_attention": false, "unshifted_sink": false,
                   "window_length": null},
     "ffn": {"ffn_mult": 5.25, "no_op": false, "replace_with_linear": false, "sparsify": null}},
    {"attention": {"n_heads_in_group": 16, "no_op": false, "replace_with_linear": false},
     "ffn": {"ffn_mult": 2.625, "no_op": false, "replace_with_linear": false}},
    {"attention": {"n_heads_in_group": null, "no_op": false, "replace_with_linear": true},
     "ffn": {"ffn_mult": 1.3125, "no_op": false, "replace_with_linear": false}},
    {"attention": {"n_heads_in_group": null, "no_op": true, "replace_with_linear": false},
     "ffn": {"ffn_mult": null, "no_op": false, "replace_with_linear": true}},
    {"attention": {"n_heads_in_group": 64, "no_op": false, "replace_with_linear": false},
     "ffn": {"ffn_mult": null, "no_op": true, "replace_with_linear": false}},
    {"attention": {"n_heads_in_group": 8},
     "ffn": {"ffn_mult": 1.0}}
  ]
})");

ModelDescription parse(const json& config) { return elastic::io::parse_model_config(config.dump(), "config.json"); }

// `config` with the value at `pointer` replaced (or added).
json with(json config, std::string_view pointer, json value) {
  config[json::json_pointer(std::string(pointer))] = std::move(value);
  return config;
}
json without(json config, std::string_view key) {
  config.erase(std::string(key));
  return config;
}

void check_text_refused(std::string_view text, std::initializer_list<std::string_view> pieces) {
  CAPTURE(text);
  try {
    (void)elastic::io::parse_model_config(text, "dir/config.json");
    FAIL("expected FileError");
  } catch (const FileError& error) {
    const std::string message = error.what();
    CHECK_MESSAGE(message.starts_with("dir/config.json: "), message);
    for (std::string_view piece : pieces) CHECK_MESSAGE(message.find(piece) != std::string::npos, piece, " in ", message);
  }
}
void check_refused(const json& config, std::initializer_list<std::string_view> pieces) {
  check_text_refused(config.dump(), pieces);
}

bool same_layer(const LayerPlan& a, const LayerPlan& b) {
  return a.attention == b.attention && a.kv_heads == b.kv_heads && a.ffn == b.ffn && a.intermediate == b.intermediate;
}

}  // namespace

TEST_CASE("model config: Llama 3 with llama3 RoPE scaling and a list of end ids") {
  const ModelDescription model = parse(llama3_config);
  CHECK(model.architecture == "llama");
  CHECK(model.name == "meta-llama/Llama-3.1-8B-Instruct");
  CHECK(model.hidden == 4096);
  CHECK(model.vocab == 128256);
  CHECK(model.heads == 32);
  CHECK(model.head_dim == 128);
  REQUIRE(model.layers.size() == 32);
  for (const LayerPlan& layer : model.layers)
    CHECK(same_layer(layer, {AttentionKind::gqa, 8, FfnKind::swiglu, 14336}));
  CHECK(model.rms_epsilon == doctest::Approx(1e-5));
  CHECK(model.rope.theta == 500000.0f);
  CHECK(model.rope.layout == elastic::RopeLayout::rotate_half);
  CHECK(model.rope.max_positions == 131072);
  CHECK(model.rope.llama3_scaling);
  CHECK(model.rope.llama3.factor == 8.0f);
  CHECK(model.rope.llama3.low_freq_factor == 1.0f);
  CHECK(model.rope.llama3.high_freq_factor == 4.0f);
  CHECK(model.rope.llama3.original_max_positions == 8192);
  CHECK_FALSE(model.tied_embeddings);
  CHECK(model.bos_id == 128000);
  CHECK(model.eos_ids == std::vector<int>{128001, 128008, 128009});
}

TEST_CASE("model config: SmolLM2, read from a folder and from the file") {
  elastic::test::TemporaryDirectory folder;
  std::ofstream(folder / "config.json") << smollm2_config.dump(2);
  for (const auto& path : {folder.path(), folder / "config.json"}) {
    const ModelDescription model = elastic::io::read_model_config(path);
    CHECK(model.hidden == 576);
    CHECK(model.heads == 9);
    CHECK(model.head_dim == 64);
    REQUIRE(model.layers.size() == 30);
    CHECK(same_layer(model.layers[29], {AttentionKind::gqa, 3, FfnKind::swiglu, 1536}));
    CHECK(model.tied_embeddings);
    CHECK(model.rope.theta == 100000.0f);
    CHECK_FALSE(model.rope.llama3_scaling);
    CHECK(model.rope.max_positions == 8192);
    CHECK(model.bos_id == 1);
    CHECK(model.eos_ids == std::vector<int>{2});
    CHECK(model.vocab == 49152);
  }
  // Defaults: head size from hidden / heads, KV heads = heads, RoPE theta 10000, untied.
  const ModelDescription defaults = parse(without(without(without(without(smollm2_config, "head_dim"),
                                                                   "num_key_value_heads"),
                                                           "rope_theta"),
                                                   "tie_word_embeddings"));
  CHECK(defaults.head_dim == 64);
  CHECK(defaults.layers[0].kv_heads == 9);
  CHECK(defaults.rope.theta == 10000.0f);
  CHECK_FALSE(defaults.tied_embeddings);

  elastic::test::TemporaryDirectory empty;
  try {
    (void)elastic::io::read_model_config(empty.path());
    FAIL("expected FileError");
  } catch (const FileError& error) {
    CHECK(std::string(error.what()).starts_with((empty / "config.json").string()));
  }
}

TEST_CASE("model config: the newer rope_parameters spelling, theta inside") {
  json config = without(without(llama3_config, "rope_scaling"), "rope_theta");
  config["rope_parameters"] = {{"rope_type", "llama3"},   {"rope_theta", 500000.0},     {"factor", 32.0},
                               {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  const ModelDescription model = parse(config);
  CHECK(model.rope.theta == 500000.0f);
  CHECK(model.rope.llama3_scaling);
  CHECK(model.rope.llama3.factor == 32.0f);

  config["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 250000.0}};
  CHECK_FALSE(parse(config).rope.llama3_scaling);
  CHECK(parse(config).rope.theta == 250000.0f);
  // The older "type" key, and both spellings given the same value.
  CHECK_FALSE(parse(with(smollm2_config, "/rope_scaling", {{"type", "default"}})).rope.llama3_scaling);
  CHECK(parse(with(llama3_config, "/rope_parameters", llama3_config["rope_scaling"])).rope.llama3_scaling);
  json parameters = llama3_config["rope_scaling"];
  parameters["rope_theta"] = 500000.0;
  const ModelDescription both = parse(with(llama3_config, "/rope_parameters", parameters));
  CHECK(both.rope.llama3_scaling);
  CHECK(both.rope.theta == 500000.0f);
}

TEST_CASE("model config: Nemotron-NAS with every block kind") {
  const ModelDescription model = parse(nemotron_config);
  CHECK(model.architecture == "nemotron-nas");
  CHECK(model.heads == 64);
  CHECK(model.head_dim == 128);
  REQUIRE(model.layers.size() == 6);
  CHECK(same_layer(model.layers[0], {AttentionKind::gqa, 8, FfnKind::swiglu, 28672}));
  CHECK(same_layer(model.layers[1], {AttentionKind::gqa, 4, FfnKind::swiglu, 14336}));
  CHECK(same_layer(model.layers[2], {AttentionKind::linear, 0, FfnKind::swiglu, 7168}));
  CHECK(same_layer(model.layers[3], {AttentionKind::none, 0, FfnKind::linear, 0}));
  CHECK(same_layer(model.layers[4], {AttentionKind::gqa, 1, FfnKind::none, 0}));
  // int(2 * 1.0 * 8192 / 3) = 5461, rounded up to 5632.
  CHECK(same_layer(model.layers[5], {AttentionKind::gqa, 8, FfnKind::swiglu, 5632}));
  CHECK(model.rope.llama3_scaling);
  CHECK(model.kv_bytes_per_token(2) == 2 * (8 + 4 + 1 + 8) * 128 * 2);
}

TEST_CASE("model config: unsupported or malformed configs are refused") {
  const json& l = llama3_config;
  check_refused(with(l, "/model_type", "mistral"), {"model_type \"mistral\"", "\"llama\"", "\"nemotron-nas\""});
  check_refused(without(l, "model_type"), {"model_type", "found none"});
  check_refused(with(l, "/attention_bias", true), {"attention_bias", "found true"});
  check_refused(with(l, "/mlp_bias", true), {"mlp_bias", "found true"});
  check_refused(with(l, "/sliding_window", 4096), {"sliding_window", "4096"});
  check_refused(with(l, "/hidden_act", "gelu"), {"hidden_act", "\"silu\"", "\"gelu\""});
  check_refused(with(l, "/hidden_size", "4096"), {"hidden_size", "integer", "string \"4096\""});
  check_refused(with(l, "/hidden_size", 4096.5), {"hidden_size", "integer", "4096.5"});
  check_refused(with(l, "/hidden_size", -1), {"hidden_size", "[1, ", "-1"});
  check_refused(with(l, "/num_hidden_layers", 1000000000), {"num_hidden_layers", "1000000000"});
  check_refused(with(with(l, "/hidden_size", 100), "/num_attention_heads", 3), {"num_attention_heads 3", "100"});
  check_refused(with(l, "/num_key_value_heads", 5), {"5 KV heads", "32 query heads"});
  check_refused(without(l, "intermediate_size"), {"intermediate_size", "found none"});
  check_refused(with(l, "/rms_norm_eps", "small"), {"rms_norm_eps", "number", "string"});
  check_refused(with(l, "/rope_theta", 1e300), {"rope_theta", "finite float"});
  check_refused(with(l, "/tie_word_embeddings", 1), {"tie_word_embeddings", "true or false", "number 1"});
  check_refused(with(l, "/eos_token_id", "x"), {"eos_token_id", "string \"x\""});
  check_refused(with(l, "/eos_token_id", json::array({1, -2})), {"eos_token_id", "-2"});
  check_refused(with(l, "/eos_token_id", 200000), {"end-of-sequence id 200000", "128256"});
  check_refused(with(l, "/bos_token_id", 128256), {"beginning-of-sequence id 128256"});
  check_refused(with(l, "/rope_scaling/rope_type", "linear"), {"rope_scaling.rope_type", "\"linear\"", "\"llama3\""});
  check_refused(with(smollm2_config, "/rope_scaling", {{"type", "dynamic"}, {"factor", 2.0}}),
                {"rope_scaling.type", "\"dynamic\"", "\"llama3\""});
  check_refused(with(without(l, "rope_scaling"), "/rope_parameters", {{"rope_type", "yarn"}}),
                {"rope_parameters.rope_type", "\"yarn\""});
  check_text_refused(without(l, "rope_scaling").dump().insert(1, R"("rope_scaling":{"rope_type":"llama3"},)"),
                {"rope_scaling.factor", "found none"});
  check_refused(with(l, "/rope_scaling/high_freq_factor", 0.5), {"low_freq_factor < high_freq_factor"});
  check_refused(with(l, "/rope_parameters", {{"rope_type", "default"}}), {"rope_parameters and rope_scaling"});
  check_refused(with(l, "/rope_parameters", {{"rope_theta", 1.0}}), {"rope_parameters and rope_scaling"});
  check_refused(with(with(without(l, "rope_scaling"), "/rope_parameters", {{"rope_theta", 1.0}}), "/rope_theta", 2.0),
                {"rope_theta 2", "rope_parameters.rope_theta 1"});
  check_text_refused(R"({"model_type":"llama","model_type":"llama"})", {"duplicate", "\"model_type\""});
  check_text_refused("[1]", {"the config", "JSON object", "array"});
  check_text_refused("{\"model_type\":\"ll\xc3\x28\"}", {"UTF-8"});
  check_text_refused(std::string(1000, '[') + std::string(1000, ']'), {"nested deeper than"});
  check_text_refused(R"({"model_type":)", {"well-formed"});
}

TEST_CASE("model config: malformed Nemotron-NAS blocks are refused") {
  const json& n = nemotron_config;
  check_refused(with(n, "/num_hidden_layers", 5), {"block_configs", "num_hidden_layers = 5", "6 blocks"});
  check_refused(without(n, "block_configs"), {"block_configs", "found none"});
  check_refused(with(n, "/block_configs", 3), {"block_configs", "number"});
  check_refused(with(n, "/block_configs/1", "gqa"), {"block_configs[1] to be a JSON object", "string \"gqa\""});
  check_refused(with(n, "/block_configs/1/attention/n_heads_in_group", 48),
                {"block_configs[1].attention.n_heads_in_group", "64 query heads", "48"});
  check_refused(with(n, "/block_configs/1/attention/n_heads_in_group", 0),
                {"block_configs[1].attention.n_heads_in_group", "[1, 64]"});
  check_refused(with(n, "/block_configs/0/attention/n_heads_in_group", nullptr),
                {"block_configs[0].attention.n_heads_in_group", "found none"});
  check_refused(with(n, "/block_configs/2/attention/no_op", true),
                {"block_configs[2].attention.no_op", "block_configs[2].attention.replace_with_linear", "both"});
  check_refused(with(n, "/block_configs/2/ffn/ffn_mult", -1.0), {"block_configs[2].ffn.ffn_mult", "positive", "-1"});
  check_refused(with(n, "/block_configs/2/ffn/ffn_mult", 1e30), {"block_configs[2].ffn.ffn_mult"});
  check_refused(with(n, "/block_configs/2/ffn/ffn_mult", "big"), {"block_configs[2].ffn.ffn_mult", "string"});
  check_refused(with(n, "/block_configs/0/attention/window_length", 4096),
                {"block_configs[0].attention.window_length", "not supported"});
  check_refused(with(n, "/block_configs/0", without(n["block_configs"][0], "ffn")), {"block_configs[0].ffn", "found none"});
}

TEST_CASE("model config: an elastic checkpoint's \"elastic\" layers mark the linear maps stored beside the blocks") {
  json layers = json::array();
  for (int i = 0; i < 6; ++i) layers.push_back({{"mlp_widths", json::array()}, {"linear_attention", i == 0}});
  layers[1]["linear_ffn"] = true;
  const ModelDescription model = parse(with(nemotron_config, "/elastic", {{"format", 1}, {"layers", layers}}));
  CHECK(model.layers[0].attention_has_linear);
  CHECK_FALSE(model.layers[0].ffn_has_linear);
  CHECK(model.layers[1].ffn_has_linear);
  CHECK(model.layers[0].attention_runs_linear());
  CHECK(model.layers[2].attention_runs_linear());  // a linear block
  CHECK_FALSE(model.layers[4].ffn_runs_linear());
  // Without the key, or without its "layers", nothing is stored beside a block.
  for (const LayerPlan& layer : parse(with(nemotron_config, "/elastic", {{"format", 1}})).layers)
    CHECK_FALSE((layer.attention_has_linear || layer.ffn_has_linear));

  check_refused(with(nemotron_config, "/elastic", {{"layers", json::array({json::object()})}}),
                {"expected elastic.layers to list the 6 layers, found 1 entries"});
  check_refused(with(nemotron_config, "/elastic", {{"layers", 3}}), {"expected elastic.layers to list the 6 layers"});
  json bad = layers;
  bad[2]["linear_attention"] = true;  // a linear block stores nothing beside it
  check_refused(with(nemotron_config, "/elastic", {{"layers", bad}}),
                {"layer 2: only a GQA attention can store a linear map beside it, found linear"});
  bad = layers;
  bad[4]["linear_ffn"] = true;  // a no-op FFN
  check_refused(with(nemotron_config, "/elastic", {{"layers", bad}}),
                {"layer 4: only a SwiGLU FFN can store a linear map beside it, found none"});
  bad = layers;
  bad[0]["linear_ffn"] = "yes";
  check_refused(with(nemotron_config, "/elastic", {{"layers", bad}}),
                {"elastic.layers[0].linear_ffn to be true or false, found string"});
}
