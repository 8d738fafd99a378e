// A libFuzzer harness for the JSON files of the conversion and search
// pipeline: the block library, the latency table, the budget table, the
// "elastic" object of an elastic checkpoint's config.json and a sub-network
// file. The first byte of an input picks the reader, the rest is the file's
// text, read for one fixed small model (the one tests/fuzz/seeds/
// search_files_seeds.py writes its seeds for). The property: each reader
// either throws elastic::Error (io::FileError derives from it) or returns
// what fits the model, and what it returns can be used (a latency table
// predicts the full model, a budget table routes every budget). Any other
// exception escapes and libFuzzer reports it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <nlohmann/json.hpp>

#include "elastic/core/error.hpp"
#include "elastic/io/json_document.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/model/budget_table.hpp"
#include "elastic/model/subnetwork_config.hpp"
#include "elastic/model/subnetwork_config_file.hpp"
#include "elastic/search/block_library.hpp"
#include "elastic/search/elastic_checkpoint.hpp"
#include "elastic/search/latency_table.hpp"

namespace {

using namespace elastic;

// Three layers: two GQA + SwiGLU (6 query heads in 3 KV groups of 2, head
// size 64, FFN width 256; the first stores a linear map beside each half),
// then a linear attention replacement and no FFN.
io::ModelDescription fuzz_model() {
  io::ModelDescription model;
  model.architecture = "nemotron-nas";
  model.hidden = 384;
  model.vocab = 256;
  model.heads = 6;
  model.head_dim = 64;
  model.layers = {{io::AttentionKind::gqa, 3, io::FfnKind::swiglu, 256},
                  {io::AttentionKind::gqa, 3, io::FfnKind::swiglu, 256},
                  {io::AttentionKind::linear, 0, io::FfnKind::none, 0}};
  model.layers[0].attention_has_linear = model.layers[0].ffn_has_linear = true;
  model.rope.max_positions = 512;
  model.validate("fuzz model");
  return model;
}

void check_block_library(const nlohmann::json& json, const io::ModelDescription& model) {
  const search::BlockLibrary library = search::parse_block_library(json, "fuzz/block_library.json", model);
  if (library.layers.size() != model.layers.size()) std::abort();
  for (const search::LayerVariants& layer : library.layers)
    for (const search::Half half : {search::Half::attention, search::Half::ffn})
      for (const search::ScoredVariant& variant : layer.of(half)) {
        if (!variant.runs_as_subnetwork()) continue;
        model::LayerChoice choice;
        variant.apply(half, choice);
      }
}

void check_latency_table(const nlohmann::json& json, const io::ModelDescription& model) {
  const search::LatencyTable table = search::parse_latency_table(json, "fuzz/latency_table.json", model);
  if (table.layers.size() != model.layers.size()) std::abort();
  const model::SubnetworkConfig full = model::SubnetworkConfig::full(model);
  try {
    static_cast<void>(search::predicted(table, full, search::Phase::decode));
    static_cast<void>(search::predicted(table, full, search::Phase::prefill));
    static_cast<void>(search::memory_bytes(table, full, table.decode_context));
  } catch (const Error&) {
    // The table may lack the full model's variants: the documented outcome.
  }
}

void check_budget_table(const nlohmann::json& json, const io::ModelDescription& model) {
  const model::BudgetTable table = model::parse_budget_table(json, "fuzz/budgets.json", model);
  for (const model::BudgetEntry& entry : table.entries()) {
    entry.config.validate(model);
    if (!(table.entry_for(entry.fraction).fraction == entry.fraction)) std::abort();
    if (!(table.config_of(table.router().lookup(entry.fraction)) == entry.config)) std::abort();
  }
}

void check_elastic_sets(const nlohmann::json& json, const io::ModelDescription& model) {
  const std::vector<search::ElasticLayerSets> sets = search::read_elastic_sets(json, model, "fuzz/config.json");
  if (sets.size() != model.layers.size()) std::abort();
}

void check_subnetwork_config(const nlohmann::json& json, const io::ModelDescription& model) {
  model::parse_subnetwork_config(json, "fuzz/subnetwork.json", model).validate(model);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const io::ModelDescription model = fuzz_model();
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    const nlohmann::json json = io::parse_json_document(text, "fuzz/file.json");
    switch (data[0] % 5) {
      case 0: check_block_library(json, model); break;
      case 1: check_latency_table(json, model); break;
      case 2: check_budget_table(json, model); break;
      case 3: check_elastic_sets(json, model); break;
      default: check_subnetwork_config(json, model); break;
    }
  } catch (const Error&) {
    // A rejected input: the documented outcome.
  }
  return 0;
}
