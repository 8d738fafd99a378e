// The budget table: the last file of the conversion and search pipeline and
// the first a deployment reads. For each latency budget, a fraction of the
// full model's measured latency in one phase (decode or prefill), the budget
// search picks one sub-network and records what it measured for it; at run
// time a request names a fraction and gets the entry with the largest
// fraction not above it, through the same BudgetRouter that routes the
// requests of a batch. Stored beside the elastic checkpoint as JSON:
//
//   {"format": 1, "full_latency_s": 0.0071, "phase": "decode",
//    "entries": [{"fraction": 0.5, "latency_s": 0.0035, "memory_bytes": 6.1e7,
//                 "predicted_score": 0.42,
//                 "config": {"layers": [{"heads": 9, "mlp_width": 768, ...}, ...]}},
//                ...],
//    ...}
//
// "config" is exactly a sub-network file's object (subnetwork_config_file.hpp);
// "predicted_score" (the search's quality cost) may be left out; keys after
// "entries" are whatever the writer added (its settings, its inputs) and the
// reader passes over them. Anything else wrong is a FileError naming the
// file, the entry and, for a configuration, the layer.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastic/core/error.hpp"
#include "elastic/io/file_error.hpp"
#include "elastic/io/json_document.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/io/temporary_file.hpp"
#include "elastic/layers/budget_router.hpp"
#include "elastic/model/subnetwork_config.hpp"
#include "elastic/model/subnetwork_config_file.hpp"

namespace elastic::model {

inline constexpr int budget_table_format = 1;
inline constexpr double largest_budget_fraction = 1.5;  // a little above the full model, for measurement noise

struct BudgetEntry {
  double fraction = 0.0;      // the budget: a fraction of the full model's latency, in (0, 1.5]
  double latency_s = 0.0;     // the sub-network's measured latency in the table's phase, seconds
  double memory_bytes = 0.0;  // its weights and KV cache, bytes
  SubnetworkConfig config;
  std::optional<double> predicted_score;  // the search's predicted quality cost, when it reported one
};

class BudgetTable {
 public:
  // full_latency_s: the full model's measured latency in `phase`, positive.
  // entries: at least one, fractions strictly increasing in (0, 1.5],
  // latencies and memory finite and non-negative, every configuration valid
  // for `model`. Throws elastic::Error naming the entry otherwise.
  BudgetTable(double full_latency_s, std::string phase, std::vector<BudgetEntry> entries,
              const io::ModelDescription& model)
      : full_latency_s_(full_latency_s),
        phase_(std::move(phase)),
        entries_(std::move(entries)),
        router_(checked_router(model)) {}

  double full_latency_s() const { return full_latency_s_; }
  const std::string& phase() const { return phase_; }
  const std::vector<BudgetEntry>& entries() const { return entries_; }

  // The entry for a request with this budget: the largest fraction not
  // above it. A budget below every entry is an error that names the
  // smallest entry, so the caller can ask for that instead.
  const BudgetEntry& entry_for(double fraction) const {
    const BudgetEntry& smallest = entries_.front();
    require(!std::isnan(fraction),
            "budget table: the requested budget is NaN, expected a fraction of the full "
            "model's latency");
    require(fraction >= smallest.fraction, "budget table: budget ", fraction, " is below the smallest entry, fraction ",
            smallest.fraction, " (latency ", smallest.latency_s * 1e3, " ms of the full ", full_latency_s_ * 1e3,
            " ms, ", phase_, "); ask for at least ", smallest.fraction);
    return entries_[router_.entry_index(fraction)];
  }

  // The table as a BudgetRouter over fractions. Choice c of a layer stands
  // for layer_choices()[c]: the distinct LayerChoice values of all entries,
  // in the order they first appear (entry by entry, layer by layer), so
  // config_of(router().lookup(f)) == entry_for(f).config.
  const BudgetRouter& router() const { return router_; }
  const std::vector<LayerChoice>& layer_choices() const { return layer_choices_; }

  // The sub-network a router's per-layer choices stand for.
  SubnetworkConfig config_of(std::span<const int> choices) const {
    require(choices.size() == static_cast<std::size_t>(router_.layers()), "budget table: ", choices.size(),
            " choices, expected one per layer (", router_.layers(), ")");
    SubnetworkConfig config;
    for (int choice : choices) {
      require(choice >= 0 && static_cast<std::size_t>(choice) < layer_choices_.size(), "budget table: choice ", choice,
              " is not in [0, ", layer_choices_.size(), ")");
      config.layers.push_back(layer_choices_[static_cast<std::size_t>(choice)]);
    }
    return config;
  }

 private:
  // Checks everything the constructor promises, collects the distinct
  // layer choices and encodes every entry as their indices.
  BudgetRouter checked_router(const io::ModelDescription& model) {
    require(std::isfinite(full_latency_s_) && full_latency_s_ > 0,
            "budget table: the full model's latency "
            "must be a positive number of seconds, found ",
            full_latency_s_);
    require(!phase_.empty(), "budget table: the phase must be named (decode or prefill), found an empty name");
    require(!entries_.empty(), "budget table: expected at least one entry, found none");
    std::vector<BudgetRouter::Entry> encoded;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const BudgetEntry& entry = entries_[i];
      require(entry.fraction > 0 && entry.fraction <= largest_budget_fraction, "budget table: entry ", i,
              " has fraction ", entry.fraction, ", expected a fraction in (0, ", largest_budget_fraction, "]");
      require(i == 0 || entries_[i - 1].fraction < entry.fraction, "budget table: entry ", i, " has fraction ",
              entry.fraction, " after ", i == 0 ? 0.0 : entries_[i - 1].fraction,
              ", expected strictly increasing fractions");
      require(std::isfinite(entry.latency_s) && entry.latency_s >= 0, "budget table: entry ", i, " has latency ",
              entry.latency_s, " s, expected a finite non-negative number");
      require(std::isfinite(entry.memory_bytes) && entry.memory_bytes >= 0, "budget table: entry ", i, " has memory ",
              entry.memory_bytes, " bytes, expected a finite non-negative number");
      require(!entry.predicted_score || std::isfinite(*entry.predicted_score), "budget table: entry ", i,
              " has predicted score ", entry.predicted_score.value_or(0.0), ", expected a finite number");
      try {
        entry.config.validate(model);
      } catch (const Error& error) {
        throw Error(elastic::detail::concat("budget table: entry ", i, ": ", error.what()));
      }
      BudgetRouter::Entry routed{entry.fraction, {}};
      for (const LayerChoice& layer : entry.config.layers) {
        std::size_t index = 0;
        while (index < layer_choices_.size() && !(layer_choices_[index] == layer)) ++index;
        if (index == layer_choices_.size()) layer_choices_.push_back(layer);
        routed.choices.push_back(static_cast<int>(index));
      }
      encoded.push_back(std::move(routed));
    }
    return BudgetRouter(static_cast<int>(model.layers.size()), static_cast<int>(layer_choices_.size()),
                        std::move(encoded));
  }

  double full_latency_s_;
  std::string phase_;
  std::vector<BudgetEntry> entries_;
  std::vector<LayerChoice> layer_choices_;
  BudgetRouter router_;
};

namespace detail {

inline constexpr std::uint64_t max_budget_table_bytes = 64u << 20;

inline double budget_number(const nlohmann::json& object, std::string_view path, std::string_view where,
                            const char* key) {
  io::require_file(object.contains(key), path, where, "expected a key \"", key, "\", found none");
  const nlohmann::json& value = object.at(key);
  io::require_file(value.is_number(), path, where, "\"", key, "\" must be a number, found ", io::describe_json(value));
  return value.get<double>();
}

inline BudgetEntry parse_budget_entry(const nlohmann::json& object, std::string_view path, std::size_t index,
                                      const io::ModelDescription& model) {
  const std::string where = elastic::detail::concat("entry ", index, ": ");
  io::require_file(object.is_object(), path, where, "expected an object, found ", io::describe_json(object));
  for (const auto& item : object.items())
    io::require_file(item.key() == "fraction" || item.key() == "latency_s" || item.key() == "memory_bytes" ||
                         item.key() == "predicted_score" || item.key() == "config",
                     path, where, "unknown key \"", item.key(),
                     "\"; expected fraction, latency_s, memory_bytes, predicted_score or config");
  BudgetEntry entry;
  entry.fraction = budget_number(object, path, where, "fraction");
  entry.latency_s = budget_number(object, path, where, "latency_s");
  entry.memory_bytes = budget_number(object, path, where, "memory_bytes");
  if (object.contains("predicted_score")) entry.predicted_score = budget_number(object, path, where, "predicted_score");
  io::require_file(object.contains("config"), path, where, "expected a key \"config\", found none");
  entry.config = parse_subnetwork_config(object.at("config"),
                                         elastic::detail::concat(path, ": entry ", index, " \"config\""), model);
  return entry;
}

}  // namespace detail

// The budget table in `document`, for `model`; `name` names the file in errors.
inline BudgetTable parse_budget_table(const nlohmann::json& document, std::string_view name,
                                      const io::ModelDescription& model) {
  io::require_file(document.is_object(), name, "expected a budget table object, found ", io::describe_json(document));
  io::require_file(document.contains("format") && document.at("format") == budget_table_format, name,
                   "expected \"format\": ", budget_table_format, ", found ",
                   document.contains("format") ? io::describe_json(document.at("format")) : "no \"format\" key");
  const double full_latency_s = detail::budget_number(document, name, "", "full_latency_s");
  io::require_file(document.contains("phase") && document.at("phase").is_string(), name,
                   "expected \"phase\" to be a string (decode or prefill), found ",
                   document.contains("phase") ? io::describe_json(document.at("phase")) : "no \"phase\" key");
  io::require_file(document.contains("entries") && document.at("entries").is_array(), name,
                   "expected \"entries\" to be an array, found ",
                   document.contains("entries") ? io::describe_json(document.at("entries")) : "no \"entries\" key");
  std::vector<BudgetEntry> entries;
  for (std::size_t i = 0; i < document.at("entries").size(); ++i)
    entries.push_back(detail::parse_budget_entry(document.at("entries")[i], name, i, model));
  try {
    return BudgetTable(full_latency_s, document.at("phase").get<std::string>(), std::move(entries), model);
  } catch (const Error& error) {
    io::fail_file(name, error.what());
  }
}

// The budget table in the JSON file at `path`, for `model`.
inline BudgetTable read_budget_table(const std::filesystem::path& path, const io::ModelDescription& model) {
  return parse_budget_table(io::read_json_file(path, detail::max_budget_table_bytes), path.string(), model);
}

// Writes `table` to `path` in the form read_budget_table reads, one layer
// per line, followed by the keys of `extra` (an object, or null for none;
// it may not use the table's own keys). The file appears whole or not at
// all (io::TemporaryFile).
inline void write_budget_table(const std::filesystem::path& path, const BudgetTable& table,
                               const nlohmann::ordered_json& extra = {}) {
  const std::string name = path.string();
  require(extra.is_null() || extra.is_object(), name, ": the extra keys of a budget table must be an object, found ",
          extra.type_name());
  if (extra.is_object())
    for (const char* key : {"format", "full_latency_s", "phase", "entries"})
      require(!extra.contains(key), name, ": the extra keys of a budget table may not include \"", key,
              "\", the table's own key");
  const auto number = [](double value) { return nlohmann::json(value).dump(); };
  std::string text = "{\n  \"format\": " + std::to_string(budget_table_format) +
                     ",\n  \"full_latency_s\": " + number(table.full_latency_s()) +
                     ",\n  \"phase\": " + nlohmann::json(table.phase()).dump() + ",\n  \"entries\": [\n";
  for (std::size_t i = 0; i < table.entries().size(); ++i) {
    const BudgetEntry& entry = table.entries()[i];
    text += "    {\"fraction\": " + number(entry.fraction) + ", \"latency_s\": " + number(entry.latency_s) +
            ", \"memory_bytes\": " + number(entry.memory_bytes);
    if (entry.predicted_score) text += ", \"predicted_score\": " + number(*entry.predicted_score);
    text += ",\n     \"config\": " + subnetwork_config_json(entry.config, "     ") + "}";
    text += i + 1 < table.entries().size() ? ",\n" : "\n";
  }
  text += "  ]";
  if (extra.is_object())
    for (const auto& [key, value] : extra.items()) {
      std::string dumped = value.dump(2);
      for (std::size_t at = dumped.find('\n'); at != std::string::npos; at = dumped.find('\n', at + 3))
        dumped.replace(at, 1, "\n  ");
      text += ",\n  " + nlohmann::json(key).dump() + ": " + dumped;
    }
  text += "\n}\n";
  io::TemporaryFile file(path);
  file.write(std::as_bytes(std::span(text.data(), text.size())));
  file.commit();
}

}  // namespace elastic::model
