// Tiny random checkpoints for the model tests, written with the library's own
// writers: a Hugging Face llama folder (tied or not, with or without Llama 3
// RoPE scaling) and a nemotron-nas folder with per-layer blocks (GQA with any
// KV-head count, linear and no-op attention; SwiGLU of any width, linear and
// no-op FFN), F32 or BF16, with weights of the size a trained model has.
// io::ModelSource opens them; the host decoder tests check them against a
// float64 reference, the CUDA tests run them on both executors.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "elastic/core/dtype.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/io/safetensors_writer.hpp"
#include "elastic/io/tensor_type.hpp"

namespace elastic::test {

struct TinyLayer {
  io::AttentionKind attention = io::AttentionKind::gqa;
  int kv_heads = 2;
  io::FfnKind ffn = io::FfnKind::swiglu;
  double ffn_mult = 1.5;  // nemotron-nas: int(2 * mult * hidden / 3) rounded up to 256
  bool attention_has_linear = false;  // a GQA attention also stores a linear map (an elastic checkpoint's)
  bool ffn_has_linear = false;        // a SwiGLU FFN also stores a linear map
};

struct TinyModel {
  int hidden = 256;
  int heads = 4;
  int head_dim = 64;
  int vocab = 96;
  int intermediate = 192;  // llama: every layer
  int kv_heads = 2;        // llama: every layer
  int layers = 2;          // llama
  bool tied = false;
  bool llama3 = false;
  std::vector<TinyLayer> blocks;  // nemotron-nas
};

class TensorWriter {
 public:
  explicit TensorWriter(std::uint64_t seed) : engine_(seed) {}

  // Uniform in [center - spread, center + spread], never exactly zero.
  void add(std::string name, std::vector<std::int64_t> shape, float center, float spread,
           io::TensorType type = io::TensorType::f32) {
    std::int64_t count = 1;
    for (std::int64_t dim : shape) count *= dim;
    std::uniform_real_distribution<float> uniform(center - spread, center + spread);
    std::vector<std::byte>& bytes = storage_.emplace_back();
    for (std::int64_t i = 0; i < count; ++i) {
      float value = uniform(engine_);
      if (value == 0.0f) value = spread / 2;
      if (type == io::TensorType::bf16) append(bytes, from_float<bfloat16_t>(value));
      else append(bytes, value);
    }
    tensors_.push_back({std::move(name), type, std::move(shape), bytes});
  }

  void write(const std::filesystem::path& path) const { io::write_safetensors(path, tensors_); }

 private:
  template <class V>
  static void append(std::vector<std::byte>& bytes, V value) {
    const auto* first = reinterpret_cast<const std::byte*>(&value);
    bytes.insert(bytes.end(), first, first + sizeof value);
  }

  std::mt19937_64 engine_;
  std::vector<std::vector<std::byte>> storage_;
  std::vector<io::TensorToWrite> tensors_;
};

inline float inverse_sqrt(int n) { return 1.0f / std::sqrt(static_cast<float>(n)); }

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

inline std::string rope_scaling_json(bool llama3) {
  return llama3 ? R"(, "rope_scaling": {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 32})"
                : "";
}

inline std::string common_config_json(const TinyModel& m) {
  return "\"hidden_size\": " + std::to_string(m.hidden) + ", \"num_attention_heads\": " + std::to_string(m.heads) +
         ", \"head_dim\": " + std::to_string(m.head_dim) + ", \"vocab_size\": " + std::to_string(m.vocab) +
         R"(, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256, "hidden_act": "silu",
         "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": )" +
         (m.tied ? "true" : "false") + rope_scaling_json(m.llama3);
}

// Random weights for one layer, Hugging Face names; widths as the plan says.
inline void add_layer(TensorWriter& writer, const TinyModel& m, int i, const io::LayerPlan& plan, io::TensorType type) {
  const std::string block = "model.layers." + std::to_string(i) + ".";
  const std::int64_t q_rows = std::int64_t{m.heads} * m.head_dim, kv_rows = std::int64_t{plan.kv_heads} * m.head_dim;
  const float in_scale = inverse_sqrt(m.hidden);
  if (plan.attention != io::AttentionKind::none) writer.add(block + "input_layernorm.weight", {m.hidden}, 1.0f, 0.25f, type);
  if (plan.attention == io::AttentionKind::gqa) {
    writer.add(block + "self_attn.q_proj.weight", {q_rows, m.hidden}, 0.0f, 2 * in_scale, type);
    writer.add(block + "self_attn.k_proj.weight", {kv_rows, m.hidden}, 0.0f, 2 * in_scale, type);
    writer.add(block + "self_attn.v_proj.weight", {kv_rows, m.hidden}, 0.0f, in_scale, type);
    writer.add(block + "self_attn.o_proj.weight", {m.hidden, q_rows}, 0.0f, inverse_sqrt(static_cast<int>(q_rows)), type);
  }
  if (plan.attention_runs_linear()) {
    writer.add(block + "self_attn.linear_attn.weight", {m.hidden, m.hidden}, 0.0f, in_scale, type);
  }
  if (plan.ffn != io::FfnKind::none) writer.add(block + "post_attention_layernorm.weight", {m.hidden}, 1.0f, 0.25f, type);
  if (plan.ffn == io::FfnKind::swiglu) {
    writer.add(block + "mlp.gate_proj.weight", {plan.intermediate, m.hidden}, 0.0f, 2 * in_scale, type);
    writer.add(block + "mlp.up_proj.weight", {plan.intermediate, m.hidden}, 0.0f, 2 * in_scale, type);
    writer.add(block + "mlp.down_proj.weight", {m.hidden, plan.intermediate}, 0.0f,
               inverse_sqrt(static_cast<int>(plan.intermediate)), type);
  }
  if (plan.ffn_runs_linear()) {
    writer.add(block + "mlp.linear_mlp.weight", {m.hidden, m.hidden}, 0.0f, in_scale, type);
  }
}

inline void add_model_wide(TensorWriter& writer, const TinyModel& m, io::TensorType type) {
  writer.add("model.embed_tokens.weight", {m.vocab, m.hidden}, 0.0f, 1.0f, type);
  writer.add("model.norm.weight", {m.hidden}, 1.0f, 0.25f, type);
  if (!m.tied) writer.add("lm_head.weight", {m.vocab, m.hidden}, 0.0f, inverse_sqrt(m.hidden), type);
}

inline void write_llama_folder(const std::filesystem::path& folder, const TinyModel& m, std::uint64_t seed,
                        io::TensorType type = io::TensorType::f32) {
  write_text(folder / "config.json", R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"], )" +
                                         common_config_json(m) + ", \"intermediate_size\": " +
                                         std::to_string(m.intermediate) + ", \"num_hidden_layers\": " +
                                         std::to_string(m.layers) + ", \"num_key_value_heads\": " +
                                         std::to_string(m.kv_heads) + "}");
  TensorWriter writer(seed);
  add_model_wide(writer, m, type);
  for (int i = 0; i < m.layers; ++i)
    add_layer(writer, m, i, {io::AttentionKind::gqa, m.kv_heads, io::FfnKind::swiglu, m.intermediate}, type);
  writer.write(folder / "model.safetensors");
}

inline std::int64_t nemotron_width(const TinyModel& m, double ffn_mult) {
  const auto width = static_cast<std::int64_t>(2.0 * ffn_mult * m.hidden / 3.0);
  return (width + 255) / 256 * 256;
}

inline void write_nemotron_folder(const std::filesystem::path& folder, const TinyModel& m, std::uint64_t seed,
                           io::TensorType type = io::TensorType::f32) {
  std::string blocks, stored_linear;
  for (const TinyLayer& layer : m.blocks) {
    stored_linear += std::string(stored_linear.empty() ? "" : ", ") + "{\"linear_attention\": " +
                     (layer.attention_has_linear ? "true" : "false") + ", \"linear_ffn\": " +
                     (layer.ffn_has_linear ? "true" : "false") + "}";
    const bool gqa = layer.attention == io::AttentionKind::gqa;
    blocks += std::string(blocks.empty() ? "" : ", ") + R"({"attention": {"n_heads_in_group": )" +
              (gqa ? std::to_string(m.heads / layer.kv_heads) : "null") +
              ", \"no_op\": " + (layer.attention == io::AttentionKind::none ? "true" : "false") +
              ", \"replace_with_linear\": " + (layer.attention == io::AttentionKind::linear ? "true" : "false") +
              R"(}, "ffn": {"ffn_mult": )" +
              (layer.ffn == io::FfnKind::swiglu ? std::to_string(layer.ffn_mult) : "null") +
              ", \"no_op\": " + (layer.ffn == io::FfnKind::none ? "true" : "false") +
              ", \"replace_with_linear\": " + (layer.ffn == io::FfnKind::linear ? "true" : "false") + "}}";
  }
  write_text(folder / "config.json",
             R"({"model_type": "nemotron-nas", "architectures": ["DeciLMForCausalLM"], )" + common_config_json(m) +
                 R"(, "intermediate_size": null, "num_key_value_heads": null, "num_hidden_layers": )" +
                 std::to_string(m.blocks.size()) + ", \"block_configs\": [" + blocks + "], \"elastic\": {\"layers\": [" +
                 stored_linear + "]}}");
  TensorWriter writer(seed);
  add_model_wide(writer, m, type);
  for (std::size_t i = 0; i < m.blocks.size(); ++i) {
    const TinyLayer& layer = m.blocks[i];
    add_layer(writer, m, static_cast<int>(i),
              {layer.attention, layer.attention == io::AttentionKind::gqa ? layer.kv_heads : 0, layer.ffn,
               layer.ffn == io::FfnKind::swiglu ? nemotron_width(m, layer.ffn_mult) : 0, layer.attention_has_linear,
               layer.ffn_has_linear},
              type);
  }
  writer.write(folder / "model.safetensors");
}

// Every block kind: GQA with 2, 1 (MQA) and 4 KV heads, linear and no-op
// attention, SwiGLU of widths 512 and 256, linear and no-op FFN.
inline TinyModel nemotron_model() {
  TinyModel m;
  m.blocks = {{io::AttentionKind::gqa, 2, io::FfnKind::swiglu, 3.0},
              {io::AttentionKind::linear, 0, io::FfnKind::swiglu, 1.5},
              {io::AttentionKind::none, 0, io::FfnKind::linear, 0.0},
              {io::AttentionKind::gqa, 1, io::FfnKind::none, 0.0},
              {io::AttentionKind::gqa, 4, io::FfnKind::swiglu, 1.5}};
  return m;
}

}  // namespace elastic::test
