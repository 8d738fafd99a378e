// What one half (attention or FFN) of one layer runs in a sub-network, as
// the search's files name it: a prefix of the block ("heads:6",
// "width:768"), the linear map stored for it ("linear"), nothing ("none"),
// or, in the block library only, Puzzle's untrained linear init
// ("linear_init", scored for comparison; no checkpoint runs it). The block
// library, the latency table and the budget search name variants this way,
// and translate them to and from a layer's model::LayerChoice here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "elastic/core/error.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/model/subnetwork_config.hpp"

namespace elastic::search {

enum class Half : std::uint8_t { attention, ffn };

constexpr std::string_view half_name(Half half) { return half == Half::attention ? "attention" : "ffn"; }

enum class VariantKind : std::uint8_t { prefix, none, linear, linear_init };

struct HalfVariant {
  VariantKind kind = VariantKind::prefix;
  std::int64_t size = 0;  // prefix: query heads (attention) or MLP width (FFN); 0 for the other kinds

  friend bool operator==(const HalfVariant&, const HalfVariant&) = default;

  static HalfVariant prefix(std::int64_t size) { return {VariantKind::prefix, size}; }
  static HalfVariant none() { return {VariantKind::none, 0}; }
  static HalfVariant linear() { return {VariantKind::linear, 0}; }

  std::string name(Half half) const {
    switch (kind) {
      case VariantKind::prefix: return (half == Half::attention ? "heads:" : "width:") + std::to_string(size);
      case VariantKind::none: return "none";
      case VariantKind::linear: return "linear";
      case VariantKind::linear_init: return "linear_init";
    }
    return {};
  }

  // Whether a checkpoint runs it through a SubnetworkConfig.
  bool runs_as_subnetwork() const { return kind != VariantKind::linear_init; }
};

// Whether `half` of a layer planned as `plan` can run as a linear map: its
// block is one, or it stores one beside the block.
inline bool runs_linear(const io::LayerPlan& plan, Half half) {
  return half == Half::attention ? plan.attention_runs_linear() : plan.ffn_runs_linear();
}

// What `choice` runs in `half` of a layer planned as `plan`: a linear block
// runs "linear" and an absent one "none" unless skipped.
inline HalfVariant chosen_half_variant(const io::LayerPlan& plan, const model::LayerChoice& choice, Half half) {
  if (half == Half::attention) {
    if (choice.skip_attention || plan.attention == io::AttentionKind::none) return HalfVariant::none();
    if (choice.linear_attention || plan.attention == io::AttentionKind::linear) return HalfVariant::linear();
    return HalfVariant::prefix(choice.heads);
  }
  if (choice.skip_ffn || plan.ffn == io::FfnKind::none) return HalfVariant::none();
  if (choice.linear_ffn || plan.ffn == io::FfnKind::linear) return HalfVariant::linear();
  return HalfVariant::prefix(choice.mlp_width);
}

// Sets `half` of `choice` to run `variant` (one a sub-network can run).
inline void choose_half_variant(model::LayerChoice& choice, Half half, const HalfVariant& variant) {
  require(variant.runs_as_subnetwork(), "choose_half_variant: a ", variant.name(half),
          " variant is not a sub-network of the elastic checkpoint");
  const bool prefix = variant.kind == VariantKind::prefix;
  if (half == Half::attention) {
    choice.skip_attention = variant.kind == VariantKind::none;
    choice.linear_attention = variant.kind == VariantKind::linear;
    if (prefix) choice.heads = static_cast<int>(variant.size);
  } else {
    choice.skip_ffn = variant.kind == VariantKind::none;
    choice.linear_ffn = variant.kind == VariantKind::linear;
    if (prefix) choice.mlp_width = variant.size;
  }
}

}  // namespace elastic::search
