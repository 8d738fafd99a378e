// A SubnetworkConfig as a JSON file, the form a deployment or an
// architecture search hands to the engine:
//
//   {"layers": [{"heads": 9, "mlp_width": 1536},
//               {"heads": 6, "mlp_width": 768, "skip_attention": true},
//               {"skip_attention": true, "skip_ffn": true},
//               {"heads": 9, "linear_ffn": true}, ...]}
//
// One object per layer, in order. A key left out keeps the layer as stored:
// all its query heads, its whole MLP width, nothing skipped, no half run as
// its linear map. Keys other than these six, values of the wrong type and a
// layer count that differs from the model's are refused with a FileError
// naming the file and the layer; the result is then validated against the
// model (SubnetworkConfig::validate). subnetwork_config_json() writes the
// same form back, every key explicit except the linear ones, written only
// when true.
#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "elastic/io/file_error.hpp"
#include "elastic/io/json_document.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/model/subnetwork_config.hpp"

namespace elastic::model {

namespace detail {

inline constexpr std::uint64_t max_config_file_bytes = 16u << 20;

inline std::int64_t config_integer(const nlohmann::json& value, std::string_view path, std::size_t layer,
                                   const char* key) {
  io::require_file(value.is_number_integer(), path, "layer ", layer, ": \"", key,
                   "\" must be a non-negative integer, found ", io::describe_json(value));
  const auto number = value.get<std::int64_t>();
  io::require_file(number >= 0 && number <= std::numeric_limits<int>::max(), path, "layer ", layer, ": \"", key,
                   "\" must be a non-negative integer that fits in int, found ", number);
  return number;
}

inline bool config_flag(const nlohmann::json& value, std::string_view path, std::size_t layer, const char* key) {
  io::require_file(value.is_boolean(), path, "layer ", layer, ": \"", key, "\" must be true or false, found ",
                   io::describe_json(value));
  return value.get<bool>();
}

}  // namespace detail

// The configuration `document` describes for `model`; `path` names it in errors.
inline SubnetworkConfig parse_subnetwork_config(const nlohmann::json& document, std::string_view path,
                                                const io::ModelDescription& model, int width_multiple = 1) {
  io::require_file(document.is_object() && document.contains("layers") && document.size() == 1, path,
                   "expected an object with one key, \"layers\", found ", io::describe_json(document));
  const nlohmann::json& layers = document.at("layers");
  io::require_file(layers.is_array() && layers.size() == model.layers.size(), path, "expected \"layers\" to be ",
                   "an array of ", model.layers.size(), " objects (one per layer of the model), found ",
                   layers.is_array() ? std::to_string(layers.size()) + " entries" : io::describe_json(layers));
  SubnetworkConfig config = SubnetworkConfig::full(model);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const nlohmann::json& entry = layers[i];
    io::require_file(entry.is_object(), path, "layer ", i, ": expected an object, found ", io::describe_json(entry));
    LayerChoice& choice = config.layers[i];
    for (const auto& [key, value] : entry.items()) {
      if (key == "heads") {
        choice.heads = static_cast<int>(detail::config_integer(value, path, i, "heads"));
      } else if (key == "mlp_width") {
        choice.mlp_width = detail::config_integer(value, path, i, "mlp_width");
      } else if (key == "skip_attention") {
        choice.skip_attention = detail::config_flag(value, path, i, "skip_attention");
      } else if (key == "skip_ffn") {
        choice.skip_ffn = detail::config_flag(value, path, i, "skip_ffn");
      } else if (key == "linear_attention") {
        choice.linear_attention = detail::config_flag(value, path, i, "linear_attention");
      } else if (key == "linear_ffn") {
        choice.linear_ffn = detail::config_flag(value, path, i, "linear_ffn");
      } else {
        io::fail_file(path, "layer ", i, ": unknown key \"", key,
                      "\"; expected heads, mlp_width, skip_attention, skip_ffn, linear_attention or linear_ffn");
      }
    }
  }
  try {
    config.validate(model, width_multiple);
  } catch (const Error& error) {
    io::fail_file(path, error.what());
  }
  return config;
}

// The configuration in the JSON file at `path`, for `model`.
inline SubnetworkConfig read_subnetwork_config(const std::filesystem::path& path, const io::ModelDescription& model,
                                               int width_multiple = 1) {
  return parse_subnetwork_config(io::read_json_file(path, detail::max_config_file_bytes), path.string(), model,
                                 width_multiple);
}

// `config` as the JSON text read_subnetwork_config reads, one layer per
// line, without a final newline. Every line after the first starts with
// `indent`, so the object can sit inside a larger document (a budget table).
inline std::string subnetwork_config_json(const SubnetworkConfig& config, std::string_view indent = "") {
  std::string text = "{\"layers\": [\n";
  for (std::size_t i = 0; i < config.layers.size(); ++i) {
    const LayerChoice& choice = config.layers[i];
    nlohmann::ordered_json layer = {{"heads", choice.heads},
                                    {"mlp_width", choice.mlp_width},
                                    {"skip_attention", choice.skip_attention},
                                    {"skip_ffn", choice.skip_ffn}};
    if (choice.linear_attention) layer["linear_attention"] = true;
    if (choice.linear_ffn) layer["linear_ffn"] = true;
    text += std::string(indent) + "  " + layer.dump() + (i + 1 < config.layers.size() ? ",\n" : "\n");
  }
  return text + std::string(indent) + "]}";
}

}  // namespace elastic::model
