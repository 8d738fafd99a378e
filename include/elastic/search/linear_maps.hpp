// The linear replacements an elastic checkpoint stores: one hidden x hidden
// map per GQA attention and SwiGLU FFN, fitted in closed form
// (linear_fit.hpp) on the moments of the block's normed input against its
// output, which a CalibrationPass observer gathers per layer half. A
// sub-network may then run a half as h += W RMSNorm(h) in place of the
// block (model::LayerChoice::linear_attention / linear_ffn). The maps act
// on the hidden stream, which the neuron and head permutation leaves in
// place, so maps fitted on a model serve its permuted copy unchanged.
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

#include "elastic/core/error.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/model/model_weights.hpp"
#include "elastic/search/calibration_pass.hpp"
#include "elastic/search/linear_fit.hpp"

namespace elastic::search {

// Per layer and half, the moments of the block's normed input against its
// output; halves that are not GQA / SwiGLU stay empty.
struct BlockMoments {
  std::vector<std::optional<LinearFitMoments>> attention, ffn;

  static BlockMoments for_model(const io::ModelDescription& model) {
    BlockMoments moments;
    moments.attention.resize(model.layers.size());
    moments.ffn.resize(model.layers.size());
    for (std::size_t i = 0; i < model.layers.size(); ++i) {
      if (model.layers[i].attention == io::AttentionKind::gqa) moments.attention[i].emplace(model.hidden, model.hidden);
      if (model.layers[i].ffn == io::FfnKind::swiglu) moments.ffn[i].emplace(model.hidden, model.hidden);
    }
    return moments;
  }

  std::optional<LinearFitMoments>& of(Half half, std::size_t layer) {
    return half == Half::attention ? attention.at(layer) : ffn.at(layer);
  }
  const std::optional<LinearFitMoments>& of(Half half, std::size_t layer) const {
    return half == Half::attention ? attention.at(layer) : ffn.at(layer);
  }

  // The CalibrationPass observer: adds one half's rows to its moments.
  void add(const BlockObservation& block) {
    std::optional<LinearFitMoments>& target = of(block.half, static_cast<std::size_t>(block.layer));
    if (target) target->add(block.normed, block.output);
  }
};

// The moments of every half over `windows`.
inline BlockMoments collect_block_moments(CalibrationPass& pass, const std::vector<std::vector<int>>& windows) {
  BlockMoments moments = BlockMoments::for_model(pass.description());
  for (const std::vector<int>& window : windows)
    pass.run(window, [&](const BlockObservation& block) { moments.add(block); });
  return moments;
}

// One fitted map per half that has moments.
struct LinearMaps {
  std::vector<std::optional<LinearWeight>> attention, ffn;

  static LinearMaps fit(const BlockMoments& moments, double relative_ridge) {
    LinearMaps maps;
    for (const std::optional<LinearFitMoments>& m : moments.attention)
      maps.attention.push_back(m ? std::optional(m->fit(relative_ridge)) : std::nullopt);
    for (const std::optional<LinearFitMoments>& m : moments.ffn)
      maps.ffn.push_back(m ? std::optional(m->fit(relative_ridge)) : std::nullopt);
    return maps;
  }
};

// A model that stores `maps` beside its blocks: the description with the
// layers' *_has_linear flags set and the weights with the maps' views
// (`maps` and the parent's weights must outlive it). Empty maps give the
// parent back.
struct ModelWithLinearMaps {
  io::ModelDescription model;
  model::ModelWeights<float> weights;

  ModelWithLinearMaps(const io::ModelDescription& parent, const model::ModelWeights<float>& parent_weights,
                      const LinearMaps& maps)
      : model(parent), weights(parent_weights) {
    require((maps.attention.empty() || maps.attention.size() == parent.layers.size()) &&
                (maps.ffn.empty() || maps.ffn.size() == parent.layers.size()),
            "ModelWithLinearMaps: expected maps for the model's ", parent.layers.size(), " layers, found ",
            maps.attention.size(), " attention and ", maps.ffn.size(), " FFN entries");
    // Each map present goes beside its half's block, which must be there.
    const auto attach = [&](const std::vector<std::optional<LinearWeight>>& half_maps, bool attention) {
      for (std::size_t i = 0; i < half_maps.size(); ++i) {
        if (!half_maps[i]) continue;
        const io::LayerPlan& plan = parent.layers[i];
        require(attention ? plan.attention == io::AttentionKind::gqa : plan.ffn == io::FfnKind::swiglu,
                "ModelWithLinearMaps: layer ", i, " has no ", attention ? "GQA attention" : "SwiGLU FFN",
                " to store a linear map beside");
        (attention ? model.layers[i].attention_has_linear : model.layers[i].ffn_has_linear) = true;
        (attention ? weights.layers[i].linear_attention : weights.layers[i].linear_ffn) = half_maps[i]->view();
      }
    };
    attach(maps.attention, true);
    attach(maps.ffn, false);
  }
};

}  // namespace elastic::search
