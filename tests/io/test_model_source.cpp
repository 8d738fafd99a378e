// ModelSource: a Hugging Face folder (config.json, safetensors, tokenizer.json)
// and a GGUF file, written here with literal tensor names, open to the same
// description with every role bound to the right tensor; a missing tensor or
// one of the wrong shape is a FileError naming the file, the tensor and both
// shapes. In the reference suite, the real default model opens completely.
#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "elastic/io/gguf_writer.hpp"
#include "elastic/io/model_source.hpp"
#include "elastic/io/safetensors_writer.hpp"
#include "support/error_message.hpp"
#include "support/python.hpp"

using namespace elastic;
using namespace elastic::io;

namespace {

constexpr std::int64_t kHidden = 64, kVocab = 32, kFfn = 96;

struct Shapes {
  std::map<std::string, std::vector<std::int64_t>> by_name;
};

// A two-layer llama, names as Hugging Face writes them.
Shapes llama_shapes(bool tied) {
  Shapes shapes;
  shapes.by_name["model.embed_tokens.weight"] = {kVocab, kHidden};
  shapes.by_name["model.norm.weight"] = {kHidden};
  if (!tied) shapes.by_name["lm_head.weight"] = {kVocab, kHidden};
  for (int i = 0; i < 2; ++i) {
    const std::string block = "model.layers." + std::to_string(i) + ".";
    shapes.by_name[block + "input_layernorm.weight"] = {kHidden};
    shapes.by_name[block + "self_attn.q_proj.weight"] = {kHidden, kHidden};
    shapes.by_name[block + "self_attn.k_proj.weight"] = {32, kHidden};
    shapes.by_name[block + "self_attn.v_proj.weight"] = {32, kHidden};
    shapes.by_name[block + "self_attn.o_proj.weight"] = {kHidden, kHidden};
    shapes.by_name[block + "post_attention_layernorm.weight"] = {kHidden};
    shapes.by_name[block + "mlp.gate_proj.weight"] = {kFfn, kHidden};
    shapes.by_name[block + "mlp.up_proj.weight"] = {kFfn, kHidden};
    shapes.by_name[block + "mlp.down_proj.weight"] = {kHidden, kFfn};
  }
  return shapes;
}

const char* const kLlamaConfig = R"({
  "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
  "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
  "vocab_size": 32, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
  "tie_word_embeddings": TIED, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu"})";

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string llama_config(bool tied) {
  std::string config = kLlamaConfig;
  return config.replace(config.find("TIED"), 4, tied ? "true" : "false");
}

// Writes config.json and model.safetensors (random float32 values) for `shapes`.
void write_hugging_face_folder(const std::filesystem::path& folder, const Shapes& shapes, const std::string& config) {
  write_text(folder / "config.json", config);
  std::mt19937 generator(7);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<std::vector<float>> storage;
  std::vector<TensorToWrite> tensors;
  for (const auto& [name, shape] : shapes.by_name) {
    std::int64_t count = 1;
    for (std::int64_t dim : shape) count *= dim;
    auto& values = storage.emplace_back(static_cast<std::size_t>(count));
    for (float& v : values) v = uniform(generator);
    tensors.push_back({name, TensorType::f32, shape, std::as_bytes(std::span(values))});
  }
  write_safetensors(folder / "model.safetensors", tensors);
}

}  // namespace

TEST_CASE("ModelSource opens a Hugging Face folder and binds every role to its tensor") {
  for (bool tied : {false, true}) {
    CAPTURE(tied);
    test::TemporaryDirectory folder;
    write_hugging_face_folder(folder.path(), llama_shapes(tied), llama_config(tied));
    for (const std::filesystem::path& given :
         {folder.path(), folder / "config.json", folder / "model.safetensors"}) {
      CAPTURE(given);
      const ModelSource source = ModelSource::open(given);
      CHECK(source.format() == ModelFormat::safetensors);
      CHECK(source.format_description() == "safetensors (1 file)");
      const ModelDescription& model = source.description();
      CHECK(model.layers.size() == 2);
      CHECK(model.layers[1].kv_heads == 2);
      CHECK(model.tied_embeddings == tied);
      CHECK(model.rope.layout == RopeLayout::rotate_half);
      CHECK(source.tensor(TensorRole::attention_k, 1).name == "model.layers.1.self_attn.k_proj.weight");
      CHECK(source.tensor(TensorRole::ffn_down, 0).shape == std::vector<std::int64_t>{kHidden, kFfn});
      CHECK(source.tensor(TensorRole::token_embedding).name == "model.embed_tokens.weight");
      CHECK((source.find(TensorRole::lm_head) != nullptr) == !tied);
      CHECK(source.tensors().size() == llama_shapes(tied).by_name.size());
      CHECK_FALSE(source.tokenizer().has_value());
      CHECK(source.file_bytes() == std::filesystem::file_size(folder / "model.safetensors"));
    }
  }
}

TEST_CASE("ModelSource names the file, the tensor and both shapes when the weights do not fit the config") {
  test::TemporaryDirectory folder;
  Shapes shapes = llama_shapes(false);
  shapes.by_name.erase("model.layers.1.mlp.up_proj.weight");
  write_hugging_face_folder(folder.path(), shapes, llama_config(false));
  std::string message = test::error_of<FileError>([&] { (void)ModelSource::open(folder.path()); });
  CHECK(message.find("model.layers.1.mlp.up_proj.weight") != std::string::npos);
  CHECK(message.find("FFN up") != std::string::npos);

  shapes = llama_shapes(false);
  shapes.by_name["model.layers.0.self_attn.k_proj.weight"] = {64, kHidden};  // 4 KV heads' rows for 2
  write_hugging_face_folder(folder.path(), shapes, llama_config(false));
  message = test::error_of<FileError>([&] { (void)ModelSource::open(folder.path()); });
  CHECK(message.find(folder.path().string()) == 0);
  CHECK(message.find("model.layers.0.self_attn.k_proj.weight") != std::string::npos);
  CHECK(message.find("[32, 64]") != std::string::npos);
  CHECK(message.find("found [64, 64]") != std::string::npos);

  message = test::error_of<FileError>([&] { (void)ModelSource::open(folder / "absent"); });
  CHECK(message.find("no such file") != std::string::npos);
}

TEST_CASE("ModelSource binds a Nemotron-NAS folder's GQA, linear and no-op halves to their tensors") {
  // Layer 0: GQA with 2 KV heads and SwiGLU (ffn_mult 1.0: 2 * 64 / 3 rounded up to 256);
  // layer 1: linear attention and linear FFN; layer 2: MQA and no-op FFN; layer 3: no-op attention and SwiGLU.
  const std::string config = R"({
    "model_type": "nemotron-nas", "architectures": ["DeciLMForCausalLM"], "hidden_size": 64,
    "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": null, "intermediate_size": null,
    "vocab_size": 32, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
    "tie_word_embeddings": false, "hidden_act": "silu",
    "block_configs": [
      {"attention": {"n_heads_in_group": 2}, "ffn": {"ffn_mult": 1.0}},
      {"attention": {"replace_with_linear": true}, "ffn": {"replace_with_linear": true}},
      {"attention": {"n_heads_in_group": 4}, "ffn": {"no_op": true}},
      {"attention": {"no_op": true}, "ffn": {"ffn_mult": 1.0}}]})";
  Shapes shapes;
  shapes.by_name = {{"model.embed_tokens.weight", {kVocab, kHidden}}, {"model.norm.weight", {kHidden}},
                    {"lm_head.weight", {kVocab, kHidden}}};
  const auto gqa = [&](int layer, std::int64_t kv_rows) {
    const std::string block = "model.layers." + std::to_string(layer) + ".";
    shapes.by_name[block + "input_layernorm.weight"] = {kHidden};
    shapes.by_name[block + "self_attn.q_proj.weight"] = {kHidden, kHidden};
    shapes.by_name[block + "self_attn.k_proj.weight"] = {kv_rows, kHidden};
    shapes.by_name[block + "self_attn.v_proj.weight"] = {kv_rows, kHidden};
    shapes.by_name[block + "self_attn.o_proj.weight"] = {kHidden, kHidden};
  };
  const auto swiglu = [&](int layer) {
    const std::string block = "model.layers." + std::to_string(layer) + ".";
    shapes.by_name[block + "post_attention_layernorm.weight"] = {kHidden};
    shapes.by_name[block + "mlp.gate_proj.weight"] = {256, kHidden};
    shapes.by_name[block + "mlp.up_proj.weight"] = {256, kHidden};
    shapes.by_name[block + "mlp.down_proj.weight"] = {kHidden, 256};
  };
  gqa(0, 32);
  swiglu(0);
  shapes.by_name["model.layers.1.input_layernorm.weight"] = {kHidden};
  shapes.by_name["model.layers.1.self_attn.linear_attn.weight"] = {kHidden, kHidden};
  shapes.by_name["model.layers.1.post_attention_layernorm.weight"] = {kHidden};
  shapes.by_name["model.layers.1.mlp.linear_mlp.weight"] = {kHidden, kHidden};
  gqa(2, 16);
  swiglu(3);
  test::TemporaryDirectory folder;
  write_hugging_face_folder(folder.path(), shapes, config);

  const ModelSource source = ModelSource::open(folder.path());
  const ModelDescription& model = source.description();
  REQUIRE(model.layers.size() == 4);
  CHECK(model.architecture == "nemotron-nas");
  CHECK(model.layers[1].attention == AttentionKind::linear);
  CHECK(model.layers[3].attention == AttentionKind::none);
  CHECK(model.layers[2].ffn == FfnKind::none);
  CHECK(source.tensor(TensorRole::linear_attention, 1).name == "model.layers.1.self_attn.linear_attn.weight");
  CHECK(source.tensor(TensorRole::linear_ffn, 1).name == "model.layers.1.mlp.linear_mlp.weight");
  CHECK(source.tensor(TensorRole::attention_k, 2).shape == std::vector<std::int64_t>{16, kHidden});
  CHECK(source.find(TensorRole::attention_norm, 3) == nullptr);  // a no-op half has no norm
  CHECK(source.find(TensorRole::ffn_norm, 2) == nullptr);
  CHECK(source.tensor(TensorRole::ffn_gate, 3).shape == std::vector<std::int64_t>{256, kHidden});
  CHECK(model.kv_bytes_per_token(2) == 2 * (2 + 1) * 16 * 2);

  shapes.by_name.erase("model.layers.1.mlp.linear_mlp.weight");
  write_hugging_face_folder(folder.path(), shapes, config);
  CHECK(test::error_of<FileError>([&] { (void)ModelSource::open(folder.path()); })
            .find("linear FFN tensor \"model.layers.1.mlp.linear_mlp.weight\", found none") != std::string::npos);
}

TEST_CASE("ModelSource opens a GGUF file with GGUF's names and interleaved RoPE pairs") {
  test::TemporaryDirectory folder;
  GgufWriter writer;
  writer.add("general.architecture", {std::string("llama")});
  writer.add("llama.block_count", {std::uint32_t{1}});
  writer.add("llama.embedding_length", {std::uint32_t{kHidden}});
  writer.add("llama.feed_forward_length", {std::uint32_t{kFfn}});
  writer.add("llama.attention.head_count", {std::uint32_t{4}});
  writer.add("llama.attention.head_count_kv", {std::uint32_t{1}});
  writer.add("llama.attention.layer_norm_rms_epsilon", {1e-5f});
  writer.add("llama.context_length", {std::uint32_t{128}});
  writer.add("llama.vocab_size", {std::uint32_t{kVocab}});
  std::vector<std::vector<std::byte>> storage;
  std::mt19937 generator(3);
  auto add = [&](const std::string& name, TensorType type, std::vector<std::int64_t> shape) {
    auto& bytes = storage.emplace_back(*tensor_bytes(type, shape, shape.back()));
    for (std::byte& b : bytes) b = static_cast<std::byte>(generator() & 0x3f);  // finite f16 scales
    writer.add_tensor(name, type, std::move(shape), bytes);
  };
  add("token_embd.weight", TensorType::q8_0, {kVocab, kHidden});
  add("output_norm.weight", TensorType::f32, {kHidden});
  add("blk.0.attn_norm.weight", TensorType::f32, {kHidden});
  add("blk.0.attn_q.weight", TensorType::q4_1, {kHidden, kHidden});
  add("blk.0.attn_k.weight", TensorType::q4_1, {16, kHidden});
  add("blk.0.attn_v.weight", TensorType::q4_1, {16, kHidden});
  add("blk.0.attn_output.weight", TensorType::q4_1, {kHidden, kHidden});
  add("blk.0.ffn_norm.weight", TensorType::f32, {kHidden});
  add("blk.0.ffn_gate.weight", TensorType::q8_0, {kFfn, kHidden});
  add("blk.0.ffn_up.weight", TensorType::q8_0, {kFfn, kHidden});
  add("blk.0.ffn_down.weight", TensorType::f16, {kHidden, kFfn});
  writer.write(folder / "tiny.gguf");

  const ModelSource source = ModelSource::open(folder / "tiny.gguf");
  CHECK(source.format() == ModelFormat::gguf);
  CHECK(source.format_description() == "GGUF v3");
  CHECK(source.description().layers.at(0).kv_heads == 1);
  CHECK(source.description().tied_embeddings);
  CHECK(source.description().rope.layout == RopeLayout::interleaved);
  CHECK(source.tensor(TensorRole::attention_q, 0).type == TensorType::q4_1);
  CHECK(source.tensor(TensorRole::ffn_down, 0).shape == std::vector<std::int64_t>{kHidden, kFfn});
  CHECK(source.find(TensorRole::lm_head) == nullptr);
  CHECK(source.tensors().size() == 11);
}

TEST_SUITE("reference") {
  TEST_CASE("the default model opens with every tensor bound and its tokenizer") {
    const ModelSource source = ModelSource::open(test::default_model_path());
    const ModelDescription& model = source.description();
    CHECK(model.layers.size() == 30);
    CHECK(source.tensor(TensorRole::token_embedding).type == TensorType::q8_0);
    for (int layer = 0; layer < 30; ++layer) {
      CHECK(source.tensor(TensorRole::attention_q, layer).type == TensorType::q4_1);
      CHECK(source.tensor(TensorRole::ffn_norm, layer).type == TensorType::f32);
    }
    REQUIRE(source.tokenizer().has_value());
    CHECK(source.tokenizer()->tokens.size() == 49152);
    CHECK(source.tokenizer()->pre == "smollm");
  }
}
