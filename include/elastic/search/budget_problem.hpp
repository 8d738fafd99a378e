// The budget search's problem, put together from the two measured inputs:
// the block library (each variant's quality cost, block_library.hpp) and the
// latency table (each variant's time and bytes, latency_table.hpp). One
// slot per layer half that has a choice, holding the variants the elastic
// checkpoint runs as a sub-network (a head count, an MLP width, its stored
// linear map, the half skipped) that both files know: score = KL(parent || variant), latency =
// the table's time in the chosen phase, memory = the variant's weight bytes
// plus its KV bytes per token times the context. The fixed parts are the
// table's. The baselines the search is judged against are here too: the
// same width and head count in every layer, and whole layers dropped in
// order of their measured share of the residual stream.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "elastic/core/error.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/model/subnetwork_config.hpp"
#include "elastic/search/block_choice.hpp"
#include "elastic/search/block_library.hpp"
#include "elastic/search/elastic_checkpoint.hpp"
#include "elastic/search/latency_table.hpp"

namespace elastic::search {

class BudgetProblem {
 public:
  BudgetProblem(const io::ModelDescription& model, const BlockLibrary& library, const LatencyTable& table, Phase phase,
                std::int64_t context)
      : model_(model) {
    require(library.layers.size() == model.layers.size() && table.layers.size() == model.layers.size(),
            "BudgetProblem: the block library has ", library.layers.size(), " layers and the latency table ",
            table.layers.size(), ", expected the model's ", model.layers.size());
    require(context >= 0, "BudgetProblem: the context must be non-negative, found ", context);
    problem_.fixed_latency = table.fixed.seconds(phase);
    problem_.fixed_memory = static_cast<double>(table.fixed.weight_bytes);
    for (std::size_t i = 0; i < model.layers.size(); ++i)
      for (const Half half : {Half::attention, Half::ffn}) {
        Slot slot{i, half, {}};
        ChoiceSlot choice{"layer " + std::to_string(i) + " " + std::string(half_name(half)), {}};
        for (const ScoredVariant& variant : library.layers[i].of(half)) {
          if (!variant.runs_as_subnetwork()) continue;
          const std::vector<VariantCost>& costs = table.layers[i].of(half);
          const auto cost = std::find_if(costs.begin(), costs.end(),
                                         [&](const VariantCost& c) { return c.variant == variant.variant(half); });
          require(cost != costs.end(), "BudgetProblem: layer ", i, " ", half_name(half), " variant ",
                  variant.name(half), " of the block library is not in the latency table; measure the table for the "
                  "same elastic checkpoint");
          slot.variants.push_back(variant);
          choice.variants.push_back({variant.name(half), variant.kl, cost->seconds(phase),
                                     static_cast<double>(cost->weight_bytes + cost->kv_bytes_per_token * context)});
        }
        if (choice.variants.size() < 2) {
          // Nothing to choose: its one variant (if any) is a fixed part.
          if (!choice.variants.empty()) {
            problem_.fixed_latency += choice.variants[0].latency;
            problem_.fixed_memory += choice.variants[0].memory;
          }
          continue;
        }
        slots_.push_back(std::move(slot));
        problem_.slots.push_back(std::move(choice));
      }
  }

  const BlockChoiceProblem& problem() const { return problem_; }

  // The sub-network a selection of problem() runs.
  model::SubnetworkConfig config_of(const BlockSelection& selection) const {
    require(selection.variant.size() == slots_.size(), "BudgetProblem::config_of: expected ", slots_.size(),
            " choices, found ", selection.variant.size());
    model::SubnetworkConfig config = model::SubnetworkConfig::full(model_);
    for (std::size_t s = 0; s < slots_.size(); ++s) {
      const Slot& slot = slots_[s];
      slot.variants.at(static_cast<std::size_t>(selection.variant[s])).apply(slot.half, config.layers[slot.layer]);
    }
    return config;
  }

 private:
  struct Slot {
    std::size_t layer;
    Half half;
    std::vector<ScoredVariant> variants;
  };

  io::ModelDescription model_;
  BlockChoiceProblem problem_;
  std::vector<Slot> slots_;
};

struct NamedConfig {
  std::string name;
  model::SubnetworkConfig config;
};

// Every layer at the same MLP width and head count: for each position k in
// the width sets and j in the head sets that every layer has, the k-th
// width and j-th head count (all heads and the stored width first).
inline std::vector<NamedConfig> uniform_baselines(const io::ModelDescription& model,
                                                  const std::vector<ElasticLayerSets>& sets) {
  std::size_t widths = SIZE_MAX, heads = SIZE_MAX;
  for (std::size_t i = 0; i < model.layers.size(); ++i) {
    if (model.layers[i].ffn == io::FfnKind::swiglu) widths = std::min(widths, sets.at(i).mlp_widths.size());
    if (model.layers[i].attention == io::AttentionKind::gqa) heads = std::min(heads, sets.at(i).heads.size());
  }
  widths = widths == SIZE_MAX ? 1 : widths;
  heads = heads == SIZE_MAX ? 1 : heads;
  std::vector<NamedConfig> baselines;
  for (std::size_t k = 0; k < widths; ++k)
    for (std::size_t j = 0; j < heads; ++j) {
      if (k == 0 && j == 0) continue;  // the parent
      NamedConfig& baseline = baselines.emplace_back();
      baseline.config = model::SubnetworkConfig::full(model);
      std::string width_name, heads_name;
      for (std::size_t i = 0; i < model.layers.size(); ++i) {
        model::LayerChoice& choice = baseline.config.layers[i];
        if (model.layers[i].ffn == io::FfnKind::swiglu) {
          choice.mlp_width = sets[i].mlp_widths[k];
          width_name = std::to_string(choice.mlp_width);
        }
        if (model.layers[i].attention == io::AttentionKind::gqa) {
          choice.heads = sets[i].heads[j];
          heads_name = std::to_string(choice.heads);
        }
      }
      baseline.name = "width " + width_name + ", heads " + heads_name;
    }
  return baselines;
}

// Whole layers dropped (both halves skipped), the least contributing first
// (the sum of the halves' measured ||f(x)|| / ||x + f(x)||), 1 to `most`.
inline std::vector<NamedConfig> layer_drop_baselines(const io::ModelDescription& model,
                                                     const std::vector<ElasticLayerSets>& sets, std::size_t most) {
  std::vector<std::size_t> order(model.layers.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return sets.at(a).attention_contribution + sets.at(a).ffn_contribution <
           sets.at(b).attention_contribution + sets.at(b).ffn_contribution;
  });
  std::vector<NamedConfig> baselines;
  model::SubnetworkConfig config = model::SubnetworkConfig::full(model);
  std::string dropped;
  for (std::size_t k = 0; k < std::min(most, order.size()); ++k) {
    config.layers[order[k]].skip_attention = config.layers[order[k]].skip_ffn = true;
    dropped += (k == 0 ? "" : ",") + std::to_string(order[k]);
    baselines.push_back({"drop layers " + dropped, config});
  }
  return baselines;
}

}  // namespace elastic::search
