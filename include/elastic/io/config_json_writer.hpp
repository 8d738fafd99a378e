// Writing a ModelDescription as a Hugging Face `config.json`, the inverse of
// model_config.hpp: a Llama description (every layer GQA with the same KV
// heads and a SwiGLU of the same width) as `model_type: "llama"`, a
// heterogeneous one as `"nemotron-nas"` with one `block_configs` entry per
// layer. What the format cannot say is refused before anything is written:
// a Llama with layers that differ, an FFN width DeciLM's ffn_mult rule cannot
// give, Q/K rows in the interleaved RoPE layout (HF checkpoints are
// rotate-half, and the config has no key to say otherwise). The file is
// written under a temporary name and renamed into place once complete.
#pragma once

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "elastic/core/error.hpp"
#include "elastic/io/model_config.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/io/temporary_file.hpp"
#include "elastic/io/tensor_type.hpp"

namespace elastic::io {

namespace config_json_detail {

using nlohmann::ordered_json;

// The shortest decimal that reads back as `value`, so 1e-5f is written
// 1e-05 and not 9.999999747378752e-06.
inline double shortest_decimal(float value) {
  char text[64];
  const auto written = std::to_chars(text, text + sizeof text, value);
  double decimal = 0.0;
  std::from_chars(text, written.ptr, decimal);
  return decimal;
}

inline std::string_view torch_dtype_name(TensorType dtype) {
  switch (dtype) {
    case TensorType::f32: return "float32";
    case TensorType::bf16: return "bfloat16";
    case TensorType::f16: return "float16";
    default:
      throw Error(elastic::detail::concat("config.json: expected torch_dtype F32, BF16 or F16, found ",
                                          type_name(dtype)));
  }
}

inline ordered_json rope_scaling(const RopeConfig& rope) {
  if (!rope.llama3_scaling) return nullptr;
  return {{"factor", shortest_decimal(rope.llama3.factor)},
          {"low_freq_factor", shortest_decimal(rope.llama3.low_freq_factor)},
          {"high_freq_factor", shortest_decimal(rope.llama3.high_freq_factor)},
          {"original_max_position_embeddings", rope.llama3.original_max_positions},
          {"rope_type", "llama3"}};
}

// The FFN width DeciLM derives from `ffn_mult`, computed by the reader itself.
inline std::int64_t width_of_ffn_mult(double ffn_mult, std::int64_t hidden) {
  const nlohmann::json ffn = {{"ffn_mult", ffn_mult}};
  return detail::nemotron_ffn_width(detail::ConfigObject(ffn, "config.json", "ffn"), hidden);
}

// The ffn_mult giving `width` under int(2 * ffn_mult * hidden / 3) rounded up
// to a multiple of 256: of the values with the fewest decimal places that
// give it, the smallest. Error naming the layer when no value gives it.
inline double ffn_mult_for(std::int64_t width, std::int64_t hidden, std::size_t layer) {
  require(width % 256 == 0, "config.json: nemotron-nas layer ", layer, " has FFN width ", width,
          ", which block_configs cannot express: ffn_mult gives int(2 * ffn_mult * hidden_size / 3) rounded up "
          "to a multiple of 256 (hidden_size ",
          hidden, "), so expected a multiple of 256");
  // Widths in [width - 255, width] before rounding up give `width`.
  const double lowest = 3.0 * static_cast<double>(width - 255) / (2.0 * static_cast<double>(hidden));
  for (int places = 0; places <= 17; ++places) {
    const double step = std::pow(10.0, -places);
    char text[64];
    const auto written = std::to_chars(text, text + sizeof text, lowest, std::chars_format::fixed, places);
    double candidate = 0.0;
    std::from_chars(text, written.ptr, candidate);
    // `candidate` is `lowest` rounded to nearest: it or the next value up is the first one at or above `lowest`.
    for (int next = 0; next < 2; ++next, candidate += step) {
      const auto rounded = std::to_chars(text, text + sizeof text, candidate, std::chars_format::fixed, places);
      double mult = 0.0;
      std::from_chars(text, rounded.ptr, mult);
      if (mult > 0.0 && width_of_ffn_mult(mult, hidden) == width) return mult;
    }
  }
  throw Error(elastic::detail::concat("config.json: nemotron-nas layer ", layer, " has FFN width ", width,
                                      ", which no ffn_mult gives for hidden_size ", hidden));
}

inline ordered_json block_config(const ModelDescription& model, std::size_t index) {
  const LayerPlan& layer = model.layers[index];
  const bool gqa = layer.attention == AttentionKind::gqa;
  const bool swiglu = layer.ffn == FfnKind::swiglu;
  return {{"attention",
           {{"n_heads_in_group", gqa ? ordered_json(model.heads / layer.kv_heads) : ordered_json(nullptr)},
            {"no_op", layer.attention == AttentionKind::none},
            {"replace_with_linear", layer.attention == AttentionKind::linear}}},
          {"ffn",
           {{"ffn_mult", swiglu ? ordered_json(ffn_mult_for(layer.intermediate, model.hidden, index))
                                : ordered_json(nullptr)},
            {"no_op", layer.ffn == FfnKind::none},
            {"replace_with_linear", layer.ffn == FfnKind::linear}}}};
}

// Llama layers must all be GQA + SwiGLU with the first layer's KV heads and width.
inline void require_uniform_llama(const ModelDescription& model) {
  const LayerPlan& first = model.layers.front();
  for (std::size_t i = 0; i < model.layers.size(); ++i) {
    const LayerPlan& layer = model.layers[i];
    require(layer.attention == AttentionKind::gqa && layer.ffn == FfnKind::swiglu, "config.json: a llama config ",
            "expects every layer to be gqa attention with a swiglu FFN, found layer ", i, " with ",
            kind_name(layer.attention), " attention and a ", kind_name(layer.ffn),
            " FFN (write it as nemotron-nas)");
    require(layer.kv_heads == first.kv_heads && layer.intermediate == first.intermediate, "config.json: a llama ",
            "config expects every layer alike, found layer 0 with ", first.kv_heads, " KV heads and FFN width ",
            first.intermediate, " but layer ", i, " with ", layer.kv_heads, " and ", layer.intermediate,
            " (write it as nemotron-nas)");
  }
}

}  // namespace config_json_detail

// The config.json of `model` with weights stored as `dtype` (F32, BF16 or
// F16). Throws Error for what a config cannot say (see the top of the file).
inline nlohmann::ordered_json config_json(const ModelDescription& model, TensorType dtype) {
  using namespace config_json_detail;
  model.validate("config.json");
  const bool nemotron = model.architecture == "nemotron-nas";
  require(nemotron || model.architecture == "llama", "config.json: expected architecture \"llama\" or ",
          "\"nemotron-nas\", found \"", model.architecture, "\"");
  require(model.rope.layout == RopeLayout::rotate_half, "config.json: expected Q/K rows in the rotate-half RoPE ",
          "layout (the only one Hugging Face configs mean), found interleaved: permute the Q and K rows to ",
          "rotate-half and set rope.layout accordingly before writing");
  if (!nemotron) require_uniform_llama(model);
  const std::string_view dtype_name = torch_dtype_name(dtype);

  ordered_json config;
  config["architectures"] = {nemotron ? "DeciLMForCausalLM" : "LlamaForCausalLM"};
  config["model_type"] = model.architecture;
  if (!model.name.empty()) config["_name_or_path"] = model.name;
  config["hidden_size"] = model.hidden;
  config["intermediate_size"] = nemotron ? ordered_json(nullptr) : ordered_json(model.layers.front().intermediate);
  config["num_attention_heads"] = model.heads;
  config["num_key_value_heads"] = nemotron ? ordered_json(nullptr) : ordered_json(model.layers.front().kv_heads);
  config["num_hidden_layers"] = model.layers.size();
  config["head_dim"] = model.head_dim;
  if (nemotron) {
    config["block_configs"] = ordered_json::array();
    for (std::size_t i = 0; i < model.layers.size(); ++i) config["block_configs"].push_back(block_config(model, i));
  }
  config["hidden_act"] = "silu";
  config["attention_bias"] = false;
  config["mlp_bias"] = false;
  config["rms_norm_eps"] = shortest_decimal(model.rms_epsilon);
  config["rope_theta"] = shortest_decimal(model.rope.theta);
  config["rope_scaling"] = rope_scaling(model.rope);
  config["max_position_embeddings"] = model.rope.max_positions;
  config["vocab_size"] = model.vocab;
  config["tie_word_embeddings"] = model.tied_embeddings;
  config["bos_token_id"] = model.bos_id ? ordered_json(*model.bos_id) : ordered_json(nullptr);
  config["eos_token_id"] = model.eos_ids.empty()      ? ordered_json(nullptr)
                           : model.eos_ids.size() == 1 ? ordered_json(model.eos_ids.front())
                                                       : ordered_json(model.eos_ids);
  config["torch_dtype"] = dtype_name;
  return config;
}

// Writes config_json(model, dtype) to `path`, with the keys of `extra` (an
// object, or null) added at the top level; an extra key the config already
// has is an Error. Nothing is written when any check fails.
inline void write_config_json(const std::filesystem::path& path, const ModelDescription& model, TensorType dtype,
                              const nlohmann::ordered_json& extra = {}) {
  nlohmann::ordered_json config = config_json(model, dtype);
  require(extra.is_null() || extra.is_object(), path.string(), ": expected the extra config keys as a JSON object, ",
          "found ", extra.type_name());
  if (extra.is_object())
    for (const auto& [key, value] : extra.items()) {
      if (const auto own = config.find(key); own != config.end())
        throw Error(elastic::detail::concat(path.string(), ": extra key \"", key, "\" collides with the config's own \"",
                                            key, "\" (", own->dump(), ")"));
      config[key] = value;
    }
  std::string text;
  try {
    text = config.dump(2) + "\n";
  } catch (const nlohmann::json::exception& error) {
    throw Error(path.string() + ": expected text that is valid UTF-8: " + error.what());
  }
  TemporaryFile file(path);
  file.write(std::as_bytes(std::span(text)));
  file.commit();
}

}  // namespace elastic::io
