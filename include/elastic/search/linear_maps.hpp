// The linear replacements an elastic checkpoint stores: one hidden x hidden
// map per GQA attention and SwiGLU FFN, fitted in closed form
// (linear_fit.hpp) on the moments of the block's normed input against its
// output, which a CalibrationPass observer gathers per layer half. A
// sub-network may then run a half as h += W RMSNorm(h) in place of the
// block (model::LayerChoice::linear_attention / linear_ffn). The maps act
// on the hidden stream, which the neuron and head permutation leaves in
// place, so maps fitted on a model serve its permuted copy unchanged.
//
// The moments of one half take 16 hidden^2 bytes (two float64 matrices):
// 5 MB at hidden 576, 268 MB at hidden 4096, so every half of an 8B model
// at once would need 17 GB. plan_fit_turns splits the halves into turns
// that each hold at most a given number of bytes, and fit_linear_maps gathers
// and fits one turn per pass over the fit windows.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "elastic/core/error.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/model/model_weights.hpp"
#include "elastic/search/calibration_pass.hpp"
#include "elastic/search/linear_fit.hpp"

namespace elastic::search {

// Per layer and half, the moments of the block's normed input against its
// output; halves that are not GQA / SwiGLU stay empty.
// A layer half: (layer, Half).
using LayerHalf = std::pair<std::size_t, Half>;

// Every half a map is fitted for (GQA attention, SwiGLU FFN), layer by layer.
inline std::vector<LayerHalf> fittable_halves(const io::ModelDescription& model) {
  std::vector<LayerHalf> halves;
  for (std::size_t i = 0; i < model.layers.size(); ++i) {
    if (model.layers[i].attention == io::AttentionKind::gqa) halves.emplace_back(i, Half::attention);
    if (model.layers[i].ffn == io::FfnKind::swiglu) halves.emplace_back(i, Half::ffn);
  }
  return halves;
}

// Bytes of one half's moments.
inline std::int64_t moment_bytes(const io::ModelDescription& model) {
  return 2 * model.hidden * model.hidden * static_cast<std::int64_t>(sizeof(double));
}

// The fittable halves in turns of at most `memory_bytes` of moments each
// (one half a turn when a half alone is larger), in layer order.
inline std::vector<std::vector<LayerHalf>> plan_fit_turns(const io::ModelDescription& model,
                                                          std::int64_t memory_bytes) {
  const std::int64_t per_turn = std::max<std::int64_t>(1, memory_bytes / moment_bytes(model));
  std::vector<std::vector<LayerHalf>> turns;
  for (const LayerHalf& half : fittable_halves(model)) {
    if (turns.empty() || static_cast<std::int64_t>(turns.back().size()) == per_turn) turns.emplace_back();
    turns.back().push_back(half);
  }
  return turns;
}

struct BlockMoments {
  std::vector<std::optional<LinearFitMoments>> attention, ffn;

  // Empty moments for `halves` of the model's layers.
  static BlockMoments for_halves(const io::ModelDescription& model, std::span<const LayerHalf> halves) {
    BlockMoments moments;
    moments.attention.resize(model.layers.size());
    moments.ffn.resize(model.layers.size());
    for (const auto& [layer, half] : halves) moments.of(half, layer).emplace(model.hidden, model.hidden);
    return moments;
  }
  // Empty moments for every fittable half.
  static BlockMoments for_model(const io::ModelDescription& model) {
    return for_halves(model, fittable_halves(model));
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
    maps.add_fits(moments, relative_ridge);
    return maps;
  }

  // Fits the halves that have moments into these maps (sized to the
  // moments' layers when empty).
  void add_fits(const BlockMoments& moments, double relative_ridge) {
    const auto add = [&](std::vector<std::optional<LinearWeight>>& maps,
                         const std::vector<std::optional<LinearFitMoments>>& half_moments) {
      maps.resize(half_moments.size());
      for (std::size_t i = 0; i < half_moments.size(); ++i)
        if (half_moments[i]) maps[i] = half_moments[i]->fit(relative_ridge);
    };
    add(attention, moments.attention);
    add(ffn, moments.ffn);
  }
};

// Called after each turn of fit_linear_maps: (turns done, turns in all).
using FitProgress = std::function<void(long done, long total)>;

// A map for every fittable half, fitted on the windows of `window` tokens
// at the start of `tokens` (`windows` of them) with `relative_ridge`, the
// moments gathered in `turns` (plan_fit_turns): one pass over the windows
// per turn, each turn's moments freed once fitted. The same rows reach each
// half in the same order however the turns fall, so the maps do not depend
// on them.
inline LinearMaps fit_linear_maps(CalibrationPass& pass, std::span<const int> tokens, std::size_t window,
                                  std::size_t windows, double relative_ridge,
                                  const std::vector<std::vector<LayerHalf>>& turns, const FitProgress& progress = {}) {
  require(tokens.size() >= windows * window, "fit_linear_maps: ", windows, " windows of ", window, " tokens need ",
          windows * window, " tokens, found ", tokens.size());
  LinearMaps maps;
  for (std::size_t t = 0; t < turns.size(); ++t) {
    BlockMoments moments = BlockMoments::for_halves(pass.description(), turns[t]);
    for (std::size_t w = 0; w < windows; ++w)
      pass.run(tokens.subspan(w * window, window), [&](const BlockObservation& block) { moments.add(block); });
    maps.add_fits(moments, relative_ridge);
    if (progress) progress(static_cast<long>(t + 1), static_cast<long>(turns.size()));
  }
  return maps;
}

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
