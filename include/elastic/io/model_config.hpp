// Reading a Hugging Face `config.json` into a ModelDescription, for the two
// families the layers implement: Llama (`model_type: "llama"`) and
// Nemotron-NAS (`"nemotron-nas"`, DeciLMForCausalLM), whose `block_configs`
// give each layer its own attention (GQA with its own KV heads, a linear
// replacement, or nothing) and FFN (SwiGLU of its own width, a linear
// replacement, or nothing). A config asking for anything the layers do not
// compute (another model type, biases, a sliding window, another
// activation, a RoPE scaling other than Llama 3's) is an error naming what
// is supported, never a silently different model. Types are checked key by
// key, and errors name the key, what was expected and what was found.
#pragma once

#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastic/io/file_error.hpp"
#include "elastic/io/mapped_file.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/io/json_document.hpp"
#include "elastic/math/rope.hpp"

namespace elastic::io {

namespace detail {

// `value` when it is an integer in [min, max] (0 <= max).
inline std::optional<std::int64_t> integer_in(const nlohmann::json& value, std::int64_t min, std::int64_t max) {
  if (value.is_number_unsigned()) {
    const auto unsigned_value = value.get<std::uint64_t>();
    if (unsigned_value > static_cast<std::uint64_t>(max)) return std::nullopt;
    const auto integer = static_cast<std::int64_t>(unsigned_value);
    return integer >= min ? std::optional(integer) : std::nullopt;
  }
  if (!value.is_number_integer()) return std::nullopt;
  const auto integer = value.get<std::int64_t>();
  return integer >= min && integer <= max ? std::optional(integer) : std::nullopt;
}

// Typed access to one JSON object's keys; `where` names the object in errors
// ("block_configs[3].attention"; empty for the config itself).
class ConfigObject {
 public:
  ConfigObject(const nlohmann::json& object, std::string_view path, std::string where)
      : object_(object), path_(path), where_(std::move(where)) {
    require_file(object.is_object(), path, "expected ", where_.empty() ? "the config" : where_,
                 " to be a JSON object, found ", describe_json(object));
  }

  // The value of `key`, or nullptr when it is absent or null.
  const nlohmann::json* find(std::string_view key) const {
    const auto found = object_.find(key);
    return found == object_.end() || found->is_null() ? nullptr : &*found;
  }
  bool has(std::string_view key) const { return find(key) != nullptr; }

  std::int64_t integer(std::string_view key, std::int64_t min, std::int64_t max) const {
    const nlohmann::json& value = required(key);
    require_file(value.is_number_integer(), path_, "expected ", name(key), " to be an integer, found ",
                 describe_json(value));
    const std::optional<std::int64_t> integer = integer_in(value, min, max);
    require_file(integer.has_value(), path_, "expected ", name(key), " in [", min, ", ", max, "], found ",
                 value.dump());
    return *integer;
  }
  std::int64_t integer_or(std::string_view key, std::int64_t min, std::int64_t max, std::int64_t fallback) const {
    return has(key) ? integer(key, min, max) : fallback;
  }

  // A finite number (integer or not) that fits a float.
  double number(std::string_view key) const {
    const nlohmann::json& value = required(key);
    require_file(value.is_number(), path_, "expected ", name(key), " to be a number, found ", describe_json(value));
    const double number = value.get<double>();
    require_file(std::isfinite(number) && std::abs(number) <= std::numeric_limits<float>::max(), path_, "expected ",
                 name(key), " to be a finite float, found ", value.dump());
    return number;
  }
  double number_or(std::string_view key, double fallback) const { return has(key) ? number(key) : fallback; }

  bool boolean_or(std::string_view key, bool fallback) const {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return fallback;
    require_file(value->is_boolean(), path_, "expected ", name(key), " to be true or false, found ",
                 describe_json(*value));
    return value->get<bool>();
  }

  const std::string& string(std::string_view key) const {
    const nlohmann::json& value = required(key);
    require_file(value.is_string(), path_, "expected ", name(key), " to be a string, found ", describe_json(value));
    return value.get_ref<const std::string&>();
  }

  ConfigObject object(std::string_view key) const { return {required(key), path_, name(key)}; }

  const nlohmann::json& required(std::string_view key) const {
    const nlohmann::json* value = find(key);
    require_file(value != nullptr, path_, "expected a value for ", name(key), ", found none");
    return *value;
  }

  std::string name(std::string_view key) const { return where_.empty() ? std::string(key) : where_ + "." + std::string(key); }
  std::string_view path() const { return path_; }

 private:
  const nlohmann::json& object_;
  std::string_view path_;
  std::string where_;
};

// Bounds far above any real model that keep every derived size (weights,
// KV-cache bytes per token) well inside 64 bits.
inline constexpr std::int64_t max_config_hidden = 1 << 20;
inline constexpr std::int64_t max_config_heads = 1 << 16;  // query heads, KV heads, head size
inline constexpr std::int64_t max_config_width = 1 << 26;  // FFN width
inline constexpr std::int64_t max_config_layers = 1 << 14;

// Rejects keys whose presence (true, non-null, not silu) asks for something
// the layers do not compute.
inline void require_supported_features(const ConfigObject& config) {
  for (const char* key : {"attention_bias", "mlp_bias"})
    require_file(!config.boolean_or(key, false), config.path(), "expected ", key,
                 " false or absent, found true: biases are not supported");
  require_file(!config.has("sliding_window"), config.path(), "expected sliding_window null or absent, found ",
               config.has("sliding_window") ? config.required("sliding_window").dump() : "",
               ": sliding-window attention is not supported");
  if (config.has("hidden_act")) {
    const std::string& act = config.string("hidden_act");
    require_file(act == "silu", config.path(), "expected hidden_act \"silu\" (SwiGLU), found \"", act, "\"");
  }
}

// `rope_parameters` (newer) or `rope_scaling` (older): either may be absent;
// if both are given they must agree on the scaling (only the newer may also
// hold rope_theta).
inline std::optional<ConfigObject> rope_parameters(const ConfigObject& config) {
  const nlohmann::json* newer = config.find("rope_parameters");
  const nlohmann::json* older = config.find("rope_scaling");
  const auto scaling = [](nlohmann::json value) {
    if (value.is_object()) value.erase("rope_theta");
    return value;
  };
  require_file(newer == nullptr || older == nullptr || scaling(*newer) == scaling(*older), config.path(),
               "rope_parameters and rope_scaling disagree: expected one of them, or the same value in both");
  if (newer != nullptr) return ConfigObject(*newer, config.path(), "rope_parameters");
  if (older != nullptr) return ConfigObject(*older, config.path(), "rope_scaling");
  return std::nullopt;
}

inline RopeConfig parse_rope(const ConfigObject& config) {
  RopeConfig rope;
  rope.layout = RopeLayout::rotate_half;  // HF checkpoints' Q/K row order
  rope.max_positions = static_cast<int>(config.integer_or("max_position_embeddings", 1, INT32_MAX, 2048));
  double theta = config.number_or("rope_theta", 10000.0);
  if (const std::optional<ConfigObject> parameters = rope_parameters(config)) {
    if (parameters->has("rope_theta")) {
      const double own_theta = parameters->number("rope_theta");
      require_file(!config.has("rope_theta") || own_theta == theta, config.path(), "rope_theta ", theta,
                   " and rope_parameters.rope_theta ", own_theta, " disagree");
      theta = own_theta;
    }
    const char* type_key = parameters->has("rope_type") ? "rope_type" : "type";
    const std::string type = parameters->has(type_key) ? parameters->string(type_key) : "default";
    require_file(type == "default" || type == "llama3", config.path(), "unsupported RoPE scaling ",
                 parameters->name(type_key), " \"", type, "\": supported are none, \"default\" and \"llama3\"");
    if (type == "llama3") {
      rope.llama3_scaling = true;
      rope.llama3.factor = static_cast<float>(parameters->number("factor"));
      rope.llama3.low_freq_factor = static_cast<float>(parameters->number("low_freq_factor"));
      rope.llama3.high_freq_factor = static_cast<float>(parameters->number("high_freq_factor"));
      rope.llama3.original_max_positions =
          static_cast<int>(parameters->integer("original_max_position_embeddings", 1, INT32_MAX));
      const Llama3RopeScaling& s = rope.llama3;
      require_file(s.factor > 0.0f && s.low_freq_factor > 0.0f && s.high_freq_factor > s.low_freq_factor,
                   config.path(), "llama3 RoPE scaling expects factor > 0 and 0 < low_freq_factor < high_freq_factor, ",
                   "found ", s.factor, ", ", s.low_freq_factor, ", ", s.high_freq_factor);
    }
  }
  rope.theta = static_cast<float>(theta);
  return rope;
}

inline std::vector<int> parse_eos_ids(const ConfigObject& config) {
  const nlohmann::json* value = config.find("eos_token_id");
  if (value == nullptr) return {};
  const nlohmann::json list = value->is_array() ? *value : nlohmann::json::array({*value});
  std::vector<int> ids;
  for (const nlohmann::json& id : list) {
    const std::optional<std::int64_t> integer = integer_in(id, 0, INT32_MAX);
    require_file(integer.has_value(), config.path(), "expected eos_token_id to be a non-negative integer or a list of them, found ",
                 describe_json(id));
    ids.push_back(static_cast<int>(*integer));
  }
  return ids;
}

// Every layer alike: GQA with the config's KV heads, SwiGLU of its width.
inline std::vector<LayerPlan> llama_layers(const ConfigObject& config, int heads, std::int64_t layer_count) {
  const LayerPlan layer{AttentionKind::gqa,
                        static_cast<int>(config.integer_or("num_key_value_heads", 1, max_config_heads, heads)),
                        FfnKind::swiglu, config.integer("intermediate_size", 1, max_config_width)};
  return std::vector<LayerPlan>(static_cast<std::size_t>(layer_count), layer);
}

// DeciLM's FFN width: int(2 * ffn_mult * hidden / 3) rounded up to a multiple of 256.
inline std::int64_t nemotron_ffn_width(const ConfigObject& ffn, std::int64_t hidden) {
  const double ffn_mult = ffn.number("ffn_mult");
  const double width = 2.0 * ffn_mult * static_cast<double>(hidden) / 3.0;
  require_file(ffn_mult > 0.0 && width <= static_cast<double>(max_config_width - 255), ffn.path(), "expected ",
               ffn.name("ffn_mult"), " to give a positive FFN width of at most ", max_config_width, ", found ",
               ffn_mult);
  const auto truncated = static_cast<std::int64_t>(width);
  return (truncated + 255) / 256 * 256;
}

// Whether a block half is removed, replaced by a linear map, or kept.
enum class BlockChoice { kept, linear, none };

inline BlockChoice block_choice(const ConfigObject& block) {
  const bool no_op = block.boolean_or("no_op", false);
  const bool linear = block.boolean_or("replace_with_linear", false);
  require_file(!(no_op && linear), block.path(), "expected at most one of ", block.name("no_op"), " and ",
               block.name("replace_with_linear"), ", found both true");
  return no_op ? BlockChoice::none : linear ? BlockChoice::linear : BlockChoice::kept;
}

inline LayerPlan nemotron_layer(const ConfigObject& block, int heads, std::int64_t hidden) {
  LayerPlan layer;
  const ConfigObject attention = block.object("attention");
  require_file(!attention.has("window_length"), block.path(), "expected ", attention.name("window_length"),
               " null or absent: windowed attention is not supported");
  switch (block_choice(attention)) {
    case BlockChoice::none: layer.attention = AttentionKind::none; break;
    case BlockChoice::linear: layer.attention = AttentionKind::linear; break;
    case BlockChoice::kept: {
      const std::int64_t group = attention.integer("n_heads_in_group", 1, heads);
      require_file(heads % group == 0, block.path(), "expected ", attention.name("n_heads_in_group"),
                   " to divide the ", heads, " query heads, found ", group);
      layer.attention = AttentionKind::gqa;
      layer.kv_heads = static_cast<int>(heads / group);
    }
  }
  const ConfigObject ffn = block.object("ffn");
  switch (block_choice(ffn)) {
    case BlockChoice::none: layer.ffn = FfnKind::none; break;
    case BlockChoice::linear: layer.ffn = FfnKind::linear; break;
    case BlockChoice::kept:
      layer.ffn = FfnKind::swiglu;
      layer.intermediate = nemotron_ffn_width(ffn, hidden);
  }
  return layer;
}

inline std::vector<LayerPlan> nemotron_layers(const ConfigObject& config, int heads, std::int64_t hidden,
                                              std::int64_t layer_count) {
  const nlohmann::json& blocks = config.required("block_configs");
  require_file(blocks.is_array() && blocks.size() == static_cast<std::size_t>(layer_count), config.path(),
               "expected block_configs to be a list of num_hidden_layers = ", layer_count, " blocks, found ",
               blocks.is_array() ? std::to_string(blocks.size()) + " blocks" : describe_json(blocks));
  std::vector<LayerPlan> layers;
  for (std::size_t i = 0; i < blocks.size(); ++i)
    layers.push_back(nemotron_layer({blocks[i], config.path(), "block_configs[" + std::to_string(i) + "]"},
                                    heads, hidden));
  return layers;
}

// An elastic checkpoint's "elastic" key may mark layers whose GQA attention
// or SwiGLU FFN also stores a fitted linear map to run in its place:
// "elastic": {"layers": [{"linear_attention": true, "linear_ffn": false, ...}, ...]}.
// The rest of the key is the search's (search/elastic_checkpoint.hpp).
inline void read_stored_linear_maps(const ConfigObject& config, std::vector<LayerPlan>& layers) {
  if (!config.has("elastic")) return;
  const ConfigObject elastic = config.object("elastic");
  if (!elastic.has("layers")) return;
  const nlohmann::json& list = elastic.required("layers");
  require_file(list.is_array() && list.size() == layers.size(), config.path(), "expected elastic.layers to list the ",
               layers.size(), " layers, found ",
               list.is_array() ? std::to_string(list.size()) + " entries" : describe_json(list));
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const ConfigObject layer(list[i], config.path(), "elastic.layers[" + std::to_string(i) + "]");
    layers[i].attention_has_linear = layer.boolean_or("linear_attention", false);
    layers[i].ffn_has_linear = layer.boolean_or("linear_ffn", false);
  }
}

}  // namespace detail

// The model `json_text` (a config.json) describes; `path` names it in errors.
inline ModelDescription parse_model_config(std::string_view json_text, std::string_view path) {
  const nlohmann::json document = parse_json_document(json_text, path);
  const detail::ConfigObject config(document, path, "");
  detail::require_supported_features(config);

  ModelDescription model;
  model.architecture = config.string("model_type");
  const bool nemotron = model.architecture == "nemotron-nas";
  require_file(nemotron || model.architecture == "llama", path, "unsupported model_type \"", model.architecture,
               "\": supported are \"llama\" and \"nemotron-nas\"");
  if (const nlohmann::json* name = config.find("_name_or_path"); name != nullptr && name->is_string())
    model.name = name->get<std::string>();

  model.hidden = config.integer("hidden_size", 1, detail::max_config_hidden);
  model.vocab = config.integer("vocab_size", 1, INT32_MAX);
  model.heads = static_cast<int>(config.integer("num_attention_heads", 1, detail::max_config_heads));
  if (config.has("head_dim")) {
    model.head_dim = static_cast<int>(config.integer("head_dim", 1, detail::max_config_heads));
  } else {
    require_file(model.hidden % model.heads == 0, path, "without head_dim, expected num_attention_heads ", model.heads,
                 " to divide hidden_size ", model.hidden);
    model.head_dim = static_cast<int>(model.hidden / model.heads);
  }
  const std::int64_t layer_count = config.integer("num_hidden_layers", 1, detail::max_config_layers);
  model.layers = nemotron ? detail::nemotron_layers(config, model.heads, model.hidden, layer_count)
                          : detail::llama_layers(config, model.heads, layer_count);
  detail::read_stored_linear_maps(config, model.layers);

  model.rms_epsilon = static_cast<float>(config.number_or("rms_norm_eps", 1e-6));
  model.rope = detail::parse_rope(config);
  model.tied_embeddings = config.boolean_or("tie_word_embeddings", false);
  if (config.has("bos_token_id")) model.bos_id = static_cast<int>(config.integer("bos_token_id", 0, INT32_MAX));
  model.eos_ids = detail::parse_eos_ids(config);
  model.validate(path);
  return model;
}

inline constexpr std::uintmax_t max_model_config_bytes = 16u << 20;

// Reads `path`: a config.json, or a folder holding one.
inline ModelDescription read_model_config(const std::filesystem::path& path) {
  const std::filesystem::path file = is_folder(path) ? path / "config.json" : path;
  const MappedFile mapped(file.string());
  require_file(mapped.size() <= max_model_config_bytes, mapped.path(), "expected a config of at most ",
               max_model_config_bytes, " bytes, found ", mapped.size());
  return parse_model_config({reinterpret_cast<const char*>(mapped.bytes().data()), mapped.size()}, mapped.path());
}

}  // namespace elastic::io
