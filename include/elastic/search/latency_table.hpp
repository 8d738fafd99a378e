// The measured latency and memory table the budget search reads, in the
// manner of Puzzle: per layer, per half (attention, FFN), per variant (a
// query-head count or an MLP width from the layer's elastic sets, the
// linear map the layer stores for the half, or "none": skipped), its time at decode and at prefill on the executor it
// was measured on and the weight bytes it reads, plus the fixed cost of the
// embedding, final norm and LM head. A sub-network's predicted time is the
// fixed cost plus its chosen variants' costs; its memory adds the KV cache.
// The table is one JSON file, latency_table.json, so the search can be
// rerun without measuring again:
//
//   {"format": 1, "executor": "host", "threads": 2, "device": "...",
//    "decode": {"batch": 1, "context": 512, "steps": 32}, "prefill": {"tokens": 512},
//    "kv_element_bytes": 4,
//    "fixed": {"decode_s": ..., "prefill_s": ..., "weight_bytes": ...},
//    "layers": [{"attention": [{"variant": "heads:9", "heads": 9, "decode_s": ..., "prefill_s": ...,
//                               "weight_bytes": ..., "kv_bytes_per_token": ...}, ..., {"variant": "none", ...}],
//                "ffn": [{"variant": "width:1536", "mlp_width": 1536, "decode_s": ..., "prefill_s": ...,
//                         "weight_bytes": ...}, ..., {"variant": "linear", "mlp_width": 0, ...},
//                        {"variant": "none", ...}]}, ...],
//    "checks": [{"name": "full", "predicted_decode_s": ..., "measured_decode_s": ...,
//                "predicted_prefill_s": ..., "measured_prefill_s": ...}, ...]}
//
// decode_s is seconds per decode step (batch 1, `context` cached positions
// when the timed steps start);
// prefill_s seconds per forward of `tokens` tokens from an empty cache.
// Reading checks everything against the model and throws io::FileError
// naming the file and what was expected and found.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastic/core/error.hpp"
#include "elastic/io/file_error.hpp"
#include "elastic/io/json_document.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/io/temporary_file.hpp"
#include "elastic/model/subnetwork_config.hpp"
#include "elastic/search/half_variant.hpp"

namespace elastic::search {

enum class Phase : std::uint8_t { decode, prefill };

inline constexpr int latency_table_format = 1;

// One variant of one half of one layer.
struct VariantCost {
  HalfVariant variant;                // a prefix, the stored linear map, or none (skipped)
  double decode_s = 0.0;              // seconds per decode step
  double prefill_s = 0.0;             // seconds per prefill forward
  std::int64_t weight_bytes = 0;      // weight bytes the variant reads
  std::int64_t kv_bytes_per_token = 0;  // attention only: K and V bytes one token adds

  double seconds(Phase phase) const { return phase == Phase::decode ? decode_s : prefill_s; }
};

struct LayerCosts {
  std::vector<VariantCost> attention;  // every head count of the layer's set, linear if stored, then none
  std::vector<VariantCost> ffn;        // every MLP width of the layer's set, linear if stored, then none

  const std::vector<VariantCost>& of(Half half) const { return half == Half::attention ? attention : ffn; }
};

// Embedding, final norm and LM head: what every sub-network pays.
struct FixedCost {
  double decode_s = 0.0;
  double prefill_s = 0.0;
  std::int64_t weight_bytes = 0;  // bytes held: embedding, final norm, and the LM head unless tied

  double seconds(Phase phase) const { return phase == Phase::decode ? decode_s : prefill_s; }
};

// A sub-network measured directly beside the table's prediction for it.
struct LatencyCheck {
  std::string name;
  double predicted_decode_s = 0.0;
  double measured_decode_s = 0.0;
  double predicted_prefill_s = 0.0;
  double measured_prefill_s = 0.0;
};

struct LatencyTable {
  std::string executor = "host";
  unsigned threads = 0;
  std::string device;
  int decode_batch = 1;
  int decode_context = 0;     // cached positions when the decode steps start
  int decode_steps = 0;       // steps timed per repetition
  int prefill_tokens = 0;
  int kv_element_bytes = 0;   // bytes of one cached K or V element
  FixedCost fixed;
  std::vector<LayerCosts> layers;
  std::vector<LatencyCheck> checks;
};

// The variant of `layer`'s `half` that `config` runs, or throws
// elastic::Error naming the layer and the variants the table has. A half
// neither skipped nor run linear with 0 heads / width is a layer without
// that GQA / SwiGLU block (the table was checked against the model): its
// linear block when the table lists one, else nothing.
inline const VariantCost& chosen_variant(const LatencyTable& table, const model::SubnetworkConfig& config,
                                         std::size_t layer, Half half) {
  const model::LayerChoice& choice = config.layers[layer];
  const bool attention = half == Half::attention;
  const std::vector<VariantCost>& variants = table.layers[layer].of(half);
  const auto find = [&](const HalfVariant& wanted) {
    return std::find_if(variants.begin(), variants.end(), [&](const VariantCost& c) { return c.variant == wanted; });
  };
  HalfVariant wanted = (attention ? choice.skip_attention : choice.skip_ffn)       ? HalfVariant::none()
                       : (attention ? choice.linear_attention : choice.linear_ffn) ? HalfVariant::linear()
                       : HalfVariant::prefix(attention ? choice.heads : choice.mlp_width);
  if (wanted == HalfVariant::prefix(0))
    wanted = find(HalfVariant::linear()) != variants.end() ? HalfVariant::linear() : HalfVariant::none();
  if (const auto found = find(wanted); found != variants.end()) return *found;
  std::string known;
  for (const VariantCost& variant : variants) known += (known.empty() ? "" : ", ") + variant.variant.name(half);
  throw Error(elastic::detail::concat("latency table: layer ", layer, " runs ", attention ? "attention" : "the FFN",
                                      " as ", wanted.name(half), ", which the table lacks (it has ", known, ")"));
}

inline void check_layer_count(const LatencyTable& table, const model::SubnetworkConfig& config) {
  require(config.layers.size() == table.layers.size(), "latency table: expected a sub-network of ",
          table.layers.size(), " layers, found ", config.layers.size());
}

// The fixed cost plus the cost of every variant `config` chooses, in seconds
// per decode step or per prefill forward.
inline double predicted(const LatencyTable& table, const model::SubnetworkConfig& config, Phase phase) {
  check_layer_count(table, config);
  double seconds = table.fixed.seconds(phase);
  for (std::size_t i = 0; i < table.layers.size(); ++i)
    seconds += chosen_variant(table, config, i, Half::attention).seconds(phase) +
               chosen_variant(table, config, i, Half::ffn).seconds(phase);
  return seconds;
}

// Weight bytes of `config` (fixed and chosen variants) plus its KV cache at
// `context` positions: what the sub-network needs in memory.
inline std::int64_t memory_bytes(const LatencyTable& table, const model::SubnetworkConfig& config,
                                 std::int64_t context) {
  check_layer_count(table, config);
  std::int64_t bytes = table.fixed.weight_bytes;
  for (std::size_t i = 0; i < table.layers.size(); ++i) {
    const VariantCost& attention = chosen_variant(table, config, i, Half::attention);
    bytes += attention.weight_bytes + attention.kv_bytes_per_token * context +
             chosen_variant(table, config, i, Half::ffn).weight_bytes;
  }
  return bytes;
}

inline nlohmann::ordered_json latency_table_json(const LatencyTable& table) {
  const auto variants_json = [](Half half, const std::vector<VariantCost>& variants) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const VariantCost& variant : variants) {
      nlohmann::ordered_json entry = {{"variant", variant.variant.name(half)},
                                      {half == Half::attention ? "heads" : "mlp_width", variant.variant.size},
                                      {"decode_s", variant.decode_s},
                                      {"prefill_s", variant.prefill_s},
                                      {"weight_bytes", variant.weight_bytes}};
      if (half == Half::attention) entry["kv_bytes_per_token"] = variant.kv_bytes_per_token;
      list.push_back(std::move(entry));
    }
    return list;
  };
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (const LayerCosts& layer : table.layers)
    layers.push_back({{"attention", variants_json(Half::attention, layer.attention)},
                      {"ffn", variants_json(Half::ffn, layer.ffn)}});
  nlohmann::ordered_json checks = nlohmann::ordered_json::array();
  for (const LatencyCheck& check : table.checks)
    checks.push_back({{"name", check.name},
                      {"predicted_decode_s", check.predicted_decode_s},
                      {"measured_decode_s", check.measured_decode_s},
                      {"predicted_prefill_s", check.predicted_prefill_s},
                      {"measured_prefill_s", check.measured_prefill_s}});
  return {{"format", latency_table_format},
          {"executor", table.executor},
          {"threads", table.threads},
          {"device", table.device},
          {"decode", {{"batch", table.decode_batch}, {"context", table.decode_context}, {"steps", table.decode_steps}}},
          {"prefill", {{"tokens", table.prefill_tokens}}},
          {"kv_element_bytes", table.kv_element_bytes},
          {"fixed",
           {{"decode_s", table.fixed.decode_s},
            {"prefill_s", table.fixed.prefill_s},
            {"weight_bytes", table.fixed.weight_bytes}}},
          {"layers", std::move(layers)},
          {"checks", std::move(checks)}};
}

// Writes `table` to `path` atomically (a temporary file renamed into place).
inline void write_latency_table(const std::filesystem::path& path, const LatencyTable& table) {
  const std::string text = latency_table_json(table).dump(1) + "\n";
  io::TemporaryFile file(path);
  file.write(std::as_bytes(std::span(text)));
  file.commit();
}

namespace detail {

// The most weight bytes one entry may name (1 PiB), and the most bytes of
// one cached element (a float64), so the memory of a sub-network (a sum
// over its layers, with the KV cache of a context) stays far from overflow.
inline constexpr std::int64_t max_table_bytes = std::int64_t{1} << 50;
inline constexpr int max_kv_element_bytes = 8;

// Typed access to the keys of one JSON object, each failure a FileError
// naming the file, where in it, and what was expected and found.
class JsonFields {
 public:
  JsonFields(const nlohmann::json& object, std::string_view path, std::string where)
      : object_(object), path_(path), where_(std::move(where)) {
    io::require_file(object.is_object(), path_, where_, ": expected an object, found ", io::describe_json(object));
  }

  const nlohmann::json& at(const char* key) const {
    io::require_file(object_.contains(key), path_, where_, ": expected the key \"", key, "\"");
    return object_.at(key);
  }
  std::string text(const char* key) const {
    const nlohmann::json& value = at(key);
    io::require_file(value.is_string(), path_, where_, ": \"", key, "\" must be a string, found ",
                     io::describe_json(value));
    return value.get<std::string>();
  }
  std::int64_t count(const char* key) const { return count(key, std::numeric_limits<std::int64_t>::max()); }
  // A count of at most `most`.
  std::int64_t count(const char* key, std::int64_t most) const {
    const nlohmann::json& value = at(key);
    io::require_file(value.is_number_integer() && value.get<std::int64_t>() >= 0, path_, where_, ": \"", key,
                     "\" must be a non-negative integer, found ", io::describe_json(value));
    const auto number = value.get<std::int64_t>();
    io::require_file(number <= most, path_, where_, ": \"", key, "\" must be at most ", most, ", found ", number);
    return number;
  }
  // A count the table keeps as an int.
  int small_count(const char* key) const { return static_cast<int>(count(key, std::numeric_limits<int>::max())); }
  // A byte count: at most max_table_bytes, so a sub-network's sum of them
  // cannot overflow.
  std::int64_t bytes(const char* key) const { return count(key, max_table_bytes); }
  double seconds(const char* key) const {
    const nlohmann::json& value = at(key);
    io::require_file(value.is_number() && std::isfinite(value.get<double>()) && value.get<double>() >= 0.0, path_,
                     where_, ": \"", key, "\" must be a finite non-negative number of seconds, found ",
                     io::describe_json(value));
    return value.get<double>();
  }
  const nlohmann::json& array(const char* key) const {
    const nlohmann::json& value = at(key);
    io::require_file(value.is_array(), path_, where_, ": \"", key, "\" must be an array, found ",
                     io::describe_json(value));
    return value;
  }
  const std::string& where() const { return where_; }

 private:
  const nlohmann::json& object_;
  std::string_view path_;
  std::string where_;
};

// The variants of one half of layer `layer`, checked against `plan`: each
// a head count of whole KV groups or an MLP width within the stored one,
// or "linear" where the layer has a linear map for the half (size 0, no KV
// bytes), with its name and, for attention, its KV bytes; "none" last, all
// zero.
inline std::vector<VariantCost> parse_variants(const nlohmann::json& list, std::string_view path, std::size_t layer,
                                               Half half, const io::ModelDescription& model,
                                               std::int64_t kv_element_bytes) {
  const io::LayerPlan& plan = model.layers[layer];
  const bool attention = half == Half::attention;
  const std::string where = "layer " + std::to_string(layer) + (attention ? " attention" : " ffn");
  const int group = attention && plan.attention == io::AttentionKind::gqa ? model.heads / plan.kv_heads : 0;
  std::vector<VariantCost> variants;
  for (std::size_t v = 0; v < list.size(); ++v) {
    const JsonFields fields(list[v], path, where + " variant " + std::to_string(v));
    VariantCost variant;
    const std::int64_t size = fields.count(attention ? "heads" : "mlp_width");
    const std::string name = fields.text("variant");
    variant.variant = name == "linear" ? HalfVariant::linear() : size == 0 ? HalfVariant::none() : HalfVariant::prefix(size);
    io::require_file(name == variant.variant.name(half) && variant.variant.size == size, path, fields.where(),
                     ": expected the name \"", HalfVariant::prefix(size).name(half), "\" (or \"none\" or \"linear\" "
                     "with size 0), found \"", name, "\" with size ", size);
    variant.decode_s = fields.seconds("decode_s");
    variant.prefill_s = fields.seconds("prefill_s");
    variant.weight_bytes = fields.bytes("weight_bytes");
    if (attention) variant.kv_bytes_per_token = fields.bytes("kv_bytes_per_token");
    const std::int64_t kv_bytes = variant.kv_bytes_per_token;
    if (variant.variant.kind == VariantKind::linear) {
      io::require_file(runs_linear(plan, half), path, fields.where(),
                       ": \"linear\", but the layer stores no linear map for this half");
      io::require_file(kv_bytes == 0, path, fields.where(), ": a linear map caches nothing, found kv_bytes_per_token ",
                       kv_bytes);
    } else if (variant.variant.kind == VariantKind::none) {
      io::require_file(variant.decode_s == 0.0 && variant.prefill_s == 0.0 && variant.weight_bytes == 0 &&
                           variant.kv_bytes_per_token == 0,
                       path, fields.where(), ": expected zero time and bytes for \"none\"");
    } else if (attention) {
      io::require_file(group > 0 && size <= model.heads && size % group == 0, path, fields.where(),
                       ": expected whole KV groups of the layer's ", io::kind_name(plan.attention), " attention (",
                       model.heads, " heads in groups of ", group, "), found ", size, " heads");
      const std::int64_t expected_kv = 2 * (size / group) * model.head_dim * kv_element_bytes;
      io::require_file(variant.kv_bytes_per_token == expected_kv, path, fields.where(),
                       ": expected kv_bytes_per_token ", expected_kv, ", found ", variant.kv_bytes_per_token);
    } else {
      const std::int64_t stored = plan.ffn == io::FfnKind::swiglu ? plan.intermediate : 0;
      io::require_file(size <= stored, path, fields.where(), ": expected an MLP width up to the layer's ",
                       io::kind_name(plan.ffn), " FFN width ", stored, ", found ", size);
    }
    for (const VariantCost& earlier : variants)
      io::require_file(earlier.variant != variant.variant, path, fields.where(), ": \"", name, "\" appears twice");
    variants.push_back(variant);
  }
  io::require_file(!variants.empty() && variants.back().variant.kind == VariantKind::none, path, where,
                   ": expected the variants to end with \"none\"");
  return variants;
}

}  // namespace detail

// The table in `document` for `model`; `path` names it in errors.
inline LatencyTable parse_latency_table(const nlohmann::json& document, std::string_view path,
                                        const io::ModelDescription& model) {
  using detail::JsonFields;
  const JsonFields top(document, path, "latency table");
  const std::int64_t format = top.count("format");
  io::require_file(format == latency_table_format, path, "expected latency table format ", latency_table_format,
                   ", found ", format);
  LatencyTable table;
  table.executor = top.text("executor");
  table.threads = static_cast<unsigned>(top.small_count("threads"));
  table.device = top.text("device");
  const JsonFields decode(top.at("decode"), path, "\"decode\"");
  table.decode_batch = decode.small_count("batch");
  table.decode_context = decode.small_count("context");
  table.decode_steps = decode.small_count("steps");
  table.prefill_tokens = JsonFields(top.at("prefill"), path, "\"prefill\"").small_count("tokens");
  table.kv_element_bytes = static_cast<int>(top.count("kv_element_bytes", detail::max_kv_element_bytes));
  const JsonFields fixed(top.at("fixed"), path, "\"fixed\"");
  table.fixed = {fixed.seconds("decode_s"), fixed.seconds("prefill_s"), fixed.bytes("weight_bytes")};

  const nlohmann::json& layers = top.array("layers");
  io::require_file(layers.size() == model.layers.size(), path, "expected ", model.layers.size(),
                   " layers (the model's), found ", layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const JsonFields layer(layers[i], path, "layer " + std::to_string(i));
    table.layers.push_back(
        {detail::parse_variants(layer.array("attention"), path, i, Half::attention, model, table.kv_element_bytes),
         detail::parse_variants(layer.array("ffn"), path, i, Half::ffn, model, table.kv_element_bytes)});
  }
  const nlohmann::json& checks = top.array("checks");
  for (std::size_t c = 0; c < checks.size(); ++c) {
    const JsonFields check(checks[c], path, "check " + std::to_string(c));
    table.checks.push_back({check.text("name"), check.seconds("predicted_decode_s"), check.seconds("measured_decode_s"),
                            check.seconds("predicted_prefill_s"), check.seconds("measured_prefill_s")});
  }
  return table;
}

// The table in the file at `path`, for `model`.
inline LatencyTable read_latency_table(const std::filesystem::path& path, const io::ModelDescription& model) {
  return parse_latency_table(io::read_json_file(path, 64u << 20), path.string(), model);
}

}  // namespace elastic::search
