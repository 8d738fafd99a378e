// The block library: every variant of every layer half of an elastic
// checkpoint with its quality cost, measured by Puzzle's replace-one scoring
// (block_scoring.hpp): the parent with that one half replaced, against the
// parent, on calibration tokens. It is the search's cached input, one JSON
// file (`block_library.json`) that later searches reuse:
//
//   {"format": 1, "scored_tokens": 1024, "parent_lm_loss": 2.31,
//    "calibration": {"file": ..., "fnv1a64": ..., "tokens": ..., "window": ...},
//    "layers": [{"attention": [{"variant": "heads:6", "heads": 6, "kl": 0.01, "lm_loss": 2.33}, ...],
//                "ffn": [{"variant": "width:768", "mlp_width": 768, "kl": ..., "lm_loss": ...}, ...]}, ...]}
//
// Variants (search/half_variant.hpp): "heads:H" (the first H query heads,
// whole KV groups), "width:W" (the first W neurons), "none" (the half
// skipped), "linear" (the hidden x hidden map the checkpoint stores for the
// half, fitted in closed form on calibration rows, or the layer's own
// linear block), and for GQA attention "linear_init" (Puzzle's untrained
// W = sum_h O_h V_g(h)), scored for comparison only. Linear variants also
// carry "fit_error", the relative error of their map on the scored rows
// (left out for a linear block the calibration pass does not observe).
// kl is the mean over scored tokens of KL(parent || variant) of the
// next-token distributions; lm_loss the mean next-token loss.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastic/io/file_error.hpp"
#include "elastic/io/json_document.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/io/temporary_file.hpp"
#include "elastic/model/subnetwork_config.hpp"
#include "elastic/search/calibration_pass.hpp"
#include "elastic/search/elastic_checkpoint.hpp"
#include "elastic/search/half_variant.hpp"

namespace elastic::search {

struct ScoredVariant {
  VariantKind kind = VariantKind::prefix;
  int heads = 0;                // attention prefix: query heads used
  std::int64_t mlp_width = 0;   // FFN prefix: neurons used
  double kl = 0.0;              // mean KL(parent || variant) per scored token
  double lm_loss = 0.0;         // mean next-token loss
  double fit_error = std::numeric_limits<double>::quiet_NaN();  // linear kinds: held-out relative error

  HalfVariant variant(Half half) const {
    if (kind != VariantKind::prefix) return {kind, 0};
    return HalfVariant::prefix(half == Half::attention ? heads : mlp_width);
  }

  // "heads:6", "width:768", "none", "linear", "linear_init".
  std::string name(Half half) const { return variant(half).name(half); }

  // Whether the elastic checkpoint runs it through a SubnetworkConfig.
  bool runs_as_subnetwork() const { return kind != VariantKind::linear_init; }

  // `choice` with this variant in the given half (runs_as_subnetwork()).
  void apply(Half half, model::LayerChoice& choice) const { choose_half_variant(choice, half, variant(half)); }
};

struct LayerVariants {
  std::vector<ScoredVariant> attention;
  std::vector<ScoredVariant> ffn;

  std::vector<ScoredVariant>& of(Half half) { return half == Half::attention ? attention : ffn; }
  const std::vector<ScoredVariant>& of(Half half) const { return half == Half::attention ? attention : ffn; }
};

struct BlockLibrary {
  std::int64_t scored_tokens = 0;
  double parent_lm_loss = 0.0;
  CalibrationRecord calibration;
  std::vector<LayerVariants> layers;

  nlohmann::ordered_json to_json() const {
    nlohmann::ordered_json layers_json = nlohmann::ordered_json::array();
    for (const LayerVariants& layer : layers) {
      nlohmann::ordered_json halves = nlohmann::ordered_json::object();
      for (const Half half : {Half::attention, Half::ffn}) {
        nlohmann::ordered_json variants = nlohmann::ordered_json::array();
        for (const ScoredVariant& variant : layer.of(half)) {
          nlohmann::ordered_json entry = {{"variant", variant.name(half)}};
          if (variant.kind == VariantKind::prefix) {
            if (half == Half::attention) entry["heads"] = variant.heads;
            else entry["mlp_width"] = variant.mlp_width;
          }
          entry["kl"] = variant.kl;
          entry["lm_loss"] = variant.lm_loss;
          if (std::isfinite(variant.fit_error)) entry["fit_error"] = variant.fit_error;
          variants.push_back(std::move(entry));
        }
        halves[std::string(half_name(half))] = std::move(variants);
      }
      layers_json.push_back(std::move(halves));
    }
    return {{"format", 1},
            {"scored_tokens", scored_tokens},
            {"parent_lm_loss", parent_lm_loss},
            {"calibration", calibration.to_json()},
            {"layers", std::move(layers_json)}};
  }
};

namespace detail {

inline double library_number(const nlohmann::json& object, const char* key, std::string_view path,
                             const std::string& where) {
  io::require_file(object.contains(key) && object[key].is_number() && std::isfinite(object[key].get<double>()), path,
                   where, ": expected a finite number for \"", key, "\", found ",
                   object.contains(key) ? io::describe_json(object[key]) : std::string("none"));
  return object[key].get<double>();
}

// A non-negative whole number of at most `most` under `key`.
inline std::int64_t library_count(const nlohmann::json& object, const char* key, std::string_view path,
                                  const std::string& where,
                                  std::int64_t most = std::numeric_limits<std::int64_t>::max()) {
  const nlohmann::json* value = object.contains(key) ? &object[key] : nullptr;
  io::require_file(value && value->is_number_integer() && value->get<std::int64_t>() >= 0 &&
                       value->get<std::int64_t>() <= most,
                   path, where, ": expected a non-negative whole number",
                   most < std::numeric_limits<std::int64_t>::max() ? " of at most " + std::to_string(most) : "",
                   " for \"", key, "\", found ", value ? io::describe_json(*value) : std::string("none"));
  return value->get<std::int64_t>();
}

inline std::string library_text(const nlohmann::json& object, const char* key, std::string_view path) {
  const nlohmann::json* value = object.contains(key) ? &object[key] : nullptr;
  io::require_file(value && value->is_string(), path, "\"calibration\": expected a string for \"", key,
                   "\", found ", value ? io::describe_json(*value) : std::string("none"));
  return value->get<std::string>();
}

// One variant entry of `half` in layer `layer`, checked against the model.
inline ScoredVariant library_variant(const nlohmann::json& entry, Half half, std::size_t layer,
                                     const io::ModelDescription& model, std::string_view path) {
  const std::string where = elastic::detail::concat("layer ", layer, " ", half_name(half));
  io::require_file(entry.is_object() && entry.contains("variant") && entry["variant"].is_string(), path, where,
                   ": expected variant objects with a \"variant\" name, found ", io::describe_json(entry));
  const std::string name = entry["variant"].get<std::string>();
  ScoredVariant variant;
  const io::LayerPlan& plan = model.layers[layer];
  if (name == "none") {
    variant.kind = VariantKind::none;
  } else if (name == "linear") {
    io::require_file(runs_linear(plan, half), path, where,
                     ": variant \"linear\", but the model stores no linear map for this half");
    variant.kind = VariantKind::linear;
    if (entry.contains("fit_error")) variant.fit_error = library_number(entry, "fit_error", path, where);
  } else if (name == "linear_init" && half == Half::attention && plan.attention == io::AttentionKind::gqa) {
    variant.kind = VariantKind::linear_init;
    variant.fit_error = library_number(entry, "fit_error", path, where);
  } else if (half == Half::attention && name.starts_with("heads:") && plan.attention == io::AttentionKind::gqa) {
    variant.heads = static_cast<int>(library_count(entry, "heads", path, where, std::numeric_limits<int>::max()));
    io::require_file(name == "heads:" + std::to_string(variant.heads) && variant.heads >= 1 &&
                         variant.heads <= model.heads && variant.heads % (model.heads / plan.kv_heads) == 0,
                     path, where, ": variant \"", name, "\" must use whole KV groups of 1 to ", model.heads,
                     " query heads, found ", variant.heads);
  } else if (half == Half::ffn && name.starts_with("width:") && plan.ffn == io::FfnKind::swiglu) {
    variant.mlp_width = library_count(entry, "mlp_width", path, where);
    io::require_file(name == "width:" + std::to_string(variant.mlp_width) && variant.mlp_width >= 1 &&
                         variant.mlp_width <= plan.intermediate,
                     path, where, ": variant \"", name, "\" must use 1 to ", plan.intermediate, " neurons, found ",
                     variant.mlp_width);
  } else {
    throw io::FileError(elastic::detail::concat(path, ": ", where, ": unknown variant \"", name, "\""));
  }
  variant.kl = library_number(entry, "kl", path, where);
  variant.lm_loss = library_number(entry, "lm_loss", path, where);
  io::require_file(variant.kl >= -1e-9, path, where, ": variant \"", name, "\" has a negative KL divergence ",
                   variant.kl);
  return variant;
}

}  // namespace detail

// The block library in `json` for `model`, checked: format, one entry per
// layer, every variant named as above and fitting the layer; `path` names
// the file in errors.
inline BlockLibrary parse_block_library(const nlohmann::json& json, std::string_view path,
                                        const io::ModelDescription& model) {
  io::require_file(json.is_object(), path, "expected a block library object, found ", io::describe_json(json));
  io::require_file(json.contains("format") && json.at("format") == 1, path, "expected \"format\": 1, found ",
                   json.contains("format") ? io::describe_json(json.at("format")) : "no \"format\" key");
  BlockLibrary library;
  library.parent_lm_loss = detail::library_number(json, "parent_lm_loss", path, "the library");
  library.scored_tokens = detail::library_count(json, "scored_tokens", path, "the library");
  if (json.contains("calibration")) {
    const nlohmann::json& calibration = json.at("calibration");
    io::require_file(calibration.is_object(), path, "expected \"calibration\" to be an object, found ",
                     io::describe_json(calibration));
    library.calibration = {detail::library_text(calibration, "file", path),
                           detail::library_text(calibration, "fnv1a64", path),
                           detail::library_count(calibration, "tokens", path, "\"calibration\""),
                           static_cast<int>(detail::library_count(calibration, "window", path, "\"calibration\"",
                                                                  std::numeric_limits<int>::max()))};
  }
  io::require_file(json.contains("layers") && json["layers"].is_array() && json["layers"].size() == model.layers.size(),
                   path, "expected ", model.layers.size(), " layers (the model's), found ",
                   json.contains("layers") && json["layers"].is_array() ? json["layers"].size() : 0);
  for (std::size_t i = 0; i < model.layers.size(); ++i) {
    LayerVariants& layer = library.layers.emplace_back();
    for (const Half half : {Half::attention, Half::ffn}) {
      const nlohmann::json& layer_json = json["layers"][i];
      const char* key = half == Half::attention ? "attention" : "ffn";
      io::require_file(layer_json.is_object() && layer_json.contains(key) && layer_json[key].is_array(), path,
                       "layer ", i, ": expected an array of \"", key, "\" variants");
      for (const nlohmann::json& entry : layer_json[key])
        layer.of(half).push_back(detail::library_variant(entry, half, i, model, path));
    }
  }
  return library;
}

// Reads and checks the block library in the file at `path`, written for
// `model` (parse_block_library).
inline BlockLibrary read_block_library(const std::filesystem::path& path, const io::ModelDescription& model) {
  return parse_block_library(io::read_json_file(path, 64u << 20), path.string(), model);
}

inline void write_block_library(const std::filesystem::path& path, const BlockLibrary& library) {
  const std::string text = library.to_json().dump(1) + "\n";
  io::TemporaryFile file(path);
  file.write(std::as_bytes(std::span(text)));
  file.commit();
}

}  // namespace elastic::search
