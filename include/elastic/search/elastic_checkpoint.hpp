// Writing an elastic checkpoint: a Hugging Face folder (model.safetensors,
// config.json, tokenizer.json, tokenizer_config.json) whose neurons and
// heads are stored in importance order, so every width is a prefix, with
// what makes it elastic under config.json's "elastic" key:
//
//   "elastic": {"format": 1, "ranking": {"neurons": "flap", "heads": "minitron"},
//               "calibration": {"file": "...", "fnv1a64": "...", "tokens": N, "window": W},
//               "linear_fit": {"tokens": 8192, "relative_ridge": 0.001},
//               "layers": [{"mlp_widths": [1536, 1152, 768, 384], "heads": [9, 6, 3],
//                           "attention_contribution": 0.11, "ffn_contribution": 0.19,
//                           "linear_attention": true, "linear_ffn": true}, ...]}
//
// per layer the MLP widths and query-head counts it is meant to run at
// (whole KV groups; empty for a half that is not SwiGLU / GQA), its
// halves' measured share of the residual stream, and whether a half stores
// a linear map fitted in closed form (search/linear_fit.hpp) that a
// sub-network may run in its place: model.layers.{i}.self_attn.linear_attn
// .weight and mlp.linear_mlp.weight, Nemotron-NAS's names, beside the
// block's own tensors. "linear_fit" says on how many calibration tokens
// (the first ones) and with what ridge the maps were fitted. Transformers
// reads the folder as a plain llama / nemotron-nas model and ignores the
// key and the extra tensors. Q/K rows
// are written in Hugging Face's rotate-half pair layout whatever the source
// used (a GGUF file's interleaved pairs are reordered inside each head).
// The folder is written under a temporary name beside the destination and
// renamed into place once complete; an existing destination is refused.
// read_elastic_layer_sets reads the sets back for the later stages (the
// latency tables measure every variant they name).
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/io/config_json_writer.hpp"
#include "elastic/io/file_error.hpp"
#include "elastic/io/json_document.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/io/safetensors_writer.hpp"
#include "elastic/io/tensor_roles.hpp"
#include "elastic/io/tokenizer_json_writer.hpp"
#include "elastic/io/tokenizer_spec.hpp"
#include "elastic/model/model_weights.hpp"
#include "elastic/model/weight_binding.hpp"
#include "elastic/search/importance.hpp"

namespace elastic::search {

// FNV-1a (64-bit) of `bytes`, as 16 hex digits: names the calibration text.
inline std::string fnv1a64_hex(std::string_view bytes) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (const char c : bytes) hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

struct CalibrationRecord {
  std::string file;          // the text's file name
  std::string fnv1a64;       // fnv1a64_hex of its bytes
  std::int64_t tokens = 0;   // tokens the importance was collected over
  int window = 0;            // tokens per window

  nlohmann::ordered_json to_json() const {
    return {{"file", file}, {"fnv1a64", fnv1a64}, {"tokens", tokens}, {"window", window}};
  }
};

struct ElasticLayerSets {
  std::vector<std::int64_t> mlp_widths;  // decreasing, the stored width first; empty unless SwiGLU
  std::vector<int> heads;                // decreasing, all heads first, whole KV groups; empty unless GQA
  double attention_contribution = 0.0;
  double ffn_contribution = 0.0;
};

// How the stored linear maps were fitted: on the first `tokens`
// calibration tokens (0 when none are stored), with this relative ridge.
struct LinearFitRecord {
  std::int64_t tokens = 0;
  double relative_ridge = 0.0;
};

// The MLP widths the default sets hold, as fractions of each layer's width.
inline constexpr double default_mlp_fractions[] = {1.0, 0.75, 0.5, 0.25};

// The default sets of every layer: MLP widths at `mlp_fractions` of each
// SwiGLU layer's width (strictly decreasing, 1 first; each rounded down to
// whole 32-neuron blocks, so quantised files cut whole blocks, and left out
// when that repeats a width or reaches 0); every whole number of KV groups
// of each GQA layer, most first; contributions 0; the linear maps the model
// stores. Throws elastic::Error for fractions that break those rules.
inline std::vector<ElasticLayerSets> default_layer_sets(const io::ModelDescription& model,
                                                        std::span<const double> mlp_fractions = default_mlp_fractions) {
  require(!mlp_fractions.empty() && mlp_fractions.front() == 1.0, "default_layer_sets: the MLP width fractions must "
          "start with 1 (the stored width)");
  for (std::size_t f = 1; f < mlp_fractions.size(); ++f)
    require(mlp_fractions[f] > 0.0 && mlp_fractions[f] < mlp_fractions[f - 1], "default_layer_sets: the MLP width ",
            "fractions must decrease strictly and stay above 0, found ", mlp_fractions[f], " after ",
            mlp_fractions[f - 1]);
  std::vector<ElasticLayerSets> layers;
  for (const io::LayerPlan& plan : model.layers) {
    ElasticLayerSets& sets = layers.emplace_back();
    if (plan.ffn == io::FfnKind::swiglu)
      for (const double fraction : mlp_fractions) {
        const auto blocks = static_cast<std::int64_t>(std::floor(double(plan.intermediate) * fraction / 32.0 + 1e-9));
        const std::int64_t width = fraction == 1.0 ? plan.intermediate : blocks * 32;
        if (width > 0 && (sets.mlp_widths.empty() || width < sets.mlp_widths.back())) sets.mlp_widths.push_back(width);
      }
    if (plan.attention == io::AttentionKind::gqa) {
      const int group = model.heads / plan.kv_heads;
      for (int groups = plan.kv_heads; groups >= 1; --groups) sets.heads.push_back(groups * group);
    }
  }
  return layers;
}

struct ElasticMetadata {
  Ranking ranking;
  CalibrationRecord calibration;
  std::vector<ElasticLayerSets> layers;
  LinearFitRecord linear_fit;

  // The default sets (default_layer_sets at `mlp_fractions`, with the
  // linear maps `model` stores) with contributions from `importance` (NaN
  // for a half that does not compute is written as 0).
  static ElasticMetadata with_default_sets(const io::ModelDescription& model, Ranking ranking,
                                           CalibrationRecord calibration,
                                           const std::vector<LayerImportance>& importance,
                                           LinearFitRecord linear_fit = {},
                                           std::span<const double> mlp_fractions = default_mlp_fractions) {
    require(importance.size() == model.layers.size(), "ElasticMetadata: expected the importance of ",
            model.layers.size(), " layers, found ", importance.size());
    ElasticMetadata metadata{ranking, std::move(calibration), default_layer_sets(model, mlp_fractions), linear_fit};
    for (std::size_t i = 0; i < model.layers.size(); ++i) {
      const auto finite_or_zero = [](double value) { return std::isfinite(value) ? value : 0.0; };
      metadata.layers[i].attention_contribution = finite_or_zero(importance[i].attention_contribution);
      metadata.layers[i].ffn_contribution = finite_or_zero(importance[i].ffn_contribution);
    }
    return metadata;
  }

  // The "elastic" object of `model`'s config.json: these sets beside the
  // linear maps the model stores.
  nlohmann::ordered_json to_json(const io::ModelDescription& model) const {
    require(layers.size() == model.layers.size(), "ElasticMetadata: expected elastic sets for ", model.layers.size(),
            " layers, found ", layers.size());
    nlohmann::ordered_json layers_json = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < layers.size(); ++i)
      layers_json.push_back({{"mlp_widths", layers[i].mlp_widths},
                             {"heads", layers[i].heads},
                             {"attention_contribution", layers[i].attention_contribution},
                             {"ffn_contribution", layers[i].ffn_contribution},
                             {"linear_attention", model.layers[i].attention_has_linear},
                             {"linear_ffn", model.layers[i].ffn_has_linear}});
    return {{"format", 1},
            {"ranking", {{"neurons", ranking_name(ranking.neurons)}, {"heads", ranking_name(ranking.heads)}}},
            {"calibration", calibration.to_json()},
            {"linear_fit", {{"tokens", linear_fit.tokens}, {"relative_ridge", linear_fit.relative_ridge}}},
            {"layers", std::move(layers_json)}};
  }
};

// The per-layer sets of a checkpoint's "elastic" object, checked against
// `model`: widths strictly decreasing within 1 .. the layer's width, head
// counts strictly decreasing whole KV groups; `path` names the file.
inline std::vector<ElasticLayerSets> read_elastic_sets(const nlohmann::json& elastic, const io::ModelDescription& model,
                                                       std::string_view path) {
  io::require_file(elastic.is_object() && elastic.contains("layers") && elastic["layers"].is_array() &&
                       elastic["layers"].size() == model.layers.size(),
                   path, "expected \"elastic\".\"layers\" to list the model's ", model.layers.size(), " layers");
  std::vector<ElasticLayerSets> sets;
  for (std::size_t i = 0; i < model.layers.size(); ++i) {
    const nlohmann::json& layer = elastic["layers"][i];
    io::require_file(layer.is_object(), path, "layer ", i, ": expected an object, found ", io::describe_json(layer));
    const io::LayerPlan& plan = model.layers[i];
    ElasticLayerSets& set = sets.emplace_back();
    const auto list = [&](const char* key, auto& out, std::int64_t most, std::int64_t multiple) {
      const nlohmann::json values = layer.value(key, nlohmann::json::array());
      io::require_file(values.is_array(), path, "layer ", i, ": expected \"", key, "\" to be an array, found ",
                       io::describe_json(values));
      for (const nlohmann::json& value : values) {
        io::require_file(value.is_number_integer() && value.get<std::int64_t>() >= 1 &&
                             value.get<std::int64_t>() <= most && value.get<std::int64_t>() % multiple == 0 &&
                             (out.empty() || value.get<std::int64_t>() < static_cast<std::int64_t>(out.back())),
                         path, "layer ", i, ": \"", key, "\" must decrease strictly within 1 .. ", most,
                         " in steps of ", multiple, ", found ", io::describe_json(value));
        out.push_back(static_cast<typename std::decay_t<decltype(out)>::value_type>(value.get<std::int64_t>()));
      }
    };
    if (plan.ffn == io::FfnKind::swiglu) list("mlp_widths", set.mlp_widths, plan.intermediate, 1);
    if (plan.attention == io::AttentionKind::gqa) list("heads", set.heads, model.heads, model.heads / plan.kv_heads);
    const auto contribution = [&](const char* key) {
      const nlohmann::json value = layer.value(key, nlohmann::json(0.0));
      io::require_file(value.is_number() && std::isfinite(value.get<double>()), path, "layer ", i, ": expected \"",
                       key, "\" to be a finite number, found ", io::describe_json(value));
      return value.get<double>();
    };
    set.attention_contribution = contribution("attention_contribution");
    set.ffn_contribution = contribution("ffn_contribution");
  }
  return sets;
}

// The "linear_fit" record of a checkpoint's "elastic" object; none stored
// (tokens 0) when the key is absent.
inline LinearFitRecord read_linear_fit(const nlohmann::json& elastic, std::string_view path) {
  if (!elastic.is_object() || !elastic.contains("linear_fit")) return {};
  const nlohmann::json& fit = elastic["linear_fit"];
  io::require_file(fit.is_object() && fit.contains("tokens") && fit["tokens"].is_number_integer() &&
                       fit["tokens"].get<std::int64_t>() >= 0 && fit.contains("relative_ridge") &&
                       fit["relative_ridge"].is_number() && std::isfinite(fit["relative_ridge"].get<double>()) &&
                       fit["relative_ridge"].get<double>() >= 0,
                   path, "expected \"elastic\".\"linear_fit\" to hold a non-negative whole \"tokens\" and a finite "
                   "\"relative_ridge\" >= 0, found ", io::describe_json(fit));
  return {fit["tokens"].get<std::int64_t>(), fit["relative_ridge"].get<double>()};
}

namespace detail {

// Rows of one [heads * head_dim x cols] Q or K matrix with each head's
// interleaved RoPE pairs (2p, 2p + 1) moved to rotate-half's (p, p + d / 2).
inline std::vector<float> rotate_half_rows(const ConstMatrixView<float>& w, index_t head_dim) {
  std::vector<float> rows(static_cast<std::size_t>(w.rows() * w.cols()));
  for (index_t r = 0; r < w.rows(); ++r) {
    const index_t head = r / head_dim, within = r % head_dim;
    const index_t target = head * head_dim + (within % 2) * (head_dim / 2) + within / 2;
    std::copy(w.row(r), w.row(r) + w.cols(), rows.data() + target * w.cols());
  }
  return rows;
}

inline std::vector<std::byte> tensor_bytes(const std::vector<float>& values, io::TensorType dtype) {
  std::vector<std::byte> bytes;
  if (dtype == io::TensorType::f32) {
    bytes.resize(values.size() * sizeof(float));
    std::memcpy(bytes.data(), values.data(), bytes.size());
  } else {
    bytes.resize(values.size() * sizeof(bfloat16_t));
    auto* out = reinterpret_cast<bfloat16_t*>(bytes.data());
    for (std::size_t i = 0; i < values.size(); ++i) out[i] = from_float<bfloat16_t>(values[i]);
  }
  return bytes;
}

}  // namespace detail

// Writes the elastic checkpoint of `model` with `weights` (float32 views in
// the model's Q/K layout) into the new folder `folder`, tensors as `dtype`
// (f32 or bf16). Throws elastic::Error before writing when the folder
// exists, the dtype is another, or a writer's check fails.
inline void write_elastic_checkpoint(const std::filesystem::path& folder, const io::ModelDescription& model,
                                     const model::ModelWeights<float>& weights, const io::TokenizerSpec& tokenizer,
                                     const ElasticMetadata& metadata, io::TensorType dtype) {
  require(dtype == io::TensorType::f32 || dtype == io::TensorType::bf16,
          "write_elastic_checkpoint: expected f32 or bf16 tensors, found ", io::type_name(dtype));
  require(metadata.layers.size() == model.layers.size(), "write_elastic_checkpoint: expected elastic sets for ",
          model.layers.size(), " layers, found ", metadata.layers.size());
  std::error_code error;
  require(!std::filesystem::exists(folder, error), folder.string(),
          ": already exists; remove it or choose another output folder");
  io::ModelDescription written = model;
  written.rope.layout = RopeLayout::rotate_half;
  // Everything a writer could refuse is checked (and every byte prepared)
  // before the folder is made.
  io::config_json(written, dtype);  // refuses what config.json cannot say
  std::vector<std::vector<std::byte>> storage;
  std::vector<io::TensorToWrite> tensors;
  for (const io::TensorSlot& slot : io::required_tensors(model)) {
    ConstMatrixView<float> view;
    model::visit_weight(weights, slot, [&](const ConstMatrixView<float>& member) { view = member; });
    const bool rotate = model.rope.layout == RopeLayout::interleaved &&
                        (slot.role == io::TensorRole::attention_q || slot.role == io::TensorRole::attention_k);
    std::vector<float> values;
    if (rotate) {
      values = detail::rotate_half_rows(view, model.head_dim);
    } else {
      for (index_t r = 0; r < view.rows(); ++r) values.insert(values.end(), view.row(r), view.row(r) + view.cols());
    }
    storage.push_back(detail::tensor_bytes(values, dtype));
    tensors.push_back({io::tensor_name(io::TensorNaming::hugging_face, slot.role, slot.layer), dtype, slot.shape,
                       storage.back()});
  }
  const std::filesystem::path parent = folder.has_parent_path() ? folder.parent_path() : ".";
  std::string pattern = (parent / ("." + folder.filename().string() + ".partial-XXXXXX")).string();
  require(::mkdtemp(pattern.data()) != nullptr, folder.string(), ": cannot create a temporary folder in ",
          parent.string());
  const std::filesystem::path partial = pattern;
  try {
    io::write_safetensors(partial / "model.safetensors", tensors, {{"format", "pt"}});
    io::write_config_json(partial / "config.json", written, dtype, {{"elastic", metadata.to_json(model)}});
    io::write_tokenizer_files(partial, tokenizer, model.rope.max_positions);
    std::filesystem::rename(partial, folder);
  } catch (...) {
    std::filesystem::remove_all(partial, error);
    throw;
  }
}

// The per-layer sets of the elastic checkpoint whose config.json is at
// `config_path` (read_elastic_sets), or nothing when config.json has no
// "elastic" key.
inline std::optional<std::vector<ElasticLayerSets>> read_elastic_layer_sets(const std::filesystem::path& config_path,
                                                                            const io::ModelDescription& model) {
  const nlohmann::json config = io::read_json_file(config_path, 16u << 20);
  if (!config.is_object() || !config.contains("elastic")) return std::nullopt;
  return read_elastic_sets(config.at("elastic"), model, config_path.string());
}

namespace detail {

// The config.json of the model at `model_path` (a folder or the file), or
// nothing for another kind of model file.
inline std::optional<std::filesystem::path> config_json_of(const std::filesystem::path& model_path) {
  const std::filesystem::path config = std::filesystem::is_directory(model_path) ? model_path / "config.json" : model_path;
  if (config.filename() != "config.json" || !std::filesystem::exists(config)) return std::nullopt;
  return config;
}

}  // namespace detail

// The sets of the model at `model_path` (a folder or its config.json): its
// "elastic" sets when it is an elastic checkpoint, else nothing.
inline std::optional<std::vector<ElasticLayerSets>> model_layer_sets(const std::filesystem::path& model_path,
                                                                     const io::ModelDescription& model) {
  const std::optional<std::filesystem::path> config = detail::config_json_of(model_path);
  if (!config) return std::nullopt;
  return read_elastic_layer_sets(*config, model);
}

// How the linear maps of the model at `model_path` were fitted (tokens 0
// when it stores none or is no elastic checkpoint).
inline LinearFitRecord model_linear_fit(const std::filesystem::path& model_path) {
  const std::optional<std::filesystem::path> config = detail::config_json_of(model_path);
  if (!config) return {};
  const nlohmann::json document = io::read_json_file(*config, 16u << 20);
  if (!document.is_object() || !document.contains("elastic")) return {};
  return read_linear_fit(document.at("elastic"), config->string());
}

}  // namespace elastic::search
