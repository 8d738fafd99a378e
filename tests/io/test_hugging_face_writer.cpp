// Tests of the Hugging Face text-file writers (config.json, tokenizer.json,
// tokenizer_config.json): what they write reads back through the library's
// readers as the same description and spec, and tokenizes alike; a folder
// with the written files and a safetensors file opens through ModelSource;
// what the formats cannot hold is refused with a message naming what was
// expected and found, leaving no file behind. In the "reference" suite, HF
// `tokenizers` encodes with the written tokenizer.json as the library does,
// and `transformers.AutoConfig` reads the written Llama config.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastic/io/config_json_writer.hpp"
#include "elastic/io/model_config.hpp"
#include "elastic/io/model_source.hpp"
#include "elastic/io/tokenizer.hpp"
#include "elastic/io/tokenizer_json.hpp"
#include "elastic/io/tokenizer_json_writer.hpp"
#include "io/tokenizer_fixtures.hpp"
#include "support/error_message.hpp"
#include "support/python.hpp"
#include "support/tiny_checkpoint.hpp"

namespace {

using elastic::io::AttentionKind;
using elastic::io::FfnKind;
using elastic::io::LayerPlan;
using elastic::io::ModelDescription;
using elastic::io::TensorType;
using elastic::io::Tokenizer;
using elastic::io::TokenizerSpec;
using elastic::test::error_of;
using elastic::test::TemporaryDirectory;
using nlohmann::json;

json read_json(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  return json::parse(file);
}

bool is_empty_folder(const std::filesystem::path& folder) {
  return std::filesystem::directory_iterator(folder) == std::filesystem::directory_iterator();
}

ModelDescription llama_description(bool tied) {
  ModelDescription model;
  model.architecture = "llama";
  model.hidden = 576;
  model.vocab = 49152;
  model.heads = 9;
  model.head_dim = 64;
  model.layers.assign(3, LayerPlan{AttentionKind::gqa, 3, FfnKind::swiglu, 1536});
  model.rms_epsilon = 1e-5f;
  model.rope.theta = 100000.0f;
  model.rope.max_positions = 8192;
  model.tied_embeddings = tied;
  model.bos_id = 1;
  model.eos_ids = {2};
  return model;
}

ModelDescription llama3_description() {
  ModelDescription model = llama_description(false);
  model.name = "meta-llama/Llama-3.1-8B-Instruct";
  model.hidden = 4096;
  model.vocab = 128256;
  model.heads = 32;
  model.head_dim = 128;
  model.layers.assign(2, LayerPlan{AttentionKind::gqa, 8, FfnKind::swiglu, 14336});
  model.rope.theta = 500000.0f;
  model.rope.max_positions = 131072;
  model.rope.llama3_scaling = true;
  model.rope.llama3 = {8.0f, 1.0f, 4.0f, 8192};
  model.bos_id = 128000;
  model.eos_ids = {128001, 128008, 128009};
  return model;
}

// Every block kind, GQA with 8, 4, 2 and 1 KV heads, FFN widths 28672, 14336, 7168, 5376 and 256.
ModelDescription nemotron_description() {
  ModelDescription model = llama3_description();
  model.architecture = "nemotron-nas";
  model.name = "nvidia/Llama-3_3-Nemotron-Super-49B-v1";
  model.hidden = 8192;
  model.heads = 64;
  model.layers = {{AttentionKind::gqa, 8, FfnKind::swiglu, 28672}, {AttentionKind::gqa, 4, FfnKind::swiglu, 14336},
                  {AttentionKind::linear, 0, FfnKind::swiglu, 7168},  {AttentionKind::none, 0, FfnKind::linear, 0},
                  {AttentionKind::gqa, 1, FfnKind::none, 0},          {AttentionKind::gqa, 2, FfnKind::swiglu, 5376},
                  {AttentionKind::none, 0, FfnKind::swiglu, 256},     {AttentionKind::linear, 0, FfnKind::none, 0}};
  model.tied_embeddings = false;
  return model;
}

void check_same_description(const ModelDescription& read, const ModelDescription& written) {
  CHECK(read.architecture == written.architecture);
  CHECK(read.name == written.name);
  CHECK(read.hidden == written.hidden);
  CHECK(read.vocab == written.vocab);
  CHECK(read.heads == written.heads);
  CHECK(read.head_dim == written.head_dim);
  REQUIRE(read.layers.size() == written.layers.size());
  for (std::size_t i = 0; i < read.layers.size(); ++i) {
    CAPTURE(i);
    CHECK(read.layers[i].attention == written.layers[i].attention);
    CHECK(read.layers[i].kv_heads == written.layers[i].kv_heads);
    CHECK(read.layers[i].ffn == written.layers[i].ffn);
    CHECK(read.layers[i].intermediate == written.layers[i].intermediate);
  }
  CHECK(read.rms_epsilon == written.rms_epsilon);
  CHECK(read.rope.theta == written.rope.theta);
  CHECK(read.rope.layout == written.rope.layout);
  CHECK(read.rope.max_positions == written.rope.max_positions);
  CHECK(read.rope.llama3_scaling == written.rope.llama3_scaling);
  if (written.rope.llama3_scaling) {
    CHECK(read.rope.llama3.factor == written.rope.llama3.factor);
    CHECK(read.rope.llama3.low_freq_factor == written.rope.llama3.low_freq_factor);
    CHECK(read.rope.llama3.high_freq_factor == written.rope.llama3.high_freq_factor);
    CHECK(read.rope.llama3.original_max_positions == written.rope.llama3.original_max_positions);
  }
  CHECK(read.tied_embeddings == written.tied_embeddings);
  CHECK(read.bos_id == written.bos_id);
  CHECK(read.eos_ids == written.eos_ids);
}

ModelDescription round_trip(const ModelDescription& model, TensorType dtype = TensorType::bf16) {
  const TemporaryDirectory folder("elastic-config-writer");
  elastic::io::write_config_json(folder / "config.json", model, dtype);
  return elastic::io::read_model_config(folder.path());
}

void check_same_spec(const TokenizerSpec& read, const TokenizerSpec& written) {
  CHECK(read.model == written.model);
  CHECK(read.pre == written.pre);
  CHECK(read.tokens == written.tokens);
  CHECK(read.kinds == written.kinds);
  CHECK(read.scores == written.scores);
  CHECK(read.merges == written.merges);
  CHECK(read.bos_id == written.bos_id);
  CHECK(read.eos_ids == written.eos_ids);
  CHECK(read.unknown_id == written.unknown_id);
  CHECK(read.padding_id == written.padding_id);
  CHECK(read.add_bos == written.add_bos);
  CHECK(read.add_eos == written.add_eos);
  CHECK(read.add_space_prefix == written.add_space_prefix);
  CHECK(read.chat_template == written.chat_template);
}

const std::vector<std::string> sample_texts = {
    "hello world",       "Hello the world, 12345 and 1234567!", "<|start|>hello<think> the world<|end|>",
    "  two\n\nlines\t tab", "I'm sure they'll say DON'T", "😀 emoji 😀😀 and café", "", "<|end|><|end|>"};

void check_same_encodings(const TokenizerSpec& read, const TokenizerSpec& written) {
  const Tokenizer from_file = Tokenizer::from_spec(read);
  const Tokenizer original = Tokenizer::from_spec(written);
  for (const std::string& text : sample_texts) {
    CAPTURE(text);
    CHECK(from_file.encode(text) == original.encode(text));
    CHECK(from_file.encode(text, false, false) == original.encode(text, false, false));
  }
}

}  // namespace

TEST_CASE("config.json writer: Llama descriptions read back the same") {
  SUBCASE("tied, no RoPE scaling, one eos") {
    const ModelDescription model = llama_description(true);
    check_same_description(round_trip(model), model);
    const json config = elastic::io::config_json(model, TensorType::bf16);
    CHECK(config["model_type"] == "llama");
    CHECK(config["architectures"] == json::array({"LlamaForCausalLM"}));
    CHECK(config["intermediate_size"] == 1536);
    CHECK(config["num_key_value_heads"] == 3);
    CHECK(config["rope_scaling"].is_null());
    CHECK(config["eos_token_id"] == 2);
    CHECK(config["torch_dtype"] == "bfloat16");
    CHECK(config["hidden_act"] == "silu");
    CHECK(config["rms_norm_eps"].dump() == "1e-05");
    CHECK_FALSE(config.contains("block_configs"));
    CHECK_FALSE(config.contains("_name_or_path"));
  }
  SUBCASE("untied, Llama 3 RoPE scaling, several eos, a name") {
    const ModelDescription model = llama3_description();
    check_same_description(round_trip(model, TensorType::f32), model);
    const json config = elastic::io::config_json(model, TensorType::f32);
    CHECK(config["rope_scaling"] == json::parse(R"({"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192, "rope_type": "llama3"})"));
    CHECK(config["eos_token_id"] == json::array({128001, 128008, 128009}));
    CHECK(config["torch_dtype"] == "float32");
    CHECK(config["_name_or_path"] == model.name);
  }
  SUBCASE("no bos, no eos, float16") {
    ModelDescription model = llama_description(false);
    model.bos_id.reset();
    model.eos_ids.clear();
    check_same_description(round_trip(model, TensorType::f16), model);
    const json config = elastic::io::config_json(model, TensorType::f16);
    CHECK(config["bos_token_id"].is_null());
    CHECK(config["eos_token_id"].is_null());
    CHECK(config["torch_dtype"] == "float16");
  }
}

TEST_CASE("config.json writer: Nemotron-NAS descriptions read back the same") {
  const ModelDescription model = nemotron_description();
  check_same_description(round_trip(model), model);
  const json config = elastic::io::config_json(model, TensorType::bf16);
  CHECK(config["architectures"] == json::array({"DeciLMForCausalLM"}));
  CHECK(config["intermediate_size"].is_null());
  CHECK(config["num_key_value_heads"].is_null());
  const json& blocks = config["block_configs"];
  REQUIRE(blocks.size() == model.layers.size());
  CHECK(blocks[0]["attention"] == json::parse(R"({"n_heads_in_group": 8, "no_op": false, "replace_with_linear": false})"));
  CHECK(blocks[2]["attention"] == json::parse(R"({"n_heads_in_group": null, "no_op": false, "replace_with_linear": true})"));
  CHECK(blocks[3]["attention"] == json::parse(R"({"n_heads_in_group": null, "no_op": true, "replace_with_linear": false})"));
  CHECK(blocks[3]["ffn"] == json::parse(R"({"ffn_mult": null, "no_op": false, "replace_with_linear": true})"));
  CHECK(blocks[4]["ffn"] == json::parse(R"({"ffn_mult": null, "no_op": true, "replace_with_linear": false})"));
  // 28672 comes from int(2 * m * 8192 / 3) in [28417, 28672]: m in [5.2031, 5.2501); 5.21 is the first with
  // two decimals (none with fewer), so Nemotron's own 5.25 is not the one written.
  CHECK(blocks[0]["ffn"]["ffn_mult"].get<double>() == 5.21);
  CHECK(blocks[6]["ffn"]["ffn_mult"].get<double>() == 0.01);
}

TEST_CASE("config.json writer: every FFN width that is a multiple of 256 gets an ffn_mult that reads back as it") {
  for (const std::int64_t hidden : {64, 576, 2048, 5120, 8192}) {
    ModelDescription model = nemotron_description();
    model.hidden = hidden;
    model.heads = 8;
    model.head_dim = 64;
    model.layers.clear();
    for (std::int64_t width = 256; width <= 32768; width += 256)
      model.layers.push_back({AttentionKind::gqa, 8, FfnKind::swiglu, width});
    CAPTURE(hidden);
    check_same_description(round_trip(model), model);
    const json config = elastic::io::config_json(model, TensorType::bf16);
    for (std::size_t i = 0; i < model.layers.size(); ++i) {
      std::string mult = config["block_configs"][i]["ffn"]["ffn_mult"].dump();
      if (mult.ends_with(".0")) mult.resize(mult.size() - 2);  // an integer, dumped as 18.0
      CAPTURE(mult);
      // The value one step smaller at the same decimal places no longer gives the width.
      const std::size_t point = mult.find('.');
      const int places = point == std::string::npos ? 0 : static_cast<int>(mult.size() - point - 1);
      const double smaller = std::stod(mult) - std::pow(10.0, -places);
      const double width = static_cast<double>(model.layers[i].intermediate);
      if (smaller > 0.0)
        CHECK((static_cast<std::int64_t>(2.0 * smaller * static_cast<double>(hidden) / 3.0) + 255) / 256 * 256 <
              static_cast<std::int64_t>(width));
    }
  }
}

TEST_CASE("config.json writer: extra keys are added at the top level") {
  const TemporaryDirectory folder("elastic-config-writer");
  const nlohmann::ordered_json extra = {{"elastic", {{"ranking", "activation"}, {"widths", {256, 512}}}}};
  const ModelDescription model = nemotron_description();
  elastic::io::write_config_json(folder / "config.json", model, TensorType::bf16, extra);
  const json written = read_json(folder / "config.json");
  CHECK(written["elastic"] == json(extra["elastic"]));
  check_same_description(elastic::io::read_model_config(folder.path()), model);
}

TEST_CASE("config.json writer: refusals say what was expected and found, and write nothing") {
  const TemporaryDirectory folder("elastic-config-writer");
  const auto refusal = [&](const ModelDescription& model, TensorType dtype = TensorType::bf16,
                           const nlohmann::ordered_json& extra = {}) {
    const std::string message =
        error_of([&] { elastic::io::write_config_json(folder / "config.json", model, dtype, extra); });
    CHECK(is_empty_folder(folder.path()));
    return message;
  };

  ModelDescription uneven = llama_description(false);
  uneven.layers[2].kv_heads = 1;
  CHECK(refusal(uneven) == "config.json: a llama config expects every layer alike, found layer 0 with 3 KV heads and "
                           "FFN width 1536 but layer 2 with 1 and 1536 (write it as nemotron-nas)");
  ModelDescription linear = llama_description(false);
  linear.layers[1] = {AttentionKind::linear, 0, FfnKind::swiglu, 1536};
  CHECK(refusal(linear).find("expects every layer to be gqa attention with a swiglu FFN, found layer 1 with linear "
                             "attention") != std::string::npos);

  ModelDescription odd_width = nemotron_description();
  odd_width.layers[1].intermediate = 14000;
  CHECK(refusal(odd_width).starts_with(
      "config.json: nemotron-nas layer 1 has FFN width 14000, which block_configs cannot express"));
  CHECK(refusal(odd_width).find("expected a multiple of 256") != std::string::npos);

  ModelDescription interleaved = llama_description(false);
  interleaved.rope.layout = elastic::RopeLayout::interleaved;
  CHECK(refusal(interleaved).find("expected Q/K rows in the rotate-half RoPE layout") != std::string::npos);
  CHECK(refusal(interleaved).find("found interleaved") != std::string::npos);

  ModelDescription other = llama_description(false);
  other.architecture = "mistral";
  CHECK(refusal(other) == R"(config.json: expected architecture "llama" or "nemotron-nas", found "mistral")");

  CHECK(refusal(llama_description(false), TensorType::q4_0) ==
        "config.json: expected torch_dtype F32, BF16 or F16, found Q4_0");

  const std::string collision = refusal(llama_description(false), TensorType::bf16, {{"vocab_size", 7}});
  CHECK(collision.find(R"(extra key "vocab_size" collides with the config's own "vocab_size" (49152))") !=
        std::string::npos);
  CHECK(refusal(llama_description(false), TensorType::bf16, nlohmann::ordered_json::array({1}))
            .find("expected the extra config keys as a JSON object, found array") != std::string::npos);

  ModelDescription invalid = llama_description(false);
  invalid.eos_ids = {60000};
  CHECK(refusal(invalid).find("end-of-sequence id 60000 is outside the vocabulary of 49152") != std::string::npos);
}

TEST_CASE("tokenizer writer: every pre-tokenizer reads back as the same spec and encodes alike") {
  for (const char* pre : {"gpt2", "smollm", "llama-bpe", "qwen2"}) {
    for (const bool add_bos : {false, true}) {
      CAPTURE(pre);
      CAPTURE(add_bos);
      TokenizerSpec spec = elastic::test::small_byte_level_spec();
      spec.pre = pre;
      spec.add_bos = add_bos;
      spec.add_eos = add_bos && std::string_view(pre) == "qwen2";
      spec.chat_template = "{% for message in messages %}<|start|>{{ message['content'] }}<|end|>{% endfor %}";
      if (add_bos) spec.padding_id = spec.eos_ids.front();
      if (!add_bos) spec.unknown_id = 0;
      const TemporaryDirectory folder("elastic-tokenizer-writer");
      elastic::io::write_tokenizer_files(folder.path(), spec, 8192);
      const TokenizerSpec read = elastic::io::read_tokenizer_json(folder / "tokenizer.json");
      check_same_spec(read, spec);
      check_same_encodings(read, spec);

      const json tokenizer = read_json(folder / "tokenizer.json");
      CHECK(tokenizer["version"] == "1.0");
      CHECK(tokenizer["model"]["type"] == "BPE");
      CHECK(tokenizer["model"]["vocab"].size() == spec.tokens.size());
      CHECK(tokenizer["decoder"]["type"] == "ByteLevel");
      CHECK(tokenizer["post_processor"]["type"] == (add_bos ? "TemplateProcessing" : "ByteLevel"));
      CHECK(tokenizer["added_tokens"].size() == 3);
      const json config = read_json(folder / "tokenizer_config.json");
      CHECK(config["bos_token"] == "<|start|>");
      CHECK(config["eos_token"] == "<|end|>");
      CHECK(config["model_max_length"] == 8192);
      CHECK(config["tokenizer_class"] == "PreTrainedTokenizerFast");
      CHECK(config["clean_up_tokenization_spaces"] == false);
    }
  }
}

TEST_CASE("tokenizer writer: tokenizer_config.json names the first of several end tokens") {
  TokenizerSpec spec = elastic::test::small_byte_level_spec();
  spec.eos_ids = {spec.eos_ids.front(), *spec.bos_id};
  spec.kinds.clear();  // all normal: no added tokens
  const TemporaryDirectory folder("elastic-tokenizer-writer");
  elastic::io::write_tokenizer_files(folder.path(), spec);
  const TokenizerSpec read = elastic::io::read_tokenizer_json(folder / "tokenizer.json");
  CHECK(read.eos_ids == std::vector<int>{spec.eos_ids.front()});
  CHECK(read.kinds == std::vector<elastic::io::TokenKind>(spec.tokens.size(), elastic::io::TokenKind::normal));
  CHECK(read_json(folder / "tokenizer.json")["added_tokens"].empty());
  CHECK_FALSE(read_json(folder / "tokenizer_config.json").contains("model_max_length"));
}

TEST_CASE("tokenizer writer: refusals say what was expected and found, and write nothing") {
  const TemporaryDirectory folder("elastic-tokenizer-writer");
  const auto refusal = [&](const TokenizerSpec& spec) {
    const std::string message = error_of([&] { elastic::io::write_tokenizer_files(folder.path(), spec); });
    CHECK(is_empty_folder(folder.path()));
    return message;
  };
  CHECK(refusal(elastic::test::small_sentencepiece_spec()) ==
        "tokenizer.json: expected a byte-level BPE tokenizer, found a SentencePiece one, which is not supported as "
        "tokenizer.json yet");
  TokenizerSpec spec = elastic::test::small_byte_level_spec();
  spec.pre = "default";
  CHECK(refusal(spec) == R"(tokenizer.json: expected pre-tokenizer "gpt2", "smollm", "llama-bpe" or "qwen2", found "default")");
  spec = elastic::test::small_byte_level_spec();
  spec.tokens[25] = spec.tokens[5];
  CHECK(refusal(spec).find("expected each token once, found '" + spec.tokens[5] + "' again") != std::string::npos);
  spec = elastic::test::small_byte_level_spec();
  spec.add_bos = true;
  spec.bos_id.reset();
  CHECK(refusal(spec) == "tokenizer.json: expected a bos id with add_bos set, found none");
  spec = elastic::test::small_byte_level_spec();
  spec.eos_ids = {100000};
  CHECK(refusal(spec).find("expected the eos id inside the vocabulary of " + std::to_string(spec.tokens.size()) +
                           ", found 100000") != std::string::npos);
  spec = elastic::test::small_byte_level_spec();
  spec.merges.push_back("abc");
  CHECK(refusal(spec) == R"(tokenizer.json: expected a merge as "left right" with one space, found "abc")");
  spec = elastic::test::small_byte_level_spec();
  spec.kinds.pop_back();
  CHECK(refusal(spec).find("expected one token kind per token") != std::string::npos);
}

TEST_CASE("a folder with the written files opens through ModelSource") {
  const TemporaryDirectory folder("elastic-hf-folder");
  elastic::test::write_nemotron_folder(folder.path(), elastic::test::nemotron_model(), 7);
  const ModelDescription model = elastic::io::ModelSource::open(folder.path()).description();
  std::filesystem::remove(folder / "config.json");
  elastic::io::write_config_json(folder / "config.json", model, TensorType::f32,
                                 {{"elastic", {{"source", "tiny nemotron-nas"}}}});
  TokenizerSpec spec = elastic::test::small_byte_level_spec();
  spec.pre = "smollm";
  spec.add_bos = true;
  elastic::io::write_tokenizer_files(folder.path(), spec, model.rope.max_positions);

  const elastic::io::ModelSource source = elastic::io::ModelSource::open(folder.path());
  check_same_description(source.description(), model);
  REQUIRE(source.tokenizer().has_value());
  check_same_spec(*source.tokenizer(), spec);
  CHECK(source.find(elastic::io::TensorRole::linear_attention, 1) != nullptr);
  for (const auto& entry : std::filesystem::directory_iterator(folder.path()))
    CHECK(entry.path().filename().string().find(".tmp-") == std::string::npos);
}

TEST_SUITE("reference") {
  TEST_CASE("HF tokenizers and transformers read the written files") {
    for (const char* pre : {"gpt2", "smollm", "llama-bpe", "qwen2"}) {
      CAPTURE(pre);
      const TemporaryDirectory folder("elastic-hf-reference");
      TokenizerSpec spec = elastic::test::small_byte_level_spec();
      spec.pre = pre;
      spec.add_bos = std::string_view(pre) != "gpt2";
      elastic::io::write_tokenizer_files(folder.path(), spec, 8192);
      const ModelDescription model = llama3_description();
      elastic::io::write_config_json(folder / "config.json", model, TensorType::bf16);
      {
        std::ofstream texts(folder / "texts.json");
        texts << json(sample_texts).dump();
      }
      const json reference = json::parse(
          elastic::test::run_reference_script("hugging_face_files_reference.py", {folder.path().string()}));

      const Tokenizer tokenizer = Tokenizer::from_spec(spec);
      for (std::size_t i = 0; i < sample_texts.size(); ++i) {
        CAPTURE(sample_texts[i]);
        CHECK(reference["tokenizers"][i] == json(tokenizer.encode(sample_texts[i])));
        CHECK(reference["transformers"][i] == json(tokenizer.encode(sample_texts[i])));
      }
      const json& config = reference["config"];
      CHECK(config["model_type"] == "llama");
      CHECK(config["hidden_size"] == model.hidden);
      CHECK(config["intermediate_size"] == model.layers[0].intermediate);
      CHECK(config["num_attention_heads"] == model.heads);
      CHECK(config["num_key_value_heads"] == model.layers[0].kv_heads);
      CHECK(config["num_hidden_layers"] == model.layers.size());
      CHECK(config["head_dim"] == model.head_dim);
      CHECK(config["rms_norm_eps"] == 1e-5);
      CHECK(config["rope_theta"] == 500000.0);
      CHECK(config["rope_type"] == "llama3");
      CHECK(config["rope_factor"] == 8.0);
      CHECK(config["max_position_embeddings"] == model.rope.max_positions);
      CHECK(config["vocab_size"] == model.vocab);
      CHECK(config["tie_word_embeddings"] == false);
      CHECK(config["bos_token_id"] == 128000);
      CHECK(config["eos_token_id"] == json(model.eos_ids));
    }
  }
}
